"""Start a worker check: which worker answers a queue, and what it can do."""

from __future__ import annotations

from django.db import transaction

from jobs.engine import job_create
from jobs.models import Job
from portal.errors import Forbidden, PortalError

QUEUES = ("default", "gpu")


def worker_check_launch(*, actor, queue: str, require_gpu: bool = False) -> Job:
    """Queue a worker-check job on ``queue``; staff only (``None``: the system, e.g. a command)."""
    if actor is not None and not (actor.is_authenticated and actor.is_staff):
        raise Forbidden("Only staff may check the workers.")
    if queue not in QUEUES:
        raise PortalError(
            f"Unknown queue {queue!r}; choose one of {', '.join(QUEUES)}.", field="queue"
        )
    with transaction.atomic():
        return job_create(
            kind=Job.Kind.WORKER_CHECK,
            requested_by=actor,
            params={"require_gpu": bool(require_gpu)},
            queue=queue,
        )
