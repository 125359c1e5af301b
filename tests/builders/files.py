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
"""


class Evil:
    """Pickles to a call of os.system; dumped by tests, never loaded."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


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
