"""One candidate's scores from its features: what a probe computes once features exist.

Shared by the probe job and the benchmark, so both measure the same work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jobs.ml import scores


@dataclass(frozen=True)
class CandidateScores:
    """Every score of one candidate, and which examples its two probes got right.

    The per-example correctness (out of fold, in sample order) is what lets
    the ranking be compared candidate against candidate on the same examples.
    """

    values: dict[str, float]
    linear_correct: np.ndarray
    knn_correct: np.ndarray


def score_features(
    features: np.ndarray, labels: np.ndarray, reference: np.ndarray, *, seed: int = 0
) -> dict[str, float]:
    """LogME, kNN and linear-probe accuracy, H-score, and MMD to a reference sample."""
    return score_candidate(features, labels, reference, seed=seed).values


def score_candidate(
    features: np.ndarray, labels: np.ndarray, reference: np.ndarray, *, seed: int = 0
) -> CandidateScores:
    """``score_features``' numbers plus the out-of-fold correctness behind the two accuracies.

    Scores are computed in float64: features extracted in half precision on a
    GPU would otherwise lose the small differences LogME's evidence depends on.
    The accuracies are read off the same predictions the correctness comes
    from, so each probe is fitted once and the numbers equal
    ``scores.linear_probe_accuracy`` / ``scores.knn_accuracy`` exactly.
    """
    x = np.asarray(features, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    linear_predicted = scores.linear_probe_predictions(x, labels, seed=seed)
    ids = scores.validate_labels(labels)
    linear = linear_predicted == ids
    knn = scores.knn_predictions(x, labels, seed=seed) == ids
    values = {
        "logme": float(scores.logme(x, labels)),
        "knn_accuracy": int(knn.sum()) / ids.size,
        "linear_probe_accuracy": int(linear.sum()) / ids.size,
        "h_score": float(scores.h_score(x, labels)),
        "mmd": float(scores.mmd_rbf(x, ref, seed=seed)),
    }
    return CandidateScores(values=values, linear_correct=linear, knn_correct=knn)


def pack_correct(correct: np.ndarray) -> bytes:
    """Per-example right/wrong as bits: 2.5 KB for the 20,000 examples a probe may sample."""
    return np.packbits(np.asarray(correct, dtype=bool)).tobytes()


def unpack_correct(packed: bytes, n: int) -> np.ndarray:
    """The boolean array ``pack_correct`` packed, given its length; ValueError if it is not that."""
    if len(packed) != (n + 7) // 8:
        raise ValueError(f"{len(packed)} packed bytes cannot hold exactly {n} examples.")
    bits = np.unpackbits(np.frombuffer(bytes(packed), dtype=np.uint8), count=n)
    return bits.astype(bool)
