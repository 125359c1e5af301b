"""Fine-tuning a catalogue model into a classifier: head only, partial, full, or LoRA.

``finetune`` trains text encoders (transformers ``AutoModelForSequenceClassification``)
and vision backbones (``AutoModelForImageClassification`` or the plain-torch
EfficientNet-Lite of ``vision.py``) on labelled texts or image files, from a
model folder on disk (``local_files_only``, never ``trust_remote_code``).

The loop is our own rather than ``transformers.Trainer``: it has to write a
complete checkpoint after every epoch that a different worker can resume
from with identical results, stop between steps when the portal cancels the
job, handle a non-transformers backbone and per-layer learning rates, and it
must not be slower than a plain Trainer script (see ``bench/finetune.py``).
What keeps it fast: texts are tokenised once, each batch is padded only to
its own longest text (evaluation batches are also sorted by length); the
next batch is prepared in pinned memory while the GPU works; the loss stays
on the device between log points (no per-step host sync); fused AdamW;
evaluation runs under ``torch.inference_mode``; bf16 autocast on CUDA (fp16
with a GradScaler where bf16 is missing), float32 on CPU. Training batches
are deliberately not grouped by length: see ``_epoch_batches``.

Head only also trains the pooler where the architecture's classification
head reads from one (BERT-style models); partial unfreezing trains the last
``unfreeze_layers`` blocks and everything above them; LoRA trains adapters on
``default_lora_targets`` plus the head (saved with the adapter).

Determinism: the data order of epoch ``e`` comes from a numpy Generator
seeded with ``(seed, e)``, dropout uses torch's global generator whose state
is saved in every checkpoint, and nothing else draws random numbers, so a run
resumed from a checkpoint ends with the same weights as an uninterrupted one
(bit for bit on CPU; CUDA kernels are not all deterministic).

Nothing here imports Django.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import FineTuneConfig
from .features import (
    EFFICIENTNET_LITE,
    ImageSettings,
    UnsupportedModel,
    _autocast_dtype,
    _open_image,
    _precision,
    _read_config,
    _text_max_length,
    image_settings,
    modality_of,
    preprocess_image,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "EpochReport",
    "TrainResult",
    "build_loss",
    "default_lora_targets",
    "finetune",
    "layer_depths",
    "point_adapter_at",
    "predict_proba",
]

# Optimizer steps between two progress reports (and curve points); each report
# costs one device-to-host copy of the running loss.
LOG_EVERY = 10
CHECKPOINT_FORMAT = 1
# Images are decoded and preprocessed once and kept in memory when they fit in
# this many bytes (float32); larger sets are decoded batch by batch.
IMAGE_CACHE_BYTES = 1 << 30


@dataclass
class EpochReport:
    """What one epoch did, passed to ``on_epoch`` after its checkpoint is written."""

    epoch: int
    step: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    val_macro_f1: float
    seconds: float


@dataclass
class TrainResult:
    """The outcome of ``finetune``: where the weights are and how training went."""

    output_dir: Path
    curves: list[dict]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    steps: int
    samples_seen: int
    train_seconds: float
    peak_memory_bytes: int | None
    trainable_parameters: int
    total_parameters: int
    precision: str = "fp32"
    # The rate the weights were trained at, and the learning-rate search behind it:
    # one {"learning_rate", "val_macro_f1", "val_loss", "val_accuracy", "seconds",
    # "chosen"} per rate tried (empty without ``lr_search``).
    learning_rate: float | None = None
    lr_search: list[dict] = field(default_factory=list)
    # Training time of the rates not chosen (``train_seconds`` is the chosen run's).
    search_seconds: float = 0.0


# --------------------------------------------------------------------------- model folders

# LoRA targets per model type: the attention query and value projections, the
# choice of the LoRA paper (Hu et al. 2021, section 7.1). Other types fall back
# to peft's own table.
_LORA_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "camembert": ["query", "value"],
    "electra": ["query", "value"],
    "albert": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "mpnet": ["q", "v"],
    "deberta-v2": ["query_proj", "value_proj"],
    "vit": ["query", "value"],
    "deit": ["query", "value"],
    "beit": ["query", "value"],
    "dinov2": ["query", "value"],
    "gpt2": ["c_attn"],
    # EfficientNet-Lite has no attention: adapt its pointwise (1x1) convolutions,
    # which hold most of its weights; the depthwise ones are cheap already.
    EFFICIENTNET_LITE: ["_expand_conv", "_project_conv", "_conv_head"],
}


def default_lora_targets(model_dir: Path) -> list[str]:
    """Module names LoRA adapts by default for the model in ``model_dir``.

    ValueError ("LoRA is not supported for ...") when the type has no known
    default; name the modules in ``FineTuneConfig.lora_target_modules`` then.
    """
    model_type = _read_config(Path(model_dir)).get("model_type")
    if model_type in _LORA_TARGETS:
        return list(_LORA_TARGETS[model_type])
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    if targets:
        return list(targets)
    raise ValueError(
        f"LoRA is not supported for model type {model_type!r} by default: there are no "
        "known target modules; name them in lora_target_modules or choose another strategy"
    )


def _fingerprint(model_dir: Path) -> str:
    """A hash of config.json: enough to notice a checkpoint resumed on another base."""
    return hashlib.sha256((Path(model_dir) / "config.json").read_bytes()).hexdigest()


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence "newly initialized weights" notices (a new head is the point here) and
    the loading progress bars, which would only clutter a worker's log."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@dataclass
class _Loaded:
    model: Any
    kind: str  # "text", "vision", "efficientnet"
    tokenizer: Any = None
    image: ImageSettings | None = None
    max_length: int = 0


def _effnet_weights(model_dir: Path, config: dict) -> tuple[Path, str]:
    from .vision import LITE_VARIANTS

    name = config.get("weights_file")
    if not isinstance(name, str) or Path(name).name != name:
        raise UnsupportedModel("EfficientNet-Lite config.json needs a plain 'weights_file' name")
    weights = model_dir / name
    if not weights.is_file():
        raise UnsupportedModel(f"weights file {name} is missing")
    variant = config.get("variant", "efficientnet-lite0")
    if variant not in LITE_VARIANTS:
        raise UnsupportedModel(f"EfficientNet-Lite variant {variant!r} is not supported")
    return weights, variant


def _load_classifier(
    model_dir: Path, modality: str, class_names: Sequence[str] | None, *, num_labels: int
) -> _Loaded:
    """The base model with a freshly initialised classification head of ``num_labels``.

    ``model_dir`` may also be a folder ``finetune`` wrote (then the trained head
    loads too, as its size matches).
    """
    model_dir = Path(model_dir)
    actual = modality_of(model_dir)
    if actual != modality:
        raise ValueError(f"{model_dir.name} is a {actual} model, not a {modality} model")
    config = _read_config(model_dir)
    if config.get("model_type") == EFFICIENTNET_LITE:
        return _load_efficientnet(model_dir, config, num_labels)
    options = _pretrained_options(class_names, num_labels)
    if modality == "text":
        return _load_text_classifier(model_dir, config, options)
    from transformers import AutoModelForImageClassification

    model = _from_pretrained(
        AutoModelForImageClassification, model_dir, options, config, "image-classification"
    )
    return _Loaded(model, "vision", image=image_settings(model_dir))


def _load_efficientnet(model_dir: Path, config: dict, num_labels: int) -> _Loaded:
    """The plain-torch EfficientNet-Lite, its classifier replaced when the class count differs."""
    import torch

    from .vision import FEATURE_DIM, load_efficientnet_lite

    weights, variant = _effnet_weights(model_dir, config)
    net = load_efficientnet_lite(
        weights, variant=variant, num_classes=int(config.get("num_classes", 1000))
    )
    if net._fc.out_features != num_labels:
        net._fc = torch.nn.Linear(FEATURE_DIM, num_labels)
    return _Loaded(net.train(), "efficientnet", image=image_settings(model_dir))


def _pretrained_options(class_names: Sequence[str] | None, num_labels: int) -> dict:
    """``from_pretrained`` keywords: the label names, float32, no download, a resizable head."""
    import torch

    names = list(class_names) if class_names else [f"LABEL_{i}" for i in range(num_labels)]
    return {
        "num_labels": num_labels,
        "id2label": {i: str(name) for i, name in enumerate(names)},
        "label2id": {str(name): i for i, name in enumerate(names)},
        "local_files_only": True,
        "dtype": torch.float32,
        "ignore_mismatched_sizes": True,
    }


def _load_text_classifier(model_dir: Path, config: dict, options: dict) -> _Loaded:
    """Tokenizer and sequence-classification model; padding on the right with a pad token."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    model = _from_pretrained(
        AutoModelForSequenceClassification, model_dir, options, config, "sequence-classification"
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return _Loaded(
        model, "text", tokenizer=tokenizer, max_length=_text_max_length(model_dir, 10**6)
    )


def _from_pretrained(auto_class, model_dir: Path, options: dict, config: dict, head: str):
    """``auto_class.from_pretrained``; UnsupportedModel when transformers has no such head."""
    try:
        with _quiet_transformers():
            return auto_class.from_pretrained(model_dir, **options)
    except ValueError as exc:
        raise UnsupportedModel(
            f"model type {config.get('model_type')!r} has no {head} head in transformers: {exc}"
        ) from exc


# --------------------------------------------------------------------------- model anatomy


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _head_modules(model: nn.Module) -> list[str]:
    """Qualified names of the modules that make the classification head.

    For transformers models: every top-level child that is not the base model
    (``classifier``, DistilBERT's ``pre_classifier``, GPT-2's ``score`` ...),
    plus the base model's ``pooler`` where the head reads from it: BERT-style
    checkpoints ship a pooler that is either random or trained only for
    next-sentence prediction, and freezing it would leave an untrained
    projection between the features and the new classifier.
    """
    from .vision import EfficientNetLite

    if isinstance(model, EfficientNetLite):
        return ["_fc"]
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if prefix else None
    names = [
        name for name, child in model.named_children() if child is not base and _has_params(child)
    ]
    pooler = getattr(base, "pooler", None) if base is not None else None
    if pooler is not None and _has_params(pooler):
        names.append(f"{prefix}.pooler")
    if not names:
        raise UnsupportedModel(f"cannot find the classification head of {type(model).__name__}")
    return names


def _layer_list(model: nn.Module) -> nn.ModuleList:
    """The stack of repeated blocks: the ModuleList holding the most parameters."""
    from torch import nn

    best: tuple[int, nn.ModuleList] | None = None
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) >= 1:
            count = sum(p.numel() for p in module.parameters())
            if best is None or count > best[0]:
                best = (count, module)
    if best is None:
        raise UnsupportedModel(f"cannot find the layer stack of {type(model).__name__}")
    return best[1]


def layer_depths(model: nn.Module) -> dict[str, int]:
    """Depth of every parameter below the top: 0 for the head and anything after the
    layer stack (final norm, pooler), ``L - i`` for layer ``i`` of ``L``, ``L + 1`` for
    whatever comes before the stack (embeddings, stem).

    "Before" and "after" follow registration order, which for transformers
    encoders, ViT, GPT-2 and EfficientNet-Lite is the order of the forward pass.
    """
    layers = _layer_list(model)
    count = len(layers)
    layer_of = {id(p): i for i, layer in enumerate(layers) for p in layer.parameters()}
    depths: dict[str, int] = {}
    seen_stack = False
    for name, param in model.named_parameters():
        index = layer_of.get(id(param))
        if index is not None:
            depths[name] = count - index
            seen_stack = True
        else:
            depths[name] = 0 if seen_stack else count + 1
    return depths


def _in_modules(name: str, modules: Sequence[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def _apply_strategy(
    loaded: _Loaded, config: FineTuneConfig, model_dir: Path
) -> tuple[nn.Module, list[str]]:
    """Freeze what the strategy keeps fixed; wrap in LoRA. Returns (model, head modules)."""
    model = loaded.model
    head = _head_modules(model)
    if config.strategy == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model, head
    if config.strategy == "head":
        for name, param in model.named_parameters():
            param.requires_grad_(_in_modules(name, head))
        return model, head
    if config.strategy == "partial":
        depths = layer_depths(model)
        layers = len(_layer_list(model))
        if config.unfreeze_layers > layers:
            raise ValueError(
                f"unfreeze_layers={config.unfreeze_layers} but the model has {layers} layers; "
                "choose at most that many, or the 'full' strategy"
            )
        for name, param in model.named_parameters():
            param.requires_grad_(depths[name] <= config.unfreeze_layers or _in_modules(name, head))
        return model, head
    from peft import LoraConfig, TaskType, get_peft_model

    targets = config.lora_target_modules or default_lora_targets(model_dir)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(targets),
        modules_to_save=list(head),
        bias="none",
        task_type=TaskType.SEQ_CLS if loaded.kind == "text" else None,
    )
    return get_peft_model(model, lora), head


def _freeze_batchnorm_stats(model: nn.Module) -> None:
    """BatchNorm layers whose weights are frozen also keep their running statistics.

    Otherwise "frozen" layers would still drift through their statistics, and
    a LoRA adapter (which saves no BatchNorm buffers) would not reproduce the
    model it was trained with.
    """
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.eval()


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters and all persistent buffers, detached CPU copies."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    params = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    return {
        key: value.detach().to("cpu", copy=True).contiguous()
        for key, value in model.state_dict().items()
        if key in trainable or key not in params
    }


def _load_trainable(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing_trainable = {n for n, p in model.named_parameters() if p.requires_grad} - set(state)
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys or missing_trainable:
        raise ValueError(
            "the checkpoint does not match this model and strategy "
            f"(unexpected: {sorted(result.unexpected_keys)[:5]}, "
            f"missing: {sorted(missing_trainable)[:5]})"
        )


# --------------------------------------------------------------------------- optimisation


def build_loss(
    config: FineTuneConfig, train_labels: np.ndarray, class_count: int
) -> torch.nn.CrossEntropyLoss:
    """The training loss: cross-entropy with the configured label smoothing and, when
    ``class_weights`` is on, inverse-frequency weights n / (C * n_c) (scikit-learn's
    "balanced"; a class absent from training gets weight 1)."""
    import torch

    weight = None
    if config.class_weights:
        counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=class_count)
        values = np.ones(class_count, dtype=np.float64)
        present = counts > 0
        values[present] = counts.sum() / (class_count * counts[present])
        weight = torch.tensor(values, dtype=torch.float32)
    return torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


def _parameter_groups(model: nn.Module, config: FineTuneConfig) -> list[dict]:
    """AdamW groups: one per (depth, decay) so each layer can have its own rate.

    Weight decay skips biases and normalisation weights (every tensor with
    fewer than two dimensions), as BERT's optimizer and transformers' Trainer do.
    """
    depths = layer_depths(model) if config.layer_decay != 1.0 else {}
    groups: dict[tuple[int, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (depths.get(name, 0), param.ndim >= 2)
        groups.setdefault(key, []).append(param)
    return [
        {
            "params": params,
            "lr": config.learning_rate * config.layer_decay**depth,
            "weight_decay": config.weight_decay if decay else 0.0,
            "depth": depth,
        }
        for (depth, decay), params in sorted(groups.items(), key=lambda kv: (-kv[0][0], kv[0][1]))
    ]


def _optimizer(model: nn.Module, config: FineTuneConfig, device: str):
    import torch

    groups = _parameter_groups(model, config)
    if not groups:
        raise ValueError("the strategy leaves no parameter to train")
    # Fused AdamW: one kernel for all parameters (what Trainer's default
    # "adamw_torch_fused" uses); available on CPU and CUDA.
    fused = torch.device(device).type in ("cuda", "cpu")
    return torch.optim.AdamW(
        groups, lr=config.learning_rate, betas=(0.9, 0.999), eps=1e-8, fused=fused
    )


def _scheduler(optimizer, config: FineTuneConfig, total_steps: int):
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    warmup = math.ceil(config.warmup_ratio * total_steps)
    make = (
        get_linear_schedule_with_warmup
        if config.schedule == "linear"
        else get_cosine_schedule_with_warmup
    )
    return make(optimizer, warmup, total_steps)


# --------------------------------------------------------------------------- data


class _TextBatches:
    """Texts tokenised once; batches padded to their own longest text."""

    def __init__(self, tokenizer, texts: Sequence[str], max_length: int, pad_multiple: int = 1):
        encoded = tokenizer(
            list(texts),
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
        )
        self.ids: list[list[int]] = encoded["input_ids"]
        names = getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"])
        self.types: list[list[int]] | None = (
            encoded.get("token_type_ids") if "token_type_ids" in names else None
        )
        self.lengths = np.fromiter((len(ids) for ids in self.ids), dtype=np.int64, count=len(texts))
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self.pad_multiple = pad_multiple

    def __call__(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        import torch

        width = int(self.lengths[index].max())
        if self.pad_multiple > 1:
            width = -(-width // self.pad_multiple) * self.pad_multiple
        ids = np.full((len(index), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(index), width), dtype=np.int64)
        types = np.zeros((len(index), width), dtype=np.int64) if self.types is not None else None
        for row, i in enumerate(index):
            n = self.lengths[i]
            ids[row, :n] = self.ids[i]
            mask[row, :n] = 1
            if types is not None:
                types[row, :n] = self.types[i]
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if types is not None:
            batch["token_type_ids"] = torch.from_numpy(types)
        return batch


class _ImageBatches:
    """Image files decoded and preprocessed like the probes do (no augmentation)."""

    def __init__(self, paths: Sequence[Path | str], settings: ImageSettings, *, cache: bool = True):
        self.paths = list(paths)
        self.settings = settings
        self.pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
        self.cache: np.ndarray | None = None
        size = len(self.paths) * 3 * settings.size**2 * 4
        if cache and self.paths and size <= IMAGE_CACHE_BYTES:
            self.cache = self._decode(np.arange(len(self.paths)))

    def _decode(self, index: np.ndarray) -> np.ndarray:
        def one(i: int) -> np.ndarray:
            return preprocess_image(_open_image(self.paths[i]), self.settings)

        return np.stack(list(self.pool.map(one, index.tolist())))

    def __call__(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        import torch

        pixels = self.cache[index] if self.cache is not None else self._decode(index)
        return {"pixel_values": torch.from_numpy(np.ascontiguousarray(pixels))}

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch: a random permutation that depends on (seed, epoch) only.

    Texts are not grouped by length for training (transformers'
    ``group_by_length``), although that would pad less: when length goes with
    the class - spam SMS are longer than ham - length-sorted batches hold
    mostly one class and training gets much noisier. Each batch is still
    padded only to its own longest text; evaluation does sort by length.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _prefetch(make: Callable, batches: Sequence[np.ndarray], enabled: bool) -> Iterator[dict]:
    """Yield ``make(batch)`` for every batch.

    Enabled (on CUDA), the next batch is built and copied to pinned memory in a
    thread while the GPU works on the current one, so the host-to-device copy
    can be asynchronous. On CPU that thread would only compete with torch's.
    """
    if not enabled:
        for index in batches:
            yield make(index)
        return

    def pinned(index: np.ndarray) -> dict:
        return {k: v.pin_memory() for k, v in make(index).items()}

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(pinned, batches[0]) if batches else None
        for i in range(len(batches)):
            assert pending is not None
            current = pending.result()
            pending = pool.submit(pinned, batches[i + 1]) if i + 1 < len(batches) else None
            yield current


def _logits(model, kind: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    if kind == "efficientnet":
        return model(batch["pixel_values"])
    return model(**batch).logits


def _to_device(batch: dict, device: str, cuda: bool) -> dict:
    return {k: v.to(device, non_blocking=cuda) for k, v in batch.items()}


def _autocast(device: str):
    import torch

    dtype = _autocast_dtype(device)
    return torch.autocast("cuda", dtype=dtype) if dtype is not None else nullcontext()


def _predict(
    model, kind: str, make: Callable, n: int, *, device: str, batch_size: int, lengths=None
) -> np.ndarray:
    """(n, C) float32 logits in input order; batches sorted by length when given."""
    import torch

    order = np.argsort(-lengths, kind="stable") if lengths is not None else np.arange(n)
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    cuda = torch.device(device).type == "cuda"
    out: np.ndarray | None = None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _autocast(device):
            prepared = _prefetch(make, batches, enabled=cuda)
            for index, batch in zip(batches, prepared, strict=True):
                logits = _logits(model, kind, _to_device(batch, device, cuda)).float().cpu()
                if out is None:
                    out = np.empty((n, logits.shape[1]), dtype=np.float32)
                out[index] = logits.numpy()
    finally:
        model.train(was_training)
    assert out is not None
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- checkpoints


def _write_checkpoint(
    path: Path,
    *,
    model,
    optimizer,
    scheduler,
    scaler,
    state: dict,
    best_file: Path | None,
) -> None:
    """Write a checkpoint folder atomically (a reader never sees half of one)."""
    import torch
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_trainable_state(model), str(tmp / "trainable.safetensors"))
    if best_file is not None:
        _link_or_copy(best_file, tmp / "best.safetensors")
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "rng": rng,
        },
        tmp / "training_state.pt",
    )
    (tmp / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (no second copy of the weights), else copy it.

    Safe because checkpoint files are never modified in place: a newer
    checkpoint is a new folder, and removing an old one leaves the link.
    """
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _read_checkpoint_state(path: Path) -> dict:
    state_file = Path(path) / "state.json"
    if not state_file.is_file():
        raise ValueError(f"{Path(path).name} is not a fine-tune checkpoint (no state.json)")
    state = json.loads(state_file.read_text(encoding="utf-8"))
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint format {state.get('format')!r} is not supported")
    return state


def _check_resumable(state: dict, expected: dict) -> None:
    for key in ("modality", "class_names", "n_train", "n_val", "base_fingerprint"):
        if state.get(key) != expected[key]:
            raise ValueError(
                f"the checkpoint was written for a different run: {key} differs "
                f"({state.get(key)!r} there, {expected[key]!r} here)"
            )
    differing = sorted(
        k for k in expected["config"] if state["config"].get(k) != expected["config"][k]
    )
    if differing:
        raise ValueError(
            "the checkpoint was written with different settings: " + ", ".join(differing)
        )


# --------------------------------------------------------------------------- training


def _check_split(name: str, split, class_count: int, modality: str) -> tuple[list, np.ndarray]:
    inputs, labels = split
    y = np.asarray(labels)
    if y.ndim != 1 or len(inputs) != y.size:
        raise ValueError(f"{name}: {len(inputs)} inputs for {y.size} labels")
    if y.size == 0:
        raise ValueError(f"{name} split is empty")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} labels must be integer class indices")
    if y.min() < 0 or y.max() >= class_count:
        raise ValueError(f"{name} labels must lie in 0..{class_count - 1}")
    if modality == "text" and any(not isinstance(t, str) for t in inputs):
        raise ValueError(f"{name}: every text must be a string")
    return list(inputs), y.astype(np.int64)


def finetune(
    model_dir: Path,
    modality: str,
    class_names: list[str],
    train: tuple[list, np.ndarray],
    val: tuple[list, np.ndarray],
    config: FineTuneConfig,
    *,
    work_dir: Path,
    device: str = "cpu",
    resume: Path | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[EpochReport, Path], None] | None = None,
    on_search_step: Callable[[int, int, float, int, int, float], None] | None = None,
) -> TrainResult:
    """Fine-tune ``model_dir`` into a classifier over ``class_names``; weights of the best epoch.

    ``train`` and ``val`` are (texts or image paths, int labels). After every
    epoch a complete checkpoint is written to ``work_dir/checkpoints/epoch-NNNN``
    (the previous one is then removed) and ``on_epoch(report, folder)`` is
    called; ``on_step(step, total_steps, mean_loss)`` is called every
    ``LOG_EVERY`` optimizer steps (more often in short runs) and at the end
    of each epoch. An exception
    raised by either callback stops training and propagates unchanged (that is
    how a job is cancelled); the checkpoints already written stay usable.
    ``resume`` names a checkpoint folder: training continues with the epoch
    after it, exactly as if it had never stopped. With ``config.lr_search``
    the run first tries each of ``config.search_rates()`` for one epoch
    (``_search_learning_rate``), reporting those steps to
    ``on_search_step(index, count, rate, step, steps, mean_loss)`` instead of
    ``on_step``; raising from it stops the search the same way. The weights of the epoch
    with the best validation macro-F1 are written to ``work_dir/output``:
    a full transformers model (or EfficientNet-Lite safetensors + config.json)
    for head/partial/full, the peft adapter files alone for LoRA.
    """
    import torch

    config.validate()
    model_dir, work_dir = Path(model_dir), Path(work_dir)
    class_names, train, val = _checked_inputs(modality, class_names, train, val)
    inputs = (model_dir, modality, class_names, train, val)
    trials: list[dict] = []
    if config.lr_search and resume is None:
        config, resume, trials = _search_learning_rate(
            inputs, config, device, work_dir, on_search_step, on_epoch
        )
    elif config.lr_search:
        config, trials = _searched_config(Path(resume), config)
    expected = _run_identity(model_dir, modality, class_names, train, val, config)
    resumed = _resumable_state(Path(resume), expected) if resume is not None else None
    # Seeded before loading: the new head's (and LoRA's) initial weights draw from it.
    torch.manual_seed(config.seed)
    run = _prepare(model_dir, modality, class_names, train, val, config, device, work_dir)
    # The search travels in every checkpoint, so a resumed run still reports it.
    run.expected = {**expected, "lr_search": trials} if trials else expected
    progress = _Progress()
    if resumed is not None:
        progress = _restore(run, Path(resume), resumed)
    _run_epochs(run, progress, on_step, on_epoch)
    result = _finish(run, progress, model_dir, class_names)
    for trial in _search_folders(work_dir):
        shutil.rmtree(trial, ignore_errors=True)
    result.learning_rate = config.learning_rate
    result.lr_search = trials
    result.search_seconds = sum(t["seconds"] for t in trials if not t["chosen"])
    return result


def _search_folders(work_dir: Path) -> list[Path]:
    """The per-rate work folders of a learning-rate search under ``work_dir``."""
    return sorted(Path(work_dir).glob("lr-search-*"))


def _search_learning_rate(inputs, config, device, work_dir, on_search_step, on_epoch):
    """Train each of ``config.search_rates()`` for one epoch; continue the best one.

    Every rate runs with the schedule of the whole run (same warm-up, same
    decay), so its first epoch is exactly the first epoch it would have had;
    the winner is then resumed from its own epoch-1 checkpoint and trains on
    as if it had never been compared. Choice: the best validation macro-F1
    (the metric that picks the best epoch), ties to the lower validation loss,
    then to the lower rate. Returns (the winner's config, its checkpoint
    folder, one record per rate). ``on_epoch`` hears only the winner's first
    epoch: the discarded runs are not the job's checkpoints.
    """
    import torch

    model_dir, modality, class_names, train, val = inputs
    rates = config.search_rates()
    trials, folders, reports = [], [], []
    for index, rate in enumerate(rates):
        trial = replace(config, learning_rate=rate, lr_search=False)
        torch.manual_seed(trial.seed)
        folder = work_dir / f"lr-search-{index}"
        run = _prepare(model_dir, modality, class_names, train, val, trial, device, folder)
        run.expected = _run_identity(model_dir, modality, class_names, train, val, trial)
        progress = _Progress()
        on_step = None
        if on_search_step is not None:
            steps = math.ceil(run.total_steps / trial.epochs)

            def on_step(step, _total, loss, index=index, rate=rate, steps=steps):
                on_search_step(index, len(rates), rate, step, steps, loss)

        _run_epochs(run, progress, on_step, None, until=1)
        last = progress.curves[-1]
        reports.append(_report_of(progress))
        folders.append(run.checkpoints / f"epoch-{progress.epoch:04d}")
        trials.append(
            {
                "learning_rate": rate,
                "val_macro_f1": last["val_macro_f1"],
                "val_loss": last["val_loss"],
                "val_accuracy": last["val_accuracy"],
                "seconds": progress.train_seconds,
                "chosen": False,
            }
        )
        del run
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    best = min(
        range(len(rates)),
        key=lambda i: (-trials[i]["val_macro_f1"], trials[i]["val_loss"], rates[i]),
    )
    trials[best]["chosen"] = True
    for index, folder in enumerate(folders):
        if index != best:
            shutil.rmtree(folder.parents[1], ignore_errors=True)
    if on_epoch is not None:
        on_epoch(reports[best], folders[best])
    return replace(config, learning_rate=rates[best], lr_search=False), folders[best], trials


def _searched_config(resume: Path, config: FineTuneConfig) -> tuple[FineTuneConfig, list]:
    """The config a checkpoint of a searched run was trained with, and its search record.

    A retried job holds the settings as submitted (``lr_search`` on, the centre
    rate); its checkpoint was written by the rate the search chose. Anything
    else differing is left for ``_check_resumable`` to refuse.
    """
    state = _read_checkpoint_state(resume)
    saved = state.get("config", {})
    rate = saved.get("learning_rate")
    if saved.get("lr_search") is False and rate in config.search_rates():
        return replace(config, learning_rate=rate, lr_search=False), state.get("lr_search", [])
    return config, []


def _report_of(progress: _Progress) -> EpochReport:
    """The EpochReport of the epoch ``progress`` last validated."""
    last = progress.curves[-1]
    return EpochReport(
        epoch=progress.epoch,
        step=progress.step,
        train_loss=last["train_loss_epoch"],
        val_loss=last["val_loss"],
        val_accuracy=last["val_accuracy"],
        val_macro_f1=last["val_macro_f1"],
        seconds=progress.train_seconds,
    )


def _run_identity(model_dir: Path, modality: str, class_names, train, val, config) -> dict:
    """What a checkpoint records about its run, and must share with a run resuming it."""
    return {
        "modality": modality,
        "class_names": class_names,
        "n_train": len(train[0]),
        "n_val": len(val[0]),
        "base_fingerprint": _fingerprint(model_dir),
        "config": config.as_dict(),
    }


def _resumable_state(resume: Path, expected: dict) -> dict:
    """The state.json of checkpoint ``resume``, checked to belong to this run."""
    resumed = _read_checkpoint_state(resume)
    _check_resumable(resumed, expected)
    return resumed


def _run_epochs(run: _Run, progress: _Progress, on_step, on_epoch, until: int = 0) -> None:
    """Train, validate and checkpoint epoch after epoch until the last or an early stop.

    ``until``: stop after that epoch (the learning-rate search's one epoch per rate).
    """
    import torch

    if run.cuda:
        torch.cuda.reset_peak_memory_stats(run.dev)
    run.model.train()
    _freeze_batchnorm_stats(run.model)
    try:
        last = min(run.config.epochs, until) if until else run.config.epochs
        while progress.epoch < last and not progress.stopped_early:
            _train_epoch(run, progress, on_step)
            improved, report = _validate_epoch(run, progress)
            folder = _checkpoint_epoch(run, progress, improved)
            if on_epoch is not None:
                on_epoch(report, folder)
    finally:
        for maker in (run.make_train, run.make_val):
            if isinstance(maker, _ImageBatches):
                maker.close()


def _checked_inputs(modality: str, class_names, train, val):
    """The class names as strings and both splits as (list of inputs, int64 labels)."""
    if modality not in ("text", "vision"):
        raise ValueError(f"modality must be 'text' or 'vision', got {modality!r}")
    class_names = [str(name) for name in class_names]
    if len(class_names) < 2 or len(set(class_names)) != len(class_names):
        raise ValueError("class_names must name at least two distinct classes")
    count = len(class_names)
    return (
        class_names,
        _check_split("train", train, count, modality),
        _check_split("validation", val, count, modality),
    )


@dataclass
class _Progress:
    """Where training stands: what each checkpoint saves and a resumed run restores."""

    epoch: int = 0
    step: int = 0
    samples_seen: int = 0
    train_seconds: float = 0.0
    curves: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float = -1.0
    since_best: int = 0
    stopped_early: bool = False

    def state(self) -> dict:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "samples_seen": self.samples_seen,
            "train_seconds": self.train_seconds,
            "curves": self.curves,
            "best_epoch": self.best_epoch,
            "best_metric": self.best_metric,
            "since_best": self.since_best,
            "stopped_early": self.stopped_early,
        }


@dataclass
class _Run:
    """Everything one training run holds: model, batches, optimizer, losses and paths."""

    config: FineTuneConfig
    device: str
    dev: Any
    cuda: bool
    loaded: _Loaded
    model: Any
    make_train: Any
    make_val: Any
    val_lengths: Any
    n_train: int
    y_train: Any
    y_val: np.ndarray
    optimizer: Any
    scheduler: Any
    scaler: Any
    loss_fn: Any
    val_loss_fn: Any
    trainable: list
    total_steps: int
    checkpoints: Path
    best_file: Path
    work_dir: Path
    expected: dict = field(default_factory=dict)
    # The current epoch's start and mean training loss, for its validation report.
    epoch_began: float = 0.0
    epoch_loss: float = 0.0

    def with_labels(self, index: np.ndarray) -> dict:
        return {**self.make_train(index), "labels": self.y_train[index]}


def _prepare(model_dir, modality, class_names, train, val, config, device, work_dir) -> _Run:
    """Load the model with its new head, apply the strategy, build batches and the optimizer."""
    import torch

    train_inputs, y_train = train
    val_inputs, y_val = val
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    loaded = _load_classifier(model_dir, modality, class_names, num_labels=len(class_names))
    model, _head = _apply_strategy(loaded, config, model_dir)
    model.to(dev)
    if loaded.kind == "text":
        max_length = min(config.max_length, loaded.max_length)
        make_train = _TextBatches(loaded.tokenizer, train_inputs, max_length, 8 if cuda else 1)
        make_val = _TextBatches(loaded.tokenizer, val_inputs, max_length, 8 if cuda else 1)
        val_lengths = make_val.lengths
    else:
        assert loaded.image is not None
        make_train = _ImageBatches(train_inputs, loaded.image)
        make_val = _ImageBatches(val_inputs, loaded.image)
        val_lengths = None
    batches_per_epoch = math.ceil(len(train_inputs) / config.batch_size)
    total_steps = math.ceil(batches_per_epoch / config.grad_accum) * config.epochs
    optimizer = _optimizer(model, config, device)
    amp_dtype = _autocast_dtype(device)
    best_dir = work_dir / "best"
    best_dir.mkdir(parents=True, exist_ok=True)
    return _Run(
        config=config,
        device=device,
        dev=dev,
        cuda=cuda,
        loaded=loaded,
        model=model,
        make_train=make_train,
        make_val=make_val,
        val_lengths=val_lengths,
        n_train=len(train_inputs),
        y_train=torch.from_numpy(y_train),
        y_val=y_val,
        optimizer=optimizer,
        scheduler=_scheduler(optimizer, config, total_steps),
        scaler=torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None,
        loss_fn=build_loss(config, y_train, len(class_names)).to(dev),
        # Plain, so validation loss compares across settings.
        val_loss_fn=torch.nn.CrossEntropyLoss(),
        trainable=[p for p in model.parameters() if p.requires_grad],
        total_steps=total_steps,
        checkpoints=work_dir / "checkpoints",
        best_file=best_dir / "trainable.safetensors",
        work_dir=work_dir,
    )


def _restore(run: _Run, resume: Path, resumed: dict) -> _Progress:
    """Weights, optimizer, scheduler, scaler and random state as the checkpoint left them."""
    import torch
    from safetensors.torch import load_file

    _load_trainable(run.model, load_file(str(resume / "trainable.safetensors"), device="cpu"))
    saved = torch.load(resume / "training_state.pt", map_location="cpu", weights_only=True)
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    if run.scaler is not None and saved["scaler"]:
        run.scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["rng"]["torch"])
    if run.cuda and saved["rng"].get("cuda"):
        torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
    progress = _Progress(**{name: resumed[name] for name in _Progress().state()})
    source = (
        "trainable.safetensors" if progress.best_epoch == progress.epoch else "best.safetensors"
    )
    _link_or_copy(resume / source, run.best_file)
    return progress


def _train_epoch(run: _Run, progress: _Progress, on_step) -> None:
    """One pass over the training split, in this epoch's seeded order."""
    import torch

    config = run.config
    progress.epoch += 1
    run.epoch_began = time.perf_counter()
    batches = _epoch_batches(run.n_train, config.batch_size, config.seed, progress.epoch)
    running = torch.zeros((), device=run.dev)
    epoch_total = torch.zeros((), device=run.dev)
    running_batches = 0
    last = len(batches) - 1
    for i, batch in enumerate(_prefetch(run.with_labels, batches, enabled=run.cuda)):
        batch = _to_device(batch, run.device, run.cuda)
        labels = batch.pop("labels")
        with _autocast(run.device):
            logits = _logits(run.model, run.loaded.kind, batch)
        loss = run.loss_fn(logits.float(), labels)
        scaled = loss / config.grad_accum
        (run.scaler.scale(scaled) if run.scaler is not None else scaled).backward()
        running += loss.detach()
        epoch_total += loss.detach()
        running_batches += 1
        progress.samples_seen += len(batches[i])
        if (i + 1) % config.grad_accum and i != last:
            continue
        _optimizer_step(run)
        progress.step += 1
        # About fifty points per run at least, so a short run still draws a curve.
        every = max(1, min(LOG_EVERY, run.total_steps // 50))
        if progress.step % every == 0 or i == last:
            mean_loss = float(running.item()) / running_batches
            progress.curves.append(
                {
                    "step": progress.step,
                    "epoch": progress.epoch,
                    "train_loss": mean_loss,
                    "lr": float(run.scheduler.get_last_lr()[-1]),
                }
            )
            running.zero_()
            running_batches = 0
            if on_step is not None:
                on_step(progress.step, run.total_steps, mean_loss)
    run.epoch_loss = float(epoch_total.item()) / len(batches)


def _optimizer_step(run: _Run) -> None:
    """Unscale, clip, step the optimizer and the schedule, and clear the gradients."""
    import torch

    if run.scaler is not None:
        run.scaler.unscale_(run.optimizer)
    if run.config.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(run.trainable, run.config.max_grad_norm)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)


def _validate_epoch(run: _Run, progress: _Progress) -> tuple[bool, EpochReport]:
    """Score the validation split; keep track of the best epoch and of early stopping."""
    config = run.config
    val_logits = _predict(
        run.model,
        run.loaded.kind,
        run.make_val,
        len(run.y_val),
        device=run.device,
        batch_size=config.batch_size * 2,
        lengths=run.val_lengths,
    )
    _freeze_batchnorm_stats(run.model)
    metrics = _val_metrics(val_logits, run.y_val, run.val_loss_fn)
    improved = metrics["val_macro_f1"] > progress.best_metric
    if improved:
        progress.best_epoch, progress.best_metric = progress.epoch, metrics["val_macro_f1"]
        progress.since_best = 0
    else:
        progress.since_best += 1
    # Early stopping is stopping before the last epoch; running out of epochs is not.
    progress.stopped_early = (
        config.patience > 0
        and progress.since_best >= config.patience
        and progress.epoch < config.epochs
    )
    seconds = time.perf_counter() - run.epoch_began
    progress.train_seconds += seconds
    progress.curves.append(
        {
            "epoch": progress.epoch,
            "step": progress.step,
            "train_loss_epoch": run.epoch_loss,
            **metrics,
        }
    )
    report = EpochReport(
        epoch=progress.epoch,
        step=progress.step,
        train_loss=run.epoch_loss,
        val_loss=metrics["val_loss"],
        val_accuracy=metrics["val_accuracy"],
        val_macro_f1=metrics["val_macro_f1"],
        seconds=seconds,
    )
    return improved, report


def _checkpoint_epoch(run: _Run, progress: _Progress, improved: bool) -> Path:
    """Write this epoch's complete checkpoint and drop the previous one; returns its folder."""
    state = {
        "format": CHECKPOINT_FORMAT,
        **run.expected,
        **progress.state(),
        "total_steps": run.total_steps,
    }
    folder = run.checkpoints / f"epoch-{progress.epoch:04d}"
    _write_checkpoint(
        folder,
        model=run.model,
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        scaler=run.scaler,
        state=state,
        best_file=None if improved else run.best_file,
    )
    if improved:
        _link_or_copy(folder / "trainable.safetensors", run.best_file)
    for old in run.checkpoints.glob("epoch-*"):
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def _finish(run: _Run, progress: _Progress, model_dir: Path, class_names: list[str]):
    """Load the best epoch's weights, save the output folder and say how training went."""
    import torch
    from safetensors.torch import load_file

    _load_trainable(run.model, load_file(str(run.best_file), device="cpu"))
    output = run.work_dir / "output"
    is_lora = run.config.strategy == "lora"
    _save_output(run.model, run.loaded, output, model_dir, class_names, is_lora=is_lora)
    peak = int(torch.cuda.max_memory_allocated(run.dev)) if run.cuda else None
    return TrainResult(
        output_dir=output,
        curves=progress.curves,
        best_epoch=progress.best_epoch,
        epochs_run=progress.epoch,
        stopped_early=progress.stopped_early,
        steps=progress.step,
        samples_seen=progress.samples_seen,
        train_seconds=progress.train_seconds,
        peak_memory_bytes=peak,
        trainable_parameters=sum(p.numel() for p in run.trainable),
        total_parameters=sum(p.numel() for p in run.model.parameters()),
        precision=_precision(run.device),
    )


def _val_metrics(logits: np.ndarray, y: np.ndarray, loss_fn) -> dict[str, float]:
    import torch
    from sklearn.metrics import f1_score

    predicted = logits.argmax(axis=1)
    loss = float(loss_fn(torch.from_numpy(logits), torch.from_numpy(y)))
    return {
        "val_loss": loss,
        "val_accuracy": float(np.mean(predicted == y)),
        "val_macro_f1": float(f1_score(y, predicted, average="macro", zero_division=0)),
    }


def _save_output(
    model, loaded: _Loaded, output: Path, model_dir: Path, class_names: list[str], *, is_lora: bool
) -> None:
    from safetensors.torch import save_file

    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    model.to("cpu")
    if is_lora:
        model.save_pretrained(output, safe_serialization=True)
        # peft also writes a stub README.md; the portal writes the real model card.
        (output / "README.md").unlink(missing_ok=True)
        return
    if loaded.kind == "efficientnet":
        base = _read_config(model_dir)
        weights = output / "model.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
        config = {
            **{
                k: v
                for k, v in base.items()
                if k in ("variant", "image_size", "image_mean", "image_std")
            },
            "architectures": ["EfficientNetLiteForImageClassification"],
            "model_type": EFFICIENTNET_LITE,
            "num_classes": len(class_names),
            "weights_file": weights.name,
            "id2label": {str(i): name for i, name in enumerate(class_names)},
            "label2id": {name: i for i, name in enumerate(class_names)},
        }
        (output / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        return
    model.save_pretrained(output, safe_serialization=True)
    if loaded.kind == "text":
        loaded.tokenizer.save_pretrained(output)
    elif (model_dir / "preprocessor_config.json").is_file():
        shutil.copyfile(model_dir / "preprocessor_config.json", output / "preprocessor_config.json")


def point_adapter_at(
    output_dir: Path, *, base_repo_id: str, base_revision: str | None = None
) -> None:
    """Name the base model by repository id in a LoRA output's adapter_config.json.

    peft records the folder the base was loaded from, a worker's temporary
    path; published adapters should name the catalogue entry instead, so
    ``PeftModel.from_pretrained`` against the portal's Hub endpoint finds it.
    (``predict_proba`` then needs ``base_model_dir``.)
    """
    path = Path(output_dir) / "adapter_config.json"
    if not path.is_file():
        raise ValueError(f"{Path(output_dir).name} holds no LoRA adapter")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = base_repo_id
    if base_revision is not None:
        data["revision"] = base_revision
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- inference


def _adapter_class_count(output_dir: Path, head_output: str) -> int:
    from safetensors import safe_open

    with safe_open(str(output_dir / "adapter_model.safetensors"), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict
            if key.endswith(f"{head_output}.weight") and "lora_" not in key:
                return int(handle.get_slice(key).get_shape()[0])
    raise ValueError(f"the adapter in {output_dir.name} holds no classification head")


def _head_output_layer(model) -> str:
    """Name of the last Linear of the head: the layer that gives one logit per class."""
    from torch import nn

    heads = _head_modules(model)
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and _in_modules(name, heads) and "pooler" not in name:
            last = name
    if last is None:
        raise UnsupportedModel(f"cannot find the output layer of {type(model).__name__}")
    return last


def _resize_head(model, name: str, classes: int) -> None:
    from torch import nn

    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, nn.Linear(old.in_features, classes, bias=old.bias is not None))
    if hasattr(model, "config") and hasattr(model.config, "num_labels"):
        model.config.num_labels = classes


def _load_for_inference(
    output_dir: Path, modality: str, base_model_dir: Path | None
) -> tuple[Any, _Loaded, int]:
    """(model, how to feed it, number of classes)."""
    output_dir = Path(output_dir)
    adapter = output_dir / "adapter_config.json"
    if not adapter.is_file():
        config = _read_config(output_dir)
        classes = int(config.get("num_labels") or len(config.get("id2label") or {}) or 0)
        if config.get("model_type") == EFFICIENTNET_LITE:
            classes = int(config.get("num_classes", 0))
        if classes < 1:
            raise ValueError(f"{output_dir.name} does not say how many classes it predicts")
        names = [(config.get("id2label") or {}).get(str(i), f"LABEL_{i}") for i in range(classes)]
        loaded = _load_classifier(output_dir, modality, names, num_labels=classes)
        return loaded.model, loaded, classes
    from peft import PeftModel

    base_dir = Path(base_model_dir) if base_model_dir else None
    if base_dir is None:
        named = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if isinstance(named, str) and Path(named).is_dir():
            base_dir = Path(named)
    if base_dir is None:
        raise ValueError(
            f"{output_dir.name} holds a LoRA adapter: pass base_model_dir, the base model folder"
        )
    loaded = _load_classifier(base_dir, modality, None, num_labels=2)
    head_output = _head_output_layer(loaded.model)
    classes = _adapter_class_count(output_dir, head_output)
    if classes != 2:
        _resize_head(loaded.model, head_output, classes)
    with _quiet_transformers():
        model = PeftModel.from_pretrained(loaded.model, output_dir, is_trainable=False)
    return model, loaded, classes


def predict_proba(
    output_dir: Path,
    modality: str,
    inputs: list,
    *,
    device: str = "cpu",
    batch_size: int = 64,
    max_length: int = 128,
    base_model_dir: Path | None = None,
) -> np.ndarray:
    """(N, C) class probabilities from what ``finetune`` wrote to ``output_dir``.

    For a LoRA output, ``base_model_dir`` is the base model folder the adapter
    was trained on (default: the folder recorded in adapter_config.json, if it
    still exists). Preprocessing is the training one: same tokenizer and
    truncation, same image settings.
    """
    import torch

    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if modality not in ("text", "vision"):
        raise ValueError(f"modality must be 'text' or 'vision', got {modality!r}")
    if modality == "text" and any(not isinstance(t, str) for t in inputs):
        raise ValueError("every text must be a string")
    model, loaded, classes = _load_for_inference(Path(output_dir), modality, base_model_dir)
    n = len(inputs)
    if n == 0:
        return np.zeros((0, classes), dtype=np.float64)
    model.to(torch.device(device))
    model.eval()
    if loaded.kind == "text":
        length = min(max_length, loaded.max_length)
        if length < 1:
            raise ValueError("max_length must be at least 1")
        cuda = torch.device(device).type == "cuda"
        make = _TextBatches(loaded.tokenizer, inputs, length, 8 if cuda else 1)
        lengths = make.lengths
    else:
        assert loaded.image is not None
        make = _ImageBatches(inputs, loaded.image, cache=False)
        lengths = None
    try:
        logits = _predict(
            model, loaded.kind, make, n, device=device, batch_size=batch_size, lengths=lengths
        )
    finally:
        if isinstance(make, _ImageBatches):
            make.close()
    return _softmax(logits)
