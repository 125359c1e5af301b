"""Whether a fine-tune beat its no-transfer baseline, in one sentence (no heavy imports:
the pages call it)."""

from __future__ import annotations

# Below this macro-F1 gap the transfer is within the noise of a small test split.
LITTLE_GAIN = 0.02
# The head-only probe every fine-tune is scored beside (``evaluate.frozen_probe``).
FROZEN_HEAD_METHOD = "logistic regression on the base model's frozen features"


def transfer_verdict(metrics: dict, baseline: dict) -> str:
    """One sentence on whether the pretrained model earned its place over the baseline."""
    try:
        tuned, base = float(metrics["macro_f1"]), float(baseline["macro_f1"])
    except (KeyError, TypeError, ValueError):
        return ""
    method = baseline.get("method") or "the baseline"
    if base >= tuned:
        return (
            f"{method} {base:.3f} vs fine-tune {tuned:.3f} (test macro-F1): transfer adds "
            "nothing here; consider a head-only fine-tune or the baseline itself."
        )
    if tuned - base < LITTLE_GAIN:
        return (
            f"Fine-tune {tuned:.3f} vs {method} {base:.3f} (test macro-F1): within "
            f"{LITTLE_GAIN:.2f}, transfer adds little here; the baseline is cheaper to run."
        )
    return (
        f"Fine-tune {tuned:.3f} vs {method} {base:.3f} (test macro-F1): the pretrained "
        f"model adds {tuned - base:.3f}."
    )


def frozen_verdict(metrics: dict, frozen: dict) -> str:
    """One sentence on whether fine-tuning beat a linear head on the base's frozen features."""
    try:
        tuned, probe = float(metrics["macro_f1"]), float(frozen["macro_f1"])
    except (KeyError, TypeError, ValueError):
        return ""
    if probe - tuned > LITTLE_GAIN:
        return (
            f"Fine-tune {tuned:.3f} vs a linear head on the frozen base features {probe:.3f} "
            "(test macro-F1): the fine-tune fell below what the base already knew; try head "
            "only, more epochs or a higher learning rate."
        )
    if tuned - probe < LITTLE_GAIN:
        return (
            f"Fine-tune {tuned:.3f} vs a linear head on the frozen base features {probe:.3f} "
            "(test macro-F1): fine-tuning the encoder adds little over the frozen features."
        )
    return (
        f"Fine-tune {tuned:.3f} vs a linear head on the frozen base features {probe:.3f} "
        f"(test macro-F1): fine-tuning the encoder adds {tuned - probe:.3f}."
    )
