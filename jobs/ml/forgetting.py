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

For image backbones the base's own abilities are also asked about, on a
labelled reference set: each image gets the majority label of its k nearest
neighbours among the others (leave-one-out kNN on the frozen pooled
features), before and after the fine-tune. The share of images whose kNN label
is unchanged says whether the features still sort that set the same way, and
the kNN accuracy before and after whether they got worse at it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "hidden_states",
    "image_layers",
    "image_representation_change",
    "knn_agreement",
    "knn_label_change",
    "knn_labels",
    "linear_cka",
    "representation_change",
]


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


# --- image backbones ---------------------------------------------------------------------


def knn_labels(x: np.ndarray, labels: np.ndarray, *, k: int = 10) -> np.ndarray:
    """Leave-one-out kNN label of every row: the most common label among its k nearest others
    (cosine); a tie goes to the tied label whose neighbours are the more similar in sum."""
    a = _features(x, "x")
    y = np.asarray(labels)
    if y.shape != (a.shape[0],):
        raise ValueError(f"{y.size} labels for {a.shape[0]} examples")
    if not 1 <= k < a.shape[0]:
        raise ValueError(f"k must be from 1 to {a.shape[0] - 1}, got {k}")
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    unit = a / np.where(norms == 0, 1.0, norms)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    near = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    classes, codes = np.unique(y, return_inverse=True)
    votes = np.zeros((a.shape[0], classes.size))
    weight = np.zeros_like(votes)
    rows = np.arange(a.shape[0])[:, None]
    np.add.at(votes, (rows, codes[near]), 1.0)
    # Similarities mapped to [0, 1], so a class's summed weight never exceeds its votes...
    np.add.at(weight, (rows, codes[near]), (sims[rows, near] + 1.0) / 2.0)
    # ...and, divided by k + 1, stays below one vote: votes first, the weight breaks ties.
    score = votes + weight / (k + 1)
    return classes[score.argmax(axis=1)]


def knn_label_change(
    before: np.ndarray, after: np.ndarray, labels: np.ndarray, *, k: int = 10
) -> dict:
    """kNN labels of the same labelled examples from two representations: the share whose
    label is unchanged, and the kNN accuracy of each against the true labels."""
    y = np.asarray(labels)
    old, new = knn_labels(before, y, k=k), knn_labels(after, y, k=k)
    return {
        "label_agreement": float(np.mean(old == new)),
        "accuracy_before": float(np.mean(old == y)),
        "accuracy_after": float(np.mean(new == y)),
        "k": k,
        "n": int(y.size),
    }


def _image_forward(model, kind: str, pixels):
    """(pooled output of every layer, the pooled features the probes use, convolutional?)"""
    if kind == "efficientnet":
        stages = model.stage_features(pixels)
        return stages, stages[-1], True
    from jobs.ml.features import pool_hidden

    out = model(pixel_values=pixels, output_hidden_states=True)
    layers = [pool_hidden(h) for h in out.hidden_states]
    return layers, pool_hidden(out.last_hidden_state), out.hidden_states[0].ndim == 4


def _layer_names(count: int, kind: str, convolutional: bool) -> list[str]:
    if kind == "efficientnet":
        return ["stem", *(f"stage {i}" for i in range(1, count - 1)), "head"]
    first, step = ("stem", "stage") if convolutional else ("embeddings", "layer")
    return [first, *(f"{step} {i}" for i in range(1, count))]


def image_layers(model, kind: str, pixels: np.ndarray, *, device: str = "cpu", batch: int = 32):
    """Pooled features of every layer of an image backbone on preprocessed ``pixels``
    (N, 3, S, S): (names, list of (N, C) arrays, (N, D) final pooled features).

    ``kind`` is "efficientnet" (the plain-torch EfficientNet-Lite: stem, its
    seven stages, head) or "transformers" (a transformers backbone: every
    hidden state, tokens or positions averaged).
    """
    import torch

    model.to(torch.device(device)).eval()
    layers: list[list[np.ndarray]] = []
    final: list[np.ndarray] = []
    convolutional = False
    with torch.inference_mode():
        for start in range(0, len(pixels), batch):
            x = torch.from_numpy(np.ascontiguousarray(pixels[start : start + batch])).to(device)
            per_layer, pooled, convolutional = _image_forward(model, kind, x)
            for i, values in enumerate(per_layer):
                if len(layers) <= i:
                    layers.append([])
                layers[i].append(values.float().cpu().numpy())
            final.append(pooled.float().cpu().numpy())
    arrays = [np.concatenate(parts) for parts in layers]
    return _layer_names(len(arrays), kind, convolutional), arrays, np.concatenate(final)


def _image_backbone(model_dir: Path, *, tuned: bool, base_model_dir: Path | None):
    """(backbone module, kind): the fine-tune's without its head (a LoRA adapter merged in),
    or the base's as the probes load it."""
    from jobs.ml import finetune as ft
    from jobs.ml.features import EFFICIENTNET_LITE, _read_config

    if tuned or _read_config(model_dir).get("model_type") == EFFICIENTNET_LITE:
        model, loaded, _ = ft._load_for_inference(model_dir, "vision", base_model_dir)
        if hasattr(model, "merge_and_unload"):  # a peft model: compare the merged weights
            model = model.merge_and_unload()
        if loaded.kind == "efficientnet":
            return model, "efficientnet"
        return model.base_model, "transformers"
    from transformers import AutoModel

    with ft._quiet_transformers():
        model = AutoModel.from_pretrained(model_dir, local_files_only=True)
    return model, "transformers"


def _layer_cka(before: np.ndarray, after: np.ndarray) -> dict:
    """CKA of one layer, where a layer that is constant over the examples on one side only
    (a ReLU layer gone dead, say) counts as 0: it no longer tells any example apart."""
    flat = [not np.any(x != x[:1]) for x in (before, after)]
    if flat == [False, False]:
        return {"cka": linear_cka(before, after)}
    # Both constant: the base had nothing there to lose.
    return {
        "cka": 1.0 if all(flat) else 0.0,
        "constant": "both" if all(flat) else ("base" if flat[0] else "fine-tune"),
    }


def image_representation_change(
    base_dir: Path,
    output_dir: Path,
    images: Sequence,
    labelled: tuple[Sequence, np.ndarray],
    *,
    base_model_dir: Path | None = None,
    device: str = "cpu",
    k: int = 10,
) -> dict:
    """Per-layer linear CKA between the base and the fine-tuned image backbone on ``images``,
    neighbour agreement of the final pooled features, and the kNN labels of ``labelled``
    (images, labels) before and after.

    Both models see the same pixels, preprocessed as the base wants them (the
    fine-tune was trained on that preprocessing). Returns {layers: [{layer,
    name, cka}], min_cka, min_layer, min_layer_name, knn_agreement, k, n,
    labelled: {label_agreement, accuracy_before, accuracy_after, k, n}}.
    """
    from jobs.ml.features import _open_image, image_settings, preprocess_image

    if len(images) <= k:
        raise ValueError(f"{len(images)} reference images are too few for k = {k} neighbours")
    settings = image_settings(Path(base_dir))

    def pixels(items: Sequence) -> np.ndarray:
        return np.stack([preprocess_image(_open_image(item), settings) for item in items])

    general, (digits, labels) = pixels(images), labelled
    digit_pixels = pixels(digits)
    found = {}
    for side, tuned in (("before", False), ("after", True)):
        folder = Path(output_dir) if tuned else Path(base_dir)
        model, kind = _image_backbone(folder, tuned=tuned, base_model_dir=base_model_dir)
        names, layers, final = image_layers(model, kind, general, device=device)
        found[side] = (
            names,
            layers,
            final,
            image_layers(model, kind, digit_pixels, device=device)[2],
        )
        del model
    names, before, before_final, before_digits = found["before"]
    after_names, after, after_final, after_digits = found["after"]
    if names != after_names:
        raise ValueError(
            f"the base has {len(names)} layers and the fine-tune {len(after_names)}: "
            "they are not the same architecture"
        )
    rows = [
        {"layer": i, "name": name, **_layer_cka(a, b)}
        for i, (name, a, b) in enumerate(zip(names, before, after, strict=True))
    ]
    worst = min(rows, key=lambda row: row["cka"])
    return {
        "layers": rows,
        "min_cka": worst["cka"],
        "min_layer": worst["layer"],
        "min_layer_name": worst["name"],
        "knn_agreement": knn_agreement(before_final, after_final, k=k),
        "k": k,
        "n": len(images),
        "labelled": knn_label_change(before_digits, after_digits, labels, k=k),
    }
