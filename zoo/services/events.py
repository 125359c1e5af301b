"""What the catalogue tells the rest of the portal when a version's standing changes.

zoo may not call governance's services (the arrows point the other way), yet a
license change or a new block must send the approvals resting on the version
back to review. The zoo service that made the change sends
``version_standing_changed`` inside its transaction; governance's receiver
(connected in its AppConfig) does its part, with its own audit events, in the
same transaction, so the change and its consequences commit or roll back as one.
"""

from __future__ import annotations

from django.dispatch import Signal

# kwargs: version (ModelVersion), actor (user or None), changes (list of dicts:
# {"what": "license" | "blocked", "before": ..., "after": ...}).
version_standing_changed = Signal()


def standing_changed(*, version, actor, changes: list[dict]) -> None:
    """Announce changes to a version's license or block status, if there are any."""
    if changes:
        version_standing_changed.send(
            sender=type(version), version=version, actor=actor, changes=changes
        )


def block_change(before_status: str, after_status: str, reasons: list[str]) -> list[dict]:
    """The change record for a version whose block status moved (none if it did not)."""
    if before_status == after_status:
        return []
    return [{"what": "blocked", "before": before_status, "after": after_status, "reasons": reasons}]
