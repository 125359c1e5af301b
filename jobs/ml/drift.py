"""Drift of production inputs against a fine-tune's training data: PSI and an MMD test. No Django.

Two questions, asked of one uploaded batch of production inputs and a sample of
the training rows (the "reference"):

- Does the model *answer* differently? The population stability index (PSI)
  of the predicted class distribution and of the top-class confidence. PSI is
  ``sum((p_batch - p_ref) * ln(p_batch / p_ref))`` over bins; the usual bands
  are < 0.1 stable, 0.1 to 0.25 watch, >= 0.25 retrain. Confidence is binned
  at the reference's deciles (10 quantile bins; fewer when ties merge edges).
  An empty bin counts as ``EPSILON`` so that the logarithm stays finite.
- Does the model *see* different inputs? The squared maximum mean discrepancy
  (MMD², unbiased) between the two sets of embeddings, with a Gaussian (RBF)
  kernel whose width is the median pairwise distance of the pooled sample,
  and a permutation test: the share of random relabellings of the pooled
  sample whose MMD² is at least the observed one (with the usual +1).

For a text classifier the embedding is the last layer's mean-pooled hidden
state; for an image classifier it is what its classification head reads (the
pooled features of a CNN, the class token of a ViT), taken by a hook on the head.

PSI can miss a shift the classifier maps onto the same answers; MMD can flag
a shift in the inputs that does not change any answer. Neither says the model
is now wrong: no labels of the production inputs are known.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "BANDS",
    "EPSILON",
    "band",
    "class_psi",
    "confidence_psi",
    "mmd_permutation_test",
    "predict_and_embed",
    "predict_and_embed_images",
    "psi",
]

EPSILON = 1e-4
# (upper bound, name): a PSI below 0.1 is stable, below 0.25 worth watching, else retrain.
BANDS = ((0.1, "stable"), (0.25, "watch"), (float("inf"), "retrain"))


def band(value: float) -> str:
    """The alert band a PSI falls in: 'stable', 'watch' or 'retrain'."""
    for upper, name in BANDS:
        if value < upper:
            return name
    return BANDS[-1][1]


def psi(reference: Sequence[float], batch: Sequence[float]) -> float:
    """PSI between two distributions over the same bins (shares or counts; each is normalised)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(batch, dtype=np.float64)
    if ref.shape != cur.shape or ref.ndim != 1 or ref.size < 1:
        raise ValueError("the two distributions must have the same bins")
    if np.any(ref < 0) or np.any(cur < 0) or ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError("a distribution must be non-negative with something in it")
    ref = np.maximum(ref / ref.sum(), EPSILON)
    cur = np.maximum(cur / cur.sum(), EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def class_psi(reference_labels, batch_labels, n_classes: int) -> tuple[float, list, list]:
    """PSI of the predicted classes, with each side's share per class."""
    ref = np.bincount(np.asarray(reference_labels, dtype=np.int64), minlength=n_classes)
    cur = np.bincount(np.asarray(batch_labels, dtype=np.int64), minlength=n_classes)
    if ref.size != n_classes or cur.size != n_classes:
        raise ValueError(f"a predicted class is outside 0..{n_classes - 1}")
    return psi(ref, cur), (ref / ref.sum()).tolist(), (cur / cur.sum()).tolist()


def confidence_psi(reference, batch, *, bins: int = 10) -> tuple[float, list[float], list, list]:
    """PSI of top-class confidences, binned at the reference's quantiles.

    Returns (psi, inner bin edges, reference shares, batch shares).
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(batch, dtype=np.float64)
    if ref.size < 2 or cur.size < 1:
        raise ValueError("confidence PSI needs two or more reference values and one batch value")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_counts = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1)
    cur_counts = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=edges.size + 1)
    value = psi(ref_counts, cur_counts)
    return (
        value,
        edges.tolist(),
        (ref_counts / ref_counts.sum()).tolist(),
        (cur_counts / cur_counts.sum()).tolist(),
    )


def _squared_distances(z: np.ndarray) -> np.ndarray:
    sq = np.sum(z * z, axis=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    return d


def mmd_permutation_test(
    x: np.ndarray, y: np.ndarray, *, permutations: int = 500, seed: int = 0
) -> dict:
    """Unbiased MMD² between samples ``x`` (m, d) and ``y`` (n, d), RBF kernel, median width.

    The kernel is ``exp(-||a - b||² / (2 sigma²))`` with sigma the median pairwise
    distance of the pooled sample. The p-value is ``(1 + #{permuted >= observed})
    / (1 + permutations)`` over random relabellings of the pooled sample drawn
    with ``seed``. Returns {mmd2, p_value, sigma, permutations, m, n}.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError("x and y must be (examples, features) arrays with the same features")
    m, n = a.shape[0], b.shape[0]
    if m < 2 or n < 2:
        raise ValueError("the MMD test needs two or more examples on each side")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("the embeddings hold NaN or infinite values")
    if permutations < 1:
        raise ValueError("permutations must be at least 1")
    z = np.concatenate([a, b])
    d2 = _squared_distances(z)
    off = d2[~np.eye(m + n, dtype=bool)]
    median = float(np.median(off))
    if median <= 0:
        median = float(off[off > 0].mean()) if np.any(off > 0) else 1.0
    sigma = float(np.sqrt(median))
    kernel = np.exp(-d2 / (2.0 * median))
    rng = np.random.default_rng(seed)
    # Column 0 is the observed split; the others are permutations of the pooled rows.
    labels = np.zeros((m + n, permutations + 1), dtype=np.float64)
    labels[:m, 0] = 1.0
    for j in range(1, permutations + 1):
        labels[rng.permutation(m + n)[:m], j] = 1.0
    stats = _mmd2_columns(kernel, labels, m, n)
    observed = float(stats[0])
    p_value = float((1 + np.sum(stats[1:] >= observed)) / (1 + permutations))
    return {
        "mmd2": observed,
        "p_value": p_value,
        "sigma": sigma,
        "permutations": permutations,
        "m": m,
        "n": n,
    }


def _mmd2_columns(kernel: np.ndarray, labels: np.ndarray, m: int, n: int) -> np.ndarray:
    """Unbiased MMD² for every split of the pooled rows (a column of ``labels``: 1 = x side).

    One matrix product serves every permutation: with a = the x indicator and
    b = 1 - a, the block sums are a'Ka, b'Kb and a'Kb; the RBF kernel's diagonal is
    1, so the within-sample sums without it are a'Ka - m and b'Kb - n.
    """
    ka = kernel @ labels
    total = kernel.sum(axis=0) @ labels  # 1'Ka per column
    xx = np.sum(labels * ka, axis=0)
    xy = total - xx
    yy = kernel.sum() - 2.0 * xy - xx
    return (xx - m) / (m * (m - 1)) + (yy - n) / (n * (n - 1)) - 2.0 * xy / (m * n)


def predict_and_embed(
    output_dir: Path,
    texts: Sequence[str],
    *,
    device: str = "cpu",
    max_length: int = 128,
    batch_size: int = 64,
    base_model_dir: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, C), mean-pooled last-layer embeddings (N, H)) of a fine-tuned text
    classifier, from one forward pass per batch.

    ``output_dir`` is what ``jobs.ml.finetune.finetune`` wrote (a LoRA adapter needs
    ``base_model_dir``); the tokenizer and truncation are the training ones.
    """
    import torch

    from jobs.ml import finetune as ft
    from jobs.ml.features import mean_pool

    if any(not isinstance(t, str) for t in texts):
        raise ValueError("every text must be a string")
    model, loaded, classes = ft._load_for_inference(Path(output_dir), "text", base_model_dir)
    if loaded.kind != "text":
        raise ValueError("drift is measured for text classifiers only")
    length = min(max_length, loaded.max_length or max_length)
    model.to(torch.device(device))
    model.eval()
    probs, embeddings = [], []
    order = np.argsort([len(t) for t in texts], kind="stable")  # less padding per batch
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = loaded.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=length,
                return_tensors="pt",
            ).to(device)
            out = model(**batch, output_hidden_states=True)
            probs.append(torch.softmax(out.logits.float(), dim=-1).cpu().numpy())
            pooled = mean_pool(out.hidden_states[-1], batch["attention_mask"])
            embeddings.append(pooled.cpu().numpy())
    if not probs:
        return np.zeros((0, classes)), np.zeros((0, 0))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return (
        np.concatenate(probs).astype(np.float64)[inverse],
        np.concatenate(embeddings).astype(np.float64)[inverse],
    )


def _head_inputs(model, classes: int):
    """Hooks on every Linear giving ``classes`` outputs; ``seen[-1]`` is the input of the one
    called last in a forward pass: the classification head (plain, or kept whole beside a
    LoRA). A LoRA's own low-rank layers are skipped: their input is not the embedding."""
    from torch import nn

    seen: list = []

    def keep(_module, inputs, _output) -> None:
        seen.append(inputs[0].detach().flatten(1))

    handles = [
        m.register_forward_hook(keep)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and m.out_features == classes and "lora_" not in name
    ]
    if not handles:
        raise ValueError("the model has no classification head to read embeddings from")
    return seen, handles


def predict_and_embed_images(
    output_dir: Path,
    paths: Sequence[Path | str],
    *,
    device: str = "cpu",
    batch_size: int = 32,
    base_model_dir: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, C), head-input embeddings (N, H)) of a fine-tuned image classifier,
    from one forward pass per batch, images preprocessed as in training (no augmentation).

    ``output_dir`` is what ``jobs.ml.finetune.finetune`` wrote (a LoRA adapter needs
    ``base_model_dir``). An image that cannot be decoded raises ``ValueError``.
    """
    import torch

    from jobs.ml import finetune as ft

    model, loaded, classes = ft._load_for_inference(Path(output_dir), "vision", base_model_dir)
    if loaded.image is None:
        raise ValueError("drift of images is measured for image classifiers only")
    model.to(torch.device(device))
    model.eval()
    make = ft._ImageBatches(list(paths), loaded.image, cache=False)
    seen, handles = _head_inputs(model, classes)
    probs, embeddings = [], []
    try:
        with torch.inference_mode():
            for start in range(0, len(make.paths), batch_size):
                index = np.arange(start, min(start + batch_size, len(make.paths)))
                batch = {k: v.to(device) for k, v in make(index).items()}
                seen.clear()
                logits = ft._logits(model, loaded.kind, batch)
                probs.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
                embeddings.append(seen[-1].float().cpu().numpy())
    finally:
        for handle in handles:
            handle.remove()
        make.close()
    if not probs:
        return np.zeros((0, classes)), np.zeros((0, 0))
    return (
        np.concatenate(probs).astype(np.float64),
        np.concatenate(embeddings).astype(np.float64),
    )
