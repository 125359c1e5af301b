"""What a version's files look like to git and to the Hub: blob and tree ids, LFS pointers.

The Hugging Face client names its cache entries after these ids and checks
downloads against them, so they are computed exactly as git and the Hub do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from zoo.models import Artifact, ModelVersion

#: Files this large are LFS files on the Hub whatever their name.
LFS_THRESHOLD = 10 * 1024 * 1024
#: Extensions the Hub's default ``.gitattributes`` sends to LFS.
# fmt: off
LFS_SUFFIXES = frozenset({
    "7z", "arrow", "bin", "bz2", "ckpt", "ftz", "gguf", "gz", "h5", "joblib", "lfs", "mlmodel",
    "model", "msgpack", "npy", "npz", "onnx", "ot", "parquet", "pb", "pickle", "pkl", "pt", "pth",
    "rar", "safetensors", "tar", "tflite", "tgz", "wasm", "xz", "zip", "zst", "tfevents",
})
# fmt: on
_TRUE = {"1", "true", "yes", "on"}


def _git_oid(kind: bytes, body: bytes) -> str:
    return hashlib.sha1(b"%s %d\0" % (kind, len(body)) + body, usedforsecurity=False).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def is_lfs(path: str, size: int) -> bool:
    suffix = path.rsplit("/", 1)[-1].rpartition(".")[2].lower() if "." in path else ""
    return size >= LFS_THRESHOLD or suffix in LFS_SUFFIXES


@dataclass(frozen=True)
class HubFile:
    """One artifact as the Hub would describe it."""

    path: str
    size: int
    sha256: str
    git_sha1: str
    blob_name: str
    lfs: bool

    @classmethod
    def of(cls, artifact: Artifact) -> HubFile:
        return cls(
            path=artifact.path,
            size=artifact.size,
            sha256=artifact.sha256,
            git_sha1=artifact.git_sha1,
            blob_name=artifact.blob_name,
            lfs=is_lfs(artifact.path, artifact.size),
        )

    @property
    def pointer(self) -> bytes:
        return _lfs_pointer(self.sha256, self.size)

    @property
    def oid(self) -> str:
        """What git stores: the content's blob id, or for LFS files the pointer's."""
        return _git_oid(b"blob", self.pointer) if self.lfs else self.git_sha1

    @property
    def etag(self) -> str:
        """The ``/resolve`` ETag, which the client names its cached blob after."""
        return self.sha256 if self.lfs else self.git_sha1

    def lfs_block(self, key: str) -> dict:
        """The LFS details; the tree calls the hash ``oid``, model info ``sha256``."""
        return {key: self.sha256, "size": self.size, "pointerSize": len(self.pointer)}


def files_of(version: ModelVersion) -> list[HubFile]:
    return [HubFile.of(a) for a in version.artifacts.order_by("path")]


def tree_oids(files: list[HubFile]) -> dict[str, str]:
    """git tree ids of every folder ("" is the root), built bottom-up as git would."""
    children: dict[str, dict[str, tuple[bool, str]]] = {"": {}}
    for f in files:
        parts = f.path.split("/")
        for depth in range(1, len(parts)):
            children.setdefault("/".join(parts[:depth]), {})
        children.setdefault("/".join(parts[:-1]), {})[parts[-1]] = (False, f.oid)
    oids: dict[str, str] = {}
    for folder in sorted(children, key=lambda d: d.count("/") + bool(d), reverse=True):
        if folder:
            parent, _, leaf = folder.rpartition("/")
            children[parent].setdefault(leaf, (True, ""))
        rows = []
        for leaf, (is_dir, oid) in children[folder].items():
            oid = oids[f"{folder}/{leaf}" if folder else leaf] if is_dir else oid
            mode = b"40000" if is_dir else b"100644"
            key = leaf + "/" if is_dir else leaf
            rows.append((key, mode + b" " + leaf.encode() + b"\0" + bytes.fromhex(oid)))
        oids[folder] = _git_oid(b"tree", b"".join(row for _, row in sorted(rows)))
    return oids


def iso(moment: datetime) -> str:
    """Timestamps as the Hub writes them: milliseconds and a ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def flag(value: str | None) -> bool:
    """Query booleans arrive as ``true``, ``True`` or ``1`` depending on the client."""
    return (value or "").strip().lower() in _TRUE
