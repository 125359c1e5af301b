"""The sentence that says whether the pretrained model beat the no-transfer baseline."""

from __future__ import annotations

from jobs.ml.verdict import frozen_verdict, transfer_verdict

BASELINE = {"macro_f1": 1.0, "method": "TF-IDF + logistic regression"}


def test_a_baseline_that_wins_is_said_plainly():
    assert transfer_verdict({"macro_f1": 0.821}, BASELINE) == (
        "TF-IDF + logistic regression 1.000 vs fine-tune 0.821 (test macro-F1): transfer adds "
        "nothing here; consider a head-only fine-tune or the baseline itself."
    )


def test_a_small_gain_is_called_little_and_a_real_one_is_measured():
    close = transfer_verdict({"macro_f1": 0.91}, {"macro_f1": 0.9, "method": "B"})
    clear = transfer_verdict({"macro_f1": 0.95}, {"macro_f1": 0.8, "method": "B"})

    assert "within 0.02, transfer adds little here" in close
    assert clear.endswith("the pretrained model adds 0.150.")


def test_missing_metrics_give_no_sentence():
    assert transfer_verdict({}, BASELINE) == ""
    assert transfer_verdict({"macro_f1": None}, BASELINE) == ""


def test_a_fine_tune_below_its_frozen_features_is_told_so():
    assert frozen_verdict({"macro_f1": 0.30}, {"macro_f1": 0.65}).startswith(
        "Fine-tune 0.300 vs a linear head on the frozen base features 0.650 (test macro-F1): "
        "the fine-tune fell below what the base already knew"
    )
    assert "adds little" in frozen_verdict({"macro_f1": 0.66}, {"macro_f1": 0.65})
    assert frozen_verdict({"macro_f1": 0.80}, {"macro_f1": 0.65}).endswith("adds 0.150.")
    assert frozen_verdict({}, {"macro_f1": 0.65}) == ""
