"""Job kinds that belong to the jobs app itself."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs import services
from jobs.ml.device import environment_report
from jobs.models import Job
from jobs.services import JobCancelled, JobContext, register
from portal.errors import PortalError

logger = logging.getLogger(__name__)


@register(Job.Kind.WORKER_CHECK)
def worker_check(ctx: JobContext) -> dict:
    """Report what the worker that took this job can do.

    With ``require_gpu`` the job fails on a worker without CUDA, which is how
    an operator confirms that the ``gpu`` queue really reaches a GPU node.
    """
    ctx.progress(0.1, stage="Inspecting the worker")
    report = environment_report()
    ctx.log(f"python {report['python']}, torch {report['torch']}, device {ctx.device}")
    if ctx.params.get("require_gpu") and not report["cuda_available"]:
        raise PortalError(
            f"This worker has no CUDA device (it runs on {ctx.device}); "
            "the gpu queue should be served by GPU nodes."
        )
    ctx.progress(1.0, stage="Done")
    return report


@register(Job.Kind.IMPORT)
def import_model(ctx: JobContext) -> dict:
    """Run a catalogue import; the importer writes nothing unless it succeeds."""
    import shutil
    import tempfile
    from pathlib import Path

    from django.contrib.auth import get_user_model
    from django.core.files.storage import default_storage

    from zoo import importers

    params = ctx.params
    actor = get_user_model().objects.filter(pk=ctx.requested_by_id).first()

    def report(fraction: float, stage: str) -> None:
        ctx.progress(fraction, stage=stage)

    source = params.get("source")
    if source == "hub":
        version, created = importers.import_from_hub(
            hub_repo_id=params["hub_repo_id"],
            revision=params.get("revision") or "main",
            repo_id=params.get("repo_id") or params["hub_repo_id"],
            actor=actor,
            report=report,
        )
    elif source == "folder":
        version, created = importers.import_from_folder(
            folder=Path(params["folder"]), repo_id=params["repo_id"], actor=actor, report=report
        )
    elif source == "archive":
        # Copy the upload out of storage (which may be remote) into a local file.
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "archive"
            with default_storage.open(params["archive"], "rb") as src, local.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            try:
                version, created = importers.import_from_archive(
                    archive=local,
                    repo_id=params["repo_id"],
                    original_name=params.get("original_name", ""),
                    actor=actor,
                    report=report,
                )
            finally:
                default_storage.delete(params["archive"])
    else:
        raise PortalError(f"Unknown import source {source!r}.")
    ctx.log(
        f"{'Imported' if created else 'Already in the catalogue:'} "
        f"{version.model.repo_id} {version.label} ({version.revision[:10]})"
    )
    if version.is_blocked:
        for reason in version.block_reasons:
            ctx.log(f"blocked: {reason}")
    return {
        "version_id": version.pk,
        "repo_id": version.model.repo_id,
        "label": version.label,
        "revision": version.revision,
        "created": created,
        "blocked": version.is_blocked,
        "block_reasons": version.block_reasons,
    }


class CandidateFailed(Exception):
    """One candidate of a probe cannot be scored; the others go on."""


@register(Job.Kind.PROBE, queue="gpu")
def probe(ctx: JobContext) -> dict:
    """Score every candidate of a probe run on the run's dataset sample.

    Features are extracted once per (version, dataset version, preprocessing,
    sample) and kept in storage; a candidate that fails is recorded with its
    reason and the others still run. A retried job skips the candidates an
    earlier attempt finished.
    """
    import numpy as np

    from jobs.ml import scores
    from jobs.models import ProbeResult, ProbeRun
    from zoo import datasets
    from zoo.services import dataset_limits
    from zoo.storage import copy_blob_to

    run = ProbeRun.objects.select_related("dataset_version__dataset").get(job_id=ctx.job_id)
    dataset_version = run.dataset_version
    modality = dataset_version.dataset.modality
    results = list(run.results.select_related("version__model").order_by("position"))
    ctx.progress(0.0, stage="Reading the dataset")
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp_name:
        tmp = Path(tmp_name)
        local = copy_blob_to(dataset_version.blob_name, tmp / f"data.{dataset_version.format}")
        try:
            if modality == "vision":
                table = datasets.load_image_archive(local, limits=dataset_limits())
                (tmp / "images").mkdir()
                inputs: list = datasets.extract_image_archive(
                    local, tmp / "images", limits=dataset_limits()
                )
            else:
                table = datasets.load_text_dataset(
                    local,
                    fmt=dataset_version.format,
                    text_column=dataset_version.text_column,
                    label_column=dataset_version.label_column,
                    limits=dataset_limits(),
                )
                inputs = table.texts
        except datasets.DatasetError as exc:
            raise PortalError("The dataset cannot be read: " + " ".join(exc.messages)) from exc
        classes = sorted(set(table.labels))
        labels = np.array([classes.index(label) for label in table.labels], dtype=np.int64)
        try:
            rows = scores.stratified_sample(labels, run.max_examples, seed=run.seed)
            scores.validate_labels(labels[rows])
        except ValueError as exc:
            raise PortalError(f"The dataset cannot be probed: {exc}") from exc
        sample_inputs = [inputs[i] for i in rows]
        sample_labels = labels[rows]
        sample_key = hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()
        services.probe_run_update(ctx=ctx, run_id=run.pk, n_examples=len(rows))
        ctx.log(
            f"{len(rows)} of {len(labels)} examples in a stratified sample, {len(classes)} classes"
        )

        for index, result in enumerate(results):
            if result.status == ProbeResult.Status.SUCCEEDED:
                continue
            name = f"{result.version.model.repo_id} {result.version.label}"
            services.probe_result_update(
                ctx=ctx, result_id=result.pk, status=ProbeResult.Status.RUNNING, error=""
            )
            started = time.perf_counter()
            try:
                fields = _score_candidate(
                    ctx,
                    result=result,
                    run=run,
                    modality=modality,
                    inputs=sample_inputs,
                    labels=sample_labels,
                    sample_key=sample_key,
                    share=(index / len(results), 1 / len(results)),
                    name=name,
                )
            except JobCancelled:
                raise
            except Exception as exc:  # one candidate's failure must not stop the others
                message = (
                    str(exc)
                    if isinstance(exc, CandidateFailed | PortalError)
                    else (f"{type(exc).__name__}: {exc}")
                )
                if not isinstance(exc, CandidateFailed | PortalError):
                    logger.exception("probe candidate %s failed", name)
                ctx.log(f"{name}: failed: {message}")
                services.probe_result_update(
                    ctx=ctx,
                    result_id=result.pk,
                    status=ProbeResult.Status.FAILED,
                    error=message[:2000],
                    seconds=time.perf_counter() - started,
                )
                continue
            seconds = time.perf_counter() - started
            services.probe_result_update(
                ctx=ctx,
                result_id=result.pk,
                status=ProbeResult.Status.SUCCEEDED,
                seconds=seconds,
                **fields,
            )
            ctx.log(f"{name}: scored in {seconds:.1f} s")

    return _rank_probe(ctx, run)


def _score_candidate(ctx, *, result, run, modality, inputs, labels, sample_key, share, name):
    """Features (cached or extracted) and every score of one candidate."""
    from django.conf import settings

    from jobs.ml import features
    from jobs.ml.probe import score_features
    from jobs.ml.reference import reference_images, reference_texts
    from zoo.storage import copy_blob_to, materialize_version

    start, width = share
    ctx.progress(start, stage=f"{name}: loading the model")
    model_dir = materialize_version(result.version, settings.MODEL_CACHE_DIR)
    try:
        found = features.modality_of(model_dir)
    except features.UnsupportedModel as exc:
        raise CandidateFailed(str(exc)) from exc
    if found != modality:
        raise CandidateFailed(f"{name} is a {found} model; this dataset holds {modality} data.")
    device = "cuda" if ctx.device.startswith("cuda") else "cpu"
    extract = (
        features.extract_image_features if modality == "vision" else features.extract_text_features
    )
    preprocessing = features.preprocessing_key(model_dir, modality)
    cached = result.version.feature_sets.filter(
        dataset_version=run.dataset_version, preprocessing=preprocessing, sample_key=sample_key
    ).first()
    extraction_seconds = None
    if cached is not None:
        with tempfile.TemporaryDirectory(prefix="features-") as tmp:
            X = features.load_features(copy_blob_to(cached.blob_name, Path(tmp) / "f.npy"))
        ctx.log(f"{name}: features from the cache ({cached.n_rows}x{cached.dim})")
    else:
        last = [0.0]

        def embedded(done: int, total: int) -> None:
            now = time.monotonic()
            if done < total and now - last[0] < 0.5:
                return
            last[0] = now
            ctx.progress(
                start + width * 0.8 * done / max(total, 1),
                stage=f"{name}: embedded {done:,} of {total:,} examples",
            )

        began = time.perf_counter()
        try:
            X = extract(model_dir, inputs, device=device, progress=embedded)
        except (OSError, ValueError) as exc:
            raise CandidateFailed(f"The model could not be loaded or run: {exc}") from exc
        extraction_seconds = time.perf_counter() - began
        _cache_features(
            ctx,
            X,
            version=result.version,
            dataset_version=run.dataset_version,
            preprocessing=preprocessing,
            sample_key=sample_key,
            seconds=extraction_seconds,
        )
    ctx.progress(start + width * 0.85, stage=f"{name}: scoring")
    if modality == "vision":
        reference = extract(model_dir, reference_images(64), device=device)
    else:
        reference = extract(model_dir, reference_texts(), device=device)
    values = score_features(X, labels, reference, seed=run.seed)
    ctx.progress(start + width, stage=f"{name}: done")
    return {
        **values,
        "cached": cached is not None,
        "extraction_seconds": extraction_seconds,
        "feature_dim": int(X.shape[1]),
    }


def _cache_features(ctx, X, *, version, dataset_version, preprocessing, sample_key, seconds):
    from jobs.ml import features
    from zoo.storage import store_blob

    with tempfile.TemporaryDirectory(prefix="features-") as tmp:
        path = Path(tmp) / "features.npy"
        features.save_features(path, X)
        blob = store_blob(path, _sha256_of(path))
    services.feature_set_record(
        ctx=ctx,
        version=version,
        dataset_version=dataset_version,
        preprocessing=preprocessing,
        sample_key=sample_key,
        n_rows=int(X.shape[0]),
        dim=int(X.shape[1]),
        blob_name=blob,
        seconds=seconds,
        device=ctx.device,
    )


def _rank_probe(ctx, run) -> dict:
    """One recommended ordering over the candidates that were scored."""
    from jobs.ml import scores
    from jobs.models import ProbeResult

    results = list(run.results.select_related("version__model").order_by("position"))
    done = [r for r in results if r.status == ProbeResult.Status.SUCCEEDED]
    failed = [r for r in results if r.status == ProbeResult.Status.FAILED]
    if not done:
        reasons = "; ".join(
            f"{r.version.model.repo_id} {r.version.label}: {r.error}" for r in failed
        )
        raise PortalError(f"No candidate could be scored. {reasons}")
    names = {f"{r.version.model.repo_id} {r.version.label}": r for r in done}
    ranked = scores.recommend(
        {name: {s: getattr(r, s) for s in ProbeResult.SCORES} for name, r in names.items()}
    )
    for entry in ranked:
        services.probe_result_update(
            ctx=ctx, result_id=names[entry.name].pk, rank=entry.rank, reason=entry.reason[:300]
        )
    best = ranked[0]
    recommendation = f"{best.name}: {best.reason}"
    services.probe_run_update(ctx=ctx, run_id=run.pk, recommendation=recommendation)
    ctx.progress(1.0, stage="Ranked")
    return {
        "recommended": best.name,
        "ranking": [entry.name for entry in ranked],
        "failed": [f"{r.version.model.repo_id} {r.version.label}" for r in failed],
    }


# --- fine-tunes -----------------------------------------------------------------


@dataclass
class _Rows:
    """One dataset version read for training: inputs (texts or image paths) and labels."""

    inputs: list
    labels: list[str]
    slices: list[str] | None = None
    times: list[str] | None = None


def _read_rows(dataset_version, tmp: Path, *, with_time: bool = False) -> _Rows:
    from zoo import datasets
    from zoo.services import dataset_limits
    from zoo.storage import copy_blob_to

    local = copy_blob_to(
        dataset_version.blob_name, tmp / f"data-{dataset_version.pk}.{dataset_version.format}"
    )
    try:
        if dataset_version.dataset.modality == "vision":
            images = tmp / f"images-{dataset_version.pk}"
            images.mkdir()
            table = datasets.load_image_archive(local, limits=dataset_limits())
            paths = datasets.extract_image_archive(local, images, limits=dataset_limits())
            return _Rows(inputs=[str(p) for p in paths], labels=list(table.labels))
        table = datasets.load_text_dataset(
            local,
            fmt=dataset_version.format,
            text_column=dataset_version.text_column,
            label_column=dataset_version.label_column,
            slice_column=dataset_version.slice_column or None,
            time_column=(dataset_version.time_column or None) if with_time else None,
            limits=dataset_limits(),
        )
    except datasets.DatasetError as exc:
        raise PortalError(f"{dataset_version} cannot be read: " + " ".join(exc.messages)) from exc
    return _Rows(inputs=table.texts, labels=table.labels, slices=table.slices, times=table.times)


@dataclass
class _Split:
    class_names: list[str]
    train: tuple[list, Any]
    val: tuple[list, Any]
    test: tuple[list, Any]
    test_slices: list[str] | None


def _split_rows(run, rows: _Rows, test_rows: _Rows | None) -> _Split:
    """Train, validation and test sets as the run's split says, with every class indexed."""
    import numpy as np

    from jobs.ml import splits
    from jobs.models import FineTuneRun

    params = run.split_params
    seed = int(params.get("seed", 0))
    class_names = sorted(set(rows.labels))
    index = {name: i for i, name in enumerate(class_names)}
    y = np.array([index[label] for label in rows.labels], dtype=np.int64)
    named = np.asarray(rows.labels)  # split on the names, so a refusal names the classes
    try:
        if run.split == FineTuneRun.Split.STRATIFIED:
            train_idx, test_idx = splits.stratified_split(
                named, test_fraction=params["test_fraction"], seed=seed
            )
        elif run.split == FineTuneRun.Split.TIME:
            if rows.times is None:
                raise ValueError(f"{run.dataset_version} has no time column")
            train_idx, test_idx = splits.time_split(
                rows.times, named, test_fraction=params["test_fraction"]
            )
        else:
            train_idx, test_idx = np.arange(len(y), dtype=np.int64), None
        train_idx, val_idx = splits.carve_validation(
            train_idx, named, fraction=params["val_fraction"], seed=seed
        )
    except ValueError as exc:
        raise PortalError(f"The data cannot be split as asked: {exc}") from exc

    def take(source: _Rows, idx) -> list:
        return [source.inputs[i] for i in idx]

    if test_idx is not None:
        test = (take(rows, test_idx), y[test_idx])
        test_slices = [rows.slices[i] for i in test_idx] if rows.slices is not None else None
    else:
        unknown = sorted(set(test_rows.labels) - set(class_names))
        if unknown:
            raise PortalError(
                f"The test file has labels the training data lacks: {', '.join(unknown[:5])}."
            )
        test = (
            list(test_rows.inputs),
            np.array([index[label] for label in test_rows.labels], dtype=np.int64),
        )
        test_slices = test_rows.slices
    return _Split(
        class_names=class_names,
        train=(take(rows, train_idx), y[train_idx]),
        val=(take(rows, val_idx), y[val_idx]),
        test=test,
        test_slices=test_slices,
    )


def _sha256_of(path: Path) -> str:
    from zoo.safety import digest_file

    return digest_file(path).sha256


def _checkpoint_prefix(run_id: int) -> str:
    return f"checkpoints/finetune-{run_id}"


def _store_checkpoint(folder: Path, *, run_id: int, attempt: int, epoch: int) -> dict:
    """Zip a checkpoint folder into storage (any backend); returns its name, hash and size."""
    import zipfile

    from django.core.files import File
    from django.core.files.storage import default_storage

    with tempfile.TemporaryDirectory(prefix="checkpoint-") as tmp:
        archive = Path(tmp) / "checkpoint.zip"
        # Weights do not compress; storing keeps the upload as fast as a copy.
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(folder).as_posix())
        sha256 = _sha256_of(archive)
        with archive.open("rb") as handle:
            name = default_storage.save(
                f"{_checkpoint_prefix(run_id)}/attempt{attempt}-epoch{epoch}.zip", File(handle)
            )
        return {"name": name, "sha256": sha256, "size": archive.stat().st_size}


def _fetch_checkpoint(checkpoint: dict, dest: Path) -> Path:
    """Download and unpack the checkpoint an earlier attempt left, checking its hash."""
    import zipfile

    from zoo.storage import copy_blob_to

    archive = copy_blob_to(checkpoint["name"], dest / "checkpoint.zip")
    if _sha256_of(archive) != checkpoint["sha256"]:
        raise PortalError(f"Checkpoint {checkpoint['name']} does not match its recorded hash.")
    folder = dest / "checkpoint"
    folder.mkdir()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            target = (folder / member.filename).resolve()
            if not target.is_relative_to(folder.resolve()):
                raise PortalError(f"Checkpoint member {member.filename!r} leaves its folder.")
        zf.extractall(folder)  # every member was checked above
    archive.unlink()
    return folder


def _remove_checkpoints(run_id: int) -> None:
    """Checkpoints are only for resuming; once the version is registered they go."""
    from django.core.files.storage import default_storage

    prefix = _checkpoint_prefix(run_id)
    try:
        _, names = default_storage.listdir(prefix)
        for name in names:
            default_storage.delete(f"{prefix}/{name}")
    except (FileNotFoundError, NotImplementedError, OSError):
        logger.warning("could not remove the checkpoints of fine-tune %s", run_id, exc_info=True)


def _as_dict(report) -> dict:
    from dataclasses import asdict, is_dataclass

    data = asdict(report) if is_dataclass(report) else dict(vars(report))
    return {k: (float(v) if isinstance(v, float) else v) for k, v in data.items()}


class _TrainingReporter:
    """The training callbacks: progress, live curves and a checkpoint per epoch.

    Progress is written at most once a second and curves at most every two
    seconds (each write also checks for cancellation and renews the lease);
    long runs keep about a thousand loss points, each the mean of its window.
    """

    MAX_POINTS = 1000
    PROGRESS_EVERY = 1.0
    CURVES_EVERY = 2.0

    def __init__(self, ctx: JobContext, run, *, epochs: int) -> None:
        self.ctx = ctx
        self.run = run
        self.epochs = epochs
        self.pending: list[list[float]] = []
        self.window: list[float] = []
        self.last_point = 0
        self.last_progress = 0.0
        self.last_flush = time.monotonic()
        self.last_checkpoint_name = (run.last_checkpoint or {}).get("name")

    def step(self, step: int, total_steps: int, loss: float) -> None:
        every = max(1, -(-total_steps // self.MAX_POINTS))
        self.window.append(float(loss))
        if step - self.last_point >= every or step >= total_steps:
            self.pending.append([int(step), sum(self.window) / len(self.window)])
            self.window, self.last_point = [], step
        now = time.monotonic()
        if now - self.last_progress >= self.PROGRESS_EVERY or step >= total_steps:
            self.last_progress = now
            per_epoch = max(1, -(-total_steps // self.epochs))
            epoch = min(self.epochs, (step - 1) // per_epoch + 1)
            self.ctx.progress(
                0.05 + 0.8 * step / max(total_steps, 1),
                stage=f"epoch {epoch}/{self.epochs}, step {step}/{total_steps}, loss {loss:.4f}",
            )
        if now - self.last_flush >= self.CURVES_EVERY:
            self.flush()

    def flush(self, epoch: dict | None = None) -> None:
        steps, self.pending = self.pending, []
        services.finetune_curves_append(ctx=self.ctx, run_id=self.run.pk, steps=steps, epoch=epoch)
        self.last_flush = time.monotonic()

    def epoch(self, report, checkpoint_dir: Path) -> None:
        from django.core.files.storage import default_storage

        summary = _as_dict(report)
        self.flush(epoch=summary)
        stored = _store_checkpoint(
            Path(checkpoint_dir), run_id=self.run.pk, attempt=self.ctx.attempt, epoch=report.epoch
        )
        checkpoint = {
            **stored,
            "epoch": int(report.epoch),
            "step": int(report.step),
            "attempt": self.ctx.attempt,
        }
        try:
            previous = services.finetune_checkpoint_record(
                ctx=self.ctx, run_id=self.run.pk, checkpoint=checkpoint
            )
        except JobCancelled:
            default_storage.delete(stored["name"])  # this attempt no longer owns the run
            raise
        if previous.get("name") and previous["name"] != stored["name"]:
            default_storage.delete(previous["name"])
        self.ctx.log(
            f"epoch {report.epoch}/{self.epochs}: train loss {report.train_loss:.4f}, "
            f"validation loss {report.val_loss:.4f}, accuracy {report.val_accuracy:.3f}, "
            f"macro-F1 {report.val_macro_f1:.3f} ({report.seconds:.1f} s); checkpoint stored"
        )


def _point_adapter_at_base(output: Path, base) -> None:
    """peft records the base as the worker's local folder; name it as the catalogue does.

    With the repo id and pinned revision, ``PeftModel.from_pretrained`` run
    against the portal's Hugging Face endpoint finds the exact base.
    """
    import json

    path = output / "adapter_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = base.model.repo_id
    data["revision"] = base.revision
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")


def _gpu_name(device: str) -> str | None:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` -> ``NVIDIA H100 80GB HBM3``."""
    if device.startswith("cuda") and "(" in device:
        return device.split("(", 1)[1].rstrip(")")
    return None


def _intended_use(run, class_names: list[str], modality: str) -> str:
    what = "texts" if modality == "text" else "images"
    shown = ", ".join(class_names[:10]) + (" …" if len(class_names) > 10 else "")
    return (
        f"Classifies {what} into {len(class_names)} classes ({shown}), as in the dataset "
        f"{run.dataset_version.dataset.name} it was fine-tuned on. It was made for its "
        "requester's use of that data and has not been reviewed for production: in the model "
        "zoo it is a draft until a steward publishes it, and any use stays within the base "
        "model's license and the reuse approvals that cover it. Check the evaluation below, "
        "its slices and the baseline before relying on it; data unlike the training data "
        "may be classified worse than the test figures suggest."
    )


@register(Job.Kind.FINETUNE, queue="gpu")
def finetune(ctx: JobContext) -> dict:
    """Fine-tune a base version on a dataset, evaluate it and register the result.

    A retried job resumes from the last checkpoint an earlier attempt stored;
    every write is made for the attempt that owns the job, and the output
    version is registered once (see services.finetune_output_register).
    """
    from django.conf import settings

    from jobs.ml import card as cards
    from jobs.ml import evaluate
    from jobs.ml import finetune as ft
    from jobs.models import FineTuneRun
    from zoo.storage import materialize_version

    run = FineTuneRun.objects.select_related(
        "base_version__model",
        "base_version__license",
        "dataset_version__dataset",
        "test_dataset_version__dataset",
        "requested_by",
        "output_version__model",
    ).get(job_id=ctx.job_id)
    if run.output_version_id:
        # An earlier attempt registered the version and stopped before reporting success.
        ctx.log(f"Already registered as {run.output_version.model.repo_id}")
        return _finetune_result(run, run.output_version)
    base = run.base_version
    modality = run.dataset_version.dataset.modality
    device = "cuda" if ctx.device.startswith("cuda") else "cpu"
    began = time.perf_counter()

    ctx.progress(0.0, stage="Loading the base model")
    base_dir = materialize_version(base, settings.MODEL_CACHE_DIR)
    with tempfile.TemporaryDirectory(prefix="finetune-") as tmp_name:
        tmp = Path(tmp_name)
        ctx.progress(0.01, stage="Reading the dataset")
        rows = _read_rows(run.dataset_version, tmp, with_time=run.split == "time")
        test_rows = _read_rows(run.test_dataset_version, tmp) if run.test_dataset_version else None
        data = _split_rows(run, rows, test_rows)
        ctx.log(
            f"{len(data.train[1])} training, {len(data.val[1])} validation and "
            f"{len(data.test[1])} test examples; {len(data.class_names)} classes; "
            f"{run.get_split_display().lower()} split"
        )

        try:
            config = ft.FineTuneConfig.from_dict(dict(run.config))
        except (TypeError, ValueError) as exc:
            raise PortalError(f"The run's settings are not valid: {exc}") from exc

        checkpoint = services.finetune_resume_point(ctx=ctx, run_id=run.pk)
        resume = None
        if checkpoint:
            resume = _fetch_checkpoint(checkpoint, tmp)
            ctx.log(
                f"Resuming from the checkpoint of epoch {checkpoint['epoch']} "
                f"(step {checkpoint['step']}, stored by attempt {checkpoint['attempt']})"
            )
        run.refresh_from_db(fields=["last_checkpoint"])
        reporter = _TrainingReporter(ctx, run, epochs=config.epochs)
        ctx.progress(0.05, stage=f"Training ({run.get_strategy_display().lower()}) on {device}")
        try:
            result = ft.finetune(
                base_dir,
                modality,
                data.class_names,
                train=data.train,
                val=data.val,
                config=config,
                work_dir=tmp / "work",
                device=device,
                resume=resume,
                on_step=reporter.step,
                on_epoch=reporter.epoch,
            )
        except JobCancelled:
            # Cancelled by a person: nobody will resume, so the checkpoints go. (Taken over
            # by a newer attempt instead: that attempt needs them, so they stay.)
            if Job.objects.filter(pk=ctx.job_id, status=Job.Status.CANCELLED).exists():
                _remove_checkpoints(run.pk)
            raise
        except ValueError as exc:
            # The ML code names what is wrong with the data or settings in words.
            logger.warning("fine-tune %s could not train", run.pk, exc_info=True)
            raise PortalError(f"Training could not run: {exc}") from exc
        reporter.flush()
        # Training time of the epochs behind the weights, over every attempt that made them.
        train_seconds = float(result.train_seconds)
        ctx.log(
            f"Trained {result.epochs_run} epochs ({result.steps} steps) in {train_seconds:.1f} s; "
            f"best epoch {result.best_epoch}" + ("; stopped early" if result.stopped_early else "")
        )

        ctx.progress(0.88, stage="Evaluating on the test split")
        evaluated = time.perf_counter()
        proba = ft.predict_proba(
            Path(result.output_dir),
            modality,
            data.test[0],
            device=device,
            max_length=config.max_length,
            base_model_dir=base_dir if run.is_adapter else None,
        )
        metrics = evaluate.classification_report(
            data.test[1], proba, data.class_names, slices=data.test_slices
        )
        ctx.progress(0.92, stage="Training the baseline")
        if modality == "vision":
            baseline_proba = evaluate.image_baseline(
                data.train[0], data.train[1], data.test[0], len(data.class_names), seed=config.seed
            )
        else:
            baseline_proba = evaluate.text_baseline(
                data.train[0], data.train[1], data.test[0], len(data.class_names), seed=config.seed
            )
        baseline = evaluate.classification_report(
            data.test[1], baseline_proba, data.class_names, slices=data.test_slices
        )
        baseline["method"] = (
            "logistic regression on downscaled pixels"
            if modality == "vision"
            else "TF-IDF (word 1-2 grams) + logistic regression"
        )
        eval_seconds = time.perf_counter() - evaluated
        emissions = evaluate.energy_estimate(
            seconds=train_seconds + eval_seconds, device=device, gpu_name=_gpu_name(ctx.device)
        )
        ctx.log(
            f"Test accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}; "
            f"baseline {baseline['accuracy']:.3f} / {baseline['macro_f1']:.3f}"
        )
        training = {
            "n_train": len(data.train[1]),
            "n_val": len(data.val[1]),
            "n_test": len(data.test[1]),
            "classes": data.class_names,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "steps": result.steps,
            "samples_seen": result.samples_seen,
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "attempt_wall_seconds": time.perf_counter() - began,
            "precision": getattr(result, "precision", ""),
            "device": ctx.device,
            "attempts": ctx.attempt,
            "resumed_from_epoch": checkpoint.get("epoch"),
            "peak_memory_bytes": result.peak_memory_bytes,
            "trainable_parameters": result.trainable_parameters,
            "total_parameters": result.total_parameters,
        }
        services.finetune_run_update(
            ctx=ctx,
            run_id=run.pk,
            metrics=metrics,
            baseline=baseline,
            training=training,
            emissions=emissions,
        )

        ctx.progress(0.95, stage="Writing the model card")
        output = Path(result.output_dir)
        if run.is_adapter:
            _point_adapter_at_base(output, base)
        repo_id = services.finetune_repo_id(run)
        dataset_ids = [f"sha256:{run.dataset_version.sha256}"]
        if run.test_dataset_version:
            dataset_ids.append(f"sha256:{run.test_dataset_version.sha256}")
        text = cards.build_model_card(
            repo_id=repo_id,
            base_repo_id=base.model.repo_id,
            base_revision=base.revision,
            relation="adapter" if run.is_adapter else "finetune",
            license_id=base.license.spdx_id,
            pipeline_tag="image-classification" if modality == "vision" else "text-classification",
            dataset_ids=dataset_ids,
            class_names=data.class_names,
            metrics=metrics,
            baseline=baseline,
            hyperparameters=_as_dict(config),
            strategy=run.strategy,
            training={
                "device": ctx.device,
                "seconds": train_seconds,
                "gpu_hours": emissions["gpu_hours"],
                "epochs_run": result.epochs_run,
                "best_epoch": result.best_epoch,
                "samples": result.samples_seen,
                "train_examples": training["n_train"],
                "validation_examples": training["n_val"],
                "test_examples": training["n_test"],
                "split": run.get_split_display(),
            },
            emissions=emissions,
            baseline_name=baseline["method"],
            intended_use=_intended_use(run, data.class_names, modality),
            limitations=base.limitations,
            bias_notes=base.bias_notes,
            provenance={
                "base_model": f"{base.model.repo_id}@{base.revision}",
                "base_license": base.license.spdx_id,
                "dataset": str(run.dataset_version),
                "dataset_sha256": run.dataset_version.sha256,
                "test_dataset_sha256": getattr(run.test_dataset_version, "sha256", None),
                "split": run.split,
                "split_params": run.split_params,
                "finetune_run": run.pk,
                "job": run.job_id,
                "requested_by": run.requested_by.get_username() if run.requested_by else None,
                "attempts": ctx.attempt,
            },
        )
        (output / "README.md").write_text(text, encoding="utf-8")

        ctx.progress(0.97, stage="Registering the new version")
        version = services.finetune_output_register(
            ctx=ctx,
            run_id=run.pk,
            folder=output,
            title=f"{base.model.title} fine-tuned on {run.dataset_version.dataset.name}",
            summary=(
                f"{run.get_strategy_display()} fine-tune of {base.model.repo_id} "
                f"{base.label} on {run.dataset_version.dataset.name}: test accuracy "
                f"{metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
                f"(baseline {baseline['accuracy']:.3f})."
            ),
        )
    _remove_checkpoints(run.pk)
    ctx.log(f"Registered {version.model.repo_id} {version.label} (in review)")
    ctx.progress(1.0, stage="Done")
    return _finetune_result(run, version)


def _finetune_result(run, version) -> dict:
    run.refresh_from_db(fields=["metrics", "baseline"])
    return {
        "version_id": version.pk,
        "repo_id": version.model.repo_id,
        "label": version.label,
        "kind": version.kind,
        "accuracy": run.metrics.get("accuracy"),
        "macro_f1": run.metrics.get("macro_f1"),
        "baseline_accuracy": run.baseline.get("accuracy"),
    }
