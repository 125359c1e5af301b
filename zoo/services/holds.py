"""Holds on versions placed from outside their files: block or flag, then lift.

Governance's incidents place them (a recall blocks the recalled version and,
by severity, blocks or flags what was made from it); zoo keeps the block state,
so the hub, probes and fine-tunes refuse a held version through the one check
they already make.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from governance.audit import audit_record
from governance.roles import is_reviewer, is_steward
from portal.errors import Conflict, Forbidden, PortalError
from zoo.models import ModelVersion, VersionHold
from zoo.services.catalogue import apply_block_state
from zoo.services.events import standing_changed


def _require_holder(actor) -> None:
    if actor is not None and not (is_steward(actor) or is_reviewer(actor) or actor.is_staff):
        raise Forbidden("Only stewards and reviewers may place or lift holds on versions.")


def _rederive(version: ModelVersion) -> list[dict]:
    changes = apply_block_state(version)
    version.save(update_fields=["status", "block_reasons", "updated_at"])
    return changes


@transaction.atomic
def version_hold_place(
    *, version: ModelVersion, source: str, reason: str, blocks: bool, actor, announce: bool = True
) -> VersionHold:
    """Block or flag ``version`` on behalf of ``source``; one live hold per source.

    ``announce=False`` keeps the block change to the caller, which has already
    dealt with the approvals on the version (a recall suspends them instead of
    sending them back to review).
    """
    _require_holder(actor)
    reason = reason.strip()
    if not reason:
        raise PortalError("Say why the version is held.", field="reason")
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    if VersionHold.objects.live().filter(version=version, source=source).exists():
        raise Conflict(f"{source} already holds this version.")
    hold = VersionHold.objects.create(
        version=version,
        source=source,
        reason=reason,
        blocks=blocks,
        placed_by=actor,
        placed_at=timezone.now(),
    )
    before = version.status
    changes = _rederive(version)
    audit_record(
        actor=actor,
        verb="version.hold",
        target=version,
        payload={
            "source": source,
            "blocks": blocks,
            "reason": reason,
            "before": {"status": before},
            "after": {"status": version.status},
        },
    )
    if announce:
        standing_changed(version=version, actor=actor, changes=changes)
    return hold


@transaction.atomic
def version_holds_lift(*, source: str, actor, announce: bool = True) -> list[int]:
    """Lift every live hold ``source`` placed; the versions whose holds were lifted."""
    _require_holder(actor)
    holds = list(
        VersionHold.objects.live()
        .filter(source=source)
        .select_for_update()
        .order_by("version_id", "id")
    )
    lifted = []
    for hold in holds:
        hold.lifted_at = timezone.now()
        hold.lifted_by = actor
        hold.save(update_fields=["lifted_at", "lifted_by"])
        version = ModelVersion.objects.select_for_update().get(pk=hold.version_id)
        before = version.status
        changes = _rederive(version)
        audit_record(
            actor=actor,
            verb="version.hold_lift",
            target=version,
            payload={
                "source": source,
                "before": {"status": before},
                "after": {"status": version.status},
            },
        )
        if announce:
            standing_changed(version=version, actor=actor, changes=changes)
        lifted.append(version.pk)
    return lifted
