"""Scan waivers: a steward's audited, expiring exception for one file's bytes.

Granting, revoking and lapsing a waiver re-derive the block state of every
version that holds the file (zoo.services.catalogue.version_block_reasons
skips files with a live waiver), in the same transaction as the audit event.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.audit import audit_record
from governance.roles import is_steward
from portal.errors import Conflict, Forbidden, PortalError
from zoo.models import SCAN_WAIVER_MAX_DAYS, Artifact, ModelVersion, ScanWaiver
from zoo.services.catalogue import version_block_reasons
from zoo.services.events import block_change, standing_changed

MIN_REASON_CHARS = 20


def _require_steward(actor) -> None:
    if actor is None or not actor.is_authenticated or not is_steward(actor):
        raise Forbidden("Only stewards may waive or revoke a scan result.")


def _rederive(sha256: str, actor=None) -> list[dict]:
    """Re-apply the block state of each version holding these bytes; what changed."""
    changed = []
    holders = Artifact.objects.filter(sha256=sha256).values("version_id")
    versions = ModelVersion.objects.select_for_update().filter(pk__in=holders).order_by("pk")
    for version in versions:
        reasons = version_block_reasons(version)
        status = ModelVersion.Status.BLOCKED if reasons else ModelVersion.Status.AVAILABLE
        if status != version.status or reasons != version.block_reasons:
            changed.append({"version": version.pk, "before": version.status, "after": status})
            version.status = status
            version.block_reasons = reasons
            version.save(update_fields=["status", "block_reasons", "updated_at"])
            standing_changed(
                version=version,
                actor=actor,
                changes=block_change(changed[-1]["before"], status, reasons),
            )
    return changed


def scan_waiver_grant(*, artifact: Artifact, actor, reason: str, days: int) -> ScanWaiver:
    """Waive the scan result of ``artifact``'s bytes for ``days`` days, with a reason."""
    _require_steward(actor)
    reason = (reason or "").strip()
    if not artifact.blocks:
        raise PortalError(f"{artifact.path} does not block its version; there is nothing to waive.")
    if len(reason) < MIN_REASON_CHARS:
        raise PortalError(
            f"Say why these bytes are safe to use (at least {MIN_REASON_CHARS} characters): "
            "who checked them and how.",
            field="reason",
        )
    if not isinstance(days, int) or not 1 <= days <= SCAN_WAIVER_MAX_DAYS:
        raise PortalError(
            f"A waiver lasts between 1 and {SCAN_WAIVER_MAX_DAYS} days.", field="days"
        )
    now = timezone.now()
    try:
        with transaction.atomic():
            _lapse_expired(artifact.sha256, now)
            waiver = ScanWaiver.objects.create(
                sha256=artifact.sha256,
                reason=reason,
                scan_status=artifact.scan_status,
                findings=artifact.scan_findings[:50],
                granted_by=actor,
                created_at=now,
                expires_at=now + timedelta(days=days),
            )
            changed = _rederive(artifact.sha256, actor)
            audit_record(
                actor=actor,
                verb="scan.waive",
                target=waiver,
                payload={
                    "sha256": artifact.sha256,
                    "path": artifact.path,
                    "scan_status": artifact.scan_status,
                    "reason": reason,
                    "expires_at": waiver.expires_at.isoformat(),
                    "versions": changed,
                },
            )
    except IntegrityError as exc:
        raise Conflict(
            "These bytes already have a waiver in force; revoke it first to change it."
        ) from exc
    return waiver


def scan_waiver_revoke(*, waiver: ScanWaiver, actor, reason: str = "") -> ScanWaiver:
    """End a waiver now: the versions holding its file are blocked again."""
    _require_steward(actor)
    with transaction.atomic():
        now = timezone.now()
        moved = ScanWaiver.objects.filter(
            pk=waiver.pk, revoked_at__isnull=True, lapsed_at__isnull=True
        ).update(revoked_at=now, revoked_by=actor, revoke_reason=(reason or "").strip())
        if not moved:
            raise Conflict("This waiver has already ended.")
        changed = _rederive(waiver.sha256, actor)
        waiver.refresh_from_db()
        audit_record(
            actor=actor,
            verb="scan.waiver_revoke",
            target=waiver,
            payload={"sha256": waiver.sha256, "reason": waiver.revoke_reason, "versions": changed},
        )
    return waiver


def _lapse_expired(sha256: str | None, now) -> int:
    ended = ScanWaiver.objects.select_for_update().filter(
        revoked_at__isnull=True, lapsed_at__isnull=True, expires_at__lte=now
    )
    if sha256 is not None:
        ended = ended.filter(sha256=sha256)
    count = 0
    for waiver in ended.order_by("pk"):
        ScanWaiver.objects.filter(pk=waiver.pk).update(lapsed_at=now)
        changed = _rederive(waiver.sha256)
        audit_record(
            actor=None,
            verb="scan.waiver_lapse",
            target=waiver,
            payload={"sha256": waiver.sha256, "versions": changed},
        )
        count += 1
    return count


def scan_waivers_lapse() -> int:
    """Block again the versions whose waivers have expired (run by beat); how many lapsed.

    The hub checks expiry at every download, so this moves the stored state; it
    does not decide access.
    """
    with transaction.atomic():
        return _lapse_expired(None, timezone.now())
