"""Signed checkpoints of the audit chain's head, kept outside the database.

A keyed chain shows any event that was changed, but not the newest events
deleted or the whole table emptied: what is left still links up. An anchor
records the head as it was (event id, its hash, how many events up to it),
signed with the audit key, on one line of an append-only file
(``settings.AUDIT_ANCHOR_FILE``). ``verify_audit`` then demands that every
anchored event is still there, unchanged, at its place in the chain.

The file is only as safe as where it lives: keep it on a host or volume the
database's administrators cannot write (a log host, WORM storage). Events
written since the last anchor are covered by the next one; the interval is
``settings.AUDIT_ANCHOR_EVERY_S``.
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from governance.audit import LOCK_KEY, sign
from governance.models import AuditEvent


@dataclass(frozen=True)
class Anchor:
    event_id: int
    hash: str
    count: int
    at: str

    def message(self) -> str:
        return f"anchor:{self.event_id}:{self.hash}:{self.count}:{self.at}"


@dataclass
class AnchorFile:
    anchors: list[Anchor]
    problems: list[str]  # lines that are no valid anchor: forged, damaged or cut short


def anchor_path() -> Path:
    return Path(settings.AUDIT_ANCHOR_FILE)


def head() -> Anchor | None:
    """The chain's newest event as an anchor; None while the log is empty.

    Taken under the appenders' lock, so no event is half-way in when counted.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        last = AuditEvent.objects.order_by("-id").values("id", "hash").first()
        if last is None:
            return None
        count = AuditEvent.objects.filter(id__lte=last["id"]).count()
    return Anchor(last["id"], last["hash"], count, timezone.now().isoformat())


def anchor_write(path: Path | None = None) -> Anchor | None:
    """Append a signed anchor of the current head; None (nothing written) on an empty log."""
    anchor = head()
    if anchor is None:
        return None
    path = path or anchor_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({**asdict(anchor), "sig": sign(anchor.message())}, sort_keys=True) + "\n"
    # O_APPEND: one short write lands whole at the end, even with several writers.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return anchor


def anchors_read(path: Path | None = None) -> AnchorFile:
    """Every anchor in the file whose signature holds, and a problem for each line that does not."""
    path = path or anchor_path()
    if not path.exists():
        return AnchorFile([], [])
    anchors, problems = [], []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            anchor = _parse(line)
            if anchor is None:
                problems.append(f"line {number} of {path} is not a validly signed anchor")
            else:
                anchors.append(anchor)
    return AnchorFile(anchors, problems)


def _parse(line: str) -> Anchor | None:
    try:
        data = json.loads(line)
        anchor = Anchor(
            event_id=int(data["event_id"]),
            hash=str(data["hash"]),
            count=int(data["count"]),
            at=str(data["at"]),
        )
        signature = str(data["sig"])
    except (ValueError, KeyError, TypeError):
        return None
    return anchor if hmac.compare_digest(sign(anchor.message()), signature) else None
