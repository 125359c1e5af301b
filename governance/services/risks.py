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
from zoo.models import ModelVersion


def risk_entry_save(
    *, actor, version: ModelVersion, risk: RiskEntry | None = None, **fields
) -> RiskEntry:
    """Record or update a risk; stewards and reviewers keep the register."""
    if not can_edit_risks(actor):
        raise Forbidden("Only stewards and reviewers edit the risk register.")
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
            payload={"version": version.pk, "before": before, "after": fields},
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
