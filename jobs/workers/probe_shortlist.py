"""The probe's optional second stage: the top k by scores, each fine-tuned briefly.

Transferability scores read frozen features, and near the top of a ranking
they are often within noise of each other. When the user asks for it
(``ProbeRun.shortlist_k``), the k best-scored candidates are each fine-tuned
briefly (``jobs.ml.shortlist.brief_finetune``: a full fine-tune on a
stratified subsample of the training rows, ``BRIEF`` settings) and the order
among them follows their validation accuracy; the candidates below the top
k keep the scores' order. The rows are split exactly as a fine-tune launched
with the form's defaults would split them, so the brief runs train on that
fine-tune's training rows, are scored on its validation rows, and its test
rows are never read. A candidate whose brief run fails keeps its place
after those that ran; the probe still succeeds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings

from jobs.engine import JobCancelled, JobContext
from jobs.ml.config import TEST_FRACTION, VAL_FRACTION, FineTuneConfig
from jobs.ml.shortlist import BriefResult, BriefSettings, brief_finetune
from jobs.models import FineTuneRun
from jobs.services.probes import probe_result_update, probe_run_update
from jobs.workers.data import read_rows
from jobs.workers.finetunes import split_rows
from portal.errors import PortalError
from zoo.storage import materialize_version

logger = logging.getLogger(__name__)

BRIEF = BriefSettings()
"""The brief fine-tune's settings: ``BriefSettings``' defaults, measured in
``bench/transfer_shortlist.py``."""

# The split a fine-tune launched with the form's defaults makes (its shares, its seed).
SPLIT_SEED = FineTuneConfig().seed


@dataclass
class _Data:
    """The rows the brief fine-tunes train and are scored on."""

    class_names: list[str]
    train: tuple[list, np.ndarray]
    val: tuple[list, np.ndarray]
    modality: str


def shortlist_stage(ctx: JobContext, run, order: list[str], reasons: dict, names: dict, tmp: Path):
    """(order, reasons) with the top ``run.shortlist_k`` re-ordered by a brief fine-tune.

    ``order`` and ``reasons`` are the scores' ranking; ``names`` maps each
    name to its ProbeResult. Progress runs from 0.5 to 1.0 (the scores took
    the first half).
    """
    top = order[: min(run.shortlist_k, len(order))]
    ctx.progress(0.5, stage="Brief fine-tunes: splitting the data")
    try:
        data = _split(run, tmp)
    except PortalError as exc:
        note = f"The brief fine-tunes did not run: {exc} The order is the scores' alone."
        probe_run_update(ctx=ctx, run_id=run.pk, shortlist_note=note)
        ctx.log(note)
        return order, reasons
    measured: dict[str, BriefResult] = {}
    for index, name in enumerate(top):
        share = (0.5 + 0.5 * index / len(top), 0.5 / len(top))
        result = _brief_one(ctx, names[name], data, name=name, share=share)
        if result is not None:
            measured[name] = result
    ranked = sorted(
        measured,
        key=lambda n: (-measured[n].val_accuracy, -measured[n].val_macro_f1, top.index(n)),
    )
    new_top = ranked + [n for n in top if n not in measured]
    new_order = new_top + order[len(top) :]
    new_reasons = dict(reasons)
    for name in measured:
        was = order.index(name) + 1
        new_reasons[name] = (
            f"Brief fine-tune: {measured[name].val_accuracy:.1%} validation accuracy"
            f" (#{was} by scores). {reasons[name]}"
        )
    note = _note(top, new_top, measured, data)
    probe_run_update(ctx=ctx, run_id=run.pk, shortlist_note=note)
    ctx.log(note)
    return new_order, new_reasons


def _split(run, tmp: Path) -> _Data:
    """Training and validation rows of a default fine-tune of the run's dataset version."""
    # A folder of its own: the scores' sample already unpacked the same files into ``tmp``.
    folder = tmp / "shortlist"
    folder.mkdir(exist_ok=True)
    rows = read_rows(run.dataset_version, folder)
    params = {"test_fraction": TEST_FRACTION, "val_fraction": VAL_FRACTION, "seed": SPLIT_SEED}
    data = split_rows(rows, split=FineTuneRun.Split.STRATIFIED, params=params)
    return _Data(
        class_names=data.class_names,
        train=data.train,
        val=data.val,
        modality=run.dataset_version.dataset.modality,
    )


def _brief_one(ctx: JobContext, result, data: _Data, *, name: str, share) -> BriefResult | None:
    """One candidate's brief fine-tune, recorded on its result; None when it failed."""
    start, width = share
    ctx.progress(start, stage=f"{name}: brief fine-tune")
    last = [0.0]

    def on_step(step: int, total: int, _loss: float) -> None:
        now = time.monotonic()
        if step < total and now - last[0] < 0.5:
            return
        last[0] = now
        ctx.progress(
            start + width * step / max(total, 1),
            stage=f"{name}: brief fine-tune, step {step} of {total}",
        )

    device = "cuda" if ctx.device.startswith("cuda") else "cpu"
    try:
        model_dir = materialize_version(result.version, settings.MODEL_CACHE_DIR)
        brief = brief_finetune(
            model_dir,
            data.modality,
            data.class_names,
            data.train,
            data.val,
            BRIEF,
            device=device,
            on_step=on_step,
        )
    except JobCancelled:
        raise
    except Exception as exc:  # one candidate's failure keeps the scores' order for it
        expected = isinstance(exc, PortalError | ValueError | OSError)
        message = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        if not expected:
            logger.exception("brief fine-tune of %s failed", name)
        ctx.log(f"{name}: brief fine-tune failed: {message}")
        probe_result_update(ctx=ctx, result_id=result.pk, brief_error=message[:2000])
        return None
    probe_result_update(
        ctx=ctx,
        result_id=result.pk,
        brief_accuracy=brief.val_accuracy,
        brief_macro_f1=brief.val_macro_f1,
        brief_rows=brief.train_rows,
        brief_val_rows=len(data.val[1]),
        brief_epochs=brief.epochs,
        brief_cpu_seconds=brief.cpu_seconds,
        brief_seconds=brief.wall_seconds,
        brief_error="",
    )
    ctx.log(
        f"{name}: brief fine-tune {brief.val_accuracy:.1%} validation accuracy"
        f" in {brief.wall_seconds:.1f} s"
    )
    return brief


def _note(top: list[str], new_top: list[str], measured: dict, data: _Data) -> str:
    """What the second stage did, in words, for the results page."""
    if not measured:
        return f"The brief fine-tunes of the top {len(top)} all failed; the scores' order stands."
    head = (
        f"The top {len(top)} by scores were each fine-tuned briefly (full fine-tune,"
        f" {BRIEF.epochs} epoch{'s' if BRIEF.epochs != 1 else ''} at learning rate"
        f" {BRIEF.learning_rate:g} on at most {BRIEF.rows} training rows) and scored on"
        f" {len(data.val[1])} validation rows; the test rows were not read."
    )
    if new_top == top:
        return f"{head} Their validation accuracy agrees with the scores' order."
    moved = new_top[0]
    if moved != top[0]:
        return (
            f"{head} {moved}, #{top.index(moved) + 1} by scores, reached the best validation"
            " accuracy and now ranks first."
        )
    return f"{head} The first place stands; the order below it follows validation accuracy."
