"""The audit log: one append-only hash chain that every app writes to.

``audit_record`` is called inside the transaction of the action it records,
so the change and its event commit or roll back together. Appends take a
transaction-level advisory lock on PostgreSQL (SQLite serialises writers
anyway), so two concurrent writers can never both extend the same link.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from governance.models import AuditEvent

GENESIS = "0" * 64
_LOCK_KEY = 7_200_331_001  # arbitrary, fixed: "the audit chain"
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "audit_request_id", default=""
)


def canonical(event: AuditEvent) -> str:
    """The bytes that are hashed: every recorded field, in a fixed order and form."""
    return json.dumps(
        {
            "actor_id": event.actor_id,
            "actor_name": event.actor_name,
            "verb": event.verb,
            "target_type": event.target_type,
            "target_id": event.target_id,
            "target_repr": event.target_repr,
            "payload": event.payload,
            "request_id": event.request_id,
            "created_at": event.created_at.isoformat(),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256((prev_hash + canonical(event)).encode()).hexdigest()


def audit_record(
    *,
    actor,
    verb: str,
    target=None,
    payload: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> AuditEvent:
    """Append one event; ``actor`` is None only for the system itself."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the action's transaction")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
    last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    event = AuditEvent(
        actor=actor if authenticated else None,
        actor_name=actor.get_username() if authenticated else "system",
        verb=verb,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:300] if target is not None else "",
        payload=json.loads(json.dumps(payload or {}, default=str)),
        request_id=request_id if request_id is not None else current_request_id.get(),
        created_at=timezone.now(),
        prev_hash=last or GENESIS,
    )
    event.hash = chain_hash(event.prev_hash, event)
    event.save()
    return event


def audit_refusal(
    *, actor, method: str, path: str, reason: str, verb: str = "access.refused", target=None
) -> AuditEvent:
    """Record that ``actor`` was refused: refused authorizations are part of the trail too.

    Written in a transaction of its own, since the refused action's rolled back.
    """
    with transaction.atomic():
        return audit_record(
            actor=actor,
            verb=verb,
            target=target,
            payload={"method": method, "path": path[:500], "reason": reason},
        )


@dataclass
class ChainReport:
    checked: int
    broken_at: int | None = None
    reason: str = ""


def verify_chain() -> ChainReport:
    """Walk the chain from the start; name the first event whose link does not hold."""
    expected_prev = GENESIS
    checked = 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        if event.prev_hash != expected_prev:
            return ChainReport(checked, event.pk, "its prev_hash is not the previous event's hash")
        if chain_hash(event.prev_hash, event) != event.hash:
            return ChainReport(checked, event.pk, "its content does not match its hash")
        expected_prev = event.hash
        checked += 1
    return ChainReport(checked)
