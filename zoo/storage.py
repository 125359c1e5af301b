"""Artifact storage: files kept once per content hash, through Django's storage API.

Any storage backend works (the local MEDIA_ROOT by default, object storage in
production). A blob's name is derived from its sha256, so a stored blob is
never overwritten and two versions sharing a file share one copy.
"""

from __future__ import annotations

from pathlib import Path

from django.core.files import File
from django.core.files.storage import default_storage


def blob_name(sha256: str) -> str:
    return f"blobs/sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def store_blob(path: Path, sha256: str) -> str:
    """Store the file at ``path`` under its content hash, unless that blob already exists."""
    name = blob_name(sha256)
    if default_storage.exists(name):
        return name
    with path.open("rb") as handle:
        saved = default_storage.save(name, File(handle))
    if saved != name:
        # Another import stored the same content in between; keep the canonical one.
        default_storage.delete(saved)
    return name
