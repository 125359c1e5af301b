"""Near-duplicates between training and test rows: normalised-text hashes, embedding cosine,
and perceptual hashes for images. Plain numpy / Pillow; nothing here imports Django.

A test row that repeats a training row (exactly after normalising case, accents,
punctuation and spacing, or nearly, by the cosine of their embeddings) measures
memory, not generalisation; ``find_text_duplicates`` finds them so the test
score can be recomputed without them. ``find_image_duplicates`` does the same
for images by the Hamming distance of 64-bit difference hashes (dHash).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "dhash",
    "find_image_duplicates",
    "find_text_duplicates",
    "normalise_text",
    "text_hash",
]

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_text(text: str) -> str:
    """Case-folded, accents stripped (NFKD), punctuation and runs of space as one space."""
    decomposed = unicodedata.normalize("NFKD", str(text))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NON_WORD.sub(" ", plain.casefold()).strip()


def text_hash(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


def _unit(rows: np.ndarray) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def find_text_duplicates(
    train_texts: Sequence[str],
    test_texts: Sequence[str],
    *,
    train_embeddings: np.ndarray | None = None,
    test_embeddings: np.ndarray | None = None,
    cosine_threshold: float = 0.95,
    centre: bool = True,
    chunk: int = 1024,
) -> list[dict]:
    """For each test row that duplicates a training row, one dict (test order).

    {test_index, train_index, how ("exact" after normalising, or "cosine"),
    cosine (None for exact matches found without embeddings)}. With embeddings
    (one row per text, any dimension), a test row whose highest cosine with a
    training row exceeds ``cosine_threshold`` is a near-duplicate. With
    ``centre`` the training rows' mean embedding is taken off both splits first:
    mean-pooled sentence embeddings share one large common direction, which
    puts the raw cosine of almost any two texts near 1 (a random encoder's
    above 0.99), so only centred cosines tell a near-duplicate from a neighbour.
    """
    if not 0 < cosine_threshold <= 1:
        raise ValueError(f"cosine_threshold must be in (0, 1], got {cosine_threshold!r}")
    if not train_texts or not test_texts:
        raise ValueError("both the training and the test split need rows")
    first_train: dict[str, int] = {}
    for i, text in enumerate(train_texts):
        first_train.setdefault(text_hash(text), i)
    found: dict[int, dict] = {}
    for j, text in enumerate(test_texts):
        i = first_train.get(text_hash(text))
        if i is not None:
            found[j] = {"test_index": j, "train_index": i, "how": "exact", "cosine": None}
    if (train_embeddings is None) != (test_embeddings is None):
        raise ValueError("give embeddings for both splits or for neither")
    if train_embeddings is not None:
        a = np.asarray(train_embeddings, dtype=np.float64)
        b = np.asarray(test_embeddings, dtype=np.float64)
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError("embeddings must be (rows, dimension) arrays")
        if a.shape[0] != len(train_texts) or b.shape[0] != len(test_texts):
            raise ValueError("one embedding per text is needed")
        if a.shape[1] != b.shape[1]:
            raise ValueError("the two splits' embeddings differ in dimension")
        if centre:
            mean = a.mean(axis=0, keepdims=True)
            a, b = a - mean, b - mean
        a, b = _unit(a), _unit(b)
        for start in range(0, b.shape[0], chunk):
            sims = b[start : start + chunk] @ a.T
            best = sims.argmax(axis=1)
            for offset, i in enumerate(best):
                j, cos = start + offset, float(sims[offset, i])
                if j in found:
                    found[j]["cosine"] = float(sims[offset, found[j]["train_index"]])
                elif cos > cosine_threshold:
                    found[j] = {
                        "test_index": j,
                        "train_index": int(i),
                        "how": "cosine",
                        "cosine": cos,
                    }
    return [found[j] for j in sorted(found)]


def dhash(image, size: int = 8) -> int:
    """A 64-bit difference hash (for ``size`` 8): grey, (size+1) x size, left < right per pixel."""
    from PIL import Image

    img = image if isinstance(image, Image.Image) else Image.open(Path(image))
    grey = img.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def find_image_duplicates(
    train_images: Sequence, test_images: Sequence, *, max_distance: int = 4
) -> list[dict]:
    """Test images whose dHash lies within ``max_distance`` bits of a training image's."""
    if not train_images or not test_images:
        raise ValueError("both the training and the test split need rows")
    train = np.array([dhash(x) for x in train_images], dtype=np.uint64)
    found = []
    for j, image in enumerate(test_images):
        h = np.uint64(dhash(image))
        distances = np.array([bin(int(v)).count("1") for v in (train ^ h)])
        i = int(distances.argmin())
        if distances[i] <= max_distance:
            found.append(
                {"test_index": j, "train_index": i, "how": "dhash", "distance": int(distances[i])}
            )
    return found
