"""Model folders and archives built on the fly for import tests; no Django."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

CARD = """---
license: mit
pipeline_tag: text-classification
tags: [support, tickets]
datasets: [acme/tickets]
language: en
base_model: acme/base
---
# Ticket router

Routes support tickets to the right team.

## Intended use

Suggesting a team for internal support tickets; a person confirms the route.

## Limitations

English tickets only.

## Training data

acme/tickets: a year of routed tickets.

## Evaluation

91% of a held-out month's tickets routed as the support team did.
"""


class Evil:
    """Pickles to a call of os.system; dumped by tests, never loaded."""

    def __init__(self, command: str = "echo pwned") -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def make_model(folder: Path, *, card: str | None = CARD, extra: dict[str, bytes] | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.zeros(3, dtype=np.float32)},
        str(folder / "model.safetensors"),
    )
    (folder / "config.json").write_text('{"architectures": ["BertModel"], "model_type": "bert"}')
    if card is not None:
        (folder / "README.md").write_text(card)
    for name, data in (extra or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def zip_archive(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def tar_archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def patch_zip(data: bytes, name: str, *, local: dict[int, bytes], central: dict[int, bytes]):
    """Overwrite fields of one member's local header and central directory entry."""
    raw = bytearray(data)
    encoded = name.encode()
    at = raw.index(b"PK\x03\x04")
    while raw[at + 30 : at + 30 + len(encoded)] != encoded:
        at = raw.index(b"PK\x03\x04", at + 1)
    for offset, value in local.items():
        raw[at + offset : at + offset + len(value)] = value
    at = raw.index(b"PK\x01\x02")
    while raw[at + 46 : at + 46 + len(encoded)] != encoded:
        at = raw.index(b"PK\x01\x02", at + 1)
    for offset, value in central.items():
        raw[at + offset : at + offset + len(value)] = value
    return bytes(raw)
