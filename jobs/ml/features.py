"""Frozen feature extraction: one vector per text or image from a model folder on disk.

Models load from local folders only (``local_files_only=True``, never
``trust_remote_code``); weights that are not a transformers checkpoint load
with ``torch.load(weights_only=True)``. Nothing here imports Django.

Text features are the mean of the last hidden state over the real tokens (the
attention mask), the convention of sentence-transformers: all-MiniLM-L6-v2 and
its kind were trained with exactly this pooling, so their features are the
model's own sentence embeddings, and for plain BERT-style encoders it is a
better frozen feature than the [CLS] vector, which BERT-style pretraining
trains only through next-sentence prediction, if at all. The L2
normalisation that sentence-transformers adds on top is left out: a probe
standardises its inputs anyway.

Image features are the globally averaged last feature map: EfficientNet-Lite's
1280-d penultimate layer (classifier dropped), or for transformers vision
models the mean of ``last_hidden_state`` over tokens (or over H x W for
convolutional ones). ViT's ``pooler_output`` is avoided on purpose: it is a
dense+tanh layer that classification checkpoints never train.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from PIL import Image

# Bump whenever a change here changes the numbers of any feature, so cached
# features computed by older code are not reused.
FEATURES_VERSION = 1

EFFICIENTNET_LITE = "efficientnet-lite"
# EfficientNet-Lite was trained on inputs scaled with mean 127 and std 128
# ("inception-style", chosen by Google for post-quantisation accuracy), not
# with the ImageNet mean/std: the TF builder and the ported weights expect [-1, 1].
EFFICIENTNET_LITE_MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
EFFICIENTNET_LITE_STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)
TRANSFORMERS_DEFAULT_MEAN = (0.5, 0.5, 0.5)
TRANSFORMERS_DEFAULT_STD = (0.5, 0.5, 0.5)

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)

Progress = Callable[[int, int], None]


class UnsupportedModel(ValueError):
    """The folder holds a model this module cannot extract features from."""


class ImageReadError(ValueError):
    """An image could not be decoded; ``path`` names it."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        super().__init__(f"cannot read image {self.path.name}: {reason}")


# --------------------------------------------------------------------------- model folders


def _read_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise UnsupportedModel(f"{Path(model_dir).name} has no config.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnsupportedModel(f"config.json is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise UnsupportedModel("config.json is not a JSON object")
    return config


def _transformers_model_class(model_type: str) -> type | None:
    """The AutoModel class transformers maps ``model_type`` to, without loading weights."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    name = MODEL_MAPPING_NAMES.get(model_type)
    if isinstance(name, tuple | list):  # some types map to several classes
        name = name[0]
    return getattr(transformers, name, None) if name else None


def modality_of(model_dir: Path) -> str:
    """``"text"`` or ``"vision"``, from config.json; UnsupportedModel for anything else."""
    model_dir = Path(model_dir)
    config = _read_config(model_dir)
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise UnsupportedModel("config.json names no model_type")
    if model_type == EFFICIENTNET_LITE:
        return "vision"
    model_class = _transformers_model_class(model_type)
    if model_class is None:
        raise UnsupportedModel(
            f"model type {model_type!r} is not supported: neither EfficientNet-Lite "
            "nor a transformers model type"
        )
    params = inspect.signature(model_class.forward).parameters
    takes_pixels = "pixel_values" in params
    takes_ids = "input_ids" in params
    if takes_pixels and takes_ids:
        raise UnsupportedModel(
            f"model type {model_type!r} is multimodal (text and images); "
            "only single-modality encoders are supported"
        )
    if takes_pixels:
        return "vision"
    if takes_ids:
        if config.get("is_encoder_decoder"):
            raise UnsupportedModel(
                f"model type {model_type!r} is an encoder-decoder; only encoders and "
                "decoder-only text models are supported"
            )
        if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
            raise UnsupportedModel(f"text model type {model_type!r} comes without tokenizer files")
        return "text"
    raise UnsupportedModel(
        f"model type {model_type!r} takes neither token ids nor pixel values "
        "(audio and other modalities are not supported)"
    )


# --------------------------------------------------------------------------- devices


def _autocast_dtype(device: str) -> torch.dtype | None:
    """bf16 on CUDA where supported, else fp16; None (float32) on CPU."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _precision(device: str) -> str:
    import torch

    if torch.device(device).type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


@contextmanager
def _inference(device: str) -> Iterator[None]:
    import torch

    dtype = _autocast_dtype(device)
    with torch.inference_mode():
        if dtype is None:
            yield
        else:
            with torch.autocast(device_type="cuda", dtype=dtype):
                yield


# --------------------------------------------------------------------------- text


def _json_file(path: Path) -> dict[str, Any]:
    """A JSON object from an optional side file; {} when it is missing or not an object."""
    if not path.is_file():
        return {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnsupportedModel(f"{path.name} is not valid JSON: {exc}") from exc
    return loaded if isinstance(loaded, dict) else {}


def _text_max_length(model_dir: Path, max_length: int) -> int:
    """``max_length`` capped by what the model takes and was trained with.

    Caps: the position embeddings, the tokenizer's ``model_max_length`` and,
    for sentence-transformers folders, ``max_seq_length`` (256 for
    all-MiniLM-L6-v2: it was trained on at most that many word pieces).
    """
    if max_length < 1:
        raise ValueError("max_length must be at least 1")
    config = _read_config(model_dir)
    caps = [max_length]
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        # RoBERTa-style models offset positions by padding_idx + 1.
        offset = 2 if config.get("model_type") in {"roberta", "xlm-roberta", "camembert"} else 0
        caps.append(positions - offset)
    tokenizer_max = _json_file(model_dir / "tokenizer_config.json").get("model_max_length")
    sentence_max = _json_file(model_dir / "sentence_bert_config.json").get("max_seq_length")
    for cap in (tokenizer_max, sentence_max):
        # Tokenizers without a limit store a huge sentinel (int(1e30)).
        if isinstance(cap, int) and 0 < cap < 1_000_000:
            caps.append(cap)
    return min(caps)


def text_model_dim(model_dir: Path) -> int:
    """Width of the text features ``extract_text_features`` returns for this folder."""
    config = _read_config(model_dir)
    for key in ("hidden_size", "dim", "d_model", "n_embd"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    raise UnsupportedModel("config.json gives no hidden size")


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, H) over the positions where ``attention_mask`` is 1, in float32."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.to(torch.float32) * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1e-9)


def _load_text_model(model_dir: Path, device: str) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if tokenizer.pad_token is None:
        # Decoder-only tokenizers (GPT-2) have no pad token. Any id will do: padded
        # positions are masked out of attention and of the mean, and padding is on
        # the right, so causal attention never lets real tokens see it.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    model = AutoModel.from_pretrained(model_dir, local_files_only=True)
    model.to(device)
    model.eval()
    return tokenizer, model


def _token_lengths(tokenizer: Any, texts: Sequence[str], max_length: int) -> np.ndarray:
    """Token count of every text (after truncation), in chunks so memory stays flat."""
    lengths = np.empty(len(texts), dtype=np.int64)
    chunk = 4096
    for start in range(0, len(texts), chunk):
        encoded = tokenizer(
            list(texts[start : start + chunk]),
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        lengths[start : start + chunk] = [len(ids) for ids in encoded["input_ids"]]
    return lengths


def extract_text_features(
    model_dir: Path,
    texts: Sequence[str],
    *,
    device: str = "cpu",
    batch_size: int = 64,
    max_length: int = 256,
    progress: Progress | None = None,
) -> np.ndarray:
    """(N, hidden) float32 mean-pooled features of ``texts``, rows in the order given.

    Texts are sorted by token count (longest first, so a batch too large for
    memory fails on the first batch, not the last) and batched, so each batch
    pads only to its own longest text. ``progress(done, total)`` is called
    after every batch with the number of texts embedded so far.
    """
    import torch

    model_dir = Path(model_dir)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if any(not isinstance(text, str) for text in texts):
        raise ValueError("every text must be a string")
    if modality_of(model_dir) != "text":
        raise UnsupportedModel(f"{model_dir.name} is not a text model")
    total = len(texts)
    if total == 0:
        return np.zeros((0, text_model_dim(model_dir)), dtype=np.float32)
    tokenizer, model = _load_text_model(model_dir, device)
    max_length = _text_max_length(model_dir, max_length)
    order = np.argsort(-_token_lengths(tokenizer, texts, max_length), kind="stable")
    out: np.ndarray | None = None
    on_cuda = torch.device(device).type == "cuda"
    with _inference(device):
        for start in range(0, total, batch_size):
            index = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in index],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            batch = {k: v.to(device, non_blocking=on_cuda) for k, v in batch.items()}
            hidden = model(**batch).last_hidden_state
            pooled = mean_pool(hidden, batch["attention_mask"]).cpu().numpy()
            if out is None:
                out = np.empty((total, pooled.shape[1]), dtype=np.float32)
            out[index] = pooled
            if progress is not None:
                progress(min(start + batch_size, total), total)
    assert out is not None
    return out


# --------------------------------------------------------------------------- vision


@dataclass(frozen=True)
class ImageSettings:
    """Everything about turning a picture into the backbone's input tensor."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # "short-side-crop": resize the short side to ``size``, keep the centre square.
    # "squash": resize to size x size, as ViTImageProcessor does.
    geometry: str
    resample: str


def _as_size(value: Any) -> int | None:
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, list | tuple) and value and isinstance(value[0], int):
        return int(value[0])
    if isinstance(value, dict):
        for key in ("shortest_edge", "height"):
            if isinstance(value.get(key), int):
                return int(value[key])
    return None


def _triple(value: Any, default: tuple[float, float, float]) -> tuple[float, float, float]:
    if isinstance(value, int | float):
        return (float(value),) * 3
    if isinstance(value, list | tuple) and len(value) == 3:
        return (float(value[0]), float(value[1]), float(value[2]))
    return default


# PILImageResampling values as transformers stores them in preprocessor_config.json.
_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}


def image_settings(model_dir: Path) -> ImageSettings:
    """How ``extract_image_features`` preprocesses images for this folder."""
    model_dir = Path(model_dir)
    config = _read_config(model_dir)
    model_type = config.get("model_type")
    if model_type == EFFICIENTNET_LITE:
        return ImageSettings(
            size=_as_size(config.get("image_size")) or 224,
            mean=_triple(config.get("image_mean"), EFFICIENTNET_LITE_MEAN),
            std=_triple(config.get("image_std"), EFFICIENTNET_LITE_STD),
            geometry="short-side-crop",
            resample="bicubic",
        )
    if modality_of(model_dir) != "vision":
        raise UnsupportedModel(f"model type {model_type!r} is not a vision model")
    pre = _json_file(model_dir / "preprocessor_config.json")
    size = _as_size(config.get("image_size"))
    crop = bool(pre.get("do_center_crop"))
    if crop:
        size = _as_size(pre.get("crop_size")) or size
    size = size or _as_size(pre.get("size")) or 224
    return ImageSettings(
        size=size,
        mean=_triple(pre.get("image_mean"), TRANSFORMERS_DEFAULT_MEAN),
        std=_triple(pre.get("image_std"), TRANSFORMERS_DEFAULT_STD),
        geometry="short-side-crop" if crop else "squash",
        resample=_RESAMPLE_NAMES.get(pre.get("resample"), "bilinear"),
    )


def _open_image(item: Any) -> Image.Image:
    from PIL import Image

    if isinstance(item, Image.Image):
        return item.convert("RGB")
    path = Path(item)
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # convert() forces the full decode inside the try
    except Exception as exc:  # any decoder failure (OSError, SyntaxError, bombs) = unreadable
        raise ImageReadError(path, str(exc) or type(exc).__name__) from exc


def preprocess_image(image: Image.Image, settings: ImageSettings) -> np.ndarray:
    """RGB picture -> (3, size, size) float32 array, normalised."""
    from PIL import Image

    resample = {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
    }[settings.resample]
    size = settings.size
    image = image.convert("RGB")
    if settings.geometry == "squash":
        image = image.resize((size, size), resample)
    else:
        width, height = image.size
        scale = size / min(width, height)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        image = image.resize((new_w, new_h), resample)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.asarray(settings.mean, dtype=np.float32)
    std = np.asarray(settings.std, dtype=np.float32)
    return ((array - mean) / std).transpose(2, 0, 1).copy()


def _load_vision_model(model_dir: Path, device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function (B, 3, S, S) -> (B, D) pooled features, model already on ``device``."""
    return _load_vision_backbone(model_dir, device)[0]


def _load_vision_backbone(
    model_dir: Path, device: str
) -> tuple[Callable[[torch.Tensor], torch.Tensor], list[torch.nn.Parameter]]:
    """The pooled-feature function and the parameters it runs through.

    The parameters are those of the backbone only: EfficientNet-Lite's
    ImageNet classifier (``_fc``) is loaded with the weights but never runs
    when features are taken, so it is not part of what a fine-tune starts from.
    """
    config = _read_config(model_dir)
    if config.get("model_type") == EFFICIENTNET_LITE:
        from .vision import LITE_VARIANTS, load_efficientnet_lite

        weights_name = config.get("weights_file")
        if not isinstance(weights_name, str) or Path(weights_name).name != weights_name:
            raise UnsupportedModel(
                "EfficientNet-Lite config.json needs a plain 'weights_file' name"
            )
        weights = model_dir / weights_name
        if not weights.is_file():
            raise UnsupportedModel(f"weights file {weights_name} is missing")
        variant = config.get("variant", "efficientnet-lite0")
        if variant not in LITE_VARIANTS:
            raise UnsupportedModel(f"EfficientNet-Lite variant {variant!r} is not supported")
        net = load_efficientnet_lite(
            weights, variant=variant, num_classes=int(config.get("num_classes", 1000))
        ).to(device)
        backbone = [p for name, p in net.named_parameters() if not name.startswith("_fc.")]
        return net.features, backbone

    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir, local_files_only=True).to(device).eval()

    def pooled(pixels: torch.Tensor) -> torch.Tensor:
        return pool_hidden(model(pixel_values=pixels).last_hidden_state)

    return pooled, list(model.parameters())


def pool_hidden(hidden: torch.Tensor) -> torch.Tensor:
    """An image backbone's features as the probes take them: the mean over positions of a
    convolutional map (B, C, H, W), or over the tokens of a transformer layer (B, tokens, D)."""
    return hidden.mean(dim=(2, 3)) if hidden.ndim == 4 else hidden.mean(dim=1)


def extract_image_features(
    model_dir: Path,
    images: Sequence[Path | str | Image.Image],
    *,
    device: str = "cpu",
    batch_size: int = 64,
    progress: Progress | None = None,
) -> np.ndarray:
    """(N, D) float32 pooled image features, rows in the order given.

    ``images`` may mix file paths and PIL images (the reference crops are PIL
    images; nothing is written to disk for them). Files are decoded a batch at
    a time by a few threads (Pillow releases the GIL while decoding and
    resizing), the next batch while the model runs on the current one, so
    memory holds two batches of pictures, not the data set. An unreadable file
    raises ImageReadError (a ValueError) naming it.
    """
    import torch

    model_dir = Path(model_dir)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if modality_of(model_dir) != "vision":
        raise UnsupportedModel(f"{model_dir.name} is not a vision model")
    settings = image_settings(model_dir)
    total = len(images)
    if total == 0:
        return np.zeros((0, image_model_dim(model_dir)), dtype=np.float32)
    forward = _load_vision_model(model_dir, device)
    out = np.empty((total, 0), dtype=np.float32)
    on_cuda = torch.device(device).type == "cuda"
    pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))

    def prepare(item: Any) -> np.ndarray:
        return preprocess_image(_open_image(item), settings)

    def submit(start: int) -> list[Future[np.ndarray]]:
        return [pool.submit(prepare, item) for item in images[start : start + batch_size]]

    try:
        pending = submit(0)
        with _inference(device):
            for start in range(0, total, batch_size):
                arrays = [future.result() for future in pending]
                pending = submit(start + batch_size) if start + batch_size < total else []
                pixels = torch.from_numpy(np.stack(arrays))
                if on_cuda:
                    pixels = pixels.pin_memory()
                pooled = forward(pixels.to(device, non_blocking=on_cuda)).float().cpu().numpy()
                if start == 0:
                    out = np.empty((total, pooled.shape[1]), dtype=np.float32)
                out[start : start + len(arrays)] = pooled
                if progress is not None:
                    progress(start + len(arrays), total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return out


def image_model_dim(model_dir: Path) -> int:
    """Width of the image features ``extract_image_features`` returns for this folder."""
    config = _read_config(model_dir)
    if config.get("model_type") == EFFICIENTNET_LITE:
        from .vision import FEATURE_DIM

        return FEATURE_DIM
    hidden = config.get("hidden_size")
    if isinstance(hidden, int) and hidden > 0:
        return hidden
    sizes = config.get("hidden_sizes")  # convolutional backbones: one width per stage
    if isinstance(sizes, list) and sizes and isinstance(sizes[-1], int):
        return sizes[-1]
    raise UnsupportedModel("config.json gives no hidden size")


# --------------------------------------------------------------------------- serving cost

# How CPU latency is measured. A few untimed calls first: the first forward
# passes pay for lazy allocations, oneDNN kernel selection and cold caches,
# which a server pays once, not per request. Then the median of the timed
# calls, each on a different real example: the median ignores the odd call
# the scheduler interrupts, and different examples let text length vary as
# it will in service.
LATENCY_WARMUP = 3
LATENCY_REPEATS = 15


@dataclass(frozen=True)
class ModelCost:
    """What serving one example costs: parameters, their fp32 bytes, CPU latency, and how."""

    parameters: int
    memory_bytes: int
    latency_ms: float
    method: dict[str, Any]


def _spread(items: Sequence[Any], count: int) -> list[Any]:
    """``count`` items spread evenly over ``items`` (repeating them when there are fewer)."""
    n = len(items)
    if n >= count:
        return [items[(i * n) // count] for i in range(count)]
    return [items[i % n] for i in range(count)]


def measure_cost(
    model_dir: Path,
    inputs: Sequence[Any],
    *,
    max_length: int = 256,
    warmup: int = LATENCY_WARMUP,
    repeats: int = LATENCY_REPEATS,
) -> ModelCost:
    """Parameter count, fp32 parameter memory and single-example CPU latency of a model.

    The model is loaded on the CPU even on a GPU worker (the figure a budget
    holds is CPU serving), in float32, with as many torch threads as this
    process already uses: the number is what this machine does, recorded in
    ``method`` together with everything else that shaped it. Inputs are real
    examples (texts, or image paths / PIL images) run one at a time (batch 1);
    tokenising or decoding happens before the clock starts, so the figure is
    the forward pass and pooling that produce one feature vector. Parameters
    are those of the network that produces the features (for EfficientNet-Lite
    the backbone without its ImageNet classifier), each shared tensor counted
    once; memory is four bytes each.
    """
    import torch

    model_dir = Path(model_dir)
    if warmup < 0 or repeats < 1:
        raise ValueError("warmup must be at least 0 and repeats at least 1")
    if len(inputs) == 0:
        raise ValueError("latency needs at least one example to run")
    modality = modality_of(model_dir)
    chosen = _spread(inputs, warmup + repeats)
    method: dict[str, Any] = {
        "device": "cpu",
        "precision": "fp32",
        "batch_size": 1,
        "warmup": warmup,
        "repeats": repeats,
        "statistic": "median",
        "threads": torch.get_num_threads(),
        "host": platform.node(),
        "cpu": _cpu_name(),
        "torch": torch.__version__.split("+")[0],
        "timed": "forward pass and pooling; inputs prepared beforehand",
    }
    if modality == "text":
        forward, parameters, prepared = _text_cost_inputs(model_dir, chosen, max_length)
        method["max_length"] = _text_max_length(model_dir, max_length)
    else:
        forward, parameters = _load_vision_backbone(model_dir, "cpu")
        settings = image_settings(model_dir)
        prepared = [
            torch.from_numpy(preprocess_image(_open_image(item), settings)[None]) for item in chosen
        ]
        method["image_size"] = settings.size
    timings = []
    with torch.inference_mode():
        for index, batch in enumerate(prepared):
            began = time.perf_counter()
            forward(batch)
            if index >= warmup:
                timings.append(time.perf_counter() - began)
    # Both loaders list each tensor once, so tied embeddings are not counted twice.
    count = sum(p.numel() for p in parameters)
    return ModelCost(
        parameters=int(count),
        memory_bytes=int(count) * 4,
        latency_ms=float(np.median(timings) * 1000.0),
        method=method,
    )


def _cpu_name() -> str:
    """The processor's model name (Linux), or what ``platform`` knows elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _text_cost_inputs(model_dir: Path, texts: Sequence[Any], max_length: int):
    """(forward, parameters, one tokenised batch of 1 per text) for a text model on the CPU."""
    if any(not isinstance(text, str) for text in texts):
        raise ValueError("every text must be a string")
    tokenizer, model = _load_text_model(model_dir, "cpu")
    max_length = _text_max_length(model_dir, max_length)
    prepared = [
        dict(tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt"))
        for text in texts
    ]

    def forward(batch: dict) -> torch.Tensor:
        return mean_pool(model(**batch).last_hidden_state, batch["attention_mask"])

    return forward, list(model.parameters()), prepared


# --------------------------------------------------------------------------- cache keys


def preprocessing_key(model_dir: Path, modality: str, **options: Any) -> str:
    """Short stable string naming everything that changes the features, for a cache key.

    Options: ``max_length`` (text, default 256) and ``device`` (both; only its
    precision matters: fp32 on CPU, bf16/fp16 under CUDA autocast). The model's
    own identity (its files) is the caller's part of the key.
    """
    model_dir = Path(model_dir)
    device = str(options.pop("device", "cpu"))
    if modality == "text":
        max_length = int(options.pop("max_length", 256))
        if options:
            raise TypeError(f"unknown text feature options: {sorted(options)}")
        settings: dict[str, Any] = {
            "pooling": "masked-mean",
            "max_length": _text_max_length(model_dir, max_length),
        }
        label = f"text-L{settings['max_length']}"
    elif modality == "vision":
        if options:
            raise TypeError(f"unknown vision feature options: {sorted(options)}")
        image = image_settings(model_dir)
        settings = {"pooling": "global-mean", **asdict(image)}
        label = f"vision-{image.size}px"
    else:
        raise ValueError(f"unknown modality {modality!r}")
    settings["precision"] = _precision(device)
    settings["version"] = FEATURES_VERSION
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    return f"v{FEATURES_VERSION}-{label}-{settings['precision']}-{digest}"


# --------------------------------------------------------------------------- feature files


def save_features(path: Path, features: np.ndarray) -> None:
    """Write a 2-D numeric array as .npy (no pickle), atomically: readers never see half a file."""
    path = Path(path)
    array = np.asarray(features)
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        raise ValueError(f"features must be a 2-D numeric array, got {array.dtype} {array.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # A file object, not a name: np.save would append ".npy" to a name.
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_features(path: Path) -> np.ndarray:
    """Read features written by ``save_features``; refuses pickled or non-numeric content."""
    array = np.load(Path(path), allow_pickle=False)
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise ValueError(f"{Path(path).name} is not a single .npy array")
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        raise ValueError(f"{Path(path).name} does not hold a 2-D numeric feature array")
    return array
