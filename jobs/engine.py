"""The job engine: record, enqueue, claim, lease, report, finish, cancel and requeue jobs.

Every change to a Job row goes through these functions. State moves are
conditional updates (``UPDATE … WHERE status = …``) checked by row count, and
every write made on behalf of a worker names the attempt it belongs to: once a
job has been reclaimed after its lease ran out, the older attempt's writes match
no row and are dropped. What a job of each kind does lives with its concern
(``jobs.workers``); what starts one lives in ``jobs.services``.
"""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from governance.audit import audit_record
from jobs.ml.device import describe_device
from jobs.models import Job
from portal.celery import app as celery_app
from portal.errors import Conflict, Forbidden, PortalError

logger = logging.getLogger(__name__)

# A running job must report at least this often or another worker may take it over.
LEASE = timedelta(minutes=10)
MAX_LOG_LINE = 2000

Handler = Callable[["JobContext"], dict[str, Any] | None]
HANDLERS: dict[str, Handler] = {}
DEFAULT_QUEUES: dict[str, str] = {}


def register(kind: str, *, queue: str = "default") -> Callable[[Handler], Handler]:
    """Declare the function that does the work of one job kind, and its usual queue."""

    def decorator(func: Handler) -> Handler:
        HANDLERS[kind] = func
        DEFAULT_QUEUES[kind] = queue
        return func

    return decorator


class JobCancelled(Exception):
    """Raised inside a handler when the job was cancelled or taken over."""


@dataclass
class JobContext:
    """What a handler gets: its parameters and a way to report back."""

    job_id: int
    attempt: int
    params: dict[str, Any]
    requested_by_id: int | None
    device: str = "cpu"

    def progress(self, fraction: float | None = None, *, stage: str | None = None) -> None:
        """Record progress and renew the lease; stop the handler if the job was cancelled."""
        if not job_report(job_id=self.job_id, attempt=self.attempt, progress=fraction, stage=stage):
            raise JobCancelled

    def log(self, line: str) -> None:
        if not job_report(job_id=self.job_id, attempt=self.attempt, log_line=line):
            raise JobCancelled


def job_create(
    *,
    kind: str,
    requested_by,
    params: dict[str, Any] | None = None,
    queue: str | None = None,
) -> Job:
    """Record a job and enqueue it once the surrounding transaction commits."""
    if kind not in HANDLERS:
        raise PortalError(f"No worker knows how to run a {kind!r} job.")
    queue = queue or DEFAULT_QUEUES[kind]
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind,
            requested_by=requested_by,
            params=params or {},
            queue=queue,
        )
        audit_record(
            actor=requested_by,
            verb="job.create",
            target=job,
            payload={"kind": kind, "queue": queue, "params": job.params},
        )
    transaction.on_commit(lambda: _enqueue(job.pk, queue))
    return job


RUN_JOB_TASK = "jobs.run_job"  # jobs.tasks.run_job, sent by name so the engine needs no task


def _enqueue(job_id: int, queue: str) -> None:
    result = celery_app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue)
    Job.objects.filter(pk=job_id).update(celery_task_id=result.id or "")


def job_claim(*, job_id: int, worker: str, device: str) -> int | None:
    """Move a queued job (or one whose last worker stopped reporting) to running.

    Returns the new attempt number, or None when the job is not there to take:
    finished, cancelled, held by a live worker, out of attempts, or deleted.
    """
    now = timezone.now()
    claimable = Q(status=Job.Status.QUEUED) | Q(status=Job.Status.RUNNING, lease_expires_at__lt=now)
    with transaction.atomic():
        taken = (
            Job.objects.filter(claimable, pk=job_id, cancel_requested=False)
            .filter(attempts__lt=F("max_attempts"))
            .update(
                status=Job.Status.RUNNING,
                attempts=F("attempts") + 1,
                worker=worker[:255],
                device=device[:255],
                started_at=now,
                lease_expires_at=now + LEASE,
                error="",
            )
        )
        if not taken:
            _fail_if_out_of_attempts(job_id, now)
            return None
        return Job.objects.values_list("attempts", flat=True).get(pk=job_id)


def _fail_if_out_of_attempts(job_id: int, now) -> None:
    Job.objects.filter(
        Q(status=Job.Status.QUEUED) | Q(status=Job.Status.RUNNING, lease_expires_at__lt=now),
        pk=job_id,
        attempts__gte=F("max_attempts"),
    ).update(
        status=Job.Status.FAILED,
        error="Gave up: every attempt ended without the worker reporting back.",
        finished_at=now,
    )


def _owned(job_id: int, attempt: int):
    return Job.objects.filter(
        pk=job_id, attempts=attempt, status=Job.Status.RUNNING, cancel_requested=False
    )


def job_report(
    *,
    job_id: int,
    attempt: int,
    progress: float | None = None,
    stage: str | None = None,
    log_line: str | None = None,
) -> bool:
    """Write progress for one attempt; False when that attempt no longer owns the job."""
    changes: dict[str, Any] = {"lease_expires_at": timezone.now() + LEASE}
    if progress is not None:
        changes["progress"] = min(max(float(progress), 0.0), 1.0)
    if stage is not None:
        changes["stage"] = stage[:200]
    if log_line is not None:
        stamp = timezone.now().strftime("%H:%M:%S")
        changes["log"] = Concat(F("log"), Value(f"{stamp} {log_line[:MAX_LOG_LINE]}\n"))
    return _owned(job_id, attempt).update(**changes) == 1


def job_succeed(*, job_id: int, attempt: int, result: dict[str, Any] | None = None) -> bool:
    return (
        _owned(job_id, attempt).update(
            status=Job.Status.SUCCEEDED,
            progress=1.0,
            result=result or {},
            finished_at=timezone.now(),
            lease_expires_at=None,
        )
        == 1
    )


def job_fail(*, job_id: int, attempt: int, error: str, log: str = "") -> bool:
    changes: dict[str, Any] = {
        "status": Job.Status.FAILED,
        "error": error[:4000],
        "finished_at": timezone.now(),
        "lease_expires_at": None,
    }
    if log:
        changes["log"] = Concat(F("log"), Value(log[-20000:]))
    return _owned(job_id, attempt).update(**changes) == 1


def may_cancel(actor, job: Job) -> bool:
    """The person who started a job, and staff, may stop it; ``None`` is the system itself."""
    if actor is None:
        return True
    return bool(actor.is_authenticated and (actor.is_staff or job.requested_by_id == actor.pk))


def job_cancel(*, job: Job, actor) -> Job:
    """Stop a job: a queued one never starts, a running one stops at its next report."""
    if not may_cancel(actor, job):
        raise Forbidden(f"Only the person who started job #{job.pk}, or staff, may cancel it.")
    now = timezone.now()
    with transaction.atomic():
        before = job.status
        updated = Job.objects.filter(pk=job.pk, status__in=Job.ACTIVE).update(
            status=Job.Status.CANCELLED,
            cancel_requested=True,
            finished_at=now,
            lease_expires_at=None,
            stage="Cancelled",
        )
        if not updated:
            raise Conflict("This job has already finished.")
        job.refresh_from_db()
        audit_record(
            actor=actor, verb="job.cancel", target=job, payload={"before": {"status": before}}
        )
    return job


def job_execute(*, job_id: int, worker: str | None = None) -> str:
    """Claim a job and run its handler; the body of the Celery task.

    Returns what happened, for the worker's log: ``missing``, ``skipped``,
    ``succeeded``, ``failed`` or ``stale``.
    """
    job = Job.objects.filter(pk=job_id).only("kind", "params", "requested_by_id").first()
    if job is None:
        logger.warning("job %s vanished before a worker took it", job_id)
        return "missing"
    handler = HANDLERS.get(job.kind)
    device = describe_device()
    attempt = job_claim(job_id=job_id, worker=worker or socket.gethostname(), device=device)
    if attempt is None:
        return "skipped"
    if handler is None:
        job_fail(job_id=job_id, attempt=attempt, error=f"No handler for job kind {job.kind!r}.")
        return "failed"
    ctx = JobContext(
        job_id=job_id,
        attempt=attempt,
        params=job.params,
        requested_by_id=job.requested_by_id,
        device=device,
    )
    try:
        result = handler(ctx)
    except JobCancelled:
        return "stale"
    except SoftTimeLimitExceeded:
        job_fail(job_id=job_id, attempt=attempt, error="Stopped: the job ran past its time limit.")
        return "failed"
    except PortalError as exc:
        job_fail(job_id=job_id, attempt=attempt, error=exc.message)
        return "failed"
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        job_fail(
            job_id=job_id,
            attempt=attempt,
            error=f"{type(exc).__name__}: {exc}",
            log=traceback.format_exc(),
        )
        return "failed"
    if job_succeed(job_id=job_id, attempt=attempt, result=result or {}):
        return "succeeded"
    return "stale"


@contextmanager
def owned_by(job_id: int, attempt: int):
    """A transaction in which the attempt still owns the job; JobCancelled otherwise.

    The job row is locked, so a cancel or a takeover waits for these writes or
    happens before them, never in between.
    """
    with transaction.atomic():
        if not _owned(job_id, attempt).select_for_update().exists():
            raise JobCancelled
        yield


def job_requeue_stale(*, now=None) -> list[int]:
    """Put jobs whose worker stopped reporting back on their queue; the body of a beat task.

    A worker that is killed outright (the OOM killer, a lost node) never
    acknowledges its message, and Redis hands that message out again only after
    its visibility timeout, which must outlast the longest job: hours. The lease
    on the Job row says much sooner that nobody is working on it. Such a job goes
    back to ``queued`` with a fresh message; the next claim is a new attempt, and
    the old attempt, should it still be alive somewhere, can no longer write
    (its writes name an attempt that no longer owns a running job). A job out of
    attempts fails instead. The original message, if the broker ever delivers it,
    finds the job taken or finished and is skipped.
    """
    now = now or timezone.now()
    stale = list(
        Job.objects.filter(
            status=Job.Status.RUNNING, lease_expires_at__lt=now, cancel_requested=False
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    requeued = []
    for pk in stale:
        with transaction.atomic():
            _fail_if_out_of_attempts(pk, now)
            stamp = now.strftime("%H:%M:%S")
            moved = Job.objects.filter(
                pk=pk,
                status=Job.Status.RUNNING,
                lease_expires_at__lt=now,
                attempts__lt=F("max_attempts"),
                cancel_requested=False,
            ).update(
                status=Job.Status.QUEUED,
                lease_expires_at=None,
                stage="Requeued: its worker stopped reporting",
                log=Concat(F("log"), Value(f"{stamp} Requeued: the worker stopped reporting.\n")),
            )
            if not moved:
                continue
            job = Job.objects.get(pk=pk)
            audit_record(
                actor=None,
                verb="job.requeue",
                target=job,
                payload={"attempts": job.attempts, "worker": job.worker},
            )
            transaction.on_commit(lambda pk=pk, queue=job.queue: _enqueue(pk, queue))
            requeued.append(pk)
    return requeued
