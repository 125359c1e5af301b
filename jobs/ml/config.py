"""The settings of a fine-tune, described once.

``SETTINGS`` names every knob a person may set: its type, its allowed range,
its label and a line of help. ``FineTuneConfig.validate`` checks a config
against it, and the launch form and the API build their fields from it, so
the three refuse exactly the same values. The defaults are the dataclass's.

Nothing here imports torch or Django: the web process reads it too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

STRATEGIES = ("head", "partial", "full", "lora")
SCHEDULES = ("linear", "cosine")

# Defaults, with where they come from:
# - strategy full with the learning rate chosen on validation: on the portal's
#   transferability benchmark (bench/transfer_truth.py: all-MiniLM-L6-v2 and
#   controls on four public text datasets) the paper defaults lost points on
#   small encoders - LoRA at 2e-4 and full at 2e-5 both stayed near the
#   majority class where a full fine-tune at 5e-5..2e-4 did not. The right
#   rate moves with model and data, so none is fixed: ``lr_search`` trains
#   half, the given and twice the given rate for one epoch each (the full
#   schedule of every one of them), keeps the one with the best validation
#   macro-F1 and continues it; the others are discarded. The centre rates:
#   full and partial 1e-4 (the search then spans 5e-5..2e-4, the upper half
#   of the standard grid {2e-5, 5e-5, 1e-4, 2e-4} where small encoders land);
#   LoRA 1e-3 (adapters learn from zero and need a larger step than full
#   weights; measured better than 2e-4 with r=8 on a 22M encoder); head only
#   1e-3, Adam's default and the rate of the Keras "Transfer learning &
#   fine-tuning" guide for a new head on a frozen base. LoRA r=8, alpha=16,
#   dropout 0.1 as Hu et al. 2021 (table 9) and QLoRA.
# - 5 epochs with the best validation epoch kept and patience 2: the grid's
#   longer setting; early stopping cuts it short when validation stops
#   improving. The search costs 2 extra epochs: at most 7 epochs in all,
#   about 2.3x one 3-epoch run.
# - warmup ratio 0.1 and linear decay: Sun et al. 2019, "How to Fine-Tune BERT
#   for Text Classification", and the BERT recipe (Devlin et al. 2019).
# - batch 16: inside the BERT grid (batch {16,32}).
# - weight decay 0.01, gradient clipping at norm 1.0: BERT's AdamW setup, also
#   transformers' Trainer default for clipping.
# - max_length 128: BERT's GLUE fine-tuning script (run_classifier.py), and the
#   length sentence encoders such as all-MiniLM-L6-v2 were trained at.
# - layer decay 1.0 (off): Sun et al. found 0.95 helps; it is one click away.
# - seed 42; partial unfreezes 2 layers.
DEFAULT_LR = {"head": 1e-3, "partial": 1e-4, "full": 1e-4, "lora": 1e-3}
# The rates ``lr_search`` tries, as multiples of the configured learning rate.
LR_SEARCH_FACTORS = (0.5, 1.0, 2.0)

# Bounds of the test and validation shares of a split, for the form, the API and the run.
SPLIT_SHARE = (0.05, 0.5)
# The shares a fine-tune gets when nobody sets them (and the probe's brief fine-tunes split by).
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1
LORA_SETTINGS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")
MAX_TARGET_MODULES = 32


class SettingError(ValueError):
    """A setting out of range; ``setting`` names it, so a form can put the message on its field."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class Setting:
    """One knob: its type and closed range [low, high], how it is labelled and explained."""

    name: str
    kind: str  # "int", "float", "bool", "choice" or "modules"
    label: str
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[tuple[str, str], ...] = ()
    # The strategies it matters for; the others ignore it.
    strategies: tuple[str, ...] = STRATEGIES

    def check(self, value: Any) -> None:
        """Raise SettingError naming the setting when ``value`` is not allowed."""
        name = self.name
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise SettingError(name, f"{self.name} must be true or false, got {value!r}")
            return
        if self.kind == "choice":
            allowed = [c for c, _ in self.choices]
            if value not in allowed:
                what = self.name.replace("_", " ")
                raise SettingError(
                    name, f"unknown {what} {value!r}; choose one of {', '.join(allowed)}"
                )
            return
        if self.kind == "modules":
            _check_modules(self.name, value)
            return
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise SettingError(name, f"{self.name} must be a whole number, got {value!r}")
            if not self.low <= value <= self.high:
                raise SettingError(
                    name, f"{self.name} must be between {self.low:g} and {self.high:g}, got {value}"
                )
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingError(name, f"{self.name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise SettingError(name, f"{self.name} must be finite")
        if not self.low <= value <= self.high:
            raise SettingError(
                name, f"{self.name} must be in [{self.low:g}, {self.high:g}], got {value!r}"
            )


def _check_modules(name: str, value: Any) -> None:
    if value is None:  # the architecture's default
        return
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise SettingError(name, f"{name} must be a non-empty list of module names")
    if len(value) > MAX_TARGET_MODULES:
        raise SettingError(name, f"{name} names at most {MAX_TARGET_MODULES} modules")
    for module in value:
        if not is_module_name(module):
            raise SettingError(
                name,
                f"{name} holds {module!r}, which is not a module name "
                "(letters, digits, '_' and '.', at most 100 characters)",
            )


def is_module_name(value: Any) -> bool:
    """A dotted Python-style module path such as ``attention.self.query``."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 100
        and value.replace("_", "a").replace(".", "a").isalnum()
        and value.isascii()
    )


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "unfreeze_layers",
        "int",
        "Layers to unfreeze",
        "Partial unfreeze: how many of the last encoder layers train with the head.",
        1,
        200,
        strategies=("partial",),
    ),
    Setting(
        "lora_r",
        "int",
        "LoRA rank r",
        "Rank of each adapter; higher adapts more and trains more parameters.",
        1,
        512,
        strategies=("lora",),
    ),
    Setting(
        "lora_alpha",
        "float",
        "LoRA alpha",
        "Scale of the adapters' update (alpha / r); commonly twice the rank.",
        0.01,
        4096,
        strategies=("lora",),
    ),
    Setting(
        "lora_dropout",
        "float",
        "LoRA dropout",
        "Dropout on the adapters' input, against overfitting small datasets.",
        0.0,
        0.9,
        strategies=("lora",),
    ),
    Setting(
        "lora_target_modules",
        "modules",
        "LoRA target modules",
        "Comma-separated module names to adapt; filled in for the base model's "
        "architecture (empty: the worker decides from the model).",
        strategies=("lora",),
    ),
    Setting(
        "learning_rate",
        "float",
        "Learning rate",
        "Peak learning rate after warm-up; the head learns at this rate.",
        1e-7,
        1.0,
    ),
    Setting(
        "layer_decay",
        "float",
        "Layer-wise learning-rate decay",
        "Each layer further from the head learns at this multiple of the one above it "
        "(1 = the same rate everywhere).",
        0.01,
        1.0,
    ),
    Setting(
        "warmup_ratio",
        "float",
        "Warm-up ratio",
        "Share of the steps over which the learning rate rises from 0 to its peak.",
        0.0,
        0.5,
    ),
    Setting(
        "schedule",
        "choice",
        "Schedule",
        "How the learning rate falls after warm-up.",
        choices=(("linear", "linear decay"), ("cosine", "cosine decay")),
    ),
    Setting(
        "lr_search",
        "bool",
        "Choose the learning rate on validation",
        "Train at half, at and at twice the learning rate for one epoch each and continue "
        "the one with the best validation macro-F1 (two extra epochs of training).",
    ),
    Setting("epochs", "int", "Epochs", "Passes over the training split (at most).", 1, 100),
    Setting("batch_size", "int", "Batch size", "Examples per forward pass.", 1, 1024),
    Setting(
        "grad_accum",
        "int",
        "Gradient accumulation",
        "Batches per optimizer step: the effective batch is batch size times this.",
        1,
        256,
    ),
    Setting(
        "weight_decay",
        "float",
        "Weight decay",
        "AdamW's decoupled weight decay (not applied to biases and norms).",
        0.0,
        1.0,
    ),
    Setting(
        "max_grad_norm",
        "float",
        "Gradient clipping",
        "Clip the gradients' overall norm to this before each step (0: no clipping).",
        0.0,
        1000.0,
    ),
    Setting(
        "label_smoothing",
        "float",
        "Label smoothing",
        "Share of the target spread over the other classes; tempers overconfidence.",
        0.0,
        0.5,
    ),
    Setting(
        "class_weights",
        "bool",
        "Weight classes",
        "Weight the loss by inverse class frequency, for imbalanced labels.",
    ),
    Setting(
        "max_length",
        "int",
        "Maximum sequence length",
        "Text only: longer texts are truncated to this many tokens.",
        8,
        8192,
    ),
    Setting(
        "patience",
        "int",
        "Early-stopping patience",
        "Stop after this many epochs without a better validation macro-F1 (0: never stop "
        "early); the best epoch's weights are kept.",
        0,
        100,
    ),
    Setting(
        "seed",
        "int",
        "Seed",
        "Fixes the split, the head's initialisation and the data order.",
        0,
        2**31 - 1,
    ),
)
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass
class FineTuneConfig:
    """Every knob of a fine-tune; ``validate`` says what is wrong in words."""

    # Full by default: on small encoders it is what reaches the grid's best
    # accuracy (see the comment on the defaults above); LoRA is one choice away.
    strategy: str = "full"
    learning_rate: float = DEFAULT_LR["full"]
    # Try LR_SEARCH_FACTORS x learning_rate for an epoch each, continue the best.
    lr_search: bool = True
    # Discriminative rates: a parameter ``d`` layers below the head trains at
    # learning_rate * layer_decay**d (the embeddings one below the first layer).
    layer_decay: float = 1.0
    warmup_ratio: float = 0.1
    schedule: str = "linear"
    epochs: int = 5
    batch_size: int = 16
    grad_accum: int = 1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    label_smoothing: float = 0.0
    # True: inverse-frequency ("balanced") weights in the training loss.
    class_weights: bool = False
    max_length: int = 128
    # Epochs without a better validation macro-F1 before stopping; 0 = never stop early.
    patience: int = 2
    seed: int = 42
    # Strategy "partial": how many of the last encoder layers train (with the head).
    unfreeze_layers: int = 2
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    # None: the per-architecture default of ``default_lora_targets``.
    lora_target_modules: list[str] | None = field(default=None)

    @classmethod
    def defaults_for(cls, strategy: str) -> FineTuneConfig:
        """The defaults, with the learning rate that suits ``strategy``."""
        if strategy not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}"
            )
        return cls(strategy=strategy, learning_rate=DEFAULT_LR[strategy])

    def search_rates(self) -> list[float]:
        """The learning rates ``lr_search`` tries, inside the setting's allowed range."""
        low, high = SETTINGS_BY_NAME["learning_rate"].low, SETTINGS_BY_NAME["learning_rate"].high
        if not self.lr_search:
            return [self.learning_rate]
        return [
            rate
            for rate in (self.learning_rate * f for f in LR_SEARCH_FACTORS)
            if low <= rate <= high
        ]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (for the run record and the model card)."""
        data = asdict(self)
        if data["lora_target_modules"] is not None:
            data["lora_target_modules"] = list(data["lora_target_modules"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FineTuneConfig:
        """The inverse of ``as_dict``; unknown keys are refused, missing ones take defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fine-tune settings: {', '.join(unknown)}")
        config = cls(**data)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError naming the first setting that is out of range."""
        if self.strategy not in STRATEGIES:
            raise SettingError(
                "strategy",
                f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}",
            )
        for setting in SETTINGS:
            setting.check(getattr(self, setting.name))
