"""Temperature scaling and threshold choice on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.ml.calibration import (
    apply_temperature,
    binary_rates,
    choose_threshold,
    fit_temperature,
    logits_from_proba,
)
from jobs.ml.evaluate import expected_calibration_error


def test_a_perfectly_calibrated_set_has_zero_ece():
    # 10 rows at confidence 0.8, exactly 8 right; 10 at 0.6, exactly 6 right.
    proba = np.array([[0.8, 0.2]] * 10 + [[0.6, 0.4]] * 10)
    y = np.array([0] * 8 + [1] * 2 + [0] * 6 + [1] * 4)
    assert expected_calibration_error(y, proba) == pytest.approx(0.0, abs=1e-12)


def test_temperature_recovers_the_one_that_generated_the_labels():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(20_000, 3))
    proba = apply_temperature(true_logits, 1.0)
    y = np.array([rng.choice(3, p=p) for p in proba])
    # The model is overconfident by a factor of 2.5: its logits are 2.5 times too big.
    fitted = fit_temperature(true_logits * 2.5, y)
    assert fitted == pytest.approx(2.5, rel=0.05)
    before = expected_calibration_error(y, apply_temperature(true_logits * 2.5, 1.0))
    after = expected_calibration_error(y, apply_temperature(true_logits * 2.5, fitted))
    assert after < before / 3


def test_temperature_keeps_the_predicted_class_and_log_proba_are_logits():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    scaled = apply_temperature(logits_from_proba(proba), 1.0)
    np.testing.assert_allclose(scaled, proba, atol=1e-9)
    hot = apply_temperature(logits_from_proba(proba), 4.0)
    assert (hot.argmax(axis=1) == proba.argmax(axis=1)).all()


def test_the_threshold_reaches_the_target_recall_with_the_fewest_flags():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
    score = np.array([0.9, 0.8, 0.7, 0.3, 0.6, 0.2, 0.1, 0.05, 0.4, 0.35])
    chosen = choose_threshold(y, score, target="recall", value=0.8)
    # 4 of 5 positives are at or above 0.4; the next one down is 0.3.
    assert chosen["threshold"] == 0.4
    assert chosen["reached"]
    assert chosen["recall"] == pytest.approx(0.8)
    full = choose_threshold(y, score, target="recall", value=0.95)
    assert full["threshold"] == 0.3
    assert full["recall"] == 1.0
    precise = choose_threshold(y, score, target="precision", value=1.0)
    assert precise["threshold"] == 0.7
    assert precise["precision"] == 1.0
    rates = binary_rates(y, score, 0.7)
    assert rates["recall"] == pytest.approx(0.6)
    assert rates["tp"] == 3
    assert rates["fp"] == 0


def test_bad_inputs_are_refused_in_words():
    with pytest.raises(ValueError, match="no positive row"):
        choose_threshold(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="target must be"):
        choose_threshold(np.ones(3), np.ones(3), target="f1")
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        choose_threshold(np.ones(3), np.ones(3), value=1.5)
    with pytest.raises(ValueError, match="labels for"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(np.array([[np.nan, 0.0]]), np.array([0]))
