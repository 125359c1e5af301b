"""What the operator sees of the machinery: workers' heartbeats and each periodic task's last run.

These rows are written by the workers themselves (no person acts, so no audit
event); the status page and /metrics read them.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db.models import F
from django.utils import timezone

from jobs.models import PeriodicTaskRun, WorkerHeartbeat


@contextmanager
def periodic_task_run(name: str) -> Iterator[dict[str, Any]]:
    """Record that periodic task ``name`` ran, with its result or its error.

    Yields a dict whose ``result`` the task fills in; an exception is recorded
    and raised again, so the worker's log and Celery see it too.
    """
    started = timezone.now()
    PeriodicTaskRun.objects.update_or_create(
        name=name, defaults={"last_started_at": started, "last_finished_at": None}
    )
    outcome: dict[str, Any] = {"result": None}
    try:
        yield outcome
    except Exception as exc:
        PeriodicTaskRun.objects.filter(name=name).update(
            last_finished_at=timezone.now(),
            last_ok=False,
            last_error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-4000:]}",
            runs=F("runs") + 1,
        )
        raise
    PeriodicTaskRun.objects.filter(name=name).update(
        last_finished_at=timezone.now(),
        last_ok=True,
        last_result=_jsonable(outcome["result"]),
        last_error="",
        runs=F("runs") + 1,
    )


def _jsonable(value) -> dict:
    return value if isinstance(value, dict) else {"value": value}


def worker_heartbeat(*, hostname: str, queues: list[str], device: str, started_at) -> None:
    """A worker process is alive and consumes ``queues``."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname[:255],
        defaults={
            "queues": sorted(queues),
            "pid": os.getpid(),
            "device": device[:255],
            "started_at": started_at,
            "last_seen": timezone.now(),
        },
    )


def worker_gone(*, hostname: str) -> None:
    """A worker shut down cleanly: it serves nothing any more."""
    WorkerHeartbeat.objects.filter(hostname=hostname[:255]).delete()
