"""Artifact storage: files kept once per content hash, through Django's storage API.

Any storage backend works (the local MEDIA_ROOT by default, object storage in
production). A blob's name is derived from its sha256, so a stored blob is
never overwritten and two versions sharing a file share one copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from django.core.files import File
from django.core.files.storage import FileSystemStorage, default_storage

from portal.errors import PortalError
from zoo.safety import digest_file

logger = logging.getLogger(__name__)


def blob_name(sha256: str) -> str:
    return f"blobs/sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def store_blob(path: Path, sha256: str) -> str:
    """Store the file at ``path`` under its content hash; returns the blob's name.

    Verify, then make visible: the bytes are first written under a temporary
    name and checked (size and sha256) before they take the blob's name, so a
    process killed mid-write leaves a temporary file for the sweep, never a
    truncated blob that later reads as the content. A blob already stored
    under the name is kept only if its size and hash are right; a damaged one
    is replaced.
    """
    local = digest_file(path)
    if local.sha256 != sha256:
        raise PortalError(f"{path.name} changed before it could be stored (its hash differs).")
    name = blob_name(sha256)
    if default_storage.exists(name):
        if blob_is_intact(name, sha256=sha256, size=local.size):
            return name
        logger.error("blob %s is damaged (size or hash wrong); storing it again", name)
        default_storage.delete(name)
    if _local_folder() is not None:
        _publish_local(path, name, sha256=sha256, size=local.size)
    else:
        _publish_remote(path, name, sha256=sha256, size=local.size)
    return name


def blob_is_intact(name: str, *, sha256: str, size: int) -> bool:
    """Whether the stored blob has exactly the recorded size and sha256 (reads it whole)."""
    try:
        if default_storage.size(name) != size:
            return False
        digest = hashlib.sha256()
        with contextlib.closing(open_stream(name)) as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        return False
    return digest.hexdigest() == sha256


def _local_folder() -> Path | None:
    """The storage's folder on this machine when it is a local filesystem storage."""
    location = getattr(default_storage, "location", None)
    return Path(location) if isinstance(default_storage, FileSystemStorage) and location else None


def _publish_local(path: Path, name: str, *, sha256: str, size: int) -> None:
    final = Path(default_storage.path(name))
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary_name = tempfile.mkstemp(dir=final.parent, prefix=f".{sha256[:12]}-")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(fd, "wb") as handle, path.open("rb") as src:
            shutil.copyfileobj(src, handle, 1 << 20)
            handle.flush()
            os.fsync(handle.fileno())
        written = digest_file(temporary)
        if (written.size, written.sha256) != (size, sha256):
            raise PortalError(f"Storing {path.name} wrote other bytes than it read; try again.")
        os.chmod(temporary, 0o644)
        os.replace(temporary, final)  # atomic: the name holds the whole file or nothing
    finally:
        temporary.unlink(missing_ok=True)


# Remote writes land here first, each under a name of its own, until they are verified.
INCOMING = "incoming"


def _publish_remote(path: Path, name: str, *, sha256: str, size: int) -> None:
    """Write under a temporary name, read it back, and only then give it the final name.

    The bucket copies the checked object server-side, so the final name only
    ever holds verified bytes; the temporary object goes whatever happens.
    """
    temporary = f"{INCOMING}/{uuid.uuid4().hex}"
    try:
        with path.open("rb") as handle:
            temporary = default_storage.save(temporary, File(handle))
        if not blob_is_intact(temporary, sha256=sha256, size=size):
            raise PortalError(f"Storing {path.name} did not leave the bytes it read; try again.")
        _copy_within(temporary, name)
        if default_storage.size(name) != size:
            default_storage.delete(name)
            raise PortalError(f"Storing {path.name} did not leave the bytes it read; try again.")
    finally:
        discard(temporary)


def _copy_within(source: str, dest: str) -> None:
    """Server-side where the storage can; otherwise the bytes go through this process."""
    copy = getattr(default_storage, "copy_within", None)
    if copy is not None:
        copy(source, dest)
        return
    with default_storage.open(source, "rb") as handle:
        saved = default_storage.save(dest, handle)
    if saved != dest:
        default_storage.delete(saved)  # stored by another process in between; keep theirs


def save_verified(path: Path, name: str) -> dict:
    """Store the local file under ``name`` (a checkpoint, say), verified before it is visible.

    Returns its name, sha256 and size for the row that will point at it. The
    same rule as blobs: the bytes are checked under a temporary name first.
    """
    local = digest_file(path)
    if _local_folder() is not None:
        _publish_local(path, name, sha256=local.sha256, size=local.size)
    else:
        _publish_remote(path, name, sha256=local.sha256, size=local.size)
    return {"name": name, "sha256": local.sha256, "size": local.size}


def open_stream(name: str, *, start: int = 0, length: int | None = None):
    """The stored bytes from ``start`` (``length`` of them, or to the end) as a readable stream.

    From a bucket this is one ranged GET read as it is consumed; locally, the
    file itself, positioned (the caller stops after ``length``).
    """
    ranged = getattr(default_storage, "open_range", None)
    if ranged is not None:
        return ranged(name, start=start, length=length)
    handle = default_storage.open(name, "rb")
    if start:
        handle.seek(start)
    return handle


# Uploads wait here, each under a name of its own, until they are confirmed (or swept).
STAGED_UPLOADS = "uploads/staged"


def stage_upload(upload, *, max_bytes: int) -> tuple[str, str, int]:
    """Keep an uploaded file until it is confirmed; returns (staged name, sha256, size).

    The bytes are hashed while they are copied to a local temporary file, so the
    hash names exactly the bytes kept. An upload over ``max_bytes`` is refused
    before anything reaches storage. The staged file has a name of its own, not
    the content-addressed blob's, so refusing or abandoning it can never remove
    a blob something else uses; ``store_blob`` files it under its hash once it
    is confirmed.
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
        tmp.seek(0)
        name = default_storage.save(f"{STAGED_UPLOADS}/{uuid.uuid4().hex}", File(tmp))
    return name, digest.hexdigest(), size


def discard(name: str) -> None:
    """Remove a staged file; one that is already gone is fine."""
    with contextlib.suppress(FileNotFoundError):
        default_storage.delete(name)


def copy_blob_to(name: str, dest: Path) -> Path:
    """Copy a stored blob to a local path (storage may be remote; ML code wants a file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(open_stream(name)) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    return dest


def copy_artifact_to(artifact, folder: Path) -> Path:
    """Copy one stored file of a version to ``folder/<its path>``, checked against its sha256."""
    dest = folder / artifact.path
    if not dest.resolve().is_relative_to(folder.resolve()):
        raise PortalError(f"Artifact path {artifact.path!r} leaves the version folder.")
    copy_blob_to(artifact.blob_name, dest)
    if digest_file(dest).sha256 != artifact.sha256:
        raise PortalError(
            f"Stored file {artifact.path} of {artifact.version} does not match its hash."
        )
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
            copy_artifact_to(artifact, building)
        try:
            building.rename(final)
        except OSError:
            # Another worker finished the same folder first; theirs is as good.
            if not final.is_dir():
                raise
    finally:
        if building.exists():
            remove_tree(building)
    return final


def remove_tree(path: Path) -> bool:
    """Remove a local folder and everything in it, read-only parts included; True if it went.

    ``shutil.rmtree(..., ignore_errors=True)`` leaves behind what it cannot
    delete (a read-only file from an archive, say) without a word; this makes
    such entries writable and tries again, and says whether the folder is gone.
    """

    def writable_then_retry(function, name, _exc) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name) or ".", 0o700)
            os.chmod(name, 0o700)
            function(name)

    if not path.exists() and not path.is_symlink():
        return True
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return True
    shutil.rmtree(path, onerror=writable_then_retry)
    return not path.exists()
