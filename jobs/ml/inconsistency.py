"""Inconsistency between two versions: which inputs change their predicted label. No Django.

Two models of the same classes can score the same accuracy and still disagree
on many inputs (the "churn" of a retrain); users who act on single predictions
notice the disagreement, not the average. This counts it on one set of rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def label_changes(
    labels: np.ndarray | None,
    old: np.ndarray,
    new: np.ndarray,
    class_names: Sequence[str],
    *,
    texts: Sequence[str] | None = None,
    limit: int = 20,
) -> dict:
    """Compare the predictions of ``old`` and ``new`` ((N, C) probabilities) on the same rows.

    Returns the share of rows whose top label changes, the old -> new confusion
    (rows: old label, columns: new label), how many changes fixed or broke a
    row against ``labels``, each model's accuracy, and up to ``limit`` changed
    rows, the most confident new prediction first: those are the flips a user
    trusts and acts on. Without ``labels`` (production inputs nobody labelled)
    the fixed, broken and accuracy figures are None: only the churn is known.
    """
    old, new = np.asarray(old, dtype=np.float64), np.asarray(new, dtype=np.float64)
    y = None if labels is None else np.asarray(labels, dtype=np.int64)
    n = old.shape[0] if old.ndim == 2 else -1
    classes = len(class_names)
    if old.shape != new.shape or old.ndim != 2 or (y is not None and n != y.size):
        rows = y.size if y is not None else n
        raise ValueError(
            f"both models need (rows, classes) scores for the {rows} rows; got "
            f"{old.shape} and {new.shape}"
        )
    if old.shape[1] != classes:
        raise ValueError(f"{old.shape[1]} scores per row for {classes} classes")
    if n == 0:
        raise ValueError("there are no rows to compare on")
    a, b = old.argmax(axis=1), new.argmax(axis=1)
    changed = np.flatnonzero(a != b)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (a, b), 1)
    order = changed[np.argsort(-new[changed, b[changed]], kind="stable")]
    examples = [
        {
            "index": int(i),
            "text": str(texts[i]) if texts is not None else "",
            "label": str(class_names[y[i]]) if y is not None else None,
            "old": str(class_names[a[i]]),
            "new": str(class_names[b[i]]),
            "old_confidence": float(old[i, a[i]]),
            "new_confidence": float(new[i, b[i]]),
        }
        for i in order[:limit]
    ]
    return {
        "n": int(n),
        "n_changed": int(changed.size),
        "share": float(changed.size / n),
        "labelled": y is not None,
        **_against_labels(y, a, b),
        "classes": [str(c) for c in class_names],
        "confusion": confusion.tolist(),
        "examples": examples,
    }


def _against_labels(y: np.ndarray | None, a: np.ndarray, b: np.ndarray) -> dict:
    if y is None:
        return {"fixed": None, "broken": None, "accuracy_old": None, "accuracy_new": None}
    return {
        "fixed": int(np.sum((a != y) & (b == y))),
        "broken": int(np.sum((a == y) & (b != y))),
        "accuracy_old": float(np.mean(a == y)),
        "accuracy_new": float(np.mean(b == y)),
    }
