"""Word-association tests of an encoder: WEAT (Caliskan et al. 2017) and SEAT (May et al. 2019).

Plain numpy, plus a transformers tokenizer to say which words the model does not
know as one token; nothing here imports Django.

WEAT asks whether two sets of target words (X: career words, Y: family words)
sit closer, in the embedding, to one set of attribute words (A: male names)
than to the other (B: female names). Each word's association is
``s(w, A, B) = mean cos(w, a) - mean cos(w, b)``; the effect size is the
difference of the targets' mean associations divided by the standard deviation
(ddof 1) over all targets, a Cohen's d that can range from -2 to 2. The
permutation test re-deals the targets into sets of the same sizes: the share of
partitions whose statistic ``sum_X s - sum_Y s`` is at least the observed one
is the one-sided p-value (exact over every partition when there are few, else
a fixed-seed sample). SEAT is the same test on sentence embeddings of the
words placed in semantically bleached sentences ("This is Amy."), the form in
which a sentence encoder is meant to be used.

What it measures is geometry of the embedding, not behaviour on any task; the
word lists are English and American.

When several tests run together, the chance that at least one reaches
p < alpha by luck grows with their number; ``holm`` adjusts the p-values
(Holm 1979, step-down Bonferroni) so that judging them at alpha keeps that
family-wise error at alpha, whatever the dependence between the tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import combinations
from pathlib import Path

import numpy as np

__all__ = [
    "SEAT_TEMPLATES",
    "association_test",
    "effect_size",
    "holm",
    "permutation_p_values",
    "seat_sentences",
    "word_pieces",
]

# Semantically bleached templates in the manner of May et al. (2019), section 3: they
# carry no meaning of their own, so what differs between sentences is the word.
SEAT_TEMPLATES = (
    "This is {}.",
    "That is {}.",
    "There is {}.",
    "Here is {}.",
    "{} is here.",
    "{} is there.",
    "It is {}.",
    "This will be {}.",
)
EXACT_LIMIT = 100_000  # partitions enumerated exactly up to this many


def _unit(rows: np.ndarray) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError("every word set needs at least one embedding")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def associations(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """s(w, A, B) for every row of ``w``: mean cosine with A minus mean cosine with B."""
    w, a, b = _unit(w), _unit(a), _unit(b)
    return (w @ a.T).mean(axis=1) - (w @ b.T).mean(axis=1)


def effect_size(s_x: np.ndarray, s_y: np.ndarray) -> float:
    """Caliskan's d: (mean s over X - mean s over Y) / std (ddof 1) of s over X and Y."""
    every = np.concatenate([s_x, s_y])
    spread = float(np.std(every, ddof=1)) if every.size > 1 else 0.0
    if spread == 0.0:
        return 0.0
    return float((s_x.mean() - s_y.mean()) / spread)


def permutation_p_values(
    s_x: np.ndarray, s_y: np.ndarray, *, permutations: int = 10_000, seed: int = 0
) -> dict:
    """One-sided p-values of ``sum s_x - sum s_y`` over re-deals of the targets.

    ``p_greater``: the share of partitions (X_i, Y_i) of X and Y together, sized as X and Y, whose
    statistic is at least the observed one (Caliskan's test, X closer to A).
    ``p_less``: at most the observed one (X closer to B). The observed partition is
    one of them, so neither is ever 0. ``exact`` says whether every partition was
    counted or ``permutations`` random ones (seeded; the observed one is added).
    """
    every = np.concatenate([s_x, s_y]).astype(np.float64)
    n, k = every.size, s_x.size
    total = every.sum()
    observed = 2.0 * s_x.sum() - total
    # Sums can differ in the last bits for the same partition; compare with a tolerance.
    tol = 1e-12 * max(1.0, float(np.abs(every).sum()))
    count = math.comb(n, k)
    if count <= EXACT_LIMIT:
        subsets = np.array(list(combinations(range(n), k)), dtype=np.int64).reshape(count, k)
        stats = 2.0 * every[subsets].sum(axis=1) - total
        greater = int(np.sum(stats >= observed - tol))
        less = int(np.sum(stats <= observed + tol))
        return {
            "p_greater": greater / count,
            "p_less": less / count,
            "exact": True,
            "partitions": count,
        }
    rng = np.random.default_rng(seed)
    greater = less = 0
    done = 0
    while done < permutations:
        size = min(1000, permutations - done)
        order = np.argsort(rng.random((size, n)), axis=1)[:, :k]
        stats = 2.0 * every[order].sum(axis=1) - total
        greater += int(np.sum(stats >= observed - tol))
        less += int(np.sum(stats <= observed + tol))
        done += size
    return {
        "p_greater": (greater + 1) / (permutations + 1),
        "p_less": (less + 1) / (permutations + 1),
        "exact": False,
        "partitions": permutations,
    }


def association_test(
    x: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    permutations: int = 10_000,
    seed: int = 0,
) -> dict:
    """Effect size and permutation p-values of one test, from the four sets' embeddings.

    ``p_two_sided`` is twice the smaller one-sided p (capped at 1): a large negative
    effect (Y closer to A) is as much a finding as a large positive one.
    """
    if min(len(x), len(y)) < 2 or min(len(a), len(b)) < 1:
        raise ValueError("each target set needs two or more words and each attribute set one")
    s_x, s_y = associations(x, a, b), associations(y, a, b)
    p = permutation_p_values(s_x, s_y, permutations=permutations, seed=seed)
    return {
        "effect_size": effect_size(s_x, s_y),
        "statistic": float(s_x.sum() - s_y.sum()),
        **p,
        "p_two_sided": min(1.0, 2.0 * min(p["p_greater"], p["p_less"])),
        "n_x": len(x),
        "n_y": len(y),
        "n_a": len(a),
        "n_b": len(b),
    }


def seat_sentences(words: Sequence[str], templates: Sequence[str] = SEAT_TEMPLATES) -> list[str]:
    """Every word in every template: ``len(words) * len(templates)`` sentences, word by word."""
    return [template.format(word) for word in words for template in templates]


def word_pieces(model_dir: Path, words: Sequence[str]) -> dict[str, dict]:
    """How the model's tokenizer reads each word: its pieces, whether split or unknown.

    A word the vocabulary lacks is still embedded (from its pieces, or the unknown
    token); the result says so rather than dropping it, so the word sets stay as
    published.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(Path(model_dir), local_files_only=True)
    unknown = tokenizer.unk_token
    out: dict[str, dict] = {}
    for word in words:
        pieces = tokenizer.tokenize(word)
        out[word] = {
            "pieces": len(pieces),
            "split": len(pieces) > 1,
            "unknown": bool(unknown) and unknown in pieces,
        }
    return out


def run_test_set(
    embed: Callable[[list[str]], np.ndarray],
    sets: dict[str, Sequence[str]],
    *,
    variant: str,
    permutations: int = 10_000,
    seed: int = 0,
) -> dict:
    """One WEAT ("weat": bare words) or SEAT ("seat": templated sentences) test.

    ``sets`` holds the word lists under ``x``, ``y``, ``a`` and ``b``; ``embed``
    maps texts to rows of embeddings. For SEAT every sentence is one member of its
    set, as in May et al., so the permutation test re-deals sentences.
    """
    if variant not in ("weat", "seat"):
        raise ValueError(f"unknown variant {variant!r}")
    texts = {
        key: (seat_sentences(words) if variant == "seat" else list(words))
        for key, words in sets.items()
    }
    order = ["x", "y", "a", "b"]
    every = [text for key in order for text in texts[key]]
    rows = np.asarray(embed(every))
    parts, start = {}, 0
    for key in order:
        parts[key] = rows[start : start + len(texts[key])]
        start += len(texts[key])
    return association_test(
        parts["x"], parts["y"], parts["a"], parts["b"], permutations=permutations, seed=seed
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given.

    Sorted ascending, the i-th smallest (from 0) of m is multiplied by m - i,
    capped at 1, and never left below an adjusted value before it (the
    step-down is monotone): ``p_holm[(i)] = max over j <= i of min(1, (m - j) p[(j)])``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must be a list of numbers from 0 to 1")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()
