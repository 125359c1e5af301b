"""Honest evaluation of a fine-tuned classifier: metrics, calibration, baselines, energy.

``classification_report`` turns test labels and predicted probabilities into
the numbers a model card and a reviewer need. ``text_baseline`` and
``image_baseline`` train a model with no transfer at all on the same split,
so a fine-tune has to show what the pretrained weights bought.
``energy_estimate`` converts wall time into energy and CO2 with stated
assumptions. Plain numpy / scikit-learn / Pillow; nothing here imports Django.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

__all__ = [
    "ECE_BINS",
    "classification_report",
    "energy_estimate",
    "expected_calibration_error",
    "image_baseline",
    "multiclass_brier",
    "text_baseline",
]

ECE_BINS = 15


# --------------------------------------------------------------------------- metrics


def _check(
    y_true: np.ndarray, proba: np.ndarray, class_count: int
) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=np.float64)
    if y.ndim != 1 or y.size == 0:
        raise ValueError("y_true must be a non-empty one-dimensional array of class indices")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise ValueError("y_true must hold integer class indices")
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"proba must have shape ({y.size}, classes), got {p.shape}")
    if p.shape[1] != class_count:
        raise ValueError(f"proba has {p.shape[1]} columns for {class_count} class names")
    if y.min() < 0 or y.max() >= class_count:
        raise ValueError(f"y_true holds a class index outside 0..{class_count - 1}")
    if not np.all(np.isfinite(p)):
        raise ValueError("proba holds NaN or infinite values")
    return y.astype(np.int64), p


def expected_calibration_error(
    y_true: np.ndarray, proba: np.ndarray, *, bins: int = ECE_BINS
) -> float:
    """ECE of the top-class confidence over ``bins`` equal-width bins (Guo et al. 2017).

    Bin ``b`` holds the rows whose confidence lies in ``(b/bins, (b+1)/bins]``;
    ECE = sum over bins of (rows in bin / all rows) * |accuracy - mean confidence|.
    """
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=np.float64)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def multiclass_brier(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Brier's original multi-class score: mean over rows of sum over classes of (p - onehot)^2.

    Ranges from 0 (perfect) to 2; for two classes it is twice the binary
    ``sklearn.metrics.brier_score_loss`` of the positive class.
    """
    p = np.asarray(proba, dtype=np.float64)
    onehot = np.zeros_like(p)
    onehot[np.arange(p.shape[0]), np.asarray(y_true)] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def _slice_key(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "(missing)"
    return str(value)


def classification_report(
    y_true: np.ndarray,
    proba: np.ndarray,
    class_names: list[str],
    *,
    slices: Sequence[str] | None = None,
) -> dict:
    """Everything measured on a test split, as a JSON-ready dict.

    Keys: ``n``; ``accuracy``; ``macro_f1`` (the unweighted mean F1 over the
    classes that occur in ``y_true`` or in the predictions, as
    ``sklearn.metrics.f1_score(average="macro")`` computes it, so a class absent
    from the test split does not count as a zero); ``per_class`` {name:
    {precision, recall, f1, support}} for every class (0 where undefined);
    ``confusion_matrix`` (rows = true class, columns = predicted, in
    ``class_names`` order); ``ece`` (15 equal-width bins over the top-class
    confidence, see ``expected_calibration_error``); ``brier`` (multi-class,
    mean over rows of the summed squared error against the one-hot label,
    0..2, see ``multiclass_brier``); and, when ``slices`` (one value per row)
    is given, ``slices`` {value: {n, accuracy, macro_f1}}, missing values
    grouped as "(missing)".
    """
    names = [str(name) for name in class_names]
    y, p = _check(y_true, proba, len(names))
    predicted = p.argmax(axis=1)
    labels = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=labels, zero_division=0
    )
    report: dict = {
        "n": int(y.size),
        "accuracy": float(np.mean(predicted == y)),
        "macro_f1": float(f1_score(y, predicted, average="macro", zero_division=0)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "confusion_matrix": confusion_matrix(y, predicted, labels=labels).tolist(),
        "ece": expected_calibration_error(y, p),
        "brier": multiclass_brier(y, p),
    }
    if slices is not None:
        if len(slices) != y.size:
            raise ValueError(f"{len(slices)} slice values for {y.size} rows")
        keys = np.array([_slice_key(value) for value in slices], dtype=object)
        report["slices"] = {}
        for key in sorted(set(keys.tolist())):
            rows = keys == key
            report["slices"][key] = {
                "n": int(rows.sum()),
                "accuracy": float(np.mean(predicted[rows] == y[rows])),
                "macro_f1": float(
                    f1_score(y[rows], predicted[rows], average="macro", zero_division=0)
                ),
            }
    return report


# --------------------------------------------------------------------------- baselines


def _full_proba(model, features, class_count: int, n_test: int) -> np.ndarray:
    """predict_proba spread over all ``class_count`` columns (classes unseen in training get 0)."""
    out = np.zeros((n_test, class_count), dtype=np.float64)
    out[:, model.classes_] = model.predict_proba(features)
    return out


def _labels_for_baseline(y_train: np.ndarray, class_count: int) -> np.ndarray:
    y = np.asarray(y_train).astype(np.int64)
    if y.ndim != 1 or y.size == 0:
        raise ValueError("y_train must be a non-empty one-dimensional array of class indices")
    if y.min() < 0 or y.max() >= class_count:
        raise ValueError(f"y_train holds a class index outside 0..{class_count - 1}")
    return y


def _constant(y: np.ndarray, class_count: int, n_test: int) -> np.ndarray:
    out = np.zeros((n_test, class_count), dtype=np.float64)
    out[:, int(y[0])] = 1.0
    return out


def text_baseline(
    train_texts: Sequence[str],
    y_train: np.ndarray,
    test_texts: Sequence[str],
    class_count: int,
    *,
    seed: int = 0,
) -> np.ndarray:
    """(n_test, class_count) probabilities of TF-IDF + logistic regression.

    TF-IDF over word unigrams and bigrams with sublinear term frequency.
    The classic strong non-neural text classifier; L2-regularised logistic
    regression with scikit-learn's defaults (C=1). With a single class in
    training it predicts that class.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    y = _labels_for_baseline(y_train, class_count)
    if len(train_texts) != y.size:
        raise ValueError(f"{len(train_texts)} training texts for {y.size} labels")
    if np.unique(y).size < 2:
        return _constant(y, class_count, len(test_texts))
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_train = vectorizer.fit_transform(list(train_texts))
    model = LogisticRegression(max_iter=1000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y)
    return _full_proba(model, vectorizer.transform(list(test_texts)), class_count, len(test_texts))


def frozen_probe(
    model_dir: Path,
    modality: str,
    train_inputs: Sequence,
    y_train: np.ndarray,
    test_inputs: Sequence,
    class_count: int,
    *,
    seed: int = 0,
    device: str = "cpu",
    max_length: int = 128,
) -> np.ndarray:
    """(n_test, class_count) probabilities of a linear head on the base model's frozen features.

    The head-only probe a fine-tune must beat: mean-pooled features (text, at
    the fine-tune's length) or pooled backbone features (images), standardised,
    and an L2-regularised logistic regression (C=1) trained on the same rows.
    A fine-tune below it has lost what the pretrained features already knew
    (too few steps to fit a new head through a pooler the base never trained,
    a rate too high or too low), which the verdict then says.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from jobs.ml.features import extract_image_features, extract_text_features

    y = _labels_for_baseline(y_train, class_count)
    if len(train_inputs) != y.size:
        raise ValueError(f"{len(train_inputs)} training inputs for {y.size} labels")
    if np.unique(y).size < 2:
        return _constant(y, class_count, len(test_inputs))
    if modality == "vision":
        x_train = extract_image_features(model_dir, list(train_inputs), device=device)
        x_test = extract_image_features(model_dir, list(test_inputs), device=device)
    else:
        x_train = extract_text_features(
            model_dir, list(train_inputs), device=device, max_length=max_length
        )
        x_test = extract_text_features(
            model_dir, list(test_inputs), device=device, max_length=max_length
        )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(np.asarray(x_train, dtype=np.float64), y)
    out = np.zeros((len(test_inputs), class_count), dtype=np.float64)
    out[:, model.classes_] = model.predict_proba(np.asarray(x_test, dtype=np.float64))
    return out


def _pixels(paths: Sequence[Path | str], size: int) -> np.ndarray:
    from PIL import Image

    from .features import _open_image

    rows = np.empty((len(paths), size * size * 3), dtype=np.float32)
    for i, path in enumerate(paths):
        image = _open_image(path).resize((size, size), Image.Resampling.BILINEAR)
        rows[i] = np.asarray(image, dtype=np.float32).reshape(-1) / 255.0
    return rows


def image_baseline(
    train_paths: Sequence[Path | str],
    y_train: np.ndarray,
    test_paths: Sequence[Path | str],
    class_count: int,
    *,
    size: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """(n_test, class_count) probabilities of logistic regression on raw pixels.

    Every image is converted to RGB (a grayscale picture becomes three equal
    channels), squashed to ``size`` x ``size`` with bilinear resampling, and
    its pixels standardised per feature; L2-regularised logistic regression
    with scikit-learn's defaults. An unreadable file raises ImageReadError
    (a ValueError) naming it.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if size < 1:
        raise ValueError("size must be at least 1")
    y = _labels_for_baseline(y_train, class_count)
    if len(train_paths) != y.size:
        raise ValueError(f"{len(train_paths)} training images for {y.size} labels")
    if np.unique(y).size < 2:
        return _constant(y, class_count, len(test_paths))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(_pixels(train_paths, size), y)
    out = np.zeros((len(test_paths), class_count), dtype=np.float64)
    if len(test_paths):
        out[:, model.classes_] = model.predict_proba(_pixels(test_paths, size))
    return out


# --------------------------------------------------------------------------- energy

# Board power (TDP) in watts by GPU name, from the vendors' data sheets. The
# first matching substring wins, so the more specific names come first. TDP
# is the ceiling a card is allowed to draw; training usually stays below it,
# so the estimate errs high. The ML CO2 Impact calculator (Lacoste et al.
# 2019, "Quantifying the Carbon Emissions of Machine Learning") uses TDP too.
GPU_WATTS: tuple[tuple[str, float], ...] = (
    ("H200", 700.0),
    ("H100 PCIE", 350.0),
    ("H100 NVL", 400.0),
    ("H100", 700.0),
    ("A100-PCIE", 300.0),
    ("A100 PCIE", 300.0),
    ("A100", 400.0),
    ("L40S", 350.0),
    ("L40", 300.0),
    ("L4", 72.0),
    ("A10G", 300.0),
    ("A10", 150.0),
    ("A6000", 300.0),
    ("RTX 4090", 450.0),
    ("RTX 3090", 350.0),
    ("V100", 300.0),
    ("T4", 70.0),
)
DEFAULT_GPU_WATTS = 300.0
# A CPU worker: one socket's share, the TDP of a typical mid-range server or
# desktop CPU package (65 W). Memory, disks and fans are not counted.
CPU_WATTS = 65.0
# Power usage effectiveness: facility energy / IT energy. 1.58 is the global
# average the Uptime Institute reported for 2023 (Global Data Center Survey).
PUE = 1.58
# kg CO2-equivalent per kWh: roughly the world average of electricity
# generation in recent years (Ember, Global Electricity Review 2024: 480 g for
# 2023; IEA figures are similar). Set the real grid of the data centre where known.
GRID_KG_CO2_PER_KWH = 0.48


def _gpu_watts(gpu_name: str | None) -> tuple[float, str]:
    if gpu_name:
        upper = gpu_name.upper()
        for key, watts in GPU_WATTS:
            if key in upper:
                return watts, f"{gpu_name} TDP {watts:g} W"
    known = f"GPU of unknown model ({gpu_name})" if gpu_name else "GPU of unknown model"
    return DEFAULT_GPU_WATTS, f"{known}, assumed {DEFAULT_GPU_WATTS:g} W"


def energy_estimate(
    *,
    seconds: float,
    device: str,
    gpu_name: str | None = None,
    pue: float = PUE,
    grid_kg_co2_per_kwh: float = GRID_KG_CO2_PER_KWH,
) -> dict:
    """An estimate, not a measurement, of the energy and CO2 of ``seconds`` of training.

    energy_kwh = power (W) x hours x PUE / 1000; co2_kg = energy_kwh x grid
    intensity. Power is the board power (TDP) of the named GPU from a table
    (300 W when the name is unknown) on a CUDA device, or 65 W for a CPU
    worker. GPU-hours count wall time on one GPU (0 on CPU). Returns
    ``gpu_hours``, ``energy_kwh``, ``co2_kg``, ``power_watts``, ``pue``,
    ``grid_kg_co2_per_kwh``, ``hardware`` and ``assumptions`` (a sentence for
    the model card).
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
        raise ValueError(f"seconds must be a non-negative number, got {seconds!r}")
    if not pue >= 1:
        raise ValueError("pue must be at least 1")
    if not grid_kg_co2_per_kwh >= 0:
        raise ValueError("grid_kg_co2_per_kwh must be non-negative")
    hours = float(seconds) / 3600.0
    on_gpu = str(device).startswith("cuda")
    if on_gpu:
        watts, power_note = _gpu_watts(gpu_name)
        hardware = f"1 x {gpu_name}" if gpu_name else "1 x GPU (unknown model)"
    else:
        watts, power_note = CPU_WATTS, f"CPU worker, assumed {CPU_WATTS:g} W (one socket's share)"
        hardware = "CPU"
    energy_kwh = watts * hours * pue / 1000.0
    co2_kg = energy_kwh * grid_kg_co2_per_kwh
    assumptions = (
        f"Estimate, not a measurement: {power_note} at full power for {seconds:.0f} s "
        f"of wall time, PUE {pue:g}, grid intensity {grid_kg_co2_per_kwh:g} kg CO2e/kWh. "
        "Host CPU, memory and idle time are not counted."
    )
    return {
        "gpu_hours": hours if on_gpu else 0.0,
        "energy_kwh": energy_kwh,
        "co2_kg": co2_kg,
        "power_watts": watts,
        "pue": float(pue),
        "grid_kg_co2_per_kwh": float(grid_kg_co2_per_kwh),
        "hardware": hardware,
        "assumptions": assumptions,
    }
