"""Artifact storage: files kept once per content hash, through Django's storage API.

Any storage backend works (the local MEDIA_ROOT by default, object storage in
production). A blob's name is derived from its sha256, so a stored blob is
never overwritten and two versions sharing a file share one copy.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from django.core.files import File
from django.core.files.storage import default_storage

from portal.errors import PortalError
from zoo.safety import digest_file


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


def store_upload(upload, *, max_bytes: int) -> tuple[str, str, int]:
    """Store an uploaded file under its content hash; returns (blob name, sha256, size).

    The bytes are hashed while they are copied to a local temporary file, so the
    hash names exactly the bytes stored. An upload over ``max_bytes`` is refused
    before anything reaches storage.
    """
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(prefix="upload-") as tmp:
        for chunk in upload.chunks():
            size += len(chunk)
            if size > max_bytes:
                raise PortalError(
                    f"The file is larger than the limit of {max_bytes:,} bytes.", field="file"
                )
            digest.update(chunk)
            tmp.write(chunk)
        tmp.flush()
        if size == 0:
            raise PortalError("The file is empty.", field="file")
        sha256 = digest.hexdigest()
        return store_blob(Path(tmp.name), sha256), sha256, size


def copy_blob_to(name: str, dest: Path) -> Path:
    """Copy a stored blob to a local path (storage may be remote; ML code wants a file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with default_storage.open(name, "rb") as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    return dest


def materialize_version(version, root: Path) -> Path:
    """The version's files as a local folder ``root/<revision>``, for loading with torch.

    Built in a temporary sibling and renamed into place, so a folder that exists
    is complete; every file is checked against its recorded sha256 on the way.
    A version with an unsafe file is refused: its files are never loaded.
    """
    if version.is_blocked:
        raise PortalError(f"{version} is blocked: " + "; ".join(version.block_reasons))
    final = root / version.revision
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{version.revision}-", dir=root))
    try:
        for artifact in version.artifacts.all():
            dest = building / artifact.path
            if not dest.resolve().is_relative_to(building.resolve()):
                raise PortalError(f"Artifact path {artifact.path!r} leaves the version folder.")
            copy_blob_to(artifact.blob_name, dest)
            if digest_file(dest).sha256 != artifact.sha256:
                raise PortalError(
                    f"Stored file {artifact.path} of {version} does not match its hash."
                )
        try:
            building.rename(final)
        except OSError:
            # Another worker finished the same folder first; theirs is as good.
            if not final.is_dir():
                raise
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return final
