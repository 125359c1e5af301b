"""Train / test / validation splits: stratified, by time, and the validation carve-out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from jobs.ml.splits import carve_validation, stratified_split, time_split


def test_stratified_split_keeps_every_class_on_both_sides():
    labels = np.array([0] * 50 + [1] * 8 + [2] * 2)
    train, test = stratified_split(labels, test_fraction=0.2, seed=3)
    assert np.intersect1d(train, test).size == 0
    assert np.union1d(train, test).tolist() == list(range(60))
    assert np.bincount(labels[test]).tolist() == [10, 2, 1]
    assert set(labels[train]) == {0, 1, 2}
    again = stratified_split(labels, test_fraction=0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, test), again, strict=True))
    other = stratified_split(labels, test_fraction=0.2, seed=4)
    assert not np.array_equal(test, other[1])


def test_stratified_split_refuses_a_class_with_one_row():
    with pytest.raises(ValueError, match=r"single row.*'rare'"):
        stratified_split(np.array(["a", "a", "b", "b", "rare"]))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        stratified_split(np.array([0, 0, 1, 1]), test_fraction=1.0)


def test_time_split_trains_on_the_past_and_tests_on_the_future():
    start = datetime(2024, 1, 1, tzinfo=UTC)
    times = [(start + timedelta(days=d)).isoformat() for d in (9, 0, 8, 1, 7, 2, 6, 3, 5, 4)]
    labels = np.array([0, 1] * 5)
    train, test = time_split(times, labels, test_fraction=0.3)
    assert test.tolist() == [0, 2, 4]  # days 9, 8 and 7
    assert max(times[i] for i in train) < min(times[i] for i in test)
    # datetime objects and dates work alike.
    as_objects = [datetime.fromisoformat(t) for t in times]
    assert np.array_equal(time_split(as_objects, labels, test_fraction=0.3)[1], test)


def test_time_split_keeps_ties_on_one_side():
    times = ["2024-01-01", "2024-01-02", "2024-01-02", "2024-01-02", "2024-01-03"]
    train, test = time_split(times, np.array([0, 1, 0, 1, 0]), test_fraction=0.5)
    assert train.tolist() == [0, 1, 2, 3]
    assert test.tolist() == [4]


def test_time_split_refuses_a_class_that_only_appears_later():
    times = [f"2024-01-{d:02d}" for d in range(1, 11)]
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 2, 2])
    with pytest.raises(ValueError, match=r"occur only after 2024-01-08.*2"):
        time_split(times, labels, test_fraction=0.2)


@pytest.mark.parametrize(
    ("times", "message"),
    [
        (["2024-01-01", "yesterday", "2024-01-03"], "row 1 has a time that is not an ISO 8601"),
        (["2024-01-01", None, "2024-01-03"], "row 1 has no time"),
        (["2024-01-01T00:00:00+00:00", "2024-01-02", "2024-01-03"], "carry a time zone"),
        (["2024-01-01", "2024-01-02"], "3 labels"),
    ],
)
def test_time_split_explains_bad_times(times, message):
    with pytest.raises(ValueError, match=message):
        time_split(times, np.array([0, 1, 0]))


def test_carve_validation_is_a_stratified_subset_of_train():
    labels = np.array([0] * 40 + [1] * 20 + [2] * 1 + [3] * 3)
    train = np.arange(8, 64)  # rows 0-7 went to the test split
    kept, val = carve_validation(train, labels, fraction=0.25, seed=1)
    assert np.intersect1d(kept, val).size == 0
    assert np.union1d(kept, val).tolist() == train.tolist()
    # round(32 / 4), round(20 / 4); the single class-2 row stays in training; at least one.
    assert np.bincount(labels[val], minlength=4).tolist() == [8, 5, 0, 1]
    assert 60 in kept
    with pytest.raises(ValueError, match="outside"):
        carve_validation(np.array([0, 100]), labels)
    with pytest.raises(ValueError, match="no class has two or more"):
        carve_validation(np.array([0, 60]), labels)
