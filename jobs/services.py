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
from jobs.ml.config import SPLIT_SHARE, STRATEGIES, FineTuneConfig
from jobs.models import FeatureSet, FineTuneRun, Job, ProbeResult, ProbeRun
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


# --- fine-tunes -----------------------------------------------------------------


def finetune_defaults(strategy: str) -> dict[str, Any]:
    """The published defaults for a strategy, as the form and the API show them."""
    if strategy not in STRATEGIES:
        raise PortalError(f"Unknown strategy {strategy!r}.", field="strategy")
    return FineTuneConfig.defaults_for(strategy).as_dict()


def lora_targets_for(version) -> list[str]:
    """The modules LoRA adapts by default for a version's architecture (from its config.json).

    Empty when the version has no readable config or no known default; the
    worker then asks the full model (and names the problem if there is one).
    """
    from pathlib import Path
    from tempfile import TemporaryDirectory

    from jobs.ml.finetune import default_lora_targets
    from zoo.storage import copy_blob_to

    config = version.artifacts.filter(path="config.json").first()
    if config is None or config.size > 2**20:
        return []
    with TemporaryDirectory(prefix="lora-targets-") as tmp:
        copy_blob_to(config.blob_name, Path(tmp) / "config.json")
        try:
            return list(default_lora_targets(Path(tmp)))
        except (OSError, ValueError, KeyError):
            return []


def _forbids_derivatives(spdx_id: str) -> bool:
    """Creative Commons "NoDerivatives" licenses (cc-by-nd-4.0, cc-by-nc-nd-4.0, …)."""
    return "nd" in spdx_id.lower().split("-")


def _sensitivity_rank(value: str) -> int:
    from governance.models import Sensitivity

    return Sensitivity.values.index(value)


def finetune_launch(
    *,
    actor,
    base_version,
    dataset_version,
    strategy: str,
    config: dict[str, Any] | None = None,
    split: str = "stratified",
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    test_dataset_version=None,
) -> FineTuneRun:
    """Check a fine-tune request and queue it on the gpu queue; nothing is created on refusal.

    ``config`` overrides the strategy's defaults field by field. The checks, in
    order: the role, the right to fine-tune the base version (an approved reuse
    request, or being its creator or a steward), the base not blocked, the
    dataset visible and of the model's modality, an approval covering the data's
    sensitivity when it is confidential or restricted, the hyperparameters, and
    the split.
    """
    from dataclasses import fields

    import numpy as np

    from governance.models import ReuseRequest, Sensitivity
    from governance.roles import ML_ENGINEERS, has_role
    from governance.selectors import can_use_version
    from jobs.ml import splits
    from zoo.models import CatalogModel
    from zoo.selectors import dataset_versions_visible_to, versions_visible_to

    if not (actor.is_staff or has_role(actor, ML_ENGINEERS)):
        raise Forbidden("Only members of ml-engineers may launch fine-tunes.")
    if not versions_visible_to(actor).filter(pk=base_version.pk).exists():
        raise PortalError(
            f"No model version {base_version.pk} that you may see.", field="base_version"
        )
    name = f"{base_version.model.repo_id} {base_version.label}"
    if not can_use_version(actor, base_version, "zoo.finetune_version"):
        raise Forbidden(
            f"{name} is not approved for you: fine-tuning needs an approved reuse request "
            "for this version.",
            field="base_version",
        )
    if base_version.is_blocked or base_version.model.status == CatalogModel.Status.BLOCKED:
        reasons = base_version.block_reasons or [base_version.model.status_reason]
        raise PortalError(
            f"{name} is blocked and cannot be fine-tuned: " + " ".join(r for r in reasons if r),
            field="base_version",
        )
    if base_version.kind == "adapter":
        parent = base_version.parent
        raise PortalError(
            f"{name} is a LoRA adapter, not a model: fine-tune its base "
            f"({parent.model.repo_id if parent else 'the model it adapts'}) instead.",
            field="base_version",
        )
    if _forbids_derivatives(base_version.license.spdx_id):
        raise PortalError(
            f"{name} is licensed {base_version.license.spdx_id}, which allows no derivatives: "
            "a fine-tune of it may not be made.",
            field="base_version",
        )
    visible_data = dataset_versions_visible_to(actor)
    if not visible_data.filter(pk=dataset_version.pk).exists():
        raise PortalError("No such dataset.", field="dataset_version")
    dataset = dataset_version.dataset
    model_modality = base_version.model.modality
    if model_modality not in ("text", "vision") or model_modality != dataset.modality:
        raise PortalError(
            f"{base_version.model.repo_id} is a {base_version.model.get_modality_display().lower()}"
            f" model; {dataset} holds {dataset.get_modality_display().lower()} data. Fine-tune a "
            "text encoder on text and a vision backbone on images.",
            field="dataset_version",
        )
    if _sensitivity_rank(dataset.sensitivity) >= _sensitivity_rank(Sensitivity.CONFIDENTIAL):
        covering = [
            s
            for s in Sensitivity.values
            if _sensitivity_rank(s) >= _sensitivity_rank(dataset.sensitivity)
        ]
        approved = ReuseRequest.objects.filter(
            requester=actor,
            version=base_version,
            status=ReuseRequest.Status.APPROVED,
            expires_at__gt=timezone.now(),
            data_sensitivity__in=covering,
        ).exists()
        if not approved:
            raise Forbidden(
                f"{dataset} is {dataset.get_sensitivity_display().lower()} data: fine-tuning "
                f"{name} on it needs an approved reuse request of yours for this version whose "
                f"data sensitivity is {dataset.get_sensitivity_display().lower()}"
                + (" or higher." if len(covering) > 1 else "."),
                field="dataset_version",
            )

    # Hyperparameters: the strategy's defaults, overridden field by field.
    if strategy not in STRATEGIES:
        raise PortalError(f"Unknown strategy {strategy!r}.", field="strategy")
    known = {f.name for f in fields(FineTuneConfig)} - {"strategy"}
    overrides = {k: v for k, v in (config or {}).items() if v is not None}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise PortalError(f"Unknown setting {unknown[0]!r}.", field=unknown[0])
    values = {**FineTuneConfig.defaults_for(strategy).as_dict(), **overrides, "strategy": strategy}
    # No targets means the architecture's default; named up front so the run records them.
    values["lora_target_modules"] = list(values.get("lora_target_modules") or []) or None
    if strategy == "lora" and values["lora_target_modules"] is None:
        values["lora_target_modules"] = lora_targets_for(base_version) or None
    try:
        cfg = FineTuneConfig(**values)
        cfg.validate()
    except (TypeError, ValueError) as exc:
        raise PortalError(f"Invalid settings: {exc}") from exc

    # The split.
    if split not in FineTuneRun.Split.values:
        raise PortalError(f"Unknown split {split!r}.", field="split")
    low, high = SPLIT_SHARE
    for label, value, field in (
        ("test", test_fraction, "test_fraction"),
        ("validation", val_fraction, "val_fraction"),
    ):
        if not low <= float(value) <= high:
            raise PortalError(
                f"The {label} share must be between {low:g} and {high:g}.", field=field
            )
    counts = dict(dataset_version.label_counts)
    if split == FineTuneRun.Split.TIME and not dataset_version.time_column:
        raise PortalError(
            f"{dataset_version} has no time column; choose a stratified split or upload the "
            "data again with its time column.",
            field="split",
        )
    if split == FineTuneRun.Split.TEST_FILE:
        if test_dataset_version is None:
            raise PortalError("Choose the test file.", field="test_dataset_version")
        if not visible_data.filter(pk=test_dataset_version.pk).exists():
            raise PortalError("No such test dataset.", field="test_dataset_version")
        if test_dataset_version.pk == dataset_version.pk:
            raise PortalError(
                "The test file must be another file than the training data.",
                field="test_dataset_version",
            )
        test_data = test_dataset_version.dataset
        if test_data.modality != dataset.modality:
            raise PortalError(
                f"{test_dataset_version} holds {test_data.get_modality_display().lower()} data; "
                f"the training data is {dataset.get_modality_display().lower()}.",
                field="test_dataset_version",
            )
        extra = sorted(set(test_dataset_version.label_counts) - set(counts))
        if extra:
            raise PortalError(
                f"The test file has labels the training data lacks: {', '.join(extra[:5])}.",
                field="test_dataset_version",
            )
        if _sensitivity_rank(test_data.sensitivity) > _sensitivity_rank(dataset.sensitivity):
            raise PortalError(
                "The test file is more sensitive than the training data; give it the same "
                "sensitivity or use a stratified split.",
                field="test_dataset_version",
            )
    else:
        test_dataset_version = None
    # The same split functions the worker uses, on the label counts, so a dataset that
    # cannot be split is refused now rather than an hour into the queue.
    labels = np.repeat(np.asarray(list(counts)), list(counts.values()))
    try:
        if split == FineTuneRun.Split.STRATIFIED:
            train_idx, _ = splits.stratified_split(
                labels, test_fraction=float(test_fraction), seed=cfg.seed
            )
        else:
            train_idx = np.arange(len(labels))
        if split != FineTuneRun.Split.TIME:
            splits.carve_validation(
                np.asarray(train_idx), labels, fraction=float(val_fraction), seed=cfg.seed
            )
    except ValueError as exc:
        raise PortalError(f"{dataset_version} cannot be split so: {exc}", field="split") from exc

    config_json = cfg.as_dict()
    split_params = {
        "test_fraction": float(test_fraction),
        "val_fraction": float(val_fraction),
        "seed": cfg.seed,
    }
    with transaction.atomic():
        job = job_create(
            kind=Job.Kind.FINETUNE,
            requested_by=actor,
            params={
                "base_version": base_version.pk,
                "dataset_version": dataset_version.pk,
                "strategy": strategy,
            },
        )
        run = FineTuneRun.objects.create(
            job=job,
            base_version=base_version,
            dataset_version=dataset_version,
            test_dataset_version=test_dataset_version,
            requested_by=actor,
            strategy=strategy,
            config=config_json,
            split=split,
            split_params=split_params,
        )
        audit_record(
            actor=actor,
            verb="finetune.launch",
            target=run,
            payload={
                "base_version": base_version.pk,
                "dataset_version": dataset_version.pk,
                "dataset_sha256": dataset_version.sha256,
                "sensitivity": dataset.sensitivity,
                "strategy": strategy,
                "config": config_json,
                "split": split,
                "split_params": split_params,
                "test_dataset_version": getattr(test_dataset_version, "pk", None),
            },
        )
    return run


def finetune_run_update(*, ctx: JobContext, run_id: int, **fields: Any) -> None:
    """Write results of the attempt that owns the job (a stale attempt cannot)."""

    with owned_by(ctx.job_id, ctx.attempt):
        FineTuneRun.objects.filter(pk=run_id).update(**fields)


def finetune_curves_append(
    *, ctx: JobContext, run_id: int, steps: list, epoch: dict[str, Any] | None = None
) -> None:
    """Append loss points (and an epoch's validation report) to the run's curves."""

    if not steps and epoch is None:
        return
    with owned_by(ctx.job_id, ctx.attempt):
        run = FineTuneRun.objects.select_for_update().only("curves").get(pk=run_id)
        curves = {"steps": [], "epochs": [], **(run.curves or {})}
        curves["steps"] = [*curves["steps"], *steps]
        if epoch is not None:
            curves["epochs"] = [*curves["epochs"], epoch]
        FineTuneRun.objects.filter(pk=run_id).update(curves=curves)


def finetune_checkpoint_record(
    *, ctx: JobContext, run_id: int, checkpoint: dict[str, Any]
) -> dict[str, Any]:
    """Point the run at its newest checkpoint; returns the one it replaces (or {})."""

    with owned_by(ctx.job_id, ctx.attempt):
        run = FineTuneRun.objects.select_for_update().only("last_checkpoint").get(pk=run_id)
        previous = run.last_checkpoint or {}
        FineTuneRun.objects.filter(pk=run_id).update(last_checkpoint=checkpoint)
    return previous


def finetune_resume_point(*, ctx: JobContext, run_id: int) -> dict[str, Any]:
    """The checkpoint a new attempt resumes from; curves after it are dropped to be redone."""

    with owned_by(ctx.job_id, ctx.attempt):
        run = (
            FineTuneRun.objects.select_for_update().only("curves", "last_checkpoint").get(pk=run_id)
        )
        checkpoint = run.last_checkpoint or {}
        curves = run.curves or {}
        if checkpoint:
            step, epoch = checkpoint.get("step", 0), checkpoint.get("epoch", 0)
            curves = {
                "steps": [p for p in curves.get("steps", []) if p[0] <= step],
                "epochs": [e for e in curves.get("epochs", []) if e.get("epoch", 0) <= epoch],
            }
        else:
            curves = {"steps": [], "epochs": []}
        FineTuneRun.objects.filter(pk=run_id).update(curves=curves)
    return checkpoint


def _slug(text: str) -> str:
    import re

    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return re.sub(r"-{2,}", "-", cleaned)


def finetune_repo_id(run) -> str:
    """``<requester>/<base name>-ft-<dataset name>-<run id>``: one new model per run.

    The requester's namespace says whose work it is; the run id makes each
    output a model of its own, so it enters review as a draft even when an
    earlier fine-tune of the same pair was published.
    """
    owner = _slug(run.requested_by.get_username() if run.requested_by else "") or "finetunes"
    stem = _slug(f"{run.base_version.model.name}-ft-{run.dataset_version.dataset.name}")
    suffix = f"-{run.pk}"
    return f"{owner[:96]}/{stem[: 96 - len(suffix)].rstrip('-._') or 'model'}{suffix}"


def finetune_output_register(
    *, ctx: JobContext, run_id: int, folder, title: str, summary: str
) -> Any:
    """Register the run's output folder as a new version, exactly once.

    One transaction holds the job row (only the owning attempt gets here) and
    the run row: if an earlier attempt registered a version, that one is
    returned; otherwise the files are ingested, the run points at the new
    version, and both commit together. The new model is a draft owned by the
    requester: they and stewards see it; nobody else may use it until a steward
    has reviewed and published it.
    """
    from zoo import importers
    from zoo.models import CatalogModel, ModelVersion

    with owned_by(ctx.job_id, ctx.attempt):
        run = (
            FineTuneRun.objects.select_for_update(of=("self",))
            .select_related(
                "base_version__model",
                "base_version__license",
                "dataset_version__dataset",
                "requested_by",
                "output_version__model",
            )
            .get(pk=run_id)
        )
        if run.output_version_id:
            return run.output_version
        repo_id = finetune_repo_id(run)
        n = 1
        while CatalogModel.objects.filter(repo_id=repo_id).exists():
            n += 1
            repo_id = f"{finetune_repo_id(run)[:190]}-{n}"
        base = run.base_version
        kind = ModelVersion.Kind.ADAPTER if run.is_adapter else ModelVersion.Kind.FINETUNED
        version, _ = importers.import_finetune_output(
            folder=folder,
            repo_id=repo_id,
            derived=importers.Derived(
                parent=base,
                kind=kind,
                title=title,
                summary=summary,
                bias_notes=base.bias_notes,
                limitations=base.limitations,
                provenance={
                    "base_model": [base.model.repo_id],
                    "base_revision": base.revision,
                    "datasets": [f"sha256:{run.dataset_version.sha256}"],
                    "finetune_run": run.pk,
                },
            ),
            source_repo=f"fine-tune #{run.pk}",
            actor=run.requested_by,
        )
        FineTuneRun.objects.filter(pk=run.pk).update(output_version=version)
        audit_record(
            actor=run.requested_by,
            verb="finetune.register",
            target=version,
            payload={
                "run": run.pk,
                "parent": base.pk,
                "kind": kind,
                "license": version.license.spdx_id,
                "review": "draft until a steward publishes it",
            },
        )
    return version
