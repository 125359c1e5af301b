"""Start a worker check: which worker answers a queue, and what it can do."""

from __future__ import annotations

from django.db import transaction

from jobs.engine import job_create
from jobs.models import Job
from portal.celery import QUEUES
from portal.errors import Forbidden, PortalError

MAX_HOLD_S = 3600


def worker_check_launch(*, actor, queue: str, require_gpu: bool = False, hold_s: int = 0) -> Job:
    """Queue a worker-check job on ``queue``; staff only (``None``: the system, e.g. a command).

    ``hold_s`` keeps the worker on the job that long, reporting each second: a
    failover drill (kill the worker, watch another take the job over).
    """
    if actor is not None and not (actor.is_authenticated and actor.is_staff):
        raise Forbidden("Only staff may check the workers.")
    if queue not in QUEUES:
        raise PortalError(
            f"Unknown queue {queue!r}; choose one of {', '.join(QUEUES)}.", field="queue"
        )
    if isinstance(hold_s, bool) or not isinstance(hold_s, int) or not 0 <= hold_s <= MAX_HOLD_S:
        raise PortalError(f"Hold the job between 0 and {MAX_HOLD_S} seconds.", field="hold_s")
    with transaction.atomic():
        return job_create(
            kind=Job.Kind.WORKER_CHECK,
            requested_by=actor,
            params={"require_gpu": bool(require_gpu), "hold_s": hold_s},
            queue=queue,
        )
