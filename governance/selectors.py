"""Read queries for governance pages and the API."""

from __future__ import annotations

from datetime import date

from django.db.models import QuerySet

from governance.models import AuditEvent
from governance.roles import REVIEW_ROLES, STEWARDS, user_roles


def can_read_audit(user) -> bool:
    """Staff, stewards and reviewers read the audit log; it names people and their actions."""
    if not user.is_authenticated:
        return False
    return user.is_staff or bool(user_roles(user) & {STEWARDS, *REVIEW_ROLES})


def audit_events(
    *,
    actor: str = "",
    verb: str = "",
    target_type: str = "",
    target_id: str = "",
    since: date | None = None,
    until: date | None = None,
) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.order_by("-id")
    if actor:
        qs = qs.filter(actor_name=actor)
    if verb:
        qs = qs.filter(verb=verb)
    if target_type:
        qs = qs.filter(target_type=target_type)
    if target_id:
        qs = qs.filter(target_id=target_id)
    if since:
        qs = qs.filter(created_at__date__gte=since)
    if until:
        qs = qs.filter(created_at__date__lte=until)
    return qs
