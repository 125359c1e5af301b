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
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from governance.audit import audit_record
from jobs.ml.device import describe_device
from jobs.models import Job
from portal import broker
from portal.celery import app as celery_app
from portal.errors import Conflict, Forbidden, PortalError, Unavailable
from portal.health import check_broker
from zoo.storage import remove_tree

logger = logging.getLogger(__name__)

MAX_LOG_LINE = 2000


def lease() -> timedelta:
    """How long a claim holds without a renewal (a report or the heartbeat)."""
    return timedelta(seconds=settings.JOB_LEASE_S)


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

    @contextmanager
    def workspace(self) -> Iterator[Path]:
        """A folder for this attempt's files, removed however the handler ends.

        It is named after the job and the attempt (``job-<id>-a<attempt>-…``
        under WORK_DIR), so what a killed worker leaves is recognised as such
        and swept once that attempt no longer owns the job.
        """
        root = Path(settings.WORK_DIR)
        root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"job-{self.job_id}-a{self.attempt}-", dir=root))
        try:
            yield folder
        finally:
            remove_tree(folder)


def job_create(
    *,
    kind: str,
    requested_by,
    params: dict[str, Any] | None = None,
    queue: str | None = None,
) -> Job:
    """Record a job and enqueue it once the surrounding transaction commits.

    When the broker cannot be reached nothing is recorded and ``Unavailable``
    (503) says so: a job that could not be queued is not left behind looking
    queued. Should the broker fail between this check and the send after
    commit, the row stays queued and ``job_reconcile`` sends it once the
    broker is back.
    """
    if kind not in HANDLERS:
        raise PortalError(f"No worker knows how to run a {kind!r} job.")
    queue = queue or DEFAULT_QUEUES[kind]
    unreachable = check_broker()
    if unreachable:
        raise Unavailable(
            "The job queue cannot be reached just now, so nothing was started; try again in a "
            f"minute. ({unreachable})"
        )
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
    """Send the job's message; a failure leaves the row queued for the reconciler."""
    try:
        result = celery_app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue)
    except Exception:
        logger.warning("could not send job %s; the reconciler will send it", job_id, exc_info=True)
        return
    Job.objects.filter(pk=job_id).update(
        celery_task_id=result.id or "", enqueued_at=timezone.now(), sends=F("sends") + 1
    )


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
                lease_expires_at=now + lease(),
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
    changes: dict[str, Any] = {"lease_expires_at": timezone.now() + lease()}
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
    heartbeat = _Heartbeat(job_id, attempt)
    heartbeat.start()
    try:
        return _run_handler(handler, ctx)
    finally:
        heartbeat.stop()


def _run_handler(handler: Handler, ctx: JobContext) -> str:
    job_id, attempt = ctx.job_id, ctx.attempt
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


class _Heartbeat(threading.Thread):
    """Renews the attempt's lease every JOB_HEARTBEAT_S while its handler runs.

    A handler busy in one long step (loading a large model, one slow epoch)
    reports nothing for a while; the heartbeat keeps its claim alive, so the
    lease can be short and a dead worker's job is taken over within a minute
    or two. The heartbeat never cancels anything: it stops when the attempt no
    longer owns the job, and the handler learns that at its next report.
    """

    def __init__(self, job_id: int, attempt: int) -> None:
        super().__init__(name=f"job-{job_id}-heartbeat", daemon=True)
        self.job_id = job_id
        self.attempt = attempt
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self._stopped.wait(settings.JOB_HEARTBEAT_S):
                try:
                    renewed = _owned(self.job_id, self.attempt).update(
                        lease_expires_at=timezone.now() + lease()
                    )
                except Exception:
                    logger.warning("heartbeat of job %s failed", self.job_id, exc_info=True)
                    continue
                if not renewed:
                    return
        finally:
            connection.close()  # this thread's own connection

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=10)


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


def job_reconcile(*, now=None) -> list[int]:
    """Send again the queued jobs whose message the broker no longer holds; a beat task.

    The Job row is the truth about queued work. A message can be lost after
    its row committed (the broker flushed or restarted without persistence,
    or the send itself failed), and then nothing would ever run the job. Every
    queued job that has waited RECONCILE_GRACE_S is checked against the ids
    of the messages the broker holds for its queue (waiting, or delivered and
    not yet acknowledged); a missing one is sent again. Where the broker
    cannot be read, a job is re-sent after waiting twice as long as the last
    time (capped at an hour), so duplicates stay few. A duplicate delivery is
    harmless: only one claim of a queued job succeeds; the others are skipped.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.RECONCILE_GRACE_S)
    waiting = list(
        Job.objects.filter(status=Job.Status.QUEUED, cancel_requested=False)
        .filter(Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True, created_at__lt=cutoff))
        .order_by("pk")
        .values("pk", "queue", "celery_task_id", "enqueued_at", "sends")
    )
    if not waiting:
        return []
    held = broker.pending_task_ids(sorted({row["queue"] for row in waiting}))
    resent = []
    for row in waiting:
        if held is not None and row["celery_task_id"] and row["celery_task_id"] in held:
            continue
        if held is None and row["enqueued_at"] is not None:
            backoff = min(3600, settings.RECONCILE_GRACE_S * 2 ** max(0, row["sends"] - 1))
            if row["enqueued_at"] > now - timedelta(seconds=backoff):
                continue
        if _resend(row, now, lost=held is not None):
            resent.append(row["pk"])
    return resent


def _resend(row: dict, now, *, lost: bool) -> bool:
    """Claim the re-send (so two reconcilers send once) and send after commit."""
    with transaction.atomic():
        moved = Job.objects.filter(
            pk=row["pk"], status=Job.Status.QUEUED, enqueued_at=row["enqueued_at"]
        ).update(enqueued_at=now)
        if not moved:
            return False
        job = Job.objects.get(pk=row["pk"])
        audit_record(
            actor=None,
            verb="job.resend",
            target=job,
            payload={
                "previous_task": row["celery_task_id"],
                "reason": "its message is not on the broker"
                if lost
                else "it waited past the re-send interval (the broker could not be read)",
            },
        )
        transaction.on_commit(lambda: _enqueue(job.pk, job.queue))
    return True
