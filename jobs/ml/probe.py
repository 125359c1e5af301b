"""One candidate's scores from its features: what a probe computes once features exist.

Shared by the probe job and the benchmark, so both measure the same work.
"""

from __future__ import annotations

import numpy as np

from jobs.ml import scores


def score_features(
    features: np.ndarray, labels: np.ndarray, reference: np.ndarray, *, seed: int = 0
) -> dict[str, float]:
    """LogME, kNN and linear-probe accuracy, H-score, and MMD to a reference sample.

    Scores are computed in float64: features extracted in half precision on a
    GPU would otherwise lose the small differences LogME's evidence depends on.
    """
    x = np.asarray(features, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    return {
        "logme": float(scores.logme(x, labels)),
        "knn_accuracy": float(scores.knn_accuracy(x, labels, seed=seed)),
        "linear_probe_accuracy": float(scores.linear_probe_accuracy(x, labels, seed=seed)),
        "h_score": float(scores.h_score(x, labels)),
        "mmd": float(scores.mmd_rbf(x, ref, seed=seed)),
    }
