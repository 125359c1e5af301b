"""Test-split metrics, calibration, the no-transfer baselines and the energy estimate."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from jobs.ml.evaluate import (
    classification_report,
    energy_estimate,
    expected_calibration_error,
    frozen_probe,
    image_baseline,
    text_baseline,
)
from tests.builders.weights import colour_images, spam_task, tiny_bert

NAMES = ["cat", "dog", "bird"]


def _random_case(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


def test_report_matches_scikit_learn():
    y, proba = _random_case()
    predicted = proba.argmax(axis=1)
    report = classification_report(y, proba, NAMES)
    assert report["n"] == 60
    assert report["accuracy"] == pytest.approx(accuracy_score(y, predicted))
    assert report["macro_f1"] == pytest.approx(f1_score(y, predicted, average="macro"))
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=[0, 1, 2])
    for i, name in enumerate(NAMES):
        assert report["per_class"][name] == pytest.approx(
            {"precision": precision[i], "recall": recall[i], "f1": f1[i], "support": support[i]}
        )
    assert report["confusion_matrix"] == confusion_matrix(y, predicted).tolist()


def test_ece_and_brier_by_hand():
    y = np.array([0, 1, 0, 1, 0, 0])
    proba = np.array(
        [
            [0.90, 0.10],  # confidence 0.90, right  -> bin (0.867, 0.933]
            [0.80, 0.20],  # confidence 0.80, wrong  -> bin (0.733, 0.800]
            [0.60, 0.40],  # confidence 0.60, right  -> bin (0.533, 0.600]
            [0.30, 0.70],  # confidence 0.70, right  -> bin (0.667, 0.733]
            [0.95, 0.05],  # confidence 0.95, right  -> bin (0.933, 1.000]
            [0.04, 0.96],  # confidence 0.96, wrong  -> same bin as the one above
        ]
    )
    # Per bin |accuracy - confidence| weighted by its share of the rows.
    expected_ece = (
        abs(1 - 0.9) / 6
        + abs(0 - 0.8) / 6
        + abs(1 - 0.6) / 6
        + abs(1 - 0.7) / 6
        + 2 / 6 * abs(0.5 - (0.95 + 0.96) / 2)
    )
    # Sum over classes of squared errors against the one-hot label, averaged over rows.
    expected_brier = (
        2 * 0.1**2 + 2 * 0.8**2 + 2 * 0.4**2 + 2 * 0.3**2 + 2 * 0.05**2 + 2 * 0.96**2
    ) / 6
    report = classification_report(y, proba, ["a", "b"])
    assert report["ece"] == pytest.approx(expected_ece)
    assert report["brier"] == pytest.approx(expected_brier)
    # With two classes the multi-class Brier score is twice the binary one.
    assert report["brier"] == pytest.approx(2 * brier_score_loss(y, proba[:, 1]))
    assert expected_calibration_error(y, np.eye(2)[y]) == 0.0


def test_slices_and_missing_slice_values():
    y = np.array([0, 1, 1, 0, 1])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4], [0.1, 0.9]])
    report = classification_report(
        y, proba, ["ham", "spam"], slices=["north", "south", None, "north", "south"]
    )
    assert report["slices"] == {
        "(missing)": {"n": 1, "accuracy": 0.0, "macro_f1": 0.0},
        "north": {"n": 2, "accuracy": 1.0, "macro_f1": 1.0},
        "south": {"n": 2, "accuracy": 1.0, "macro_f1": 1.0},
    }
    assert "slices" not in classification_report(y, proba, ["ham", "spam"])


@pytest.mark.parametrize(
    ("y", "proba", "message"),
    [
        (np.array([0, 1]), np.ones((3, 2)) / 2, "proba must have shape"),
        (np.array([0, 2]), np.ones((2, 2)) / 2, "outside 0..1"),
        (np.array([0, 1]), np.ones((2, 3)) / 3, "3 columns for 2 class names"),
        (np.array([0, 1]), np.array([[np.nan, 1], [0.5, 0.5]]), "NaN"),
    ],
)
def test_report_refuses_inconsistent_input(y, proba, message):
    with pytest.raises(ValueError, match=message):
        classification_report(y, proba, ["a", "b"])


def test_text_baseline_beats_chance_on_a_learnable_toy():
    texts, y = spam_task(3)
    test_texts, y_test = spam_task(1, start=5)
    proba = text_baseline(texts, y, test_texts, 2)
    assert proba.shape == (12, 2)
    assert (proba.argmax(axis=1) == y_test).mean() >= 0.9


def test_text_baseline_gives_classes_unseen_in_training_zero_probability():
    texts, y = spam_task(2)
    proba = text_baseline(texts, y, ["free prize", "lunch tomorrow"], 3)
    assert proba.shape == (2, 3)
    np.testing.assert_allclose(proba[:, 2], 0.0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_image_baseline_beats_chance_on_colours(tmp_path):
    paths, y = colour_images(tmp_path / "train", 8, classes=3, size=24)
    test_paths, y_test = colour_images(tmp_path / "test", 3, classes=3, size=40, seed=1)
    proba = image_baseline(paths, y, test_paths, 3, size=16)
    assert proba.shape == (9, 3)
    assert (proba.argmax(axis=1) == y_test).mean() > 0.8


def test_energy_estimate_arithmetic():
    h100 = energy_estimate(seconds=3600, device="cuda:0", gpu_name="NVIDIA H100 80GB HBM3")
    assert h100["gpu_hours"] == pytest.approx(1.0)
    assert h100["power_watts"] == 700
    assert h100["energy_kwh"] == pytest.approx(0.7 * 1.58)
    assert h100["co2_kg"] == pytest.approx(0.7 * 1.58 * 0.48)
    assert "Estimate, not a measurement" in h100["assumptions"]
    assert h100["hardware"] == "1 x NVIDIA H100 80GB HBM3"

    unknown = energy_estimate(seconds=1800, device="cuda", gpu_name="Mystery Accelerator")
    assert unknown["power_watts"] == 300
    assert unknown["energy_kwh"] == pytest.approx(0.3 * 0.5 * 1.58)

    cpu = energy_estimate(seconds=7200, device="cpu", pue=1.0, grid_kg_co2_per_kwh=0.1)
    assert cpu["gpu_hours"] == 0.0
    assert cpu["energy_kwh"] == pytest.approx(0.065 * 2)
    assert cpu["co2_kg"] == pytest.approx(0.065 * 2 * 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        energy_estimate(seconds=-1, device="cpu")


def test_frozen_probe_reads_the_words_a_blind_encoder_cannot(tmp_path):
    """A linear head on frozen features learns the toy from a random BERT, not a blind one."""
    train, test = spam_task(6), spam_task(2, start=20)
    seeing = frozen_probe(tiny_bert(tmp_path / "seeing"), "text", *train, test[0], 2)
    blind = frozen_probe(tiny_bert(tmp_path / "blind", blind=True), "text", *train, test[0], 2)
    assert seeing.shape == (len(test[0]), 2)
    np.testing.assert_allclose(seeing.sum(axis=1), 1.0)
    seeing_accuracy = float(np.mean(seeing.argmax(axis=1) == test[1]))
    blind_accuracy = float(np.mean(blind.argmax(axis=1) == test[1]))
    assert seeing_accuracy >= 0.9
    assert blind_accuracy <= 0.75
    # One class in training: that class, as the other baselines do.
    one = frozen_probe(tmp_path / "seeing", "text", train[0][:3], np.zeros(3, int), test[0], 2)
    assert (one[:, 0] == 1.0).all()
