"""The probe job: score every candidate of a probe run on one stratified sample of its data.

Features are extracted once per (version, dataset version, preprocessing,
sample) and kept in storage; a candidate that fails is recorded with its
reason and the others still run. A retried job skips the candidates an
earlier attempt finished.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings

from jobs.engine import JobCancelled, JobContext, register
from jobs.ml import features
from jobs.ml.reference import reference_images, reference_texts
from jobs.models import Job, ProbeResult, ProbeRun
from jobs.services.probes import feature_set_record, probe_result_update, probe_run_update
from jobs.workers.data import read_rows
from portal.errors import PortalError
from zoo.safety import digest_file
from zoo.storage import copy_blob_to, materialize_version, store_blob

logger = logging.getLogger(__name__)


class CandidateFailed(Exception):
    """One candidate of a probe cannot be scored; the others go on."""


@dataclass
class _Sample:
    """The rows every candidate is scored on."""

    inputs: list
    labels: np.ndarray
    key: str  # sha256 of the row indices: part of the feature cache key
    modality: str
    tmp: Path  # the attempt's workspace


@register(Job.Kind.PROBE, queue="gpu")
def probe(ctx: JobContext) -> dict:
    """Score each candidate in turn, then rank those that could be scored."""
    run = ProbeRun.objects.select_related("dataset_version__dataset").get(job_id=ctx.job_id)
    results = list(run.results.select_related("version__model").order_by("position"))
    with ctx.workspace() as tmp:
        sample = _sample(ctx, run, tmp)
        for index, result in enumerate(results):
            if result.status != ProbeResult.Status.SUCCEEDED:
                _run_candidate(
                    ctx, run, result, sample, share=(index / len(results), 1 / len(results))
                )
    return _rank_probe(ctx, run)


def _sample(ctx: JobContext, run: ProbeRun, tmp: Path) -> _Sample:
    """The run's dataset read back and a stratified sample of at most ``max_examples`` rows."""
    from jobs.ml import scores  # sklearn: loaded by workers only, not every web process

    ctx.progress(0.0, stage="Reading the dataset")
    rows = read_rows(run.dataset_version, tmp)
    classes = sorted(set(rows.labels))
    labels = np.array([classes.index(label) for label in rows.labels], dtype=np.int64)
    try:
        picked = scores.stratified_sample(labels, run.max_examples, seed=run.seed)
        scores.validate_labels(labels[picked])
    except ValueError as exc:
        raise PortalError(f"The dataset cannot be probed: {exc}") from exc
    probe_run_update(ctx=ctx, run_id=run.pk, n_examples=len(picked))
    ctx.log(
        f"{len(picked)} of {len(labels)} examples in a stratified sample, {len(classes)} classes"
    )
    return _Sample(
        inputs=[rows.inputs[i] for i in picked],
        labels=labels[picked],
        key=hashlib.sha256(np.asarray(picked, dtype=np.int64).tobytes()).hexdigest(),
        modality=run.dataset_version.dataset.modality,
        tmp=tmp,
    )


def _run_candidate(ctx, run, result, sample: _Sample, *, share) -> None:
    """Score one candidate and record the outcome; its failure is its own."""
    name = f"{result.version.model.repo_id} {result.version.label}"
    probe_result_update(ctx=ctx, result_id=result.pk, status=ProbeResult.Status.RUNNING, error="")
    started = time.perf_counter()
    try:
        fields = _score_candidate(
            ctx, result=result, run=run, sample=sample, share=share, name=name
        )
    except JobCancelled:
        raise
    except Exception as exc:  # one candidate's failure must not stop the others
        expected = isinstance(exc, CandidateFailed | PortalError)
        message = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        if not expected:
            logger.exception("probe candidate %s failed", name)
        ctx.log(f"{name}: failed: {message}")
        probe_result_update(
            ctx=ctx,
            result_id=result.pk,
            status=ProbeResult.Status.FAILED,
            error=message[:2000],
            seconds=time.perf_counter() - started,
        )
        return
    seconds = time.perf_counter() - started
    probe_result_update(
        ctx=ctx, result_id=result.pk, status=ProbeResult.Status.SUCCEEDED, seconds=seconds, **fields
    )
    ctx.log(f"{name}: scored in {seconds:.1f} s")


def _score_candidate(ctx, *, result, run, sample: _Sample, share, name) -> dict:
    """Features (cached or extracted) and every score of one candidate."""
    from jobs.ml.probe import score_features  # sklearn: workers only

    start, width = share
    modality = sample.modality
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
    X, cached, extraction_seconds = _features(
        ctx, result, run, sample, model_dir, extract, device=device, share=share, name=name
    )
    ctx.progress(start + width * 0.85, stage=f"{name}: scoring")
    reference = extract(
        model_dir,
        reference_images(64) if modality == "vision" else reference_texts(),
        device=device,
    )
    values = score_features(X, sample.labels, reference, seed=run.seed)
    ctx.progress(start + width, stage=f"{name}: done")
    return {
        **values,
        "cached": cached,
        "extraction_seconds": extraction_seconds,
        "feature_dim": int(X.shape[1]),
    }


def _features(ctx, result, run, sample, model_dir, extract, *, device, share, name):
    """The sample's features from the cache, or extracted now and cached; (X, cached, seconds)."""
    preprocessing = features.preprocessing_key(model_dir, sample.modality)
    cached = result.version.feature_sets.filter(
        dataset_version=run.dataset_version, preprocessing=preprocessing, sample_key=sample.key
    ).first()
    if cached is not None:
        with tempfile.TemporaryDirectory(prefix="features-", dir=sample.tmp) as tmp:
            X = features.load_features(copy_blob_to(cached.blob_name, Path(tmp) / "f.npy"))
        ctx.log(f"{name}: features from the cache ({cached.n_rows}x{cached.dim})")
        return X, True, None
    start, width = share
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
        X = extract(model_dir, sample.inputs, device=device, progress=embedded)
    except (OSError, ValueError) as exc:
        raise CandidateFailed(f"The model could not be loaded or run: {exc}") from exc
    seconds = time.perf_counter() - began
    _cache_features(ctx, X, result.version, run.dataset_version, preprocessing, sample, seconds)
    return X, False, seconds


def _cache_features(ctx, X, version, dataset_version, preprocessing, sample, seconds) -> None:
    with tempfile.TemporaryDirectory(prefix="features-", dir=sample.tmp) as tmp:
        path = Path(tmp) / "features.npy"
        features.save_features(path, X)
        blob = store_blob(path, digest_file(path).sha256)
    feature_set_record(
        ctx=ctx,
        version=version,
        dataset_version=dataset_version,
        preprocessing=preprocessing,
        sample_key=sample.key,
        n_rows=int(X.shape[0]),
        dim=int(X.shape[1]),
        blob_name=blob,
        seconds=seconds,
        device=ctx.device,
    )


def _rank_probe(ctx, run) -> dict:
    """One recommended ordering over the candidates that were scored."""
    from jobs.ml import scores  # sklearn: workers only

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
        probe_result_update(
            ctx=ctx, result_id=names[entry.name].pk, rank=entry.rank, reason=entry.reason[:300]
        )
    best = ranked[0]
    probe_run_update(ctx=ctx, run_id=run.pk, recommendation=f"{best.name}: {best.reason}")
    ctx.progress(1.0, stage="Ranked")
    return {
        "recommended": best.name,
        "ranking": [entry.name for entry in ranked],
        "failed": [f"{r.version.model.repo_id} {r.version.label}" for r in failed],
    }
