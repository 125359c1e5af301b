"""Every change to a Job goes through these functions.

State moves are conditional updates (``UPDATE … WHERE status = …``) checked by
row count, and every write made on behalf of a worker names the attempt it
belongs to: once a job has been reclaimed after its lease ran out, the older
attempt's writes match no row and are dropped.
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
from jobs.models import FeatureSet, Job, ProbeResult, ProbeRun
from portal.errors import Conflict, PortalError

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


def import_launch(
    *,
    actor,
    source: str,
    repo_id: str,
    hub_repo_id: str = "",
    revision: str = "main",
    folder: str = "",
    upload=None,
) -> Job:
    """Check an import request and queue it as a job.

    Folders must lie under one of settings.IMPORT_ROOTS (after resolving links);
    an upload is stored first, so the worker reads it from shared storage.
    """
    import uuid
    from pathlib import Path

    from django.conf import settings
    from django.core.files.storage import default_storage

    params: dict[str, Any] = {"source": source, "repo_id": repo_id}
    if source == "hub":
        params.update(hub_repo_id=hub_repo_id, revision=revision or "main")
    elif source == "folder":
        path = Path(folder)
        if not path.is_absolute():
            raise PortalError("Give the folder as an absolute path.", field="folder")
        resolved = path.resolve()
        roots = [Path(r).resolve() for r in settings.IMPORT_ROOTS]
        if not any(resolved.is_relative_to(root) for root in roots):
            allowed = ", ".join(str(r) for r in roots)
            raise PortalError(
                f"Imports are allowed only from folders under: {allowed}.", field="folder"
            )
        if not resolved.is_dir():
            raise PortalError(f"{folder} is not a folder on the server.", field="folder")
        params["folder"] = str(resolved)
    elif source == "archive":
        if upload is None:
            raise PortalError("Choose an archive to upload.", field="archive")
        if upload.size > settings.UPLOAD_MAX_BYTES:
            raise PortalError(
                f"The archive is {upload.size:,} bytes; "
                f"the limit is {settings.UPLOAD_MAX_BYTES:,}.",
                field="archive",
            )
        stored = default_storage.save(f"uploads/imports/{uuid.uuid4().hex}", upload)
        params.update(archive=stored, original_name=getattr(upload, "name", "")[:200])
    else:
        raise PortalError(f"Unknown import source {source!r}.", field="source")
    return job_create(kind=Job.Kind.IMPORT, requested_by=actor, params=params)


def _enqueue(job_id: int, queue: str) -> None:
    from jobs.tasks import run_job

    result = run_job.apply_async(args=[job_id], queue=queue)
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


def job_cancel(*, job: Job, actor) -> Job:
    """Stop a job: a queued one never starts, a running one stops at its next report."""
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
    from jobs.ml.device import describe_device

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


# --- probes ---------------------------------------------------------------------


def probe_launch(
    *,
    actor,
    dataset_version,
    versions: list,
    max_examples: int,
    seed: int = 0,
) -> ProbeRun:
    """Check a probe request and queue it: one job, one row per candidate.

    Every candidate must be a version the user may see, not blocked, and of the
    dataset's modality; otherwise nothing is created and the message says which.
    """
    from django.conf import settings

    from zoo.models import CatalogModel
    from zoo.selectors import dataset_versions_visible_to, versions_visible_to

    if not dataset_versions_visible_to(actor).filter(pk=dataset_version.pk).exists():
        raise PortalError("No such dataset.", field="dataset_version")
    if not versions:
        raise PortalError("Choose at least one candidate model version.", field="versions")
    if len({v.pk for v in versions}) != len(versions):
        raise PortalError("A candidate is listed twice.", field="versions")
    if len(versions) > settings.PROBE_MAX_CANDIDATES:
        raise PortalError(
            f"Choose at most {settings.PROBE_MAX_CANDIDATES} candidates per probe.",
            field="versions",
        )
    if not 10 <= max_examples <= settings.PROBE_MAX_EXAMPLES:
        raise PortalError(
            f"The number of examples must be between 10 and {settings.PROBE_MAX_EXAMPLES:,}.",
            field="max_examples",
        )
    visible = set(
        versions_visible_to(actor)
        .filter(pk__in=[v.pk for v in versions])
        .values_list("pk", flat=True)
    )
    wanted = dataset_version.dataset.modality
    wanted_model = (
        CatalogModel.Modality.VISION if wanted == "vision" else CatalogModel.Modality.TEXT
    )
    for version in versions:
        if version.pk not in visible:
            raise PortalError(f"No model version {version.pk} that you may see.", field="versions")
        if version.is_blocked:
            raise PortalError(
                f"{version.model.repo_id} {version.label} is blocked and cannot be loaded: "
                + " ".join(version.block_reasons),
                field="versions",
            )
        if version.model.modality != wanted_model:
            raise PortalError(
                f"{version.model.repo_id} is a {version.model.get_modality_display().lower()} "
                f"model; {dataset_version.dataset} holds "
                f"{dataset_version.dataset.get_modality_display().lower()} data.",
                field="versions",
            )
    with transaction.atomic():
        job = job_create(
            kind=Job.Kind.PROBE,
            requested_by=actor,
            params={
                "dataset_version": dataset_version.pk,
                "versions": [v.pk for v in versions],
                "max_examples": max_examples,
                "seed": seed,
            },
        )
        run = ProbeRun.objects.create(
            job=job,
            dataset_version=dataset_version,
            requested_by=actor,
            max_examples=max_examples,
            seed=seed,
        )
        ProbeResult.objects.bulk_create(
            ProbeResult(run=run, version=v, position=i) for i, v in enumerate(versions)
        )
    return run


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


def probe_result_update(*, ctx: JobContext, result_id: int, **fields: Any) -> None:
    """Write one candidate's state for the attempt that owns the job (a stale attempt cannot)."""
    with owned_by(ctx.job_id, ctx.attempt):
        ProbeResult.objects.filter(pk=result_id).update(**fields)


def probe_run_update(*, ctx: JobContext, run_id: int, **fields: Any) -> None:
    with owned_by(ctx.job_id, ctx.attempt):
        ProbeRun.objects.filter(pk=run_id).update(**fields)


def feature_set_record(*, ctx: JobContext, **fields: Any) -> FeatureSet:
    """Remember extracted features; when another worker recorded the same key first, keep theirs."""
    key = {k: fields.pop(k) for k in ("version", "dataset_version", "preprocessing", "sample_key")}
    with owned_by(ctx.job_id, ctx.attempt):
        feature_set, _ = FeatureSet.objects.get_or_create(**key, defaults=fields)
    return feature_set
