"""Serving compatibility: export a model to ONNX, check ONNX Runtime against PyTorch, time both.

A fine-tuned classifier (text or image) is exported with dynamic batch (and
sequence) axes by the classic TorchScript exporter (``dynamo=False``: it needs
no extra packages), run by ONNX Runtime on CPU on the same padded batches that
PyTorch sees, and compared logit by logit. The int8 copy comes from
``onnxruntime.quantization.quantize_dynamic`` (weights to int8, activations
quantised on the fly), the usual first step for CPU serving; its accuracy is
measured on the same rows. A base text encoder (no head) is exported to its
last hidden state and compared on the unpadded token positions; a base image
backbone to the pooled features the probes take from it, compared on real
photographs, fp32 and int8.

Latency is wall time per call on this process's CPU threads (the same thread
count for both runtimes), after warm-up calls that are not counted. No Django.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import finetune as ft
from .features import pool_hidden

OPSET = 17
WARMUP = 3


@dataclass
class Exported:
    """A model exported to ONNX, with what its callers need to feed it."""

    path: Path
    module: Any  # the torch module that was exported (eval mode, CPU)
    input_names: list[str]
    output_name: str
    make_batch: Callable[[np.ndarray], dict[str, np.ndarray]]  # row indices -> numpy inputs
    n: int  # number of rows make_batch can index
    lengths: np.ndarray | None  # token counts (text), for length-sorted batches


def _wrap(model, names: Sequence[str], kind: str):
    """``model`` as a module of positional inputs returning one tensor, as the exporter wants:
    the logits of a classifier, the last hidden state of an encoder."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, *args):
            if kind == "efficientnet":  # plain torch: pixels in, logits out
                return self.inner(*args)
            if kind == "efficientnet-features":  # its pooled features, the classifier left out
                return self.inner.features(*args)
            out = self.inner(**dict(zip(names, args, strict=True)))
            if kind == "image-encoder":  # pooled as the probes pool it
                return pool_hidden(out.last_hidden_state)
            return out.last_hidden_state if kind == "encoder" else out.logits

    return Wrapped().eval()


def _eager(model) -> None:
    """Plain attention: the TorchScript exporter traces it; fused kernels it may not."""
    config = getattr(model, "config", None)
    if config is None:
        return
    setter = getattr(model, "set_attn_implementation", None)
    try:
        if callable(setter):
            setter("eager")
        else:
            config._attn_implementation = "eager"
    except (ValueError, AttributeError, TypeError):
        config._attn_implementation = "eager"


def _text_feeder(tokenizer, texts: Sequence[str], max_length: int):
    batches = ft._TextBatches(tokenizer, list(texts), max_length, 1)

    def make(index: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in batches(index).items()}

    names = ["input_ids", "attention_mask"]
    if batches.types is not None:
        names.append("token_type_ids")
    return make, names, batches.lengths


def _image_feeder(paths: Sequence, settings):
    def make(index: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "pixel_values": np.stack(
                [ft.preprocess_image(ft._open_image(paths[i]), settings) for i in index.tolist()]
            ).astype(np.float32)
        }

    return make, ["pixel_values"], None


def _export(module, names: list[str], sample: dict[str, np.ndarray], path: Path, seq: bool):
    import torch

    args = tuple(torch.from_numpy(sample[name]) for name in names)
    axes: dict[str, dict[int, str]] = {}
    for name in names:
        axes[name] = {0: "batch", 1: "sequence"} if seq else {0: "batch"}
    axes["output"] = (
        {0: "batch", 1: "sequence"} if seq and names[0] == "input_ids" else {0: "batch"}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # The tracer warns that shape checks become constants; the parity check on
    # batches of other sizes and lengths is what tells whether that mattered.
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=names,
                output_names=["output"],
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        except (RuntimeError, TypeError, torch.onnx.errors.OnnxExporterError) as exc:
            # That is the finding: this model does not export as it is.
            raise ValueError(f"the model does not export to ONNX (opset {OPSET}): {exc}") from exc


def export_classifier(
    output_dir: Path,
    modality: str,
    inputs: Sequence,
    path: Path,
    *,
    base_model_dir: Path | None = None,
    max_length: int = 128,
) -> Exported:
    """Export what ``finetune`` wrote (a LoRA adapter merged into its base first) to ``path``.

    ``inputs`` (texts or image paths) are the rows the caller will compare on;
    the first two serve as the tracing sample.
    """
    if not inputs:
        raise ValueError("there are no rows to export and compare on")
    model, loaded, _classes = ft._load_for_inference(Path(output_dir), modality, base_model_dir)
    if hasattr(model, "merge_and_unload"):  # a peft model: serve the merged weights
        model = model.merge_and_unload()
    model.to("cpu").eval()
    kind = loaded.kind
    if kind == "text":
        _eager(model)
        make, names, lengths = _text_feeder(
            loaded.tokenizer, inputs, min(max_length, loaded.max_length)
        )
    else:
        if kind == "vision":
            _eager(model)
        make, names, lengths = _image_feeder(inputs, loaded.image)
    wrapper = _wrap(model, names, kind)
    sample = make(np.arange(min(2, len(inputs))))
    _export(wrapper, names, sample, path, seq=kind == "text")
    return Exported(path, wrapper, names, "output", make, len(inputs), lengths)


def export_encoder(model_dir: Path, texts: Sequence[str], path: Path, *, max_length: int = 128):
    """Export a base text encoder to its last hidden state (batch, sequence, hidden)."""
    from transformers import AutoModel, AutoTokenizer

    if not texts:
        raise ValueError("there are no sentences to export and compare on")
    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    with ft._quiet_transformers():
        model = AutoModel.from_pretrained(model_dir, local_files_only=True)
    model.to("cpu").eval()
    _eager(model)
    length = min(max_length, ft._text_max_length(model_dir, 10**6))
    make, names, lengths = _text_feeder(tokenizer, texts, length)
    wrapper = _wrap(model, names, "encoder")
    _export(wrapper, names, make(np.arange(min(2, len(texts)))), path, seq=True)
    return Exported(path, wrapper, names, "output", make, len(texts), lengths)


def export_image_encoder(model_dir: Path, images: Sequence, path: Path) -> Exported:
    """Export a base image backbone to its pooled features (batch, features), preprocessed as
    the probes preprocess (``images``: paths or PIL images; the first two trace)."""
    from .features import EFFICIENTNET_LITE, _read_config, image_settings

    if not images:
        raise ValueError("there are no images to export and compare on")
    model_dir = Path(model_dir)
    if _read_config(model_dir).get("model_type") == EFFICIENTNET_LITE:
        model = ft._load_for_inference(model_dir, "vision", None)[0]
        kind = "efficientnet-features"
    else:
        from transformers import AutoModel

        with ft._quiet_transformers():
            model = AutoModel.from_pretrained(model_dir, local_files_only=True)
        _eager(model)
        kind = "image-encoder"
    model.to("cpu").eval()
    make, names, _ = _image_feeder(images, image_settings(model_dir))
    wrapper = _wrap(model, names, kind)
    _export(wrapper, names, make(np.arange(min(2, len(images)))), path, seq=False)
    return Exported(path, wrapper, names, "output", make, len(images), None)


def session(path: Path, threads: int):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _torch_run(module) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    import torch

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return module(*(torch.from_numpy(v) for v in batch.values())).float().numpy()

    return run


def _ort_run(sess, names: list[str]) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        return sess.run(None, {k: batch[k] for k in names})[0]

    return run


def _batches(exported: Exported, size: int) -> list[np.ndarray]:
    order = (
        np.argsort(-exported.lengths, kind="stable")
        if exported.lengths is not None
        else np.arange(exported.n)
    )
    return [order[i : i + size] for i in range(0, exported.n, size)]


def outputs(
    exported: Exported, run, *, batch_size: int = 32
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(row indices, output) per padded batch, the same batches for every runtime."""
    return [(index, run(exported.make_batch(index))) for index in _batches(exported, batch_size)]


def softmax(logits: np.ndarray) -> np.ndarray:
    return ft._softmax(np.asarray(logits, dtype=np.float64))


def _stack(pieces: list[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    width = pieces[0][1].shape[1]
    out = np.empty((n, width), dtype=np.float64)
    for index, values in pieces:
        out[index] = values
    return out


def latency(run, make_batch: Callable, n: int, *, batch: int, calls: int) -> dict[str, float]:
    """p50 / p95 / mean milliseconds of ``calls`` timed calls on ``batch`` rows (cycling rows)."""
    if n < 1 or calls < 1:
        raise ValueError("latency needs at least one row and one call")
    feeds = []
    for call in range(calls + WARMUP):
        start = (call * batch) % n
        feeds.append(make_batch(np.arange(start, start + batch) % n))
    for feed in feeds[:WARMUP]:
        run(feed)
    times = []
    for feed in feeds[WARMUP:]:
        began = time.perf_counter()
        run(feed)
        times.append((time.perf_counter() - began) * 1000.0)
    ms = np.asarray(times)
    return {
        "batch": batch,
        "calls": calls,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()),
    }


def quantize(path: Path, target: Path) -> Path:
    """int8 dynamic quantisation of the weights (activations quantised at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # It logs a line (or a warning) per tensor it leaves as it is, on the root logger.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(str(path), str(target), weight_type=QuantType.QInt8)
    finally:
        logging.disable(previous)
    return target


def _threads() -> int:
    import torch

    return max(1, int(torch.get_num_threads() or os.cpu_count() or 1))


def _timings(exported: Exported, runs: dict[str, Callable], *, calls: int) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, run in runs.items():
        out[name] = {
            "batch_1": latency(run, exported.make_batch, exported.n, batch=1, calls=calls),
            "batch_32": latency(
                run, exported.make_batch, exported.n, batch=32, calls=max(3, calls // 5)
            ),
        }
    return out


def check_classifier(
    exported: Exported, labels: np.ndarray, *, calls: int = 50, quantised: bool = True
) -> dict:
    """Parity, label agreement, accuracy and latency of ONNX Runtime (fp32, int8) vs PyTorch."""
    y = np.asarray(labels, dtype=np.int64)
    if y.size != exported.n:
        raise ValueError(f"{y.size} labels for {exported.n} rows")
    threads = _threads()
    torch_run = _torch_run(exported.module)
    fp32 = session(exported.path, threads)
    runs = {"pytorch": torch_run, "onnxruntime": _ort_run(fp32, exported.input_names)}
    int8_path = None
    if quantised:
        int8_path = quantize(exported.path, exported.path.with_name("model.int8.onnx"))
        runs["onnxruntime_int8"] = _ort_run(session(int8_path, threads), exported.input_names)
    logits = {name: _stack(outputs(exported, run), exported.n) for name, run in runs.items()}
    reference = logits["pytorch"]
    p_ref = softmax(reference)
    labels_ref = reference.argmax(axis=1)
    compared = {}
    for name, values in logits.items():
        p = softmax(values)
        predicted = values.argmax(axis=1)
        compared[name] = {
            "accuracy": float(np.mean(predicted == y)),
            "max_abs_logit_diff": float(np.max(np.abs(values - reference))),
            "max_abs_prob_diff": float(np.max(np.abs(p - p_ref))),
            "label_agreement": float(np.mean(predicted == labels_ref)),
        }
    sizes = {"onnxruntime": exported.path.stat().st_size}
    if int8_path is not None:
        sizes["onnxruntime_int8"] = int8_path.stat().st_size
    return {
        "n": int(y.size),
        "threads": threads,
        "opset": OPSET,
        "compared": compared,
        "sizes": sizes,
        "latency": _timings(exported, runs, calls=calls),
        "int8_path": str(int8_path) if int8_path else None,
    }


def check_encoder(exported: Exported, *, calls: int = 50) -> dict:
    """Hidden-state parity of ONNX Runtime vs PyTorch on the real token positions, and latency."""
    threads = _threads()
    runs = {
        "pytorch": _torch_run(exported.module),
        "onnxruntime": _ort_run(session(exported.path, threads), exported.input_names),
    }
    worst = 0.0
    cosines = []
    for index in _batches(exported, 32):
        batch = exported.make_batch(index)
        mask = batch["attention_mask"].astype(bool)
        a, b = runs["pytorch"](batch), runs["onnxruntime"](batch)
        worst = max(worst, float(np.max(np.abs(a[mask] - b[mask]))))
        weights = mask[..., None].astype(np.float64)
        pa = (a * weights).sum(1) / weights.sum(1)
        pb = (b * weights).sum(1) / weights.sum(1)
        cosines.extend(
            (pa * pb).sum(1) / (np.linalg.norm(pa, axis=1) * np.linalg.norm(pb, axis=1) + 1e-12)
        )
    return {
        "n": exported.n,
        "threads": threads,
        "opset": OPSET,
        "max_abs_hidden_diff": worst,
        "min_pooled_cosine": float(np.min(cosines)),
        "sizes": {"onnxruntime": exported.path.stat().st_size},
        "latency": _timings(exported, runs, calls=calls),
    }


def _feature_parity(values: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    norms = np.linalg.norm(values, axis=1) * np.linalg.norm(reference, axis=1)
    dots = (values * reference).sum(axis=1)
    # No floor on the norms: a random backbone's features can be tiny and still agree.
    cosine = np.divide(dots, norms, out=np.ones_like(dots), where=norms > 0)
    scale = float(np.max(np.abs(reference))) or 1.0
    worst = float(np.max(np.abs(values - reference)))
    return {"max_abs_diff": worst, "max_rel_diff": worst / scale, "min_cosine": float(cosine.min())}


def check_image_encoder(exported: Exported, *, calls: int = 50, quantised: bool = True) -> dict:
    """Pooled-feature parity of ONNX Runtime (fp32, and int8 when ``quantised``) vs PyTorch on
    every image, file sizes, and latency at batch 1 and 32."""
    threads = _threads()
    runs = {
        "pytorch": _torch_run(exported.module),
        "onnxruntime": _ort_run(session(exported.path, threads), exported.input_names),
    }
    int8_path = None
    if quantised:
        int8_path = quantize(exported.path, exported.path.with_name("model.int8.onnx"))
        runs["onnxruntime_int8"] = _ort_run(session(int8_path, threads), exported.input_names)
    features = {name: _stack(outputs(exported, run), exported.n) for name, run in runs.items()}
    compared = {
        name: _feature_parity(values, features["pytorch"]) for name, values in features.items()
    }
    sizes = {"onnxruntime": exported.path.stat().st_size}
    if int8_path is not None:
        sizes["onnxruntime_int8"] = int8_path.stat().st_size
    return {
        "n": exported.n,
        "threads": threads,
        "opset": OPSET,
        "dim": int(features["pytorch"].shape[1]),
        "compared": compared,
        "max_abs_hidden_diff": compared["onnxruntime"]["max_abs_diff"],
        "min_pooled_cosine": compared["onnxruntime"]["min_cosine"],
        "sizes": sizes,
        "latency": _timings(exported, runs, calls=calls),
    }
