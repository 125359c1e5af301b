"""What the broker holds: the task messages waiting on a queue (or delivered, not yet acked).

The job reconciler asks this to tell a queued job whose message is still on its
way from one whose message was lost (a flushed or restarted Redis, a send that
failed), and the status page and /metrics show queue depths from it. Both
brokers the portal runs on are read directly: Redis (the lists kombu keeps per
queue and priority, and its ``unacked`` hash) and the embedded filesystem
broker (one file per message). Anything else answers None: "cannot tell".
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from django.conf import settings

from portal.celery import app as celery_app

logger = logging.getLogger(__name__)

# Reading more than this many messages to find lost ones is not worth it: answer "cannot tell".
MAX_SCANNED = 200_000


def _task_id(raw: bytes | str) -> str | None:
    try:
        message = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if isinstance(message, list) and message:  # the unacked hash keeps [message, ...]
        message = message[0]
    headers = message.get("headers") if isinstance(message, dict) else None
    task_id = headers.get("id") if isinstance(headers, dict) else None
    return task_id if isinstance(task_id, str) else None


def pending_task_ids(queues: list[str]) -> set[str] | None:
    """Ids of the task messages the broker holds for ``queues``; None when it cannot tell."""
    try:
        if settings.BROKER_IS_FILESYSTEM:
            return _filesystem_ids(queues)
        with celery_app.connection_for_read() as conn:
            channel = conn.default_channel
            if not hasattr(channel, "_q_for_pri"):
                return None
            return _redis_ids(channel, queues)
    except Exception:
        logger.warning("could not read the broker's queues", exc_info=True)
        return None


def _redis_ids(channel, queues: list[str]) -> set[str] | None:
    client = channel.client
    keys = [channel._q_for_pri(q, pri) for q in queues for pri in channel.priority_steps]
    lengths = [client.llen(key) for key in keys]
    if sum(lengths) + client.hlen(channel.unacked_key) > MAX_SCANNED:
        return None
    ids: set[str] = set()
    for key, length in zip(keys, lengths, strict=True):
        if length:
            ids.update(filter(None, (_task_id(raw) for raw in client.lrange(key, 0, -1))))
    ids.update(filter(None, (_task_id(raw) for raw in client.hvals(channel.unacked_key))))
    return ids


def _filesystem_folder() -> Path:
    return Path(settings.CELERY_BROKER_FOLDER) / "queue"


def _filesystem_ids(queues: list[str]) -> set[str]:
    ids: set[str] = set()
    for path in _filesystem_folder().glob("*.msg"):
        if not any(path.name.endswith(f".{queue}.msg") for queue in queues):
            continue
        try:
            task_id = _task_id(path.read_bytes())
        except FileNotFoundError:  # a worker took it meanwhile
            continue
        if task_id:
            ids.add(task_id)
    return ids


def queue_depths(queues: list[str]) -> dict[str, int | None]:
    """Messages waiting on each queue (None for a queue the broker could not be asked about)."""
    try:
        if settings.BROKER_IS_FILESYSTEM:
            folder = _filesystem_folder()
            return {q: sum(1 for _ in folder.glob(f"*.{q}.msg")) for q in queues}
        with celery_app.connection_for_read() as conn:
            channel = conn.default_channel
            return {q: int(channel._size(q)) for q in queues}
    except Exception:
        logger.warning("could not read the broker's queue depths", exc_info=True)
        return dict.fromkeys(queues)
