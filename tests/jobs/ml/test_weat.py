"""WEAT effect size and permutation p-values on embeddings whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jobs.ml.weat import (
    association_test,
    associations,
    effect_size,
    holm,
    permutation_p_values,
    run_test_set,
    seat_sentences,
)


def _planted(rng, n=8, dim=32, pull=3.0):
    """X built near A and Y near B: a strong association by construction."""
    a_dir, b_dir = rng.normal(size=dim), rng.normal(size=dim)
    around = lambda centre, k: centre * pull + rng.normal(size=(k, dim))  # noqa: E731
    return around(a_dir, n), around(b_dir, n), around(a_dir, n), around(b_dir, n)


def test_targets_built_close_to_their_attributes_give_a_large_effect_and_small_p():
    x, y, a, b = _planted(np.random.default_rng(1))
    found = association_test(x, y, a, b)
    assert found["effect_size"] > 1.5
    assert found["exact"] is True  # 16 targets: all 12,870 partitions counted
    assert found["partitions"] == math.comb(16, 8)
    # Only the observed partition is that extreme: p = 1 / C(16, 8).
    assert found["p_greater"] == pytest.approx(1 / math.comb(16, 8))
    assert found["p_two_sided"] < 0.001
    # Swapping the targets flips the sign and moves the evidence to the other tail.
    swapped = association_test(y, x, a, b)
    assert swapped["effect_size"] == pytest.approx(-found["effect_size"])
    assert swapped["p_less"] == pytest.approx(found["p_greater"])
    assert swapped["p_two_sided"] == pytest.approx(found["p_two_sided"])


def test_random_embeddings_give_a_small_effect_and_large_p():
    rng = np.random.default_rng(7)
    effects, ps = [], []
    for _ in range(20):
        x, y, a, b = (rng.normal(size=(8, 32)) for _ in range(4))
        found = association_test(x, y, a, b)
        effects.append(abs(found["effect_size"]))
        ps.append(found["p_two_sided"])
    # Under no association p is uniform and |d| is small on average.
    assert np.median(ps) > 0.2
    assert np.median(effects) < 1.0
    assert min(ps) > 0.001


def test_a_hand_checked_tiny_example():
    # Two-dimensional: A points along e1, B along e2.
    a = np.array([[1.0, 0.0]])
    b = np.array([[0.0, 1.0]])
    x = np.array([[1.0, 0.0], [1.0, 1.0]])  # s = 1 - 0, cos45 - cos45 = 0
    y = np.array([[0.0, 1.0], [1.0, 1.0]])  # s = 0 - 1, 0
    s_x, s_y = associations(x, a, b), associations(y, a, b)
    assert s_x == pytest.approx([1.0, 0.0])
    assert s_y == pytest.approx([-1.0, 0.0])
    # mean difference 1; std (ddof 1) of [1, 0, -1, 0] = sqrt(2/3)
    assert effect_size(s_x, s_y) == pytest.approx(1 / math.sqrt(2 / 3))
    p = permutation_p_values(s_x, s_y)
    # Six partitions of {1, 0, -1, 0} into pairs; statistic sum_X - sum_Y is 2 for the
    # observed one and for the one that swaps the two zeros: 2 of 6 reach it.
    assert p["exact"]
    assert p["partitions"] == 6
    assert p["p_greater"] == pytest.approx(2 / 6)
    assert p["p_less"] == pytest.approx(6 / 6)


def test_many_targets_are_sampled_with_a_fixed_seed():
    x, y, a, b = _planted(np.random.default_rng(3), n=30)
    first = association_test(x, y, a, b, permutations=2000, seed=0)
    again = association_test(x, y, a, b, permutations=2000, seed=0)
    assert first["exact"] is False
    assert first["partitions"] == 2000
    assert first == again
    # No sampled partition beats the planted one: p = 1 / (2000 + 1).
    assert first["p_greater"] == pytest.approx(1 / 2001)


def test_seat_puts_every_word_in_every_template_and_embeds_them_as_members():
    sentences = seat_sentences(["Amy", "John"])
    assert sentences[0] == "This is Amy."
    assert "John is here." in sentences
    assert len(sentences) == 16
    seen: list[list[str]] = []
    rng = np.random.default_rng(0)

    def embed(texts):
        seen.append(list(texts))
        return rng.normal(size=(len(texts), 8))

    found = run_test_set(
        embed,
        {"x": ["a", "b"], "y": ["c", "d"], "a": ["e"], "b": ["f"]},
        variant="seat",
        permutations=500,
    )
    assert len(seen[0]) == 6 * 8
    assert found["n_x"] == 16
    assert found["n_a"] == 8
    with pytest.raises(ValueError, match="two or more words"):
        association_test(np.ones((1, 2)), np.ones((2, 2)), np.ones((1, 2)), np.ones((1, 2)))


def test_holm_adjusts_step_down_by_hand():
    # Sorted: 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; the last
    # may not fall below the one before it, so 0.06. Back in the order given:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # Capped at 1; ties keep their order and share the larger value.
    assert holm([0.5, 0.5]) == pytest.approx([1.0, 1.0])
    assert holm([0.3, 0.6, 0.001]) == pytest.approx([0.6, 0.6, 0.003])
    # One test: nothing to adjust; no tests: nothing to return.
    assert holm([0.049]) == [0.049]
    assert holm([]) == []
    # Unadjusted all four are below 0.05; adjusted, only the two smallest stay below.
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert [a < 0.05 for a in adjusted] == [True, False, False, True]
    with pytest.raises(ValueError, match="from 0 to 1"):
        holm([0.2, 1.5])
    with pytest.raises(ValueError, match="from 0 to 1"):
        holm([float("nan")])
