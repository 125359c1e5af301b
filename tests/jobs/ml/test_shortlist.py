"""The probe's second stage on its own: subsamples, a brief fine-tune, successive halving."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.ml.shortlist import (
    BriefResult,
    BriefSettings,
    brief_finetune,
    stratified_subsample,
    successive_halving,
)
from tests.builders.datasets import keyword_rows
from tests.builders.weights import tiny_bert


def test_a_subsample_keeps_the_class_shares_and_depends_on_the_seed_alone():
    labels = np.array([0] * 90 + [1] * 30 + [2] * 5)

    picked = stratified_subsample(labels, 41, seed=3)

    assert picked.size == 41
    assert len(set(picked.tolist())) == 41
    counts = np.bincount(labels[picked], minlength=3)
    # 72 %, 24 %, 4 % of 41 = 29.5, 9.8, 1.6: the two largest remainders round up.
    assert counts.tolist() == [29, 10, 2]
    assert np.array_equal(picked, stratified_subsample(labels, 41, seed=3))
    assert not np.array_equal(picked, stratified_subsample(labels, 41, seed=4))
    assert np.array_equal(stratified_subsample(labels, 500, seed=3), np.arange(125))


@pytest.mark.parametrize(
    ("labels", "rows", "message"),
    [
        ([], 10, "empty"),
        ([0, 1, 2, 3], 1, "at least 2 rows"),
        ([0, 1, 2, 3, 4], 3, "all 5 classes"),
    ],
)
def test_a_subsample_that_cannot_be_drawn_says_why(labels, rows, message):
    with pytest.raises(ValueError, match=message):
        stratified_subsample(np.array(labels, dtype=int), rows, seed=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rows": 1}, "rows must be between 2"),
        ({"epochs": 0}, "epochs must be between 1"),
        ({"epochs": 1.5}, "epochs must be a whole number"),
        ({"learning_rate": -1.0}, "learning_rate must be in"),
    ],
)
def test_bad_settings_are_refused_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        BriefSettings(**change).validate()


@pytest.fixture(scope="module")
def keyword_data():
    rows = keyword_rows(80, seed=1)
    texts = [r["message"] for r in rows]
    y = np.array([["cat", "dog"].index(r["label"]) for r in rows])
    return (texts[:60], y[:60]), (texts[60:], y[60:])


def test_a_brief_fine_tune_is_scored_on_validation_and_repeats_exactly(tmp_path, keyword_data):
    model = tiny_bert(tmp_path / "bert", seed=0)
    train, val = keyword_data
    settings = BriefSettings(rows=40, epochs=2, learning_rate=5e-4, batch_size=8, max_length=16)

    first = brief_finetune(model, "text", ["cat", "dog"], train, val, settings)
    again = brief_finetune(model, "text", ["cat", "dog"], train, val, settings)

    assert first.train_rows == 40
    assert first.epochs == 2
    assert 0.0 <= first.val_accuracy <= 1.0
    # Accuracy on 20 validation rows comes in twentieths.
    assert first.val_accuracy * 20 == pytest.approx(round(first.val_accuracy * 20))
    assert first.cpu_seconds > 0
    assert first.wall_seconds > 0
    assert (first.val_accuracy, first.val_macro_f1) == (again.val_accuracy, again.val_macro_f1)


def test_a_brief_fine_tune_refuses_mismatched_rows(tmp_path, keyword_data):
    model = tiny_bert(tmp_path / "bert", seed=0)
    (texts, y), val = keyword_data
    with pytest.raises(ValueError, match="60 inputs for 59 labels"):
        brief_finetune(model, "text", ["cat", "dog"], (texts, y[:-1]), val, BriefSettings())


def _result(accuracy: float, epochs: int) -> BriefResult:
    return BriefResult(
        val_accuracy=accuracy,
        val_macro_f1=accuracy,
        train_rows=100,
        epochs=epochs,
        cpu_seconds=float(epochs),
        wall_seconds=float(epochs),
    )


def test_halving_keeps_the_better_half_and_doubles_the_epochs():
    # Accuracy grows with training; "c" learns slowly but ends best, "e" never learns.
    curves = {"a": 0.80, "b": 0.70, "c": 0.60, "d": 0.75, "e": 0.30}
    growth = {"a": 0.0, "b": 0.01, "c": 0.15, "d": 0.02, "e": 0.0}
    calls = []

    def score(name: str, settings: BriefSettings) -> BriefResult:
        calls.append((name, settings.epochs))
        return _result(curves[name] + growth[name] * settings.epochs, settings.epochs)

    result = successive_halving(["a", "b", "c", "d", "e"], score, BriefSettings(epochs=1))

    assert [(epochs, sorted(by_name)) for epochs, by_name in result.rounds] == [
        (1, ["a", "b", "c", "d", "e"]),
        (2, ["a", "c", "d"]),
        (4, ["a", "c"]),
    ]
    # 1 epoch: a .80, d .77, c .75 go on; 2 epochs: c .90, a .80 go on; 4 epochs: c wins.
    assert result.order == ["c", "a", "d", "b", "e"]
    assert len(calls) == 10
    assert result.cpu_seconds == 5 * 1 + 3 * 2 + 2 * 4


def test_halving_breaks_ties_by_the_given_order_and_refuses_bad_input():
    flat = successive_halving(["x", "y", "z"], lambda n, s: _result(0.5, s.epochs), BriefSettings())
    assert flat.order == ["x", "y", "z"]
    with pytest.raises(ValueError, match="at least one candidate"):
        successive_halving([], lambda n, s: _result(0.5, 1), BriefSettings())
    with pytest.raises(ValueError, match="twice"):
        successive_halving(["x", "x"], lambda n, s: _result(0.5, 1), BriefSettings())
    with pytest.raises(ValueError, match="keep must be"):
        successive_halving(["x"], lambda n, s: _result(0.5, 1), BriefSettings(), keep=1.0)
