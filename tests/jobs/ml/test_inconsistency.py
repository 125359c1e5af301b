"""Label changes between two sets of predictions, counted against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.ml.inconsistency import label_changes


def _proba(rng, n: int, classes: int) -> np.ndarray:
    raw = rng.random((n, classes))
    return raw / raw.sum(axis=1, keepdims=True)


def test_changes_confusion_and_examples_match_a_direct_count():
    rng = np.random.default_rng(3)
    n, classes = 200, 3
    y = rng.integers(0, classes, n)
    old, new = _proba(rng, n, classes), _proba(rng, n, classes)
    texts = [f"row {i}" for i in range(n)]

    found = label_changes(y, old, new, ["a", "b", "c"], texts=texts)

    a, b = old.argmax(1), new.argmax(1)
    assert found["n"] == n
    assert found["n_changed"] == int(np.sum(a != b))
    assert found["share"] == pytest.approx(np.mean(a != b))
    assert found["accuracy_old"] == pytest.approx(np.mean(a == y))
    assert found["accuracy_new"] == pytest.approx(np.mean(b == y))
    assert found["fixed"] == int(np.sum((a != y) & (b == y)))
    assert found["broken"] == int(np.sum((a == y) & (b != y)))
    for i in range(classes):
        for j in range(classes):
            assert found["confusion"][i][j] == int(np.sum((a == i) & (b == j)))
    # The diagonal is the unchanged rows.
    assert n - np.trace(np.array(found["confusion"])) == found["n_changed"]
    examples = found["examples"]
    assert len(examples) == 20
    confidences = [ex["new_confidence"] for ex in examples]
    assert confidences == sorted(confidences, reverse=True)
    for ex in examples:
        i = ex["index"]
        assert ex["text"] == texts[i]
        assert ex["old"] == "abc"[a[i]]
        assert ex["new"] == "abc"[b[i]]
        assert ex["old"] != ex["new"]
        assert ex["label"] == "abc"[y[i]]


def test_identical_predictions_change_nothing():
    rng = np.random.default_rng(0)
    p = _proba(rng, 30, 2)
    found = label_changes(rng.integers(0, 2, 30), p, p.copy(), ["x", "y"])
    assert found["n_changed"] == 0
    assert found["share"] == 0.0
    assert found["examples"] == []


def test_mismatched_inputs_are_refused():
    rng = np.random.default_rng(0)
    y = np.zeros(10, dtype=np.int64)
    with pytest.raises(ValueError, match="10 rows"):
        label_changes(y, _proba(rng, 10, 2), _proba(rng, 9, 2), ["x", "y"])
    with pytest.raises(ValueError, match="3 classes"):
        label_changes(y, _proba(rng, 10, 2), _proba(rng, 10, 2), ["x", "y", "z"])
    with pytest.raises(ValueError, match="no rows"):
        label_changes(np.zeros(0), np.zeros((0, 2)), np.zeros((0, 2)), ["x", "y"])


def test_without_labels_only_the_churn_is_counted():
    rng = np.random.default_rng(5)
    old, new = _proba(rng, 50, 3), _proba(rng, 50, 3)
    found = label_changes(None, old, new, ["a", "b", "c"])
    a, b = old.argmax(1), new.argmax(1)
    assert found["labelled"] is False
    assert found["n"] == 50
    assert found["n_changed"] == int(np.sum(a != b))
    assert (found["fixed"], found["broken"], found["accuracy_old"], found["accuracy_new"]) == (
        None,
        None,
        None,
        None,
    )
    assert all(ex["label"] is None for ex in found["examples"])
    assert all(ex["text"] == "" for ex in found["examples"])
    # Labelled, the same rows give the same churn.
    assert label_changes(a, old, new, ["a", "b", "c"])["n_changed"] == found["n_changed"]
    with pytest.raises(ValueError, match="no rows"):
        label_changes(None, np.zeros((0, 3)), np.zeros((0, 3)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="50 rows"):
        label_changes(None, old, new[:49], ["a", "b", "c"])
