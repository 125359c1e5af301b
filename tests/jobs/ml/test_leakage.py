"""Near-duplicate detection between training and test rows on known inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jobs.ml.leakage import (
    dhash,
    find_image_duplicates,
    find_text_duplicates,
    normalise_text,
)


def test_normalising_ignores_case_accents_punctuation_and_spacing():
    assert normalise_text("  Café  crashed!!  ") == normalise_text("cafe CRASHED") == "cafe crashed"


def test_a_planted_duplicate_is_found_and_unrelated_rows_are_not():
    train = ["the invoice is wrong", "my password expired", "server down since noon"]
    test = ["The Invoice is WRONG!", "totally different words", "where is my parcel"]
    found = find_text_duplicates(train, test)
    assert found == [{"test_index": 0, "train_index": 0, "how": "exact", "cosine": None}]


def test_embedding_cosine_finds_a_near_duplicate_above_the_threshold():
    train = ["a", "b", "c"]
    test = ["x", "y"]
    train_e = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    test_e = np.array([[0.05, 0.999, 0], [0.6, 0.6, 0.5]])
    found = find_text_duplicates(
        train,
        test,
        train_embeddings=train_e,
        test_embeddings=test_e,
        cosine_threshold=0.99,
        centre=False,
    )
    assert len(found) == 1
    assert found[0]["test_index"] == 0
    assert found[0]["train_index"] == 1
    assert found[0]["how"] == "cosine"
    assert found[0]["cosine"] > 0.99


def test_centring_removes_the_direction_every_embedding_shares():
    rng = np.random.default_rng(1)
    common = np.full(32, 10.0)  # what mean pooling gives every text alike
    train_e = common + rng.normal(size=(20, 32))
    test_e = np.vstack([common + rng.normal(size=(5, 32)), train_e[7] + 0.01])
    kwargs = {"train_embeddings": train_e, "test_embeddings": test_e, "cosine_threshold": 0.95}
    texts_train, texts_test = [f"t{i}" for i in range(20)], [f"q{j}" for j in range(6)]
    raw = find_text_duplicates(texts_train, texts_test, centre=False, **kwargs)
    assert len(raw) == 6  # every pair looks alike
    centred = find_text_duplicates(texts_train, texts_test, **kwargs)
    assert [(f["test_index"], f["train_index"]) for f in centred] == [(5, 7)]


def test_an_image_and_a_resized_copy_share_a_perceptual_hash(tmp_path):
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    other = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    base.save(tmp_path / "a.png")
    base.resize((48, 48)).save(tmp_path / "a_small.png")
    other.save(tmp_path / "b.png")
    assert bin(dhash(tmp_path / "a.png") ^ dhash(tmp_path / "a_small.png")).count("1") <= 4
    found = find_image_duplicates(
        [tmp_path / "a.png"], [tmp_path / "b.png", tmp_path / "a_small.png"]
    )
    assert [f["test_index"] for f in found] == [1]


def test_bad_inputs_are_refused_in_words():
    with pytest.raises(ValueError, match="need rows"):
        find_text_duplicates([], ["x"])
    with pytest.raises(ValueError, match="both splits or for neither"):
        find_text_duplicates(["a"], ["b"], train_embeddings=np.ones((1, 2)))
    with pytest.raises(ValueError, match="cosine_threshold"):
        find_text_duplicates(["a"], ["b"], cosine_threshold=0)
