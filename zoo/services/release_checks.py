"""Release checks of a version: their rows as a job moves them, the card section they write,
and the audited edits of the policy table that says which checks are required.

The checks themselves run as jobs (``jobs.services.release_checks`` launches
them, ``jobs.workers.release_checks`` computes them); what they store is kept
here, in zoo, because the publish gate reads it and zoo never reaches into jobs.
"""

from __future__ import annotations

import re

from django.db import transaction
from django.utils import timezone

from governance.audit import audit_record, policy_row_delete, policy_row_save
from governance.roles import is_steward
from portal.errors import Forbidden, PortalError
from zoo.models import AssociationTestSet, ModelVersion, ReleaseCheck, ReleaseCheckRule
from zoo.selectors.cards import card_text
from zoo.selectors.release_checks import latest_finished_checks
from zoo.services.card_revisions import version_card_edit

SECTION = "## Release checks"
# The section, up to the next second-level heading or the end of the card.
_SECTION = re.compile(r"^## Release checks[ \t]*\n.*?(?=^## (?!#)|\Z)", re.MULTILINE | re.DOTALL)


def release_check_open(
    *, version: ModelVersion, kind: str, params: dict, threshold: float, actor
) -> ReleaseCheck:
    """Record a requested check (queued); the caller links its job in the same transaction."""
    if kind not in ReleaseCheck.Kind.values:
        raise PortalError(
            f"Unknown release check {kind!r}; choose one of {', '.join(ReleaseCheck.Kind.values)}.",
            field="kind",
        )
    check = ReleaseCheck.objects.create(
        version=version,
        kind=kind,
        params=params,
        threshold=float(threshold),
        requested_by=actor if getattr(actor, "pk", None) else None,
    )
    audit_record(
        actor=actor,
        verb="release_check.launch",
        target=version,
        payload={"check": check.pk, "kind": kind, "threshold": threshold, "params": params},
    )
    return check


def release_check_link_job(*, check: ReleaseCheck, job_id: int) -> None:
    ReleaseCheck.objects.filter(pk=check.pk).update(job_id=job_id)
    check.job_id = job_id


def release_check_start(*, check_id: int) -> None:
    ReleaseCheck.objects.filter(pk=check_id).update(
        status=ReleaseCheck.Status.RUNNING, started_at=timezone.now()
    )


@transaction.atomic
def release_check_finish(
    *, check_id: int, measure: float, summary: str, result: dict, seconds: float
) -> ReleaseCheck:
    """Store a check's outcome, judged against its threshold, and rewrite the card's section."""
    check = ReleaseCheck.objects.select_for_update().select_related("version").get(pk=check_id)
    check.measure = float(measure)
    check.status = ReleaseCheck.Status.PASSED  # provisional, so ``passes`` judges the measure
    check.passed = check.passes()
    check.status = ReleaseCheck.Status.PASSED if check.passed else ReleaseCheck.Status.FAILED
    check.summary, check.result, check.seconds = summary, result, float(seconds)
    check.error = ""
    check.finished_at = timezone.now()
    check.save()
    audit_record(
        actor=None,
        verb="release_check.finish",
        target=check.version,
        payload={
            "check": check.pk,
            "kind": check.kind,
            "status": check.status,
            "measure": check.measure,
            "threshold": check.threshold,
        },
    )
    release_checks_write_card(version=check.version)
    return check


@transaction.atomic
def release_check_error(*, check_id: int, error: str) -> None:
    """A check that could not run: recorded as such (it never counts as passed)."""
    check = ReleaseCheck.objects.select_for_update().select_related("version").get(pk=check_id)
    if check.status in (ReleaseCheck.Status.PASSED, ReleaseCheck.Status.FAILED):
        return
    check.status, check.passed, check.error = ReleaseCheck.Status.ERROR, None, error[:4000]
    check.finished_at = timezone.now()
    check.save(update_fields=["status", "passed", "error", "finished_at"])
    audit_record(
        actor=None,
        verb="release_check.error",
        target=check.version,
        payload={"check": check.pk, "kind": check.kind, "error": check.error[:500]},
    )


def release_checks_section(version: ModelVersion) -> str:
    """The card's "Release checks" section: the newest finished check of each kind."""
    checks = [c for c in latest_finished_checks(version).values() if c.status != "error"]
    if not checks:
        return ""
    parts = [
        SECTION,
        "",
        "Checks run by the model zoo before release. Each says what it measured and what it "
        "did not; the figures are the portal's record of this version.",
        "",
    ]
    for check in sorted(checks, key=lambda c: c.kind):
        verdict = "passed" if check.passed else "failed"
        measured = check.measure_name[:1].upper() + check.measure_name[1:]
        parts += [
            f"### {check.get_kind_display()}: {verdict}",
            "",
            f"{measured}: {check.measure:.4g} against a threshold of "
            f"{check.threshold:g} (check #{check.pk}, "
            f"{check.finished_at:%Y-%m-%d %H:%M} UTC).",
            "",
            check.summary,
            "",
        ]
        extra = (check.result or {}).get("card_markdown")
        if extra:
            parts += [extra.strip(), ""]
    return "\n".join(parts).rstrip() + "\n"


def with_section(markdown: str, section: str) -> str:
    """``markdown`` with its Release checks section replaced by ``section`` (or appended)."""
    stripped = _SECTION.sub("", markdown).rstrip()
    if not section:
        return stripped + "\n"
    return f"{stripped}\n\n{section}"


def release_checks_write_card(*, version: ModelVersion) -> None:
    """Rewrite the card's Release checks section as a new card revision (the system's)."""
    version = ModelVersion.objects.get(pk=version.pk)
    text = card_text(version)
    updated = with_section(text, release_checks_section(version))
    if updated.strip() == text.strip():
        return
    version_card_edit(
        version=version,
        actor=None,
        markdown=updated,
        reason="Release checks: the section was rewritten from the newest results.",
    )


# --- the policy table, edited by staff in the admin -----------------------------------------


def release_check_rule_save(*, actor, rule: ReleaseCheckRule) -> ReleaseCheckRule:
    """Add or change a required release check (the admin has set its fields); audited."""
    return policy_row_save(actor=actor, obj=rule, verb="release_check_rule")


def release_check_rule_delete(*, actor, rule: ReleaseCheckRule) -> None:
    """Remove a required release check; audited with what it was."""
    policy_row_delete(actor=actor, obj=rule, verb="release_check_rule")


# --- the association tests' word sets, kept by stewards ---------------------------------------


def _require_word_set_keeper(actor) -> None:
    if not (actor is not None and actor.is_authenticated and (actor.is_staff or is_steward(actor))):
        raise Forbidden("Only stewards and staff change the association tests' word sets.")


def association_test_set_save(
    *, actor, test_set: AssociationTestSet, fields: dict | None = None
) -> AssociationTestSet:
    """Add or change a word-association test (stewards and staff); audited before/after.

    The association check reads these rows when it runs, so a change applies to the
    next check, never to a stored result (which keeps the words it used).
    """
    return policy_row_save(
        actor=actor,
        obj=test_set,
        verb="association_test_set",
        fields=fields,
        authorize=_require_word_set_keeper,
    )


def association_test_set_delete(*, actor, test_set: AssociationTestSet) -> None:
    """Remove a word-association test; audited with what it was. Stored results keep theirs."""
    policy_row_delete(
        actor=actor, obj=test_set, verb="association_test_set", authorize=_require_word_set_keeper
    )
