"""Attacks on the audit log: the portal's own role is refused each one, the owner is caught.

The tests connect as the app role, as the portal does in production. A DBA
(the schema owner here) can do anything to the table but lacks the audit
key, so what they do shows: a changed event breaks its keyed link, deleted
events miss their anchors, forged anchors fail their signature.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from governance.anchors import anchor_write, anchors_read
from governance.audit import GENESIS, audit_record, canonical, verify_chain
from governance.models import AuditEvent
from tests.database import owner_connection

pytestmark = pytest.mark.django_db(transaction=True)

TABLE = "governance_auditevent"


def _events(n: int, start: int = 0) -> list[AuditEvent]:
    events = []
    for i in range(start, start + n):
        with transaction.atomic():
            events.append(audit_record(actor=None, verb="test.step", payload={"i": i}))
    return events


def _verify() -> str:
    with pytest.raises(CommandError) as caught:
        call_command("verify_audit")
    return str(caught.value)


def _as_owner(*statements: tuple[str, list]) -> None:
    """Run statements as the owner with the append-only trigger switched off."""
    with owner_connection() as conn:
        conn.execute("ALTER TABLE governance_auditevent DISABLE TRIGGER USER")
        try:
            for sql, params in statements:
                conn.execute(sql, params)
        finally:
            conn.execute("ALTER TABLE governance_auditevent ENABLE TRIGGER USER")


RELINK = (
    "UPDATE governance_auditevent SET payload = %s, prev_hash = %s, hash = %s, "
    "scheme = 'sha256' WHERE id = %s"
)


def _relinked_unkeyed(events: list[AuditEvent], prev: str) -> list[tuple[str, list]]:
    """Statements that re-link ``events`` from ``prev`` with plain SHA-256, as an attacker
    who has the database but not the key would (marking them as older, unkeyed links)."""
    statements = []
    for event in events:
        event.prev_hash = prev
        event.hash = hashlib.sha256((prev + canonical(event)).encode()).hexdigest()
        statements.append((RELINK, [json.dumps(event.payload), prev, event.hash, event.pk]))
        prev = event.hash
    return statements


# --- the portal's own role ----------------------------------------------------


def test_the_portal_connects_as_a_role_that_neither_is_superuser_nor_owns_the_log():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.rolsuper, t.tableowner = current_user, current_user "
            "FROM pg_roles r, pg_tables t WHERE r.rolname = current_user AND t.tablename = %s",
            [TABLE],
        )
        superuser, owns, role = cursor.fetchone()
    assert (superuser, owns) == (False, False), role


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("UPDATE governance_auditevent SET verb = 'forged'", "permission denied"),
        ("DELETE FROM governance_auditevent", "permission denied"),
        ("TRUNCATE governance_auditevent", "permission denied"),
        ("ALTER TABLE governance_auditevent DISABLE TRIGGER USER", "must be owner"),
        ("DROP TRIGGER governance_auditevent_append_only ON governance_auditevent", "owner"),
        ("DROP TABLE governance_auditevent", "must be owner"),
        ("SET session_replication_role = replica", "permission denied"),
        ("UPDATE django_migrations SET name = 'x'", "permission denied"),
        ("CREATE TABLE shadow (id int)", "permission denied"),
    ],
)
def test_every_rewrite_is_refused_to_the_portal_role(statement, refusal):
    first = _events(2)[0]
    with (
        pytest.raises(DatabaseError, match=refusal),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    first.refresh_from_db()
    assert (first.verb, AuditEvent.objects.count()) == ("test.step", 2)
    assert verify_chain().broken_at is None


def test_the_portal_role_may_still_append_and_read():
    _events(3)
    assert AuditEvent.objects.count() == 3
    call_command("anchor_audit")
    call_command("verify_audit")


# --- the owner, without the key ----------------------------------------------


def test_an_intact_log_with_anchors_verifies(capsys):
    _events(3)
    anchor_write()
    _events(2, start=3)
    anchor_write()
    call_command("verify_audit")
    out = capsys.readouterr().out
    assert "5 events, 2 anchors held; 0 events since the last anchor" in out


def test_a_rewrite_with_recomputed_plain_hashes_is_detected():
    events = _events(4)
    anchor_write()
    forged = events[1]
    forged.payload = {"i": 99}
    _as_owner(*_relinked_unkeyed(events[1:], events[0].hash))

    message = _verify()

    assert f"broken at event #{forged.pk}" in message
    assert "downgrade" in message


def test_a_rewrite_of_the_whole_log_as_unkeyed_is_caught_by_the_anchors():
    events = _events(3)
    anchor_write()
    for event in events:
        event.payload = {"i": -1}
    _as_owner(*_relinked_unkeyed(events, GENESIS))

    assert verify_chain().broken_at is None  # the links alone would pass...
    message = _verify()  # ...the anchor does not
    assert f"broken at event #{events[-1].pk}" in message
    assert "differs from its anchor" in message


def test_changing_one_event_breaks_its_keyed_link():
    events = _events(3)
    forged = ("UPDATE governance_auditevent SET payload = '{}' WHERE id = %s", [events[1].pk])
    _as_owner(forged)
    message = _verify()
    assert f"broken at event #{events[1].pk}: its content does not match its hash" in message


def test_deleting_the_newest_events_is_caught_by_the_anchor():
    events = _events(5)
    anchor_write()
    _as_owner(("DELETE FROM governance_auditevent WHERE id >= %s", [events[3].pk]))
    assert verify_chain().broken_at is None
    message = _verify()
    assert f"broken at event #{events[4].pk}" in message
    assert "is gone: events were deleted" in message


def test_deleting_the_first_event_is_detected():
    events = _events(3)
    _as_owner(("DELETE FROM governance_auditevent WHERE id = %s", [events[0].pk]))
    message = _verify()
    assert f"broken at event #{events[1].pk}: its prev_hash" in message


def test_truncating_the_log_is_caught_by_the_anchor():
    events = _events(3)
    anchor_write()
    with owner_connection() as conn:
        conn.execute("TRUNCATE governance_auditevent")
    message = _verify()
    assert f"broken at event #{events[-1].pk}" in message
    assert "gone" in message


def test_session_replication_role_needs_a_superuser_and_is_caught_anyway():
    # The owner cannot set it either; a superuser could, and then the key still tells.
    events = _events(2)
    with owner_connection() as conn, pytest.raises(Exception, match="permission denied"):
        conn.execute("SET session_replication_role = replica")
    _as_owner(("UPDATE governance_auditevent SET verb = 'x' WHERE id = %s", [events[0].pk]))
    assert "content does not match" in _verify()


def test_forged_or_damaged_anchor_lines_fail_verification(settings):
    events = _events(2)
    anchor_write()
    path = settings.AUDIT_ANCHOR_FILE
    line = json.loads(path.read_text().splitlines()[0])
    line["event_id"] = events[0].pk  # pretend the log ended earlier
    line["count"] = 1
    with open(path, "a") as fh:
        fh.write(json.dumps(line) + "\n")
        fh.write("{not json\n")
    found = anchors_read()
    assert len(found.anchors) == 1
    assert len(found.problems) == 2
    assert "Audit anchors tampered with: line 2" in _verify()


def test_a_log_with_no_anchors_long_after_its_first_event_is_not_vouched_for(settings):
    _events(2)
    settings.AUDIT_ANCHOR_EVERY_S = 60
    # Events older than two intervals and no anchor file: its tail cannot be vouched for.
    later = timezone.now() + timedelta(seconds=121)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(timezone, "now", lambda: later)
        assert "No audit anchors" in _verify()
    call_command("verify_audit")  # fresh events: no anchor due yet


def test_events_from_before_the_keyed_chain_still_verify_as_a_prefix():
    events = _events(2)
    _as_owner(*_relinked_unkeyed(events, GENESIS))  # as a portal before keyed links wrote them
    prev = events[-1].hash

    with transaction.atomic():
        newest = audit_record(actor=None, verb="test.after")

    assert (newest.prev_hash, newest.scheme) == (prev, "hmac-sha256")
    assert verify_chain() == verify_chain().__class__(checked=3)
