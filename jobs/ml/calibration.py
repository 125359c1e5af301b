"""Temperature scaling and a decision threshold chosen on validation: plain numpy / scipy.

``fit_temperature`` finds the single temperature T that minimises the negative
log-likelihood of ``softmax(logits / T)`` on a validation split (Guo et al.
2017); it changes confidences, never which class is predicted.
``choose_threshold`` picks, for a binary task, the score cut-off on validation
that reaches a target recall (sensitivity) or precision, and ``binary_rates``
says what that cut-off gives on another split. Nothing here imports Django.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "apply_temperature",
    "binary_rates",
    "choose_threshold",
    "fit_temperature",
    "logits_from_proba",
]

# T is searched over exp([-LOG_T_BOUND, LOG_T_BOUND]), i.e. about 0.05 to 20.
LOG_T_BOUND = 3.0


def _checked(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(y)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"logits must be a non-empty (rows, classes) array, got {z.shape}")
    if labels.shape != (z.shape[0],):
        raise ValueError(f"{labels.size} labels for {z.shape[0]} rows of logits")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("labels must be integer class indices")
    if labels.min() < 0 or labels.max() >= z.shape[1]:
        raise ValueError(f"a label lies outside 0..{z.shape[1] - 1}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits hold NaN or infinite values")
    return z, labels.astype(np.int64)


def logits_from_proba(proba: np.ndarray, *, floor: float = 1e-12) -> np.ndarray:
    """Log-probabilities: logits up to a per-row constant, which softmax ignores."""
    p = np.asarray(proba, dtype=np.float64)
    return np.log(np.clip(p, floor, 1.0))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T), computed stably."""
    if not temperature > 0:
        raise ValueError(f"the temperature must be positive, got {temperature!r}")
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(y.size), y]))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 minimising mean NLL of softmax(logits / T) on (logits, y).

    A bounded one-dimensional search over log T (scipy's Brent method); the
    NLL is convex in 1/T, so the minimum found is the minimum.
    """
    from scipy.optimize import minimize_scalar

    z, labels = _checked(logits, y)
    found = minimize_scalar(
        lambda log_t: _nll(z, labels, float(np.exp(log_t))),
        bounds=(-LOG_T_BOUND, LOG_T_BOUND),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(found.x))


def binary_rates(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float | None]:
    """Recall, precision, specificity and the share flagged when ``score >= threshold``.

    ``y`` holds 1 for the positive class, 0 otherwise. A rate whose denominator
    is zero is None (no positives: recall is undefined).
    """
    truth = np.asarray(y).astype(bool)
    flagged = np.asarray(score, dtype=np.float64) >= threshold
    tp = int(np.sum(flagged & truth))
    fp = int(np.sum(flagged & ~truth))
    fn = int(np.sum(~flagged & truth))
    tn = int(np.sum(~flagged & ~truth))
    return {
        "recall": tp / (tp + fn) if tp + fn else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
        "flagged": float(np.mean(flagged)) if truth.size else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def choose_threshold(
    y: np.ndarray, score: np.ndarray, *, target: str = "recall", value: float = 0.95
) -> dict:
    """The cut-off on ``score`` that reaches ``target`` >= ``value`` on these rows.

    For recall: the highest cut-off whose recall still reaches the value (so
    as few rows as possible are flagged). For precision: the lowest cut-off
    whose precision reaches it (so as many positives as possible are kept).
    Candidates are the scores themselves. Returns {threshold, reached, and the
    rates at it}; when no cut-off reaches the value, ``reached`` is False and
    the cut-off is the one that comes closest.
    """
    if target not in ("recall", "precision"):
        raise ValueError(f"target must be 'recall' or 'precision', got {target!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"the target {target} must be in (0, 1], got {value!r}")
    truth = np.asarray(y).astype(np.int64)
    s = np.asarray(score, dtype=np.float64)
    if truth.shape != s.shape or truth.ndim != 1 or truth.size == 0:
        raise ValueError("y and score must be non-empty one-dimensional arrays of one length")
    if not truth.any():
        raise ValueError("there is no positive row to reach a recall or precision on")
    candidates = np.unique(s)[::-1]  # high to low: flagging grows as the cut-off falls
    best, best_gap = None, None
    for cut in candidates:
        rates = binary_rates(truth, s, float(cut))
        got = rates[target]
        if got is None:
            continue
        if got >= value:
            if target == "recall":
                return {"threshold": float(cut), "reached": True, **rates}
            best = {"threshold": float(cut), "reached": True, **rates}  # keep lowering
            best_gap = 0.0
            continue
        gap = value - got
        if best_gap is None or (gap < best_gap and not (best and best["reached"])):
            best, best_gap = {"threshold": float(cut), "reached": False, **rates}, gap
    assert best is not None  # the lowest cut-off flags every row, so recall is 1
    return best
