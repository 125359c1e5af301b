"""Gaps between slices of a test split: accuracy, recall and false-positive rate, with intervals.

Plain numpy; nothing here imports Django.

For two classes, recall and false-positive rate are those of the positive class
(TP / (TP + FN) and FP / (FP + TN)) and each slice's 95 % interval is Wilson's;
for more classes they are macro averages over the classes present in the
slice (one-vs-rest FPR), with a percentile bootstrap interval, as a macro
average is not a proportion. The gap of a metric is between the two judged
slices furthest apart; its interval is a bootstrap that resamples the rows of
those two slices independently (the pair is fixed at the observed one).
Slices with fewer rows than ``min_count`` are reported and not judged.

The per-slice intervals are per-comparison 95 % intervals: each covers its own
slice's value 95 % of the time. The gaps' intervals are simultaneous: the
reported pair is the most extreme of every pair of judged slices, for each of
up to three metrics, so each gap's interval is Bonferroni-adjusted over all
those comparisons (metrics x slice pairs, ``M``), at level 1 - 0.05 / M; the
M intervals then hold together at least 95 % of the time, and so does the one
of the pair that was picked. Its per-comparison 95 % interval is kept beside
it. The bootstrap draws enough resamples for the narrower tails (at least ten
draws beyond each end, up to ``MAX_GAP_DRAWS``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["METRICS", "gap_comparisons", "slice_gaps", "wilson"]

METRICS = ("accuracy", "recall", "fpr")
Z95 = 1.959963984540054
ALPHA = 0.05
MAX_GAP_DRAWS = 20_000


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson's score interval of a proportion; None when there are no trials."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _metrics(y: np.ndarray, pred: np.ndarray, positive: int | None, n_classes: int) -> dict:
    """The three metrics of one set of rows (batched: ``y`` and ``pred`` may be (B, n))."""
    y, pred = np.atleast_2d(y), np.atleast_2d(pred)
    accuracy = (y == pred).mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if positive is not None:
            pos, hit = y == positive, pred == positive
            recall = (pos & hit).sum(axis=1) / pos.sum(axis=1)
            fpr = (~pos & hit).sum(axis=1) / (~pos).sum(axis=1)
        else:
            recalls, fprs = [], []
            for c in range(n_classes):
                pos, hit = y == c, pred == c
                recalls.append((pos & hit).sum(axis=1) / pos.sum(axis=1))
                fprs.append((~pos & hit).sum(axis=1) / (~pos).sum(axis=1))
            with warnings.catch_warnings():  # a resample with no class present: NaN, on purpose
                warnings.simplefilter("ignore", RuntimeWarning)
                recall = np.nanmean(np.where(np.isfinite(recalls), recalls, np.nan), axis=0)
                fpr = np.nanmean(np.where(np.isfinite(fprs), fprs, np.nan), axis=0)
    return {"accuracy": accuracy, "recall": recall, "fpr": fpr}


def _value(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _one_slice(
    y: np.ndarray, pred: np.ndarray, positive: int | None, n_classes: int, boot: np.ndarray
) -> dict:
    values = {k: _value(v[0]) for k, v in _metrics(y, pred, positive, n_classes).items()}
    n = int(y.size)
    out: dict = {"n": n}
    if positive is not None:
        pos, hit = y == positive, pred == positive
        counts = {
            "accuracy": (int((y == pred).sum()), n),
            "recall": (int((pos & hit).sum()), int(pos.sum())),
            "fpr": (int((~pos & hit).sum()), int((~pos).sum())),
        }
        for name in METRICS:
            interval = wilson(*counts[name])
            out[name] = values[name]
            out[f"{name}_ci"] = list(interval) if interval else None
            out[f"{name}_of"] = counts[name][1]
        return out
    interval = wilson(int((y == pred).sum()), n)
    out["accuracy"], out["accuracy_ci"] = values["accuracy"], list(interval) if interval else None
    resampled = _metrics(y[boot], pred[boot], None, n_classes)
    for name in ("recall", "fpr"):
        out[name] = values[name]
        draws = resampled[name][np.isfinite(resampled[name])]
        out[f"{name}_ci"] = (
            [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]
            if values[name] is not None and draws.size
            else None
        )
    return out


def slice_gaps(
    y: np.ndarray,
    pred: np.ndarray,
    slices: Sequence[str],
    *,
    n_classes: int,
    positive: int | None = None,
    min_count: int = 20,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Per-slice metrics and the largest gap between judged slices per metric.

    ``positive`` is the positive class index for two classes (None: macro averages).
    Returns {slices: [...], gaps: {metric: {gap, ci, ci_level, ci_95, high, low} | None},
    measure, measure_metric, n_judged, gap_intervals: {kind, method, comparisons, level,
    draws}}. ``measure`` is the largest gap of the three (0 when
    fewer than two slices are judged).
    """
    y, pred = np.asarray(y, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    names = [str(s) for s in slices]
    if not (y.size == pred.size == len(names)):
        raise ValueError("labels, predictions and slices must have one entry per row")
    rng = np.random.default_rng(seed)
    rows = {}
    for name in sorted(set(names)):
        idx = np.array([i for i, s in enumerate(names) if s == name], dtype=np.int64)
        boot = rng.integers(0, idx.size, size=(n_boot, idx.size))
        report = _one_slice(y[idx], pred[idx], positive, n_classes, boot)
        report.update(slice=name, judged=idx.size >= min_count)
        rows[name] = (report, idx)
    judged = [name for name, (r, _) in rows.items() if r["judged"]]
    defined = {
        metric: [name for name in judged if rows[name][0][metric] is not None] for metric in METRICS
    }
    comparisons = gap_comparisons({m: len(names) for m, names in defined.items()})
    level = 1.0 - ALPHA / max(1, comparisons)
    # Ten draws beyond each end of the interval: 10 / (ALPHA / M / 2) resamples.
    needed = math.ceil(round(20 * max(1, comparisons) / ALPHA, 6))
    draws_per_gap = max(n_boot, min(MAX_GAP_DRAWS, needed))
    gaps: dict = {}
    for metric in METRICS:
        if len(defined[metric]) < 2:
            gaps[metric] = None
            continue
        gaps[metric] = _gap(
            rows, defined[metric], metric, (y, pred, positive, n_classes), rng, draws_per_gap, level
        )
    found = {m: g["gap"] for m, g in gaps.items() if g is not None}
    worst = max(found, key=found.get) if found else None
    return {
        "slices": [rows[name][0] for name in sorted(rows)],
        "gaps": gaps,
        "measure": float(found[worst]) if worst else 0.0,
        "measure_metric": worst,
        "n_judged": len(judged),
        "min_count": int(min_count),
        "n_boot": int(n_boot),
        "gap_intervals": {
            "kind": "simultaneous",
            "method": "bonferroni",
            "comparisons": comparisons,
            "level": level,
            "draws": draws_per_gap,
        },
    }


def gap_comparisons(slices_per_metric: dict[str, int]) -> int:
    """How many gaps the largest one is picked from: every pair of slices, for every metric
    that two or more slices define (the Bonferroni family of the gaps' intervals)."""
    return sum(k * (k - 1) // 2 for k in slices_per_metric.values() if k >= 2)


def _gap(rows: dict, defined: list[str], metric: str, data: tuple, rng, draws: int, level: float):
    """The gap between the two slices furthest apart in ``metric``, with its bootstrap
    intervals: simultaneous at ``level`` and per-comparison at 95 %."""
    y, pred, positive, n_classes = data
    high = max(defined, key=lambda s: rows[s][0][metric])
    low = min(defined, key=lambda s: rows[s][0][metric])
    sides = []
    for name in (high, low):
        idx = rows[name][1]
        pick = idx[rng.integers(0, idx.size, size=(draws, idx.size))]
        sides.append(_metrics(y[pick], pred[pick], positive, n_classes)[metric])
    diff = sides[0] - sides[1]
    diff = diff[np.isfinite(diff)]

    def interval(confidence: float) -> list[float] | None:
        tail = 100 * (1 - confidence) / 2
        if not diff.size:
            return None
        return [float(np.percentile(diff, tail)), float(np.percentile(diff, 100 - tail))]

    return {
        "gap": rows[high][0][metric] - rows[low][0][metric],
        "ci": interval(level),
        "ci_level": level,
        "ci_95": interval(0.95),
        "high": high,
        "low": low,
    }
