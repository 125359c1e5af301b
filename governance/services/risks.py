"""The risk register: risks recorded against versions by stewards and reviewers."""

from __future__ import annotations

from django.db import transaction

from governance.audit import audit_record
from governance.models import RiskEntry
from governance.selectors import can_edit_risks
from governance.services.policy import highest_open_risk
from governance.services.rereview import rereview_refresh
from governance.services.standing import version_standing_changed
from portal.errors import Forbidden
from zoo.models import ModelVersion, ReleaseCheck


def risk_entry_save(
    *, actor, version: ModelVersion, risk: RiskEntry | None = None, **fields
) -> RiskEntry:
    """Record or update a risk; stewards and reviewers keep the register."""
    if not can_edit_risks(actor):
        raise Forbidden("Only stewards and reviewers edit the risk register.")
    return _risk_write(actor=actor, version=version, risk=risk, fields=fields)


def _risk_write(*, actor, version: ModelVersion, risk: RiskEntry | None, fields: dict) -> RiskEntry:
    with transaction.atomic():
        level_before = highest_open_risk(version)
        creating = risk is None
        risk = risk or RiskEntry(version=version)
        before = {} if creating else {k: getattr(risk, k) for k in fields}
        for name, value in fields.items():
            setattr(risk, name, value)
        risk.full_clean()
        risk.save()
        audit_record(
            actor=actor,
            verb="risk.create" if creating else "risk.update",
            target=risk,
            payload={
                "version": version.pk,
                "before": before,
                "after": {k: getattr(v, "pk", v) for k, v in fields.items()},
            },
        )
        level_after = highest_open_risk(version)
        # A higher risk sends approvals back to review; a lower one only moves the
        # re-review date (nobody loses access because a risk was mitigated).
        if level_after < level_before:
            rereview_refresh(version=version)
        elif level_after > level_before:
            version_standing_changed(
                version=version,
                actor=actor,
                changes=[{"what": "risk", "before": level_before, "after": level_after}],
            )
    return risk


def _severity(measure: float, threshold: float) -> int:
    """How far over its threshold a finding is: up to 1.25x low, 1.5x medium, 2x high."""
    ratio = measure / threshold if threshold > 0 else float("inf")
    if ratio <= 1.25:
        return RiskEntry.Level.LOW
    if ratio <= 1.5:
        return RiskEntry.Level.MEDIUM
    if ratio <= 2.0:
        return RiskEntry.Level.HIGH
    return RiskEntry.Level.CRITICAL


def risk_entry_open_for_check(*, check: ReleaseCheck) -> RiskEntry | None:
    """Open a bias risk for a failed bias release check, once per version and kind.

    The system opens it (the finding is the authority, whoever asked for the check);
    the audit event names who asked. While an entry opened by an earlier check of
    the same kind is still open, nothing new is opened (None): the register holds one
    open entry per finding, and its evidence link is the check that opened it.
    """
    with transaction.atomic():
        check = ReleaseCheck.objects.select_related("version__model").get(pk=check.pk)
        if check.status != ReleaseCheck.Status.FAILED or check.measure is None:
            return None
        version = check.version
        # Serialise openers of this version's entries so two failed checks cannot both open one.
        ModelVersion.objects.select_for_update().filter(pk=version.pk).first()
        if RiskEntry.objects.filter(
            version=version, status=RiskEntry.Status.OPEN, release_check__kind=check.kind
        ).exists():
            return None
        where = f"{version.get_absolute_url()}#release-check-{check.kind}"
        fields = {
            "category": RiskEntry.Category.BIAS,
            "title": (
                f"{check.get_kind_display()}: {check.measure_name} {check.measure:.3g} "
                f"over the threshold {check.threshold:g} (check #{check.pk})"
            )[:200],
            "severity": _severity(check.measure, check.threshold),
            # A measured gap or association is evidence of a risk, not of harm in use.
            "likelihood": RiskEntry.Level.MEDIUM,
            "mitigation": (
                f"Opened automatically from release check #{check.pk}; its evidence is on the "
                f"version page: {where}. {check.summary[:1200]} Look at the figures there, then "
                "mitigate (other data, a different base, a documented limitation in the card) "
                "or accept the risk with a reason."
            ),
            "release_check": check,
        }
        risk = _risk_write(actor=None, version=version, risk=None, fields=fields)
        audit_record(
            actor=None,
            verb="risk.open_from_check",
            target=risk,
            payload={
                "check": check.pk,
                "kind": check.kind,
                "measure": check.measure,
                "threshold": check.threshold,
                "asked_by": check.requested_by_id,
            },
        )
        return risk
