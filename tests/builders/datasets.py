"""Datasets created through the real upload services: SMS spam, support tickets, image zips."""

from __future__ import annotations

import csv
import io
import json
import random
import zipfile

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from tests.builders.weights import HAM, SPAM
from zoo.services import datasets as dataset_services


def spam_rows(repeat: int = 4) -> list[dict[str, str]]:
    rows = []
    for i in range(repeat):
        for text in SPAM:
            rows.append({"message": f"{text} #{i}", "label": "spam", "region": "north"})
        for text in HAM:
            rows.append({"message": f"{text} ({i})", "label": "ham", "region": "south"})
    return rows


def keyword_rows(n: int = 60, *, seed: int = 0) -> list[dict[str, str]]:
    """Texts of five one-piece words each, whose last word (cat or dog) is the label.

    Every text has the same number of tokens, so only a model that tells
    words apart can beat chance (see ``weights.tiny_bert(blind=True)``).
    """
    words = ["apple", "river", "stone", "cloud", "green", "music", "table", "light"]
    rng = np.random.default_rng(seed)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    while len(rows) < n:  # no duplicate rows: the upload checks would flag them
        label = "cat" if len(rows) % 2 else "dog"
        text = " ".join([*rng.choice(words, 4), label])
        if text not in seen:
            seen.add(text)
            rows.append({"message": text, "label": label})
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


def ticket_rows(n_per_class: int = 12, *, seed: int = 0) -> list[dict[str, str]]:
    """Three classes of short support tickets, each with a region slice and a date."""
    rng = random.Random(seed)
    words = {
        "billing": ["invoice", "refund", "charged", "payment", "card", "price"],
        "outage": ["down", "error", "offline", "crash", "timeout", "unreachable"],
        "login": ["password", "login", "account", "locked", "reset", "sign"],
    }
    rows = []
    for label, vocabulary in words.items():
        for i in range(n_per_class):
            text = " ".join(rng.choice(vocabulary) for _ in range(6)) + f" ticket {label[:2]}{i}"
            rows.append(
                {
                    "message": text,
                    "label": label,
                    "region": rng.choice(["north", "south"]),
                    "created": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                }
            )
    rng.shuffle(rows)
    return rows


def ticket_dataset(owner, *, name="tickets", n_per_class=12, sensitivity="internal", seed=0):
    """Support tickets with a region slice and a time column, as an uploaded dataset."""
    staged = dataset_services.dataset_stage_upload(
        actor=owner, upload=upload(f"{name}.csv", csv_bytes(ticket_rows(n_per_class, seed=seed)))
    )
    version, _ = dataset_services.dataset_create(
        actor=owner,
        staged=staged,
        name=name,
        sensitivity=sensitivity,
        text_column="message",
        label_column="label",
        slice_column="region",
        time_column="created",
    )
    return version
