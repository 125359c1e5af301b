"""The risk register: risks recorded against versions by stewards and reviewers."""

from __future__ import annotations

from django.db import transaction

from governance.audit import audit_record
from governance.models import RiskEntry
from governance.selectors import can_edit_risks
from portal.errors import Forbidden
from zoo.models import ModelVersion


def risk_entry_save(
    *, actor, version: ModelVersion, risk: RiskEntry | None = None, **fields
) -> RiskEntry:
    """Record or update a risk; stewards and reviewers keep the register."""
    if not can_edit_risks(actor):
        raise Forbidden("Only stewards and reviewers edit the risk register.")
    with transaction.atomic():
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
    return risk
