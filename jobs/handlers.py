"""Job kinds that belong to the jobs app itself."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from pathlib import Path

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
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        blob = store_blob(path, digest.hexdigest())
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
