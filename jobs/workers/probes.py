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
from functools import partial
from pathlib import Path

import numpy as np
from django.conf import settings

from jobs.engine import JobCancelled, JobContext, register
from jobs.ml import features
from jobs.ml.reference import reference_images, reference_texts
from jobs.models import Job, ProbeResult, ProbeRun
from jobs.services.probes import feature_set_record, probe_result_update, probe_run_update
from jobs.workers.data import read_rows
from jobs.workers.probe_shortlist import shortlist_stage
from portal.errors import PortalError
from zoo.safety import digest_file
from zoo.storage import copy_blob_to, materialize_version, store_blob

logger = logging.getLogger(__name__)

TEXT_MAX_LENGTH = 128
"""Tokens a probe embeds per text: the fine-tune form's default ``max_length``.

Features should show what the fine-tune will see: a probe that reads 256
tokens can favour a model for text a 128-token fine-tune truncates away.
128 is also what sentence encoders such as all-MiniLM-L6-v2 were trained on.
It is part of the feature cache key (``features.preprocessing_key``), so
features embedded at another length are never reused for it.
"""


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
    # With a shortlist check the scores take the first half of the progress bar.
    span = 0.5 if run.shortlist_k else 1.0
    with ctx.workspace() as tmp:
        sample = _sample(ctx, run, tmp)
        for index, result in enumerate(results):
            if result.status != ProbeResult.Status.SUCCEEDED:
                share = (span * index / len(results), span / len(results))
                _run_candidate(ctx, run, result, sample, share=share)
        return _rank_probe(ctx, run, n_examples=len(sample.labels), tmp=tmp)


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
    """Features (cached or extracted), every score and the serving cost of one candidate."""
    from jobs.ml.probe import pack_correct, score_candidate  # sklearn: workers only

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
    options = _feature_options(modality)
    if modality == "vision":
        extract = features.extract_image_features
    else:
        extract = partial(features.extract_text_features, **options)
    X, cached, extraction_seconds = _features(
        ctx, result, run, sample, model_dir, extract, device=device, share=share, name=name
    )
    ctx.progress(start + width * 0.85, stage=f"{name}: scoring")
    reference = extract(
        model_dir,
        reference_images(64) if modality == "vision" else reference_texts(),
        device=device,
    )
    scored = score_candidate(X, sample.labels, reference, seed=run.seed)
    ctx.progress(start + width * 0.95, stage=f"{name}: measuring CPU latency")
    cost = _measure(model_dir, sample, name=name)
    ctx.log(
        f"{name}: {cost.parameters:,} parameters, {cost.latency_ms:.2f} ms per example on the "
        f"CPU (median of {cost.method['repeats']}, {cost.method['threads']} threads)"
    )
    ctx.progress(start + width, stage=f"{name}: done")
    return {
        **scored.values,
        "linear_correct": pack_correct(scored.linear_correct),
        "knn_correct": pack_correct(scored.knn_correct),
        "parameters": cost.parameters,
        "memory_bytes": cost.memory_bytes,
        "latency_ms": cost.latency_ms,
        "cost_method": cost.method,
        "cached": cached,
        "extraction_seconds": extraction_seconds,
        "feature_dim": int(X.shape[1]),
    }


def _feature_options(modality: str) -> dict:
    """What, beyond the model and the device, decides the features: the text length."""
    return {"max_length": TEXT_MAX_LENGTH} if modality == "text" else {}


def _measure(model_dir: Path, sample: _Sample, *, name: str) -> features.ModelCost:
    """Parameters and single-example CPU latency on real examples of the sample."""
    try:
        return features.measure_cost(model_dir, sample.inputs, **_feature_options(sample.modality))
    except (OSError, ValueError) as exc:
        raise CandidateFailed(f"{name}: its CPU latency could not be measured: {exc}") from exc


def _features(ctx, result, run, sample, model_dir, extract, *, device, share, name):
    """The sample's features from the cache, or extracted now and cached; (X, cached, seconds)."""
    preprocessing = features.preprocessing_key(
        model_dir, sample.modality, device=device, **_feature_options(sample.modality)
    )
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


def _rank_probe(ctx, run, *, n_examples: int, tmp: Path) -> dict:
    """One recommended ordering, how sure its first place is, and the best within the budget.

    The scores rank first (``score_rank``); with ``shortlist_k`` the top k are
    then re-ordered by a brief fine-tune (``probe_shortlist``), and that order
    is the one recorded, explained and checked against noise and the budget.
    """
    from jobs.ml import scores  # sklearn: workers only

    results = list(run.results.select_related("version__model").order_by("position"))
    done = [r for r in results if r.status == ProbeResult.Status.SUCCEEDED]
    failed = [r for r in results if r.status == ProbeResult.Status.FAILED]
    if not done:
        reasons = "; ".join(
            f"{r.version.model.repo_id} {r.version.label}: {r.error}" for r in failed
        )
        raise PortalError(f"No candidate could be scored. {reasons}")
    names = {_name(r): r for r in done}
    ranked = scores.recommend(
        {name: {s: getattr(r, s) for s in ProbeResult.SCORES} for name, r in names.items()}
    )
    order = [entry.name for entry in ranked]
    reasons = {entry.name: entry.reason for entry in ranked}
    for entry in ranked:
        probe_result_update(ctx=ctx, result_id=names[entry.name].pk, score_rank=entry.rank)
    if run.shortlist_k and len(order) > 1:
        order, reasons = shortlist_stage(ctx, run, order, reasons, names, tmp)
    for rank, name in enumerate(order, start=1):
        probe_result_update(
            ctx=ctx, result_id=names[name].pk, rank=rank, reason=reasons[name][:300]
        )
    best = order[0]
    confidence = _rank_confidence(ctx, run, order, names, n_examples=n_examples)
    pick = _budget_pick(ctx, run, order, names)
    probe_run_update(ctx=ctx, run_id=run.pk, recommendation=f"{best}: {reasons[best]}")
    ctx.progress(1.0, stage="Ranked")
    return {
        "recommended": best,
        "ranking": order,
        "within_noise": confidence.near if confidence is not None else [best],
        "within_budget": pick.name if pick is not None else None,
        "failed": [_name(r) for r in failed],
    }


def _name(result: ProbeResult) -> str:
    return f"{result.version.model.repo_id} {result.version.label}"


def _rank_confidence(ctx, run, order: list[str], names: dict, *, n_examples: int):
    """The paired bootstrap of the top candidate against each other one, written per result.

    Linear-probe accuracy decides (the score people read); the kNN interval
    is kept beside it. A candidate scored by older code, without per-example
    results, is left out of the comparison rather than guessed at.
    """
    from jobs.ml import scores

    linear = _correctness(names, "linear_correct", n_examples)
    knn = _correctness(names, "knn_correct", n_examples)
    if len(order) == 1:
        probe_run_update(
            ctx=ctx,
            run_id=run.pk,
            confidence=ProbeRun.Confidence.SINGLE,
            confidence_note="Only one candidate was scored, so there is no margin to measure.",
        )
        return None
    if order[0] not in linear:
        return None
    verdict = scores.ranking_confidence(order, linear, seed=run.seed)
    if not verdict.gaps:  # nobody else has per-example results to compare with
        return None
    knn_gaps = scores.ranking_confidence(order, knn, seed=run.seed).gaps if order[0] in knn else {}
    for name, gap in verdict.gaps.items():
        other = knn_gaps.get(name)
        probe_result_update(
            ctx=ctx,
            result_id=names[name].pk,
            gap_low=gap.low,
            gap_high=gap.high,
            top_holds=gap.holds,
            knn_gap_low=other.low if other else None,
            knn_gap_high=other.high if other else None,
            within_noise=not gap.separated,
        )
    probe_run_update(
        ctx=ctx,
        run_id=run.pk,
        confidence=ProbeRun.Confidence.CLEAR if verdict.clear else ProbeRun.Confidence.NEAR_TIE,
        confidence_note=verdict.summary(),
    )
    ctx.log(verdict.summary())
    return verdict


def _correctness(names: dict, field: str, n_examples: int) -> dict:
    """Per-example right/wrong of every candidate that has it for this sample."""
    from jobs.ml.probe import unpack_correct

    found = {}
    for name, result in names.items():
        packed = getattr(result, field)
        if packed is None:
            continue
        try:
            found[name] = unpack_correct(packed, n_examples)
        except ValueError:  # recorded on another sample: not comparable row by row
            continue
    return found


def _budget_pick(ctx, run, order: list[str], names: dict):
    """The best-ranked candidate within the run's budget; every other's broken limits recorded."""
    from jobs.ml import scores

    costs = {
        name: {"parameters": r.parameters, "latency_ms": r.latency_ms} for name, r in names.items()
    }
    pick = scores.best_within_budget(
        order,
        costs,
        max_parameters=run.max_parameters,
        max_latency_ms=run.max_latency_ms,
    )
    if pick is None:
        return None
    for name, r in names.items():
        probe_result_update(ctx=ctx, result_id=r.pk, budget_misses=pick.misses.get(name, []))
    probe_run_update(
        ctx=ctx,
        run_id=run.pk,
        budget_choice_id=names[pick.name].pk if pick.name else None,
        budget_note=pick.summary,
    )
    ctx.log(pick.summary)
    return pick
