"""The probe's second stage: score candidates by a brief fine-tune, and successive halving.

Transferability scores read frozen features; what a user wants to know is
how well a model does once fine-tuned. Near the top of a ranking the scores
are often within noise of each other, so the shortlist they give is checked
the direct way: a full fine-tune through the portal's own runner
(``finetune.finetune``) on a stratified subsample of the training rows, for
an epoch or two at one fixed learning rate, scored on validation rows only.
The test rows never reach this module: every choice here is made on
validation, so the test split stays a clean estimate for the model chosen.

``successive_halving`` spends a budget on the candidates that earn it
(Jamieson & Talwalkar 2016): every candidate gets the brief run, the better
half gets a run twice as long, and so on until one is left. The budget that
doubles is the number of epochs over the same subsample, so a later round
sees the same rows for longer; rows and seed stay fixed so that results are
reproducible and comparable between candidates.

Nothing here imports Django.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .config import SETTINGS_BY_NAME, FineTuneConfig

__all__ = [
    "BriefResult",
    "BriefSettings",
    "HalvingResult",
    "brief_finetune",
    "stratified_subsample",
    "successive_halving",
]

MAX_ROWS = 100_000
MAX_EPOCHS = 20


@dataclass(frozen=True)
class BriefSettings:
    """How long and on how much data one brief fine-tune trains.

    The defaults were chosen on one dataset of ``bench/transfer_shortlist.py``
    (debian_sections; four settings tried, see its docstring) and then run
    unchanged on the other three: a brief run needs a larger step than a full
    one (at 2e-4 and batch 16 one epoch leaves even the best encoder near the
    majority class) and batch 8 doubles the steps for the same rows.
    """

    rows: int = 256
    epochs: int = 1
    learning_rate: float = 5e-4
    batch_size: int = 8
    max_length: int = 128
    seed: int = 42

    def validate(self) -> None:
        """Raise ValueError naming the setting that is out of range."""
        for name, low, high in (
            ("rows", 2, MAX_ROWS),
            ("epochs", 1, MAX_EPOCHS),
            ("batch_size", 1, 1024),
            ("max_length", 8, 8192),
            ("seed", 0, 2**31 - 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"brief fine-tune {name} must be a whole number, got {value!r}")
            if not low <= value <= high:
                raise ValueError(
                    f"brief fine-tune {name} must be between {low} and {high}, got {value}"
                )
        SETTINGS_BY_NAME["learning_rate"].check(self.learning_rate)

    def config(self) -> FineTuneConfig:
        """The runner's config: a plain full fine-tune, no search, no early stop."""
        return FineTuneConfig(
            strategy="full",
            learning_rate=self.learning_rate,
            lr_search=False,
            epochs=self.epochs,
            batch_size=self.batch_size,
            max_length=self.max_length,
            patience=0,
            seed=self.seed,
        )

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BriefResult:
    """What one brief fine-tune of one candidate measured, on validation rows."""

    val_accuracy: float
    val_macro_f1: float
    train_rows: int
    epochs: int
    cpu_seconds: float
    wall_seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class HalvingResult:
    """The rounds of a successive halving and the order they give.

    ``rounds`` holds, per round, the epochs trained and {name: BriefResult}
    of the candidates that ran it; ``order`` is best first: candidates that
    survived longer rank higher, within a round by that round's result.
    """

    rounds: list[tuple[int, dict[str, BriefResult]]]
    order: list[str]

    @property
    def cpu_seconds(self) -> float:
        return sum(r.cpu_seconds for _, by_name in self.rounds for r in by_name.values())


def stratified_subsample(labels: Sequence[int], rows: int, *, seed: int) -> np.ndarray:
    """Sorted indices of at most ``rows`` rows with the classes' shares, at least one per class.

    All rows when there are no more than ``rows``. The draw depends on the
    seed alone, so every candidate trains on the same rows.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError("the training split is empty")
    if rows < 2:
        raise ValueError(f"a subsample needs at least 2 rows, got {rows}")
    if y.size <= rows:
        return np.arange(y.size)
    classes, counts = np.unique(y, return_counts=True)
    if classes.size > rows:
        raise ValueError(
            f"a subsample of {rows} rows cannot hold all {classes.size} classes; ask for more rows"
        )
    take = np.maximum(1, np.floor(counts * rows / y.size).astype(int))
    # Hand the rows lost to rounding down to the classes with the largest remainders.
    remainder = counts * rows / y.size - np.floor(counts * rows / y.size)
    for index in np.argsort(-remainder, kind="stable"):
        if take.sum() >= rows:
            break
        if take[index] < counts[index]:
            take[index] += 1
    while take.sum() > rows:
        take[int(np.argmax(take))] -= 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(y == label), size=int(n), replace=False)
        for label, n in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def brief_finetune(
    model_dir: Path,
    modality: str,
    class_names: list[str],
    train: tuple[list, Sequence[int]],
    val: tuple[list, Sequence[int]],
    settings: BriefSettings,
    *,
    device: str = "cpu",
    on_step: Callable[[int, int, float], None] | None = None,
) -> BriefResult:
    """Fine-tune ``model_dir`` briefly on a subsample of ``train``; its accuracy on ``val``.

    The accuracy is that of the epoch the runner keeps (best validation
    macro-F1). The weights are thrown away: only the number matters. Cost is
    the process's CPU seconds (all threads) and wall seconds, loading and
    saving included, as a probe would pay them.
    """
    settings.validate()
    inputs, labels = train
    y = np.asarray(labels)
    if len(inputs) != y.size:
        raise ValueError(f"train: {len(inputs)} inputs for {y.size} labels")
    keep = stratified_subsample(y, settings.rows, seed=settings.seed)
    subsample = ([inputs[i] for i in keep], y[keep])
    val_inputs, val_labels = val
    from .finetune import finetune

    began_cpu, began_wall = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="brief-") as work:
        result = finetune(
            Path(model_dir),
            modality,
            class_names,
            subsample,
            (list(val_inputs), np.asarray(val_labels)),
            settings.config(),
            work_dir=Path(work),
            device=device,
            on_step=on_step,
        )
    # The curves also hold training-loss points; the epoch entries carry the validation.
    (kept,) = [
        c for c in result.curves if c.get("epoch") == result.best_epoch and "val_accuracy" in c
    ]
    return BriefResult(
        val_accuracy=float(kept["val_accuracy"]),
        val_macro_f1=float(kept["val_macro_f1"]),
        train_rows=int(keep.size),
        epochs=settings.epochs,
        cpu_seconds=time.process_time() - began_cpu,
        wall_seconds=time.perf_counter() - began_wall,
    )


def _better(scores: Mapping[str, BriefResult], names: Sequence[str]) -> list[str]:
    """``names`` best first: validation accuracy, then macro-F1, then the given order."""
    position = {name: i for i, name in enumerate(names)}
    return sorted(
        names,
        key=lambda n: (-scores[n].val_accuracy, -scores[n].val_macro_f1, position[n]),
    )


def successive_halving(
    names: Sequence[str],
    score: Callable[[str, BriefSettings], BriefResult],
    settings: BriefSettings,
    *,
    keep: float = 0.5,
) -> HalvingResult:
    """Brief-fine-tune every candidate, keep the better part, double the epochs, repeat.

    ``names`` in the order ties should break (the stage-1 ranking, best
    first); ``score(name, settings)`` runs one brief fine-tune (for instance
    ``brief_finetune`` bound to the data) so a caller can cache or report
    each run. Each round keeps ``ceil(keep * n)`` candidates, and ends
    when one is left or the epochs would exceed ``MAX_EPOCHS``.
    """
    settings.validate()
    names = list(names)
    if not names:
        raise ValueError("successive halving needs at least one candidate")
    if len(set(names)) != len(names):
        raise ValueError("successive halving got the same candidate twice")
    if not 0 < keep < 1:
        raise ValueError(f"keep must be a share strictly between 0 and 1, got {keep}")
    rounds: list[tuple[int, dict[str, BriefResult]]] = []
    alive, epochs, order = names, settings.epochs, []
    while True:
        results = {name: score(name, replace(settings, epochs=epochs)) for name in alive}
        rounds.append((epochs, results))
        ranked = _better(results, alive)
        survivors = ranked[: math.ceil(keep * len(ranked))]
        if len(survivors) == 1 or epochs * 2 > MAX_EPOCHS:
            return HalvingResult(rounds=rounds, order=ranked + order)
        order = ranked[len(survivors) :] + order
        alive, epochs = [n for n in names if n in survivors], epochs * 2
