"""The audit log: one append-only, keyed hash chain that every app writes to.

``audit_record`` is called inside the transaction of the action it records,
so the change and its event commit or roll back together. Appends take a
transaction-level advisory lock on PostgreSQL (SQLite serialises writers
anyway), so two concurrent writers can never both extend the same link.

Each link is an HMAC under ``settings.AUDIT_KEY``, which the database never
sees: someone who can write the table (a DBA, a stolen backup restored
elsewhere) cannot recompute a link after changing an event. Events written
before links were keyed carry the scheme "sha256"; they may only precede the
keyed ones, so a rewrite cannot downgrade the chain. What a key cannot show
(the newest events deleted, the whole table emptied) the signed anchors of
``governance.anchors`` do.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.utils import timezone

from governance.models import AuditEvent
from portal.errors import Forbidden, PortalError

GENESIS = "0" * 64
LOCK_KEY = 7_200_331_001  # arbitrary, fixed: "the audit chain"
KEYED = "hmac-sha256"
UNKEYED = "sha256"  # events recorded before links were keyed
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


def sign(message: str) -> str:
    """HMAC-SHA256 of ``message`` under the audit key."""
    return hmac.new(settings.AUDIT_KEY.encode(), message.encode(), hashlib.sha256).hexdigest()


def chain_hash(prev_hash: str, event: AuditEvent, scheme: str = KEYED) -> str:
    """The link that seals ``event`` onto ``prev_hash``, by ``scheme``."""
    message = prev_hash + canonical(event)
    if scheme == UNKEYED:
        return hashlib.sha256(message.encode()).hexdigest()
    if scheme != KEYED:
        raise ValueError(f"unknown audit scheme {scheme!r}")
    return sign(message)


def _storable_text(text: str) -> str:
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def storable(value: Any) -> Any:
    """``value`` with NUL characters and lone surrogates spelled out as escapes.

    PostgreSQL's jsonb refuses both, and a payload often quotes what a caller sent
    (a path, a name): the event must be written all the same, and say what came.
    """
    if isinstance(value, str):
        return _storable_text(value)
    if isinstance(value, dict):
        return {_storable_text(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


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
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
    last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    event = AuditEvent(
        actor=actor if authenticated else None,
        actor_name=actor.get_username() if authenticated else "system",
        verb=verb,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=_storable_text(str(target))[:300] if target is not None else "",
        payload=storable(json.loads(json.dumps(payload or {}, default=str))),
        request_id=request_id if request_id is not None else current_request_id.get(),
        created_at=timezone.now(),
        prev_hash=last or GENESIS,
        scheme=KEYED,
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
    anchors: int = 0  # anchors that held


def _link_problem(event: AuditEvent, expected_prev: str, keyed_seen: bool) -> str:
    if event.prev_hash != expected_prev:
        return "its prev_hash is not the previous event's hash"
    if event.scheme == UNKEYED and keyed_seen:
        return "an unkeyed link follows keyed ones (a downgrade)"
    if event.scheme not in (KEYED, UNKEYED):
        return f"its scheme {event.scheme!r} is unknown"
    if not hmac.compare_digest(chain_hash(event.prev_hash, event, event.scheme), event.hash):
        return "its content does not match its hash"
    return ""


def verify_chain(anchors: list | None = None) -> ChainReport:
    """Walk the chain from the start; name the first event whose link does not hold.

    ``anchors`` (``governance.anchors.Anchor``) pin events that must still be
    there with the hash and position they had when anchored; one that is not
    shows events were rewritten or deleted, the newest or all of them included.
    """
    pinned = {anchor.event_id: anchor for anchor in anchors or []}
    expected_prev, checked, keyed_seen, held = GENESIS, 0, False, 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        problem = _link_problem(event, expected_prev, keyed_seen)
        if problem:
            return ChainReport(checked, event.pk, problem, held)
        keyed_seen = keyed_seen or event.scheme == KEYED
        expected_prev = event.hash
        checked += 1
        anchor = pinned.pop(event.pk, None)
        if anchor is not None:
            if anchor.hash != event.hash or anchor.count != checked:
                return ChainReport(
                    checked, event.pk, f"it differs from its anchor of {anchor.at}", held
                )
            held += 1
    if pinned:
        missing = min(pinned.values(), key=lambda a: a.event_id)
        return ChainReport(
            checked,
            missing.event_id,
            f"it was anchored at {missing.at} and is gone: events were deleted",
            held,
        )
    return ChainReport(checked, anchors=held)


# --- policy tables: rows staff edit (in the admin), each change audited before/after ----


def _require_staff(actor) -> None:
    if not (actor is not None and actor.is_authenticated and actor.is_staff):
        raise Forbidden("Only staff may change the policy tables.")


def _snapshot(obj) -> dict:
    return {k: v for k, v in model_to_dict(obj).items() if k != "id"}


def policy_row_save(*, actor, obj, verb: str, fields: dict | None = None, authorize=_require_staff):
    """Apply ``fields`` to ``obj``, validate, save and audit before/after; staff only.

    Every policy table (licenses, reuse rules, re-review intervals, required card
    sections, word-association tests) changes through here, whichever app keeps it.
    ``authorize(actor)`` raises when the actor may not (default: staff only).
    """
    authorize(actor)
    creating = obj.pk is None
    before = {} if creating else _snapshot(type(obj).objects.get(pk=obj.pk))
    for name, value in (fields or {}).items():
        setattr(obj, name, value)
    try:
        obj.full_clean()
    except ValidationError as exc:
        name, errors = next(iter(exc.message_dict.items()))
        raise PortalError(" ".join(errors), field=name) from exc
    with transaction.atomic():
        obj.save()
        after = _snapshot(obj)
        audit_record(
            actor=actor,
            verb=f"{verb}.{'create' if creating else 'update'}",
            target=obj,
            payload={
                "before": before,
                "after": after,
                "changed": sorted(k for k in after if before.get(k) != after[k]),
            },
        )
    return obj


def policy_row_delete(*, actor, obj, verb: str, authorize=_require_staff) -> None:
    """Delete a policy row, audited with what it was; staff only (see ``policy_row_save``)."""
    authorize(actor)
    with transaction.atomic():
        audit_record(
            actor=actor, verb=f"{verb}.delete", target=obj, payload={"before": _snapshot(obj)}
        )
        obj.delete()
