"""Linear CKA, nearest-neighbour agreement and kNN labels on known inputs, and the image
backbones' per-layer comparison on tiny random ViTs and EfficientNet-Lites."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.ml.forgetting import (
    _layer_cka,
    image_representation_change,
    knn_agreement,
    knn_label_change,
    knn_labels,
    linear_cka,
)
from jobs.ml.reference import reference_digits, reference_images
from tests.builders.weights import tiny_effnet, tiny_vit


def test_cka_of_identical_representations_is_one_and_ignores_rotation_and_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16))
    assert linear_cka(x, x) == pytest.approx(1.0)
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    assert linear_cka(x, 3.0 * x @ rotation) == pytest.approx(1.0)
    assert linear_cka(x, x + 5.0) == pytest.approx(1.0)  # centring removes offsets


def test_cka_of_independent_representations_is_small():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8))
    assert linear_cka(x, y) < 0.02
    # Half the features kept, half replaced: somewhere in between.
    mixed = np.hstack([x[:, :4], y[:, :4]])
    assert 0.3 < linear_cka(x, mixed) < 0.7


def test_knn_agreement_is_one_unchanged_and_low_when_scrambled():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 10))
    assert knn_agreement(x, 2.0 * x, k=5) == 1.0
    assert knn_agreement(x, rng.normal(size=(100, 10)), k=5) < 0.2


def test_bad_inputs_are_refused_in_words():
    with pytest.raises(ValueError, match="must be the same"):
        linear_cka(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="constant"):
        linear_cka(np.ones((3, 2)), np.arange(6.0).reshape(3, 2))
    with pytest.raises(ValueError, match="k must be from 1 to 2"):
        knn_agreement(np.eye(3), np.eye(3), k=3)


def test_knn_labels_by_hand_with_the_tie_going_to_the_more_similar_neighbours():
    # Three points near the x axis (class 0), three near the y axis (class 1), one between.
    x = np.array(
        [[1.0, 0.0], [1.0, 0.1], [1.0, -0.1], [0.0, 1.0], [0.1, 1.0], [-0.1, 1.0], [1.0, 0.9]]
    )
    y = np.array([0, 0, 0, 1, 1, 1, 0])
    # k = 2: each axis point's two nearest others are its own class; the last point's are
    # (1, 0.1) (class 0, cosine 0.81) and (0.1, 1) (class 1, cosine 0.74): a tie, which the
    # more similar class 0 wins.
    assert knn_labels(x, y, k=2).tolist() == [0, 0, 0, 1, 1, 1, 0]
    # Labels may be any values, and a point's own label never votes (leave one out).
    # Negative similarities do not outweigh a vote: two opposite neighbours of class 1
    # beat one aligned neighbour of class 0 at k = 3.
    z = np.array([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.05], [-1.0, -0.05], [0.0, 1.0]])
    assert knn_labels(z, np.array([0, 0, 1, 1, 1]), k=3)[0] == 1
    names = np.array(["a", "a", "a", "b", "b", "b", "b"])
    assert knn_labels(x, names, k=2).tolist() == ["a", "a", "a", "b", "b", "b", "a"]


def test_knn_label_change_is_one_unchanged_and_low_when_the_features_are_replaced():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(10), 30)
    centres = rng.normal(size=(10, 16)) * 4
    clustered = centres[labels] + rng.normal(size=(300, 16))
    same = knn_label_change(clustered, 2.0 * clustered, labels, k=5)
    assert same == {
        "label_agreement": 1.0,
        "accuracy_before": same["accuracy_before"],
        "accuracy_after": same["accuracy_before"],
        "k": 5,
        "n": 300,
    }
    assert same["accuracy_before"] > 0.95
    # Features that no longer know the classes: about one label in ten kept, by chance.
    noise = knn_label_change(clustered, rng.normal(size=(300, 16)), labels, k=5)
    assert noise["label_agreement"] < 0.25
    assert noise["accuracy_after"] < 0.25
    assert noise["accuracy_before"] == same["accuracy_before"]
    with pytest.raises(ValueError, match="labels for 300 examples"):
        knn_label_change(clustered, clustered, labels[:10])


def test_the_digits_are_balanced_labelled_and_the_size_asked_for():
    images, labels = reference_digits(50, size=32)
    assert len(images) == 50
    assert np.bincount(labels).tolist() == [5] * 10
    assert {im.size for im in images} == {(32, 32)}
    assert {im.mode for im in images} == {"RGB"}
    again, _ = reference_digits(50, size=32)
    assert np.asarray(images[7]).tolist() == np.asarray(again[7]).tolist()
    with pytest.raises(ValueError, match="n must be from 10"):
        reference_digits(5)


@pytest.fixture(scope="module")
def samples():
    return reference_images(64, size=32), reference_digits(200, size=32)


def _vit_classifier(source, folder):
    """What a full fine-tune of ``source`` writes, before any training step."""
    from transformers import ViTForImageClassification

    model = ViTForImageClassification.from_pretrained(source, num_labels=3)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def test_an_unchanged_image_backbone_has_cka_one_and_keeps_every_knn_label(tmp_path, samples):
    images, digits = samples
    vit = tiny_vit(tmp_path / "vit")
    found = image_representation_change(vit, _vit_classifier(vit, tmp_path / "out"), images, digits)
    assert [row["name"] for row in found["layers"]] == ["embeddings", "layer 1", "layer 2"]
    assert all(row["cka"] == pytest.approx(1.0, abs=1e-6) for row in found["layers"])
    assert found["knn_agreement"] == 1.0
    assert found["labelled"]["label_agreement"] == 1.0
    assert found["labelled"]["accuracy_before"] == found["labelled"]["accuracy_after"]
    assert (found["n"], found["labelled"]["n"]) == (64, 200)

    effnet = tiny_effnet(tmp_path / "effnet")
    found = image_representation_change(effnet, effnet, images, digits)
    names = [row["name"] for row in found["layers"]]
    assert names == ["stem", *(f"stage {i}" for i in range(1, 8)), "head"]
    assert found["min_cka"] == pytest.approx(1.0, abs=1e-6)
    assert found["labelled"]["label_agreement"] == 1.0


def test_a_re_initialised_backbone_moves_the_deep_layers_and_changes_knn_labels(tmp_path, samples):
    images, digits = samples
    base = tiny_effnet(tmp_path / "base", seed=0)
    other = tiny_effnet(tmp_path / "other", seed=1)
    found = image_representation_change(base, other, images, digits)
    cka = [row["cka"] for row in found["layers"]]
    # Random convolutions keep coarse image statistics near the input, not deeper down.
    assert cka[0] > 0.9
    assert found["min_cka"] < 0.7
    assert found["min_layer"] >= 4
    assert found["knn_agreement"] < 0.6
    assert found["labelled"]["label_agreement"] < 0.95
    # A random ViT instead: its kNN labels on the digits change for about a third.
    vit = tiny_vit(tmp_path / "vit", seed=0)
    stranger = _vit_classifier(tiny_vit(tmp_path / "vit2", seed=1), tmp_path / "out")
    found = image_representation_change(vit, stranger, images, digits)
    assert found["labelled"]["label_agreement"] < 0.8
    assert found["knn_agreement"] < 0.9


def test_a_layer_gone_constant_counts_as_cka_zero_not_as_an_error():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 6))
    dead = np.zeros((50, 6))  # a ReLU layer whose every unit is off for every image
    assert _layer_cka(x, dead) == {"cka": 0.0, "constant": "fine-tune"}
    assert _layer_cka(dead, x) == {"cka": 0.0, "constant": "base"}
    assert _layer_cka(dead, dead + 1.0) == {"cka": 1.0, "constant": "both"}
    assert _layer_cka(x, 2.0 * x) == {"cka": pytest.approx(1.0)}
