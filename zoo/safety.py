"""File-safety primitives for bringing model files into the catalogue.

Model files reach the zoo from places the portal does not control: uploaded
archives, folders somebody downloaded, repositories on a hub. Any of them may
be hostile. A pickle runs code when it is loaded, an archive can climb out of
the folder it is unpacked into or expand to fill the disk, and a folder can
hold links to files elsewhere on the server. So everything here looks at bytes
and never runs them: nothing is ever unpickled (pickles are only disassembled,
through picklescan and ``pickletools``), archives are checked member by member
before anything is written, and every limit is enforced before the bytes that
would break it are decompressed.

The module has no Django imports so that it can be used, and tested, without
settings.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

__all__ = [
    "FileDigest",
    "Limits",
    "UnsafeContent",
    "check_folder",
    "copy_with_digest",
    "digest_file",
    "extract_archive",
    "guarded_tarinfo",
    "inspect_archive",
]


class UnsafeContent(Exception):
    """A refusal with a message fit to show a user.

    For example 'archive member ../x escapes the folder'.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Caps on what one import may bring in; every check below refuses past them."""

    max_files: int = 10_000
    max_total_bytes: int = 20 * 2**30
    # uncompressed/compressed, per zip member and for the archive as a whole
    max_ratio: float = 200.0
    max_file_bytes: int = 20 * 2**30


# Compression ratios are only judged above this many uncompressed bytes: a
# kilobyte of padding compresses a thousandfold and says nothing about a bomb,
# and the archive-wide ratio still catches many small members together.
RATIO_FLOOR = 1 << 20
_CHUNK = 1 << 20
_MAX_NAME_BYTES = 255
# A stored file's path is at most 500 characters (Artifact.path); no model needs 64 folders.
MAX_PATH_BYTES = 500
MAX_PATH_DEPTH = 64
_DRIVE = re.compile(r"^[A-Za-z]:")
_ZIP_MAGIC = b"PK\x03\x04"
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
# Errors the archive libraries raise for damaged or hostile input, as opposed
# to errors writing the output (those are not the archive's fault).
READ_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    OSError,
    NotImplementedError,
    RuntimeError,
    ValueError,
)


def _show(name: str) -> str:
    """A member name as it can safely appear in a message (no raw control characters)."""
    return name if name.isprintable() else ascii(name)


def human_size(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _clean_name(name: str, what: str, *, folder: bool = False) -> str | None:
    """Return ``name`` as a normalised relative posix path, or refuse it.

    Returns None only for a folder entry that names the root itself ('./').
    Names are refused rather than repaired: an archive that needs repairing was
    made by a tool we should not trust to have meant what it wrote.
    """
    shown = _show(name)
    if not name:
        raise UnsafeContent(f"{what} has an empty name")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UnsafeContent(f"{what} {shown} has control characters in its name")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeContent(f"{what} {shown} has a name that is not valid UTF-8") from None
    if "\\" in name:
        raise UnsafeContent(f"{what} {shown} uses backslashes in its path")
    if name.startswith("/"):
        raise UnsafeContent(f"{what} {shown} has an absolute path")
    if _DRIVE.match(name):
        raise UnsafeContent(f"{what} {shown} names a drive")
    parts = name.split("/")
    if folder and name.endswith("/"):
        parts.pop()
    if ".." in parts:
        raise UnsafeContent(f"{what} {shown} escapes the folder")
    if "" in parts:
        raise UnsafeContent(f"{what} {shown} has an empty path component")
    parts = [part for part in parts if part != "."]
    if not parts:
        if folder:
            return None
        raise UnsafeContent(f"{what} {shown} has an empty name")
    if len(parts) > MAX_PATH_DEPTH:
        raise UnsafeContent(f"{what} {shown} is nested more than {MAX_PATH_DEPTH} folders deep")
    if len(encoded) > MAX_PATH_BYTES:
        raise UnsafeContent(f"{what} {shown} has a path longer than {MAX_PATH_BYTES} bytes")
    if any(len(part.encode("utf-8")) > _MAX_NAME_BYTES for part in parts):
        raise UnsafeContent(f"{what} {shown} has a name too long for the file system")
    return "/".join(parts)


def check_name(name: str, what: str = "file") -> str:
    """``name`` as a clean relative path (see ``_clean_name``), or UnsafeContent saying why."""
    cleaned = _clean_name(name, what)
    if cleaned != name:
        raise UnsafeContent(f"{what} {_show(name)} is not a plain relative path")
    return cleaned


class _Tally:
    """Counts and names seen so far in an archive, refusing as soon as a limit is crossed."""

    def __init__(self, limits: Limits, archive_bytes: int) -> None:
        self.limits = limits
        self.archive_bytes = archive_bytes
        self.files: list[tuple[str, int]] = []
        self.file_names: set[str] = set()
        self.folders: set[str] = set()
        self.folder_entries = 0
        self.total = 0

    def _add_parents(self, rel: str) -> None:
        parent = PurePosixPath(rel).parent
        while parent.parts:
            text = parent.as_posix()
            if text in self.file_names:
                raise UnsafeContent(f"archive member {_show(text)} is both a file and a folder")
            self.folders.add(text)
            parent = parent.parent

    def add_folder(self, rel: str | None) -> None:
        # Folder entries carry no data but each costs a header to read, so they
        # are capped too; otherwise a stream of them is a bomb of its own.
        self.folder_entries += 1
        if self.folder_entries > self.limits.max_files:
            raise UnsafeContent(f"the archive holds more than {self.limits.max_files:,} folders")
        if rel is None:
            return
        if rel in self.file_names:
            raise UnsafeContent(f"archive member {_show(rel)} is both a file and a folder")
        self.folders.add(rel)
        self._add_parents(rel)

    def add_file(self, rel: str, size: int) -> None:
        shown = _show(rel)
        if rel in self.file_names:
            raise UnsafeContent(f"archive member {shown} appears more than once")
        if rel in self.folders:
            raise UnsafeContent(f"archive member {shown} is both a file and a folder")
        self._add_parents(rel)
        if len(self.files) >= self.limits.max_files:
            raise UnsafeContent(f"the archive holds more than {self.limits.max_files:,} files")
        if size < 0:
            raise UnsafeContent(f"archive member {shown} declares a negative size")
        if size > self.limits.max_file_bytes:
            raise UnsafeContent(
                f"archive member {shown} is {human_size(size)}; "
                f"the limit is {human_size(self.limits.max_file_bytes)}"
            )
        self.total += size
        if self.total > self.limits.max_total_bytes:
            raise UnsafeContent(
                f"the archive expands to more than {human_size(self.limits.max_total_bytes)}"
            )
        self.file_names.add(rel)
        self.files.append((rel, size))

    def check_expansion(self, expanded: int) -> None:
        if expanded > RATIO_FLOOR and expanded > self.limits.max_ratio * max(self.archive_bytes, 1):
            raise UnsafeContent(
                f"the archive expands more than {self.limits.max_ratio:g} times its size"
            )


def _sniff(fh: IO[bytes]) -> str:
    fh.seek(0)
    head = fh.read(4)
    fh.seek(0)
    if head == _ZIP_MAGIC:
        return "zip"
    if head[:2] == _GZIP_MAGIC:
        return "tar.gz"
    raise UnsafeContent("not a .zip or .tar.gz archive")


# --- zip ----------------------------------------------------------------------


def _open_zip(fh: IO[bytes]) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise UnsafeContent(f"the archive is damaged: {exc}") from None


def _inspect_zip(
    zf: zipfile.ZipFile, limits: Limits, archive_bytes: int
) -> list[tuple[str, int, zipfile.ZipInfo]]:
    tally = _Tally(limits, archive_bytes)
    found: list[tuple[str, int, zipfile.ZipInfo]] = []
    for info in zf.infolist():
        shown = _show(info.filename)
        # The high half of external_attr is a Unix st_mode when present; it is
        # read whatever create_system says, since extractors that honour links
        # do not all check that field either.
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise UnsafeContent(f"archive member {shown} is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeContent(f"archive member {shown} is a device, pipe or other special file")
        if info.flag_bits & 0x1:
            raise UnsafeContent(f"archive member {shown} is encrypted")
        if info.is_dir():
            if info.file_size:
                raise UnsafeContent(f"folder entry {shown} carries data")
            tally.add_folder(_clean_name(info.filename, "archive member", folder=True))
            continue
        if kind == stat.S_IFDIR:
            raise UnsafeContent(f"archive member {shown} is marked as a folder but named as a file")
        rel = _clean_name(info.filename, "archive member")
        assert rel is not None
        if info.compress_type not in _ZIP_METHODS:
            raise UnsafeContent(f"archive member {shown} uses an unsupported compression method")
        size = info.file_size
        tally.add_file(rel, size)
        if size > RATIO_FLOOR and (
            info.compress_size <= 0 or size / info.compress_size > limits.max_ratio
        ):
            raise UnsafeContent(
                f"archive member {shown} expands more than {limits.max_ratio:g} times"
            )
        tally.check_expansion(tally.total)
        found.append((rel, size, info))
    return found


# --- tar.gz -------------------------------------------------------------------


class _Budget:
    """A read-only stream over decompressed bytes that refuses to give more than ``cap``.

    tarfile reads whole PAX and GNU long-name records into memory and skips
    member data by decompressing it, so the cap has to sit under tarfile rather
    than be checked between its members.
    """

    def __init__(self, raw: IO[bytes], cap: int, message: str) -> None:
        self._raw = raw
        self._cap = cap
        self._message = message
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        room = self._cap - self.count + 1
        data = self._raw.read(room if size < 0 else min(size, room))
        self.count += len(data)
        if self.count > self._cap:
            raise UnsafeContent(self._message)
        return data


# Extended headers (PAX records, GNU long names) are read whole and parsed by
# tarfile before it hands over the member they describe. Before CPython
# 3.11.10 that parsing is quadratic in the record's length (CVE-2024-6232), so
# their size is capped, singly and per archive. Legitimate ones hold a path
# and a few times and attributes.
_TAR_EXTENSIONS = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)
_MAX_TAR_EXTENSION = 8 << 10
_MAX_TAR_EXTENSIONS = 4 << 20


def guarded_tarinfo() -> type[tarfile.TarInfo]:
    """A TarInfo class that refuses oversized extended headers before tarfile reads them."""
    seen = 0

    class GuardedTarInfo(tarfile.TarInfo):
        def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
            nonlocal seen
            if self.type in _TAR_EXTENSIONS:
                seen += self.size
                if self.size > _MAX_TAR_EXTENSION or seen > _MAX_TAR_EXTENSIONS:
                    raise UnsafeContent(
                        "the archive has oversized extended (PAX or long-name) headers"
                    )
            return super()._proc_member(tar)

    return GuardedTarInfo


def _tar_members(
    fh: IO[bytes], limits: Limits, archive_bytes: int
) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo, str]]:
    """Yield (tar, member, relative path) for each regular file, checking every header first.

    Streaming mode reads headers in order and decompresses only as far as the
    next header, so a limit crossed by a header stops the walk before the data
    behind it is inflated.
    """
    import gzip

    fh.seek(0)
    cap = max(RATIO_FLOOR, int(archive_bytes * limits.max_ratio))
    budget = _Budget(
        gzip.GzipFile(fileobj=fh, mode="rb"),
        cap,
        f"the archive expands more than {limits.max_ratio:g} times its size",
    )
    tally = _Tally(limits, archive_bytes)
    try:
        with tarfile.open(fileobj=budget, mode="r|", tarinfo=guarded_tarinfo()) as tar:
            for member in tar:
                shown = _show(member.name)
                if member.issym():
                    raise UnsafeContent(f"archive member {shown} is a symbolic link")
                if member.islnk():
                    raise UnsafeContent(f"archive member {shown} is a hard link")
                if member.ischr() or member.isblk() or member.isfifo():
                    raise UnsafeContent(f"archive member {shown} is a device or pipe")
                if member.issparse():
                    raise UnsafeContent(f"archive member {shown} is a sparse file")
                tally.check_expansion(member.offset_data + max(member.size, 0))
                if member.isdir():
                    tally.add_folder(_clean_name(member.name, "archive member", folder=True))
                    continue
                if not member.isreg():
                    raise UnsafeContent(f"archive member {shown} is a special file")
                rel = _clean_name(member.name, "archive member")
                assert rel is not None
                tally.add_file(rel, member.size)
                yield tar, member, rel
    except UnsafeContent:
        raise
    except Exception as exc:  # tarfile's parsing of hostile headers can fail in any way
        raise UnsafeContent(f"the archive is damaged: {exc or type(exc).__name__}") from None


# --- public archive API -------------------------------------------------------


def inspect_archive(path: Path, *, limits: Limits) -> list[tuple[str, int]]:
    """Check a .zip or .tar.gz/.tgz archive WITHOUT extracting anything.

    Returns [(relative_posix_path, size)] of its regular files, in archive
    order. Every rule is checked on the declared metadata, so a hostile archive
    is refused before a byte of it lands on disk; see extract_archive for what
    happens when the metadata lies.
    """
    with open(path, "rb") as fh:
        kind = _sniff(fh)
        archive_bytes = os.fstat(fh.fileno()).st_size
        if kind == "zip":
            with _open_zip(fh) as zf:
                return [(rel, size) for rel, size, _ in _inspect_zip(zf, limits, archive_bytes)]
        return [(rel, member.size) for _, member, rel in _tar_members(fh, limits, archive_bytes)]


def _open_dir(name: str, dir_fd: int) -> int:
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _create(dest_fd: int, rel: str) -> BinaryIO:
    """Create ``rel`` under the folder open as ``dest_fd``, walking by descriptor.

    Every step refuses links (O_NOFOLLOW) and the file itself must be new
    (O_EXCL), so nothing outside dest can be reached even if something else
    is changing dest meanwhile.
    """
    *folders, leaf = rel.split("/")
    fd = os.dup(dest_fd)
    try:
        for part in folders:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            child = _open_dir(part, fd)
            os.close(fd)
            fd = child
        out = os.open(
            leaf,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
            dir_fd=fd,
        )
    finally:
        os.close(fd)
    return open(out, "wb")


def _copy_member(read: Callable[[int], bytes], out: BinaryIO, declared: int, shown: str) -> None:
    """Copy exactly ``declared`` bytes, refusing a member whose data disagrees with its header."""
    written = 0
    while True:
        try:
            chunk = read(min(_CHUNK, declared - written + 1))
        except UnsafeContent:
            raise
        except READ_ERRORS as exc:
            raise UnsafeContent(f"archive member {shown} could not be read: {exc}") from None
        if not chunk:
            break
        written += len(chunk)
        if written > declared:
            raise UnsafeContent(f"archive member {shown} holds more data than its header declares")
        out.write(chunk)
    if written != declared:
        raise UnsafeContent(f"archive member {shown} holds less data than its header declares")


def _empty_folder(folder: Path) -> None:
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def extract_archive(path: Path, dest: Path, *, limits: Limits) -> list[Path]:
    """Check the archive as inspect_archive does, then write its regular files into ``dest``.

    ``dest`` must be an existing, empty folder (ValueError otherwise: that is
    the caller's mistake, not the archive's). Headers can lie about sizes, so
    every file is streamed through a byte counter; the archive is read a second
    time for tar.gz, and each member must match what the inspection saw. On
    any failure everything written under ``dest`` is removed and the error
    re-raised. Returns the written paths, sorted.
    """
    dest = Path(dest)
    if dest.is_symlink() or not dest.is_dir():
        raise ValueError(f"{dest} is not a folder")
    if any(dest.iterdir()):
        raise ValueError(f"{dest} is not empty")
    written: list[Path] = []
    with open(path, "rb") as fh:
        kind = _sniff(fh)
        archive_bytes = os.fstat(fh.fileno()).st_size
        dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if kind == "zip":
                with _open_zip(fh) as zf:
                    for rel, size, info in _inspect_zip(zf, limits, archive_bytes):
                        shown = _show(rel)
                        try:
                            src = zf.open(info)
                        except READ_ERRORS as exc:
                            raise UnsafeContent(
                                f"archive member {shown} could not be read: {exc}"
                            ) from None
                        with src, _create(dest_fd, rel) as out:
                            written.append(dest / rel)
                            _copy_member(src.read, out, size, shown)
            else:
                expected = [(rel, m.size) for _, m, rel in _tar_members(fh, limits, archive_bytes)]
                seen = 0
                for tar, member, rel in _tar_members(fh, limits, archive_bytes):
                    if seen >= len(expected) or expected[seen] != (rel, member.size):
                        raise UnsafeContent("the archive changed while it was being extracted")
                    seen += 1
                    src = tar.extractfile(member)
                    assert src is not None  # regular files always have a reader
                    with src, _create(dest_fd, rel) as out:
                        written.append(dest / rel)
                        _copy_member(src.read, out, member.size, _show(rel))
                if seen != len(expected):
                    raise UnsafeContent("the archive changed while it was being extracted")
            root = dest.resolve()
            for file in written:
                if not file.resolve(strict=True).is_relative_to(root):
                    raise UnsafeContent(f"archive member {_show(file.name)} escapes the folder")
        except BaseException:
            _empty_folder(dest)
            raise
        finally:
            os.close(dest_fd)
    return sorted(written)


# --- folders ------------------------------------------------------------------

_SKIPPED_TOP = frozenset({".git", ".cache"})


def check_folder(root: Path, *, limits: Limits) -> list[Path]:
    """Walk a folder on the server that is to be imported; return its regular files.

    Paths come back sorted and relative to ``root``. Links are refused
    anywhere, the root included: a link is a way to import a file from
    elsewhere on the server. Files with more than one hard link are refused
    for the same reason. A top-level '.git' and '.cache' (where
    huggingface_hub keeps local_dir metadata) are skipped unread.
    """
    root = Path(root)
    if root.is_symlink():
        raise UnsafeContent(f"{root.name} is a symbolic link")
    if not root.is_dir():
        raise UnsafeContent(f"{root.name} is not a folder")
    found: list[PurePosixPath] = []
    total = 0
    folders = 0
    stack: list[tuple[str, PurePosixPath]] = [(os.fspath(root), PurePosixPath())]
    while stack:
        folder, rel = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if not rel.parts and entry.name in _SKIPPED_TOP:
                    continue
                relpath = rel / entry.name
                shown = _show(relpath.as_posix())
                _clean_name(relpath.as_posix(), "file")
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    raise UnsafeContent(f"{shown} is a symbolic link")
                if stat.S_ISDIR(st.st_mode):
                    folders += 1
                    if folders > limits.max_files:
                        raise UnsafeContent(
                            f"the folder holds more than {limits.max_files:,} folders"
                        )
                    stack.append((entry.path, relpath))
                    continue
                if not stat.S_ISREG(st.st_mode):
                    raise UnsafeContent(f"{shown} is a device, pipe, socket or other special file")
                if st.st_nlink > 1:
                    raise UnsafeContent(f"{shown} has other hard links")
                if len(found) >= limits.max_files:
                    raise UnsafeContent(f"the folder holds more than {limits.max_files:,} files")
                if st.st_size > limits.max_file_bytes:
                    raise UnsafeContent(
                        f"{shown} is {human_size(st.st_size)}; "
                        f"the limit is {human_size(limits.max_file_bytes)}"
                    )
                total += st.st_size
                if total > limits.max_total_bytes:
                    raise UnsafeContent(
                        f"the folder holds more than {human_size(limits.max_total_bytes)}"
                    )
                found.append(relpath)
    return [Path(p) for p in sorted(found)]


# --- digests ------------------------------------------------------------------


@dataclass(frozen=True)
class FileDigest:
    size: int
    sha256: str  # hex
    git_sha1: str  # git blob id: sha1(b'blob %d\0' % size + content), hex


def _hash_stream(
    read: Callable[[int], bytes], size: int, chunk: int, sink: BinaryIO | None
) -> tuple[int, FileDigest]:
    sha256 = hashlib.sha256()
    # A git blob id names content; it is compared with what a hub reports, not
    # relied on for security, and git defines it with sha1.
    git = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    count = 0
    while data := read(chunk):
        count += len(data)
        sha256.update(data)
        git.update(data)
        if sink is not None:
            _write_all(sink, data)
    return count, FileDigest(size=size, sha256=sha256.hexdigest(), git_sha1=git.hexdigest())


def _write_all(sink: BinaryIO, data: bytes) -> None:
    sent = sink.write(data)
    # Buffered files take everything; a raw file may take part, and a
    # file-like whose write returns None is taken to have taken it all.
    while sent is not None and sent < len(data):
        if sent <= 0:
            raise OSError(errno.EIO, "the destination accepted no bytes")
        data = data[sent:]
        sent = sink.write(data)


def digest_file(path: Path, *, chunk: int = 1 << 20) -> FileDigest:
    """Size, sha256 and git blob id of a file, in one pass over it."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        count, digest = _hash_stream(fh.read, size, chunk, None)
    if count != size:
        raise UnsafeContent(f"{Path(path).name} changed while it was being read")
    return digest


def copy_with_digest(src: Path, dst_file: BinaryIO, *, chunk: int = 1 << 20) -> FileDigest:
    """Stream ``src`` into an open binary file while hashing it, in one pass.

    The bytes hashed are the bytes written, and the file is stat'ed before and
    after: if its size, mtime or identity moved, or the bytes read do not add
    up to its size, the copy cannot be trusted to match the digest of anything
    the source promised, so it is refused.
    """
    src = Path(src)
    changed = UnsafeContent(f"{src.name} changed while it was being imported")
    before = os.stat(src)
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeContent(f"{src.name} is a symbolic link") from None
        raise
    with open(fd, "rb") as fh:
        opened = os.fstat(fh.fileno())
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            raise changed
        count, digest = _hash_stream(fh.read, before.st_size, chunk, dst_file)
    after = os.stat(src)
    same = (
        after.st_size == before.st_size
        and after.st_mtime_ns == before.st_mtime_ns
        and (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    )
    if not same or count != before.st_size:
        raise changed
    return digest
