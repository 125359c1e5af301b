"""How much a fine-tune changed its base's representations: linear CKA per layer and
nearest-neighbour agreement, on a fixed reference sample. No Django.

Linear CKA (Kornblith et al. 2019, "Similarity of Neural Network Representations
Revisited") compares two sets of features of the same N examples:
``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred X (N, p) and
Y (N, q). It is 1 for identical representations and is unchanged by rotations
and isotropic scaling, so it reads "the same geometry" rather than "the same
numbers". Nearest-neighbour agreement asks the same more locally: of each
example's k nearest neighbours (cosine) before the fine-tune, how many are
still among its k nearest after.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["hidden_states", "knn_agreement", "linear_cka", "representation_change"]


def _features(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"{name} must be an (examples, features) array with two or more rows")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return a


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between two representations of the same examples (rows), in [0, 1]."""
    a, b = _features(x, "x"), _features(y, "y")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x has {a.shape[0]} examples and y {b.shape[0]}: they must be the same")
    a = a - a.mean(axis=0, keepdims=True)
    b = b - b.mean(axis=0, keepdims=True)
    cross = np.linalg.norm(b.T @ a, "fro") ** 2
    norm = np.linalg.norm(a.T @ a, "fro") * np.linalg.norm(b.T @ b, "fro")
    if norm == 0:
        raise ValueError("a representation is constant over the examples: CKA is undefined")
    return float(cross / norm)


def _neighbours(x: np.ndarray, k: int) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.where(norms == 0, 1.0, norms)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)  # an example is not its own neighbour
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def knn_agreement(x: np.ndarray, y: np.ndarray, *, k: int = 10) -> float:
    """Mean share of each example's k nearest neighbours (cosine) in ``x`` also so in ``y``."""
    a, b = _features(x, "x"), _features(y, "y")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x has {a.shape[0]} examples and y {b.shape[0]}: they must be the same")
    if not 1 <= k < a.shape[0]:
        raise ValueError(f"k must be from 1 to {a.shape[0] - 1}, got {k}")
    before, after = _neighbours(a, k), _neighbours(b, k)
    shared = [len(set(p) & set(q)) for p, q in zip(before.tolist(), after.tolist(), strict=True)]
    return float(np.mean(shared) / k)


def hidden_states(
    model, tokenizer, texts: Sequence[str], *, device: str = "cpu", max_length: int = 128
) -> list[np.ndarray]:
    """Mean-pooled hidden states of every layer (embeddings first): a list of (N, H) arrays."""
    import torch

    from jobs.ml.features import mean_pool

    model.to(torch.device(device))
    model.eval()
    layers: list[list[np.ndarray]] = []
    with torch.inference_mode():
        for start in range(0, len(texts), 32):
            batch = tokenizer(
                list(texts[start : start + 32]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            out = model(**batch, output_hidden_states=True)
            for i, hidden in enumerate(out.hidden_states):
                if len(layers) <= i:
                    layers.append([])
                layers[i].append(mean_pool(hidden, batch["attention_mask"]).cpu().numpy())
    return [np.concatenate(parts) for parts in layers]


def _load(model_dir: Path, *, classifier: bool, base_model_dir: Path | None):
    from jobs.ml import finetune as ft
    from jobs.ml.features import _load_text_model

    if not classifier:
        return _load_text_model(model_dir, "cpu")[::-1]
    model, loaded, _ = ft._load_for_inference(model_dir, "text", base_model_dir)
    return model, loaded.tokenizer


def representation_change(
    base_dir: Path,
    output_dir: Path,
    texts: Sequence[str],
    *,
    base_model_dir: Path | None = None,
    device: str = "cpu",
    max_length: int = 128,
    k: int = 10,
) -> dict:
    """Per-layer linear CKA between the base and the fine-tuned encoder on ``texts``, and kNN
    agreement of the last layer's mean-pooled features.

    ``output_dir`` is what ``jobs.ml.finetune.finetune`` wrote (a LoRA adapter needs
    ``base_model_dir``). Returns {layers: [{layer, cka}], min_cka, min_layer,
    knn_agreement, k, n}. Layer 0 is the embedding output.
    """
    if len(texts) <= k:
        raise ValueError(f"{len(texts)} reference texts are too few for k = {k} neighbours")
    base_model, base_tok = _load(Path(base_dir), classifier=False, base_model_dir=None)
    tuned_model, tuned_tok = _load(Path(output_dir), classifier=True, base_model_dir=base_model_dir)
    before = hidden_states(base_model, base_tok, texts, device=device, max_length=max_length)
    after = hidden_states(tuned_model, tuned_tok, texts, device=device, max_length=max_length)
    if len(before) != len(after):
        raise ValueError(
            f"the base has {len(before)} hidden states and the fine-tune {len(after)}: "
            "they are not the same architecture"
        )
    layers = [
        {"layer": i, "cka": linear_cka(a, b)}
        for i, (a, b) in enumerate(zip(before, after, strict=True))
    ]
    worst = min(layers, key=lambda row: row["cka"])
    return {
        "layers": layers,
        "min_cka": worst["cka"],
        "min_layer": worst["layer"],
        "knn_agreement": knn_agreement(before[-1], after[-1], k=k),
        "k": k,
        "n": len(texts),
    }
