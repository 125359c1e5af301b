"""Incidents on versions and the recalls they make through the lineage.

A recall blocks the recalled version and walks the lineage to every descendant
(fine-tunes and adapters made from it, at any depth): from ``HIGH`` severity on
each is blocked, below it flagged. Live approvals on all of them are suspended
(their holders and the versions' owners are told) and the blocks go through
zoo's holds, so the hub refuses the files at the next request. Lifting the
recall restores exactly what ``RecallEffect`` rows say it took. The playbook
(contain, assess, notify, remediate, close) is recorded step by step.
"""

from __future__ import annotations

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from governance.audit import audit_record
from governance.models import (
    Incident,
    IncidentCategory,
    IncidentStep,
    NotificationKind,
    RecallEffect,
)
from governance.selectors import may_handle_incidents
from governance.services import notify as notices
from governance.services.reuse import approvals_restore, approvals_suspend
from portal.errors import Conflict, Forbidden, PortalError
from zoo.models import ModelVersion
from zoo.services.holds import version_hold_place, version_holds_lift


def _require(actor) -> None:
    if not may_handle_incidents(actor):
        raise Forbidden("Only stewards, reviewers and staff handle incidents.")


def incident_url(incident: Incident) -> str:
    return reverse("governance:incident", kwargs={"pk": incident.pk})


def descendants(version: ModelVersion) -> list[tuple[ModelVersion, int]]:
    """Every version made from ``version`` (children, their children…) with its depth."""
    found: list[tuple[ModelVersion, int]] = []
    seen = {version.pk}
    frontier, depth = [version.pk], 0
    while frontier:
        depth += 1
        children = list(
            ModelVersion.objects.filter(parent_id__in=frontier)
            .exclude(pk__in=seen)
            .select_related("model")
            .order_by("pk")
        )
        seen.update(c.pk for c in children)
        found.extend((c, depth) for c in children)
        frontier = [c.pk for c in children]
    return found


@transaction.atomic
def incident_open(
    *,
    version: ModelVersion,
    actor,
    category: str,
    severity: int,
    title: str,
    description: str,
    recall: bool = False,
) -> Incident:
    """Record an incident on a version; with ``recall``, recall it at once."""
    _require(actor)
    title, description = (title or "").strip(), (description or "").strip()
    if category not in IncidentCategory.values:
        raise PortalError("Choose the incident's category.", field="category")
    if severity not in Incident.Severity.values:
        raise PortalError("Choose a severity from low to critical.", field="severity")
    if not title:
        raise PortalError("Give the incident a title.", field="title")
    if len(description) < 20:
        raise PortalError(
            "Describe what was found (at least 20 characters): what, where, how it was seen.",
            field="description",
        )
    incident = Incident.objects.create(
        version=version,
        category=category,
        severity=severity,
        title=title[:200],
        description=description,
        opened_by=actor,
        opened_at=timezone.now(),
    )
    audit_record(
        actor=actor,
        verb="incident.open",
        target=incident,
        payload={"version": version.pk, "category": category, "severity": severity},
    )
    if recall:
        incident_recall(incident=incident, actor=actor)
    return incident


@transaction.atomic
def incident_recall(*, incident: Incident, actor) -> list[RecallEffect]:
    """Recall the incident's version and everything made from it."""
    _require(actor)
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    if incident.status != Incident.Status.OPEN:
        raise Conflict("This incident is closed; open a new one to recall again.")
    if incident.recall_active:
        raise Conflict("This incident's recall is already in force.")
    root = ModelVersion.objects.select_related("model").get(pk=incident.version_id)
    reach = [(root, 0), *descendants(root)]
    blocks_below = incident.severity >= Incident.BLOCKS_DESCENDANTS_FROM
    # Approvals first: suspended, not sent back to review, when the blocks land.
    reason = f"Recalled by incident #{incident.pk}: {incident.title}."
    suspended = approvals_suspend(version_ids=[v.pk for v, _ in reach], actor=actor, reason=reason)
    effects = []
    for version, depth in reach:
        blocks = depth == 0 or blocks_below
        version_hold_place(
            version=version,
            source=incident.source,
            reason=reason
            if depth == 0
            else f"Made from {root.model.repo_id} {root.label}, recalled by incident "
            f"#{incident.pk}: {incident.title}.",
            blocks=blocks,
            actor=actor,
            announce=False,
        )
        effects.append(
            RecallEffect(
                incident=incident,
                version=version,
                depth=depth,
                blocked=blocks,
                suspended_requests=suspended.get(version.pk, []),
            )
        )
    # One effect per (incident, version): a recall lifted and made again reuses its rows.
    RecallEffect.objects.filter(incident=incident).delete()
    RecallEffect.objects.bulk_create(effects)
    incident.recalled_at = timezone.now()
    incident.recall_lifted_at = None
    incident.save(update_fields=["recalled_at", "recall_lifted_at"])
    audit_record(
        actor=actor,
        verb="incident.recall",
        target=incident,
        payload={
            "blocked": [e.version_id for e in effects if e.blocked],
            "flagged": [e.version_id for e in effects if not e.blocked],
            "suspended_requests": sorted(r for ids in suspended.values() for r in ids),
        },
    )
    _tell_makers(incident, reach, recalled=True)
    return effects


def _tell_makers(incident: Incident, reach, *, recalled: bool) -> None:
    """Owners and creators of every version the recall reached (holders hear from reuse)."""
    people = set()
    for version, _ in reach:
        people.update(p for p in (version.model.owner_id, version.created_by_id) if p)
    root = reach[0][0]
    word = "recalled" if recalled else "recall lifted"
    notices.notify(
        kind=NotificationKind.INCIDENT,
        users=people,
        title=f"Incident #{incident.pk} ({word}): {root.model.repo_id} {root.label}"
        + (f" and {len(reach) - 1} version(s) made from it" if len(reach) > 1 else ""),
        body=f"{incident.get_category_display()}, {incident.get_severity_display().lower()} "
        f"severity: {incident.title}",
        url=incident_url(incident),
        event_key=f"incident:{incident.pk}:{word}:{timezone.now().timestamp()}",
        data={
            "incident": incident.pk,
            "versions": [v.pk for v, _ in reach],
            "recall_active": recalled,
        },
    )


@transaction.atomic
def incident_recall_lift(*, incident: Incident, actor, reason: str) -> list[int]:
    """Lift the recall: unblock and unflag, give the suspended approvals back."""
    _require(actor)
    reason = (reason or "").strip()
    if len(reason) < 10:
        raise PortalError("Say why the recall is lifted (at least 10 characters).", field="reason")
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    if not incident.recall_active:
        raise Conflict("This incident has no recall in force.")
    effects = list(incident.effects.select_related("version__model").order_by("depth", "pk"))
    # Holds first, then approvals: restored approvals must not see a block change.
    version_holds_lift(source=incident.source, actor=actor, announce=False)
    restored = approvals_restore(
        request_ids=[r for e in effects for r in e.suspended_requests],
        actor=actor,
        reason=f"The recall of incident #{incident.pk} was lifted: {reason}",
    )
    now = timezone.now()
    incident.effects.update(restored_at=now)
    incident.recall_lifted_at = now
    incident.save(update_fields=["recall_lifted_at"])
    audit_record(
        actor=actor,
        verb="incident.recall_lift",
        target=incident,
        payload={"reason": reason, "restored_requests": restored},
    )
    _tell_makers(incident, [(e.version, e.depth) for e in effects], recalled=False)
    return restored


@transaction.atomic
def incident_step_record(*, incident: Incident, actor, step: str, note: str) -> IncidentStep:
    """Record one playbook step; ``close`` needs the others done and closes the incident."""
    _require(actor)
    note = (note or "").strip()
    if step not in IncidentStep.Step.values:
        raise PortalError("Choose a playbook step.", field="step")
    if not note:
        raise PortalError("Say what was done in this step.", field="note")
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    if incident.status == Incident.Status.CLOSED:
        raise Conflict("This incident is closed.")
    done = set(incident.steps.values_list("step", flat=True))
    if step in done:
        raise Conflict(f"The {step} step is already recorded.")
    if step == IncidentStep.Step.CLOSE:
        missing = [s.label.lower() for s in IncidentStep.Step if s != "close" and s not in done]
        if missing:
            raise PortalError(
                "Record the other steps before closing: " + ", ".join(missing) + ".", field="step"
            )
    now = timezone.now()
    recorded = IncidentStep.objects.create(
        incident=incident, step=step, note=note, done_by=actor, done_at=now
    )
    if step == IncidentStep.Step.CLOSE:
        incident.status = Incident.Status.CLOSED
        incident.closed_at = now
        incident.save(update_fields=["status", "closed_at"])
    audit_record(
        actor=actor,
        verb=f"incident.step.{step}",
        target=incident,
        payload={"note": note, "recall_active": incident.recall_active},
    )
    return recorded
