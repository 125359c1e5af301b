"""Train / test / validation splits for fine-tuning, as row indices into the data set.

Every function returns sorted ``np.int64`` index arrays into the caller's rows
and raises ``ValueError`` with a message a person can act on when the data
cannot be split the way that was asked (a class too small to appear on both
sides, a class that only appears after the time cut ...). Nothing here imports
Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import numpy as np

__all__ = ["carve_validation", "stratified_split", "time_split"]


def _labels(labels: np.ndarray) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError("there are no rows to split")
    return array


def _fraction(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def _names(values: Sequence[object], limit: int = 5) -> str:
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _per_class_take(count: int, fraction: float) -> int:
    """Rows of a class of ``count`` that go to the smaller side: at least 1, never all."""
    return min(max(1, round(count * fraction)), count - 1)


def stratified_split(
    labels: np.ndarray, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, test_idx): a random split that keeps every class on both sides.

    Each class contributes ``round(count * test_fraction)`` rows to the test
    side, at least one and never all of them, so a class with two rows puts
    one on each side. A class with a single row cannot be on both sides:
    ValueError names it (merge it, drop it, or upload a separate test file).
    The same labels and seed always give the same split.
    """
    y = _labels(labels)
    fraction = _fraction(test_fraction, "test_fraction")
    classes, counts = np.unique(y, return_counts=True)
    single = classes[counts < 2]
    if single.size:
        raise ValueError(
            f"{single.size} class(es) have a single row and cannot appear in both the training "
            f"and the test split: {_names(list(single))}. Add rows, drop or merge those classes, "
            "or upload a separate test file."
        )
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for cls, count in zip(classes, counts, strict=True):
        rows = rng.permutation(np.flatnonzero(y == cls))
        test.append(rows[: _per_class_take(int(count), fraction)])
    test_idx = np.sort(np.concatenate(test)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(y.size, dtype=np.int64), test_idx)
    return train_idx, test_idx


def _as_datetime(value: object, row: int) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)  # noqa: DTZ001 - compared as given
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        raise ValueError(f"row {row} has no time; every row needs one for a split by time")
    raise ValueError(
        f"row {row} has a time that is not an ISO 8601 date or date-time: {value!r} "
        "(expected for example 2024-03-01 or 2024-03-01T12:30:00+00:00)"
    )


def time_split(
    times: Sequence[str | datetime],
    labels: np.ndarray,
    *,
    test_fraction: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, test_idx): train on the earlier rows, test on the later ones.

    The cut falls after the ``1 - test_fraction`` share of rows in time order;
    rows sharing the timestamp of the last training row stay in training, so
    no moment is on both sides (the test side may come out a little smaller
    than asked). Times are ``datetime``/``date`` objects or ISO 8601 strings;
    all must carry a time zone or none. ValueError when a class would be
    missing from training (it only occurs after the cut): a model cannot
    learn it, and the test would measure that, not the model.
    """
    y = _labels(labels)
    fraction = _fraction(test_fraction, "test_fraction")
    if len(times) != y.size:
        raise ValueError(f"{len(times)} times for {y.size} labels: one time per row is needed")
    if y.size < 2:
        raise ValueError("a split by time needs at least two rows")
    parsed = [_as_datetime(value, row) for row, value in enumerate(times)]
    aware = {moment.tzinfo is not None and moment.utcoffset() is not None for moment in parsed}
    if len(aware) > 1:
        raise ValueError(
            "some times carry a time zone and others do not; they cannot be ordered. "
            "Give every time a zone (for example +00:00) or none."
        )
    order = sorted(range(y.size), key=lambda i: (parsed[i], i))
    n_train = y.size - min(max(1, round(y.size * fraction)), y.size - 1)
    cut = parsed[order[n_train - 1]]
    train_idx = np.array(sorted(i for i in order if parsed[i] <= cut), dtype=np.int64)
    test_idx = np.array(sorted(i for i in order if parsed[i] > cut), dtype=np.int64)
    if test_idx.size == 0:
        raise ValueError(
            f"every row from the cut on shares the time {cut.isoformat()}; a split by time "
            "needs later rows to test on"
        )
    missing = np.setdiff1d(np.unique(y), np.unique(y[train_idx]))
    if missing.size:
        raise ValueError(
            f"{missing.size} class(es) occur only after {cut.isoformat()} and would be missing "
            f"from training: {_names(list(missing))}. Use a stratified split, a smaller "
            "test_fraction, or more early rows of those classes."
        )
    return train_idx, test_idx


def carve_validation(
    train_idx: np.ndarray, labels: np.ndarray, *, fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): a stratified validation set taken out of ``train_idx``.

    ``labels`` is the label array of the whole data set (the one the split
    functions above were given); ``train_idx`` indexes into it, and both
    returned arrays are subsets of ``train_idx``. Classes with at least two
    training rows give ``round(count * fraction)`` of them (at least one,
    never all); a class with a single training row keeps it for training, so
    validation (used for early stopping) may miss the rarest classes.
    """
    y = _labels(labels)
    frac = _fraction(fraction, "fraction")
    rows = np.asarray(train_idx)
    if rows.ndim != 1 or rows.size == 0:
        raise ValueError("train_idx must be a non-empty one-dimensional index array")
    if not np.issubdtype(rows.dtype, np.integer):
        raise ValueError("train_idx must hold integer row indices")
    if rows.min() < 0 or rows.max() >= y.size:
        raise ValueError(f"train_idx points outside the {y.size} labelled rows")
    if np.unique(rows).size != rows.size:
        raise ValueError("train_idx repeats rows")
    rng = np.random.default_rng(seed)
    sub = y[rows]
    val: list[np.ndarray] = []
    for cls in np.unique(sub):
        members = rows[sub == cls]
        if members.size >= 2:
            val.append(rng.permutation(members)[: _per_class_take(members.size, frac)])
    if not val:
        raise ValueError(
            "no class has two or more training rows, so no validation set can be carved out"
        )
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    kept = np.setdiff1d(rows, val_idx).astype(np.int64)
    return kept, val_idx
