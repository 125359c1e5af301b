"""Slice gaps with intervals, on predictions whose gap is planted."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.ml.slices import gap_comparisons, slice_gaps, wilson


def test_wilson_matches_the_textbook_interval():
    # 8 of 10: Wilson 95 % interval (0.4902, 0.9433), as tabulated (Newcombe 1998).
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0) is None
    assert wilson(0, 5)[0] == 0.0


def test_a_planted_gap_between_two_slices_is_found_with_its_interval():
    rng = np.random.default_rng(0)
    n = 200
    y = rng.integers(0, 2, size=2 * n)
    slices = ["north"] * n + ["south"] * n + ["tiny"] * 5
    y = np.concatenate([y, [1, 0, 1, 0, 1]])
    pred = y.copy()
    # South: every fourth row wrong; north: right. Tiny: all wrong, but too small to judge.
    wrong = np.arange(n, 2 * n)[::4]
    pred[wrong] = 1 - pred[wrong]
    pred[-5:] = 1 - pred[-5:]
    found = slice_gaps(y, pred, slices, n_classes=2, positive=1, min_count=20, n_boot=500)
    by = {row["slice"]: row for row in found["slices"]}
    assert by["north"]["accuracy"] == 1.0
    assert by["south"]["accuracy"] == pytest.approx(0.75)
    assert by["tiny"]["judged"] is False
    assert by["tiny"]["accuracy"] == 0.0
    gap = found["gaps"]["accuracy"]
    assert (gap["high"], gap["low"]) == ("north", "south")
    assert gap["gap"] == pytest.approx(0.25)
    assert gap["ci"][0] < 0.25 < gap["ci"][1]
    assert gap["ci"][0] > 0.1
    assert found["measure"] >= 0.25
    assert found["n_judged"] == 2
    # Recall and FPR are those of the positive class, with counts behind the interval.
    south = by["south"]
    positives = int((y[n : 2 * n] == 1).sum())
    assert south["recall_of"] == positives
    assert south["recall_ci"][0] <= south["recall"] <= south["recall_ci"][1]


def test_no_gap_when_slices_behave_alike_and_macro_for_three_classes():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=600)
    pred = np.where(rng.random(600) < 0.8, y, (y + 1) % 3)
    slices = np.array(["a", "b", "c"])[rng.integers(0, 3, size=600)]
    found = slice_gaps(y, pred, slices, n_classes=3, n_boot=300)
    assert found["measure"] < 0.15
    for metric in ("accuracy", "recall", "fpr"):
        gap = found["gaps"][metric]
        assert gap["ci"][0] <= gap["gap"] <= gap["ci"][1] + 1e-9
    row = found["slices"][0]
    assert row["recall_ci"][0] <= row["recall"] <= row["recall_ci"][1]


def test_one_judged_slice_has_no_gap():
    found = slice_gaps([0, 1] * 15, [0, 1] * 15, ["a"] * 30, n_classes=2, positive=1)
    assert found["gaps"] == {"accuracy": None, "recall": None, "fpr": None}
    assert found["measure"] == 0.0


def test_the_gaps_intervals_are_bonferroni_simultaneous_over_metrics_and_slice_pairs():
    # Hand count: three slices define accuracy and recall (3 pairs each), two define the
    # false-positive rate (1 pair), a metric one slice defines is no comparison.
    assert gap_comparisons({"accuracy": 3, "recall": 3, "fpr": 2}) == 7
    assert gap_comparisons({"accuracy": 4, "recall": 1, "fpr": 0}) == 6
    assert gap_comparisons({"accuracy": 1}) == 0

    rng = np.random.default_rng(1)
    n = 120
    slices = ["a"] * n + ["b"] * n + ["c"] * n
    y = rng.integers(0, 2, size=3 * n)
    pred = y.copy()
    pred[n : 2 * n : 5] = 1 - pred[n : 2 * n : 5]  # b: one row in five wrong
    pred[2 * n :: 3] = 1 - pred[2 * n :: 3]  # c: one in three
    found = slice_gaps(y, pred, slices, n_classes=2, positive=1, min_count=20, n_boot=500)
    family = found["gap_intervals"]
    # Three judged slices, three metrics: 3 x 3 = 9 comparisons, each at 1 - 0.05 / 9.
    assert family["kind"] == "simultaneous"
    assert family["method"] == "bonferroni"
    assert family["comparisons"] == 9
    assert family["level"] == pytest.approx(0.994444, abs=1e-6)
    # Ten draws beyond each end: 10 / (0.05 / 9 / 2) = 3,600 resamples, more than n_boot.
    assert family["draws"] == 3600
    gap = found["gaps"]["accuracy"]
    assert (gap["high"], gap["low"]) == ("a", "c")
    assert gap["ci_level"] == family["level"]
    # The simultaneous interval holds the per-comparison 95 % one, and is wider.
    assert gap["ci"][0] < gap["ci_95"][0] <= gap["gap"] <= gap["ci_95"][1] < gap["ci"][1]

    # Two slices and a single metric's worth of comparisons: no wider than needed.
    two = slice_gaps(y[: 2 * n], pred[: 2 * n], slices[: 2 * n], n_classes=2, positive=1)
    assert two["gap_intervals"]["comparisons"] == 3
    assert two["gap_intervals"]["level"] == pytest.approx(1 - 0.05 / 3)
