"""Linear CKA and nearest-neighbour agreement on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.ml.forgetting import knn_agreement, linear_cka


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
