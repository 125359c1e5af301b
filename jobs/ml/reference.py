"""Generic reference samples: the "ordinary data" a domain-divergence score compares against.

Texts: ``reference_text.txt`` beside this file, 300 short neutral English
sentences (news-like, encyclopaedic, everyday, instructions, questions)
written for this project, one per line.

Images: random crops of the two photographs scikit-learn ships
(``load_sample_images``: a Chinese temple and a flower). Two photos are a
narrow "generic" domain, but they are real natural images, ship with a
dependency the portal already has, and crops at several scales and
positions give textures, edges, sky and foliage. Deterministic for a seed.

Labelled images: scikit-learn's bundled handwritten digits (``load_digits``:
1,797 8 x 8 grey images of the digits 0 to 9, from the UCI "Optical
Recognition of Handwritten Digits" set, 43 writers), upscaled to the model's
input size as grey RGB. A labelled set is needed to ask whether the frozen
features still tell classes apart; this one ships with a dependency the portal
already has. It covers coarse shape only: no colour, texture or natural scenes.
"""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

REFERENCE_TEXT = Path(__file__).with_name("reference_text.txt")


@lru_cache(maxsize=1)
def _all_texts() -> tuple[str, ...]:
    lines = REFERENCE_TEXT.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip())


def reference_texts(n: int | None = None) -> list[str]:
    """All reference sentences, or a fixed sample of ``n`` of them (same ``n``, same sample).

    The sample is spread over the whole file (a seeded draw, kept in file
    order) rather than its first ``n`` lines, which are all news-like.
    """
    texts = _all_texts()
    if n is None or n >= len(texts):
        return list(texts)
    if n < 0:
        raise ValueError("n must not be negative")
    picked = sorted(random.Random(0).sample(range(len(texts)), n))  # noqa: S311 - not security
    return [texts[i] for i in picked]


@lru_cache(maxsize=1)
def _sample_photos() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(load_sample_images().images)


def reference_images(n: int = 64, size: int = 224, seed: int = 0) -> list[Image.Image]:
    """``n`` RGB crops of ``size`` x ``size`` from scikit-learn's sample photos.

    Each crop takes a square of 25% to 100% of the photo's short side at a
    random position, flips it left-right half the time, and resizes it.
    """
    from PIL import Image

    if n < 0 or size < 1:
        raise ValueError("n must not be negative and size must be positive")
    photos = _sample_photos()
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        photo = photos[i % len(photos)]
        height, width = photo.shape[:2]
        side = int(rng.uniform(0.25, 1.0) * min(height, width))
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side]).convert("RGB")
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crops.append(crop.resize((size, size), Image.Resampling.BICUBIC))
    return crops


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    found = load_digits()
    return found.images, found.target


def reference_digits(n: int = 500, size: int = 224) -> tuple[list[Image.Image], np.ndarray]:
    """``n`` labelled digit images (as many of each digit as can be), RGB ``size`` x ``size``.

    The same ``n`` gives the same images: the first of each digit in file
    order, in turn, so every class is represented equally when ``n`` allows.
    The 0-16 ink values become 0-255 grey, drawn dark on white like print,
    enlarged bilinearly (nearest would give the model 8 x 8 blocks to read).
    """
    from PIL import Image

    images, labels = _digits()
    if not 10 <= n <= len(labels) or size < 8:
        raise ValueError(f"n must be from 10 to {len(labels)} and size at least 8")
    per_class = [np.flatnonzero(labels == c).tolist() for c in range(10)]
    picked: list[int] = []
    for rank in range(max(len(p) for p in per_class)):
        picked.extend(p[rank] for p in per_class if rank < len(p))
    picked = sorted(picked[:n])
    out = []
    for i in picked:
        grey = (255 - images[i] * (255 / 16)).clip(0, 255).astype(np.uint8)
        out.append(
            Image.fromarray(grey).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        )
    return out, labels[picked].astype(np.int64)
