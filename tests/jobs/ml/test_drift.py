"""PSI and the MMD permutation test on numbers whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jobs.ml import drift


def test_psi_matches_the_formula_worked_by_hand():
    # (0.9 - 0.5) ln(0.9 / 0.5) + (0.1 - 0.5) ln(0.1 / 0.5)
    expected = 0.4 * math.log(1.8) + (-0.4) * math.log(0.2)
    assert drift.psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(expected)
    assert expected == pytest.approx(0.8789, abs=1e-4)
    # Counts read as shares, and PSI is symmetric in its two sides.
    assert drift.psi([50, 50], [90, 10]) == pytest.approx(expected)
    assert drift.psi([0.9, 0.1], [0.5, 0.5]) == pytest.approx(expected)


def test_an_empty_bin_counts_as_epsilon_not_infinity():
    value = drift.psi([0.5, 0.5, 0.0], [0.5, 0.25, 0.25])
    e = drift.EPSILON
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.25 - e) * math.log(0.25 / e)
    assert value == pytest.approx(expected)
    assert math.isfinite(value)


def test_identical_distributions_are_stable_and_a_shift_is_large():
    rng = np.random.default_rng(0)
    ref = rng.beta(8, 2, 5000)
    same, _, _, _ = drift.confidence_psi(ref, rng.beta(8, 2, 5000))
    assert same < 0.02
    assert drift.band(same) == "stable"
    itself, edges, ref_share, _cur_share = drift.confidence_psi(ref, ref)
    assert itself == pytest.approx(0.0, abs=1e-12)
    assert len(edges) == 9
    assert len(ref_share) == 10
    assert ref_share == pytest.approx([0.1] * 10, abs=1e-3)
    shifted, _, _, cur = drift.confidence_psi(ref, rng.beta(2, 2, 5000))
    assert shifted > 1.0
    assert drift.band(shifted) == "retrain"
    assert cur[0] > 0.5  # most of the shifted batch sits under the reference's first decile


def test_class_psi_counts_the_predicted_classes():
    value, ref, cur = drift.class_psi([0, 0, 1, 1], [0, 0, 0, 1], 2)
    assert ref == [0.5, 0.5]
    assert cur == [0.75, 0.25]
    assert value == pytest.approx(0.25 * math.log(1.5) - 0.25 * math.log(0.5))
    value, _, cur = drift.class_psi([0, 1, 2], [0, 0, 0], 3)
    assert cur == [1.0, 0.0, 0.0]
    assert drift.band(value) == "retrain"
    with pytest.raises(ValueError, match="outside"):
        drift.class_psi([0, 1], [0, 5], 2)


def test_the_bands_have_the_usual_edges():
    assert [drift.band(v) for v in (0.0, 0.099, 0.1, 0.249, 0.25, 3.0)] == [
        "stable",
        "stable",
        "watch",
        "watch",
        "retrain",
        "retrain",
    ]


def _brute_mmd2(x, y, sigma):
    def k(a, b):
        return np.exp(-np.sum((a[:, None] - b[None]) ** 2, axis=-1) / (2 * sigma**2))

    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def test_mmd_is_the_unbiased_estimate_and_its_p_value_tells_shifted_from_same():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 8))
    same = drift.mmd_permutation_test(x, rng.normal(size=(120, 8)), permutations=300, seed=0)
    shifted_y = rng.normal(size=(120, 8)) + 0.8
    shifted = drift.mmd_permutation_test(x, shifted_y, permutations=300, seed=0)
    assert same["p_value"] > 0.05
    assert shifted["p_value"] == pytest.approx(1 / 301)  # no permutation comes close
    assert shifted["mmd2"] > 10 * abs(same["mmd2"])
    assert shifted["mmd2"] == pytest.approx(_brute_mmd2(x, shifted_y, shifted["sigma"]))
    # The same seed gives the same p-value.
    again = drift.mmd_permutation_test(x, shifted_y, permutations=300, seed=0)
    assert again == shifted


def test_under_no_shift_the_p_values_are_not_small_too_often():
    rng = np.random.default_rng(2)
    p = [
        drift.mmd_permutation_test(
            rng.normal(size=(40, 3)), rng.normal(size=(40, 3)), permutations=99, seed=i
        )["p_value"]
        for i in range(40)
    ]
    assert sum(v <= 0.05 for v in p) <= 6  # about 2 expected at a 5 % level


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="same bins"):
        drift.psi([0.5, 0.5], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        drift.psi([0, 0], [1, 1])
    with pytest.raises(ValueError, match="two or more"):
        drift.mmd_permutation_test(np.zeros((1, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="same features"):
        drift.mmd_permutation_test(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        drift.mmd_permutation_test(np.full((3, 2), np.nan), np.zeros((3, 2)))


def test_predictions_and_embeddings_come_from_the_fine_tuned_model(tmp_path):
    """One forward pass gives the classifier's probabilities and its encoder's mean pool."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from jobs.ml import finetune as ft
    from jobs.ml.features import extract_text_features
    from tests.builders.weights import HAM, SPAM, tiny_bert

    base = tiny_bert(tmp_path / "bert")
    torch.manual_seed(0)
    out = tmp_path / "clf"
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label={0: "ham", 1: "spam"}, label2id={"ham": 0, "spam": 1}
    )
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    texts = SPAM + HAM
    proba, emb = drift.predict_and_embed(out, texts, batch_size=5)
    assert proba.shape == (12, 2)
    assert emb.shape[0] == 12
    assert proba == pytest.approx(ft.predict_proba(out, "text", texts), abs=1e-5)
    encoder = AutoModel.from_pretrained(out)  # the classifier's own encoder weights
    encoder.save_pretrained(tmp_path / "enc")
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path / "enc")
    expected = extract_text_features(tmp_path / "enc", texts, max_length=128)
    assert emb == pytest.approx(np.asarray(expected, dtype=np.float64), abs=1e-4)


def test_image_embeddings_are_what_the_classification_head_reads(tmp_path):
    """For a ViT and an EfficientNet-Lite, the head applied to the embeddings gives the
    probabilities, which are the classifier's own (as predict_proba computes them)."""
    import torch
    from transformers import AutoModelForImageClassification

    from jobs.ml import finetune as ft
    from tests.builders.weights import colour_images, tiny_effnet, tiny_vit

    paths, _ = colour_images(tmp_path / "img", 5)
    torch.manual_seed(0)
    vit = tmp_path / "vit-clf"
    AutoModelForImageClassification.from_pretrained(
        tiny_vit(tmp_path / "vit"),
        num_labels=2,
        id2label={0: "a", 1: "b"},
        label2id={"a": 0, "b": 1},
    ).save_pretrained(vit, safe_serialization=True)
    effnet = tiny_effnet(tmp_path / "effnet")
    for folder, head in ((vit, "classifier"), (effnet, "_fc")):
        proba, emb = drift.predict_and_embed_images(folder, paths, batch_size=4)
        assert proba.shape == (10, 2 if folder == vit else 1000)
        assert emb.shape[0] == 10
        modality = "vision"
        assert proba == pytest.approx(ft.predict_proba(folder, modality, paths), abs=1e-5)
        model, _, _ = ft._load_for_inference(folder, modality, None)
        layer = model.get_submodule(head)
        with torch.no_grad():
            logits = layer(torch.from_numpy(emb).float()).double()
        assert torch.softmax(logits, dim=-1).numpy() == pytest.approx(proba, abs=1e-5)
