"""What a model file is, judged by its bytes, and whether it may be used.

A file's name says nothing an attacker cannot choose, so ``scan_file`` reads
what the bytes are: a safetensors header, a zip or tar archive (every member
judged in turn, whatever it is called), a gzip, bz2, xz or zlib stream
(judged once decompressed, within the archive limits), a numpy array (an
object array carries a pickle), HDF5 (a Keras Lambda layer carries code), a
protobuf message (ONNX, sentencepiece), GGUF, an image, text, or a pickle in
any protocol, whole or broken off. Pickles are disassembled, never loaded, and
every global they import is rated by picklescan. Whatever the scan cannot
positively identify as a data format is "unscannable" and blocks like a
dangerous file: what cannot be read cannot be shown to be safe.

No Django imports: the import jobs and the tests use it alike.
"""

from __future__ import annotations

import ast
import bz2
import codecs
import gzip
import json
import lzma
import math
import os
import pickletools
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from zoo.safety import (
    RATIO_FLOOR,
    READ_ERRORS,
    Limits,
    UnsafeContent,
    guarded_tarinfo,
    human_size,
)

_ZIP_MAGIC = b"PK\x03\x04"

# --- formats ------------------------------------------------------------------

FORMATS = ("safetensors", "pickle", "onnx", "config", "tokenizer", "other")

_TOKENIZER_NAMES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "special_tokens_map.json",
        "spiece.model",
        "sentencepiece.bpe.model",
        "tokenizer.model",
    }
)
_CONFIG_SUFFIXES = frozenset({".json", ".yaml", ".yml"})
# Raw tensor bytes that a model format keeps beside its description (ONNX external
# data): loaders read them as numbers, never as a pickle, and a pickle is caught
# before this rule is reached.
_RAW_DATA_SUFFIXES = (".onnx_data", ".onnx.data")


@dataclass(frozen=True)
class ScanReport:
    """The verdict on one file; 'dangerous' and 'unscannable' files may not be used.

    ``format`` is the catalogue's kind of the file, from what the bytes are
    (the name only tells a config from a tokenizer among plain text);
    ``detected`` says in words what the scan found, e.g. "zip archive (torch
    checkpoint): pickle, tensor data".
    """

    status: str  # 'clean' | 'dangerous' | 'unscannable' | 'not_applicable'
    # JSON-serialisable. A global: module, name, safety (picklescan's rating) and, for a
    # member of an archive, file. A problem: message and perhaps file.
    findings: list[dict]
    format: str = "other"
    detected: str = ""

    @property
    def blocks(self) -> bool:
        return self.status in ("dangerous", "unscannable")


_MAX_FINDINGS = 50
# Archives inside archives inside compressed streams: deeper than this is not scanned.
MAX_DEPTH = 4


def scan_file(path: Path, name: str = "", *, limits: Limits | None = None) -> ScanReport:
    """Judge a file by its bytes, without ever loading it; ``name`` is only for the report.

    Pickles are disassembled and every global they import is rated by
    picklescan: only globals it knows to be innocuous pass, and a pickle that
    cannot be fully parsed blocks too. Archives and compressed streams are
    opened within ``limits`` and everything inside judged the same way.
    """
    scan = _Scan(limits or Limits())
    path = Path(path)
    try:
        what = _judge(path, name or path.name, scan, member=None, depth=0)
    except OSError as exc:
        scan.found.problem(f"could not be read: {exc}", None)
        what = "unreadable"
    return scan.report(what, name or path.name)


def classify_format(relative_path: str) -> str:
    """What a file's name suggests it is; only ever a hint (see ``scan_file``)."""
    name = PurePosixPath(relative_path).name.lower()
    suffix = PurePosixPath(name).suffix
    if suffix == ".safetensors":
        return "safetensors"
    if suffix in {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"}:
        return "pickle"
    if suffix == ".onnx":
        return "onnx"
    if name in _TOKENIZER_NAMES or suffix == ".tiktoken":
        return "tokenizer"
    if suffix in _CONFIG_SUFFIXES:
        return "config"
    return "other"


class _Scan:
    """One file's scan: what was found, which formats were seen, the bytes it may unpack."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.found = _Problems()
        self.kinds: set[str] = set()
        self.budget = limits.max_total_bytes
        self.members = 0

    def take(self, size: int, member: str | None) -> bool:
        """Count ``size`` unpacked bytes against the limits; False (and a problem) past them."""
        self.members += 1
        self.budget -= size
        if self.members > self.limits.max_files:
            self.found.problem(f"holds more than {self.limits.max_files:,} members", member)
            return False
        if self.budget < 0 or size > self.limits.max_file_bytes:
            limit = human_size(self.limits.max_total_bytes)
            self.found.problem(f"unpacks to more than the limit of {limit}", member)
            return False
        return True

    def report(self, what: str, name: str) -> ScanReport:
        found = self.found
        findings = found.globals + found.problems
        if len(findings) > _MAX_FINDINGS:
            extra = len(findings) - _MAX_FINDINGS + 1
            findings = [*findings[: _MAX_FINDINGS - 1], {"message": f"... and {extra} more"}]
        if found.globals:
            status = "dangerous"
        elif found.problems:
            status = "unscannable"
        elif self.kinds & {"pickle", "safetensors"}:
            status = "clean"
        else:
            status, findings = "not_applicable", []
        return ScanReport(status, findings, _catalogue_format(self.kinds, name), what[:200])


def _catalogue_format(kinds: set[str], name: str) -> str:
    lowered = PurePosixPath(name).name.lower()
    if "pickle" in kinds:
        return "pickle"
    if kinds == {"safetensors"}:
        return "safetensors"
    if "protobuf" in kinds and lowered.endswith(".onnx"):
        return "onnx"
    if kinds <= {"text", "protobuf", "empty"} and (
        lowered in _TOKENIZER_NAMES or lowered.endswith(".tiktoken")
    ):
        return "tokenizer"
    if kinds <= {"text", "empty"} and PurePosixPath(lowered).suffix in _CONFIG_SUFFIXES:
        return "config"
    return "other"


# pickle ----------------------------------------------------------------------

# torch.save's legacy (pre-1.6) format: five pickles, the first of them this
# number, then raw storage bytes. Value from torch/serialization.py.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PICKLES = 5
_PROTO_BYTE = frozenset(range(6))


class _Problems:
    def __init__(self) -> None:
        self.globals: list[dict] = []
        self.problems: list[dict] = []

    def problem(self, message: str, member: str | None) -> None:
        """Record a problem; ``message`` continues a sentence about the file or member."""
        entry: dict[str, Any] = {"message": f"{member or 'the file'} {message}"}
        if member is not None:
            entry["file"] = member
        self.problems.append(entry)

    def add_global(self, module: str, name: str, safety: str, member: str | None) -> None:
        entry: dict[str, Any] = {"module": module, "name": name, "safety": safety}
        if member is not None:
            entry["file"] = member
        if entry not in self.globals:
            self.globals.append(entry)


# Longest text line a protocol-0 opcode may carry before the pickle is called broken.
_MAX_PICKLE_LINE = 16 << 20


class _Clamped:
    """A seekable reader that never asks the layer below for more than remains.

    Pickle opcodes carry their own lengths: twelve bytes can claim an exabyte,
    and pickletools asks for it in one read, which the io layer tries to
    allocate before finding out how much there is. Text lines are capped for
    the same reason.
    """

    def __init__(self, raw: IO[bytes], size: int) -> None:
        self._raw = raw
        self._size = size

    def read(self, size: int | None = -1) -> bytes:
        remaining = max(self._size - self._raw.tell(), 0)
        return self._raw.read(remaining if size is None or size < 0 else min(size, remaining))

    def readline(self, size: int | None = -1) -> bytes:
        limit = _MAX_PICKLE_LINE if size is None or size < 0 else min(size, _MAX_PICKLE_LINE)
        return self._raw.readline(limit)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


@dataclass
class _Layout:
    """Where the pickles in a stream are, found by parsing alone."""

    spans: list[int]  # start offsets of complete pickles
    extension_codes: list[int]
    broken_at: int | None = None  # start of a pickle that does not parse
    error: str = ""


def _pickle_layout(fh: _Clamped, *, top_level: bool) -> _Layout:
    """Find the pickles in a stream with pickletools, which parses and never executes.

    Every byte must belong to a complete pickle, except for the raw storage
    data that follows the five pickles of a legacy torch file.
    """
    fh.seek(0)
    layout = _Layout(spans=[], extension_codes=[])
    legacy = False
    while True:
        start = fh.tell()
        if not fh.read(1):
            break
        fh.seek(start)
        ints: list[Any] = []
        codes: list[int] = []
        others = 0
        try:
            for opcode, arg, _pos in pickletools.genops(fh):
                if opcode.name in ("EXT1", "EXT2", "EXT4"):
                    codes.append(arg)
                if opcode.name in ("INT", "LONG", "LONG1", "LONG4", "BININT", "BININT1"):
                    ints.append(arg)
                elif opcode.name not in ("PROTO", "FRAME", "STOP"):
                    others += 1
        except ValueError as exc:
            layout.broken_at = start
            # What follows a pickle need not be one (a zip appended, say): opcodes
            # read from such bytes are noise, and the break already blocks the file.
            layout.error = f"is not a complete pickle at byte {start}: {exc}"
            return layout
        layout.extension_codes.extend(codes)
        layout.spans.append(start)
        if len(layout.spans) == 1 and top_level:
            legacy = not others and ints == [_TORCH_LEGACY_MAGIC]
        if legacy and len(layout.spans) == _TORCH_LEGACY_PICKLES:
            return layout
    if not layout.spans:
        layout.error = "is empty"
    elif legacy:
        layout.error = "is a truncated legacy torch file"
    return layout


def _scan_pickle_stream(
    fh: IO[bytes], size: int, member: str | None, found: _Problems, *, top_level: bool = False
) -> None:
    from picklescan.scanner import SafetyLevel, scan_pickle_bytes

    if top_level and _is_tar(fh):
        # torch.load tries a file as a tar archive before anything else (the
        # oldest torch format) and unpickles members inside it; picklescan
        # does not look there, so such a file cannot be shown to be safe.
        found.problem("is a tar archive (the oldest torch format), which is not scanned", member)
        return
    reader = _Clamped(fh, size)
    layout = _pickle_layout(reader, top_level=top_level)
    if layout.error:
        found.problem(layout.error, member)
    for code in layout.extension_codes:
        # The extension registry maps these codes to globals that picklescan
        # never sees; nothing the zoo accepts needs them.
        found.add_global("copyreg", f"extension code {code}", "dangerous", member)
    # A pickle that breaks part-way is still scanned: whatever it imports
    # before the break would run when it is loaded.
    starts = layout.spans + ([layout.broken_at] if layout.broken_at is not None else [])
    for start in starts:
        reader.seek(start)
        try:
            # Not picklescan's strict flag: it would relabel unknown globals
            # 'dangerous'. Keeping its own rating shows the reader which
            # globals are known-bad and which merely unknown; both block here.
            result = scan_pickle_bytes(reader, member or "file", multiple_pickles=False)
        except Exception as exc:  # picklescan has no narrower contract
            found.problem(f"could not be scanned: {exc}", member)
            continue
        if result.scan_err and start != layout.broken_at:
            found.problem("could not be scanned completely", member)
        for item in sorted(result.globals, key=lambda g: (g.module, g.name)):
            if item.safety is not SafetyLevel.Innocuous:
                found.add_global(item.module, item.name, item.safety.value, member)


def _is_tar(fh: IO[bytes]) -> bool:
    """Whether the file opens as a tar archive, as torch.load would try first."""
    fh.seek(0)
    try:
        with tarfile.open(fileobj=fh, mode="r:", tarinfo=guarded_tarinfo()):
            return True
    except UnsafeContent:
        return True  # a valid tar header announcing an oversized extension: a tar
    except Exception:  # anything else tarfile trips over means it is not one
        return False
    finally:
        fh.seek(0)


# judging by the bytes ---------------------------------------------------------

_GLOBAL_OPS = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "EXT1", "EXT2", "EXT4"})
_CALL_OPS = frozenset({"REDUCE", "OBJ", "INST", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"})
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
)
_UNOPENED = (
    (b"7z\xbc\xaf\x27\x1c", "7-Zip"),
    (b"Rar!\x1a\x07", "RAR"),
    (b"\x28\xb5\x2f\xfd", "Zstandard"),
    (b"\x04\x22\x4d\x18", "LZ4"),
)
_IMAGES = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"fLaC", "FLAC audio"),
    (b"OggS", "Ogg audio"),
    (b"ID3", "MP3 audio"),
    (b"%PDF-", "PDF document"),
)
_HDF5 = b"\x89HDF\r\n\x1a\n"
# A Keras Lambda layer (HDF5 model_config, or a .keras archive's config.json) carries
# marshalled Python code that loading runs.
_KERAS_CODE = (b'"class_name": "Lambda"', b'"class_name":"Lambda"', b'"__lambda__"')


def _judge(path: Path, name: str, scan: _Scan, *, member: str | None, depth: int) -> str:
    """Find out what the file at ``path`` is, recording what blocks it; says what it is."""
    if depth > MAX_DEPTH:
        scan.found.problem("is nested too deeply inside archives to be scanned", member)
        return "nested too deeply"
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(16)
        if size == 0:
            scan.kinds.add("empty")
            return "empty file"
        if _safetensors_head(head, size):
            return _judge_safetensors(path, scan, member)
        if head.startswith(b"GGUF"):
            scan.kinds.add("gguf")
            return "GGUF weights"
        if head[:4] in (_ZIP_MAGIC, b"PK\x05\x06"):
            return _judge_zip(path, scan, member=member, depth=depth)
        if head.startswith(b"\x93NUMPY"):
            return _judge_npy(path, scan, member=member, depth=depth)
        if head.startswith(_HDF5):
            return _judge_hdf5(path, scan, member)
        for magic, kind in _COMPRESSED:
            if head.startswith(magic):
                return _judge_compressed(path, kind, name, scan, member=member, depth=depth)
        if _is_zlib(head):
            return _judge_compressed(path, "zlib", name, scan, member=member, depth=depth)
        for magic, kind in _UNOPENED:
            if head.startswith(magic):
                scan.found.problem(
                    f"is compressed with {kind}, which the portal cannot open", member
                )
                return f"{kind} archive"
        if _is_tar(fh):
            return _judge_tar(path, scan, member=member, depth=depth)
        if _looks_like_pickle(fh, size):
            scan.kinds.add("pickle")
            fh.seek(0)
            _scan_pickle_stream(fh, size, member, scan.found, top_level=True)
            return "pickle"
    return _judge_data(path, name, head, size, scan, member)


def _judge_data(path: Path, name: str, head: bytes, size: int, scan: _Scan, member) -> str:
    """The formats that carry no code: images, text, protobuf, msgpack, raw tensor data."""
    lowered = PurePosixPath(name).name.lower()
    if lowered.endswith(".safetensors"):
        # Named as safetensors but not shaped like it: say exactly what is wrong.
        return _judge_safetensors(path, scan, member)
    if lowered.endswith(".onnx") and _is_protobuf(path, size):
        # A small protobuf can also be valid UTF-8; the name settles which.
        scan.kinds.add("protobuf")
        return "protobuf message"
    for magic, kind in _IMAGES:
        if head.startswith(magic):
            scan.kinds.add("media")
            return kind
    if head.startswith(b"RIFF") and head[8:12] in (b"WEBP", b"WAVE"):
        scan.kinds.add("media")
        return "WebP image" if head[8:12] == b"WEBP" else "WAV audio"
    if _is_text(path):
        scan.kinds.add("text")
        if _contains(path, _KERAS_CODE):
            scan.found.add_global("keras.layers", "Lambda", "dangerous", member)
        return "text"
    if _is_protobuf(path, size):
        scan.kinds.add("protobuf")
        return "protobuf message"
    if _is_msgpack(path, size):
        scan.kinds.add("msgpack")
        return "msgpack data"
    if lowered.endswith(_RAW_DATA_SUFFIXES):
        scan.kinds.add("tensor data")
        return "raw tensor data"
    scan.found.problem("is binary data in no format the portal can identify", member)
    return "unidentified binary"


def _safetensors_head(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= size - 8 and head[8:9] == b"{"


def _judge_safetensors(path: Path, scan: _Scan, member: str | None) -> str:
    scan.kinds.add("safetensors")
    _, problems = _read_safetensors(path)
    for problem in problems:
        entry: dict[str, Any] = {"message": problem if member is None else f"{member}: {problem}"}
        if member is not None:
            entry["file"] = member
        scan.found.problems.append(entry)
    return "safetensors"


def _looks_like_pickle(fh: IO[bytes], size: int) -> bool:
    """Whether a loader would run any of this as a pickle.

    A protocol header, a complete pickle, or opcodes that import a global and
    call something before the parse breaks off: loading executes those before
    it fails. Text that merely starts with letters that happen to be opcodes
    ("label,…") has none of these and stays text.
    """
    fh.seek(0)
    first = fh.read(2)
    if first[:1] == b"\x80" and first[1:2] and first[1] in _PROTO_BYTE:
        return True
    fh.seek(0)
    imports = calls = False
    try:
        for opcode, _arg, _pos in pickletools.genops(_Clamped(fh, size)):
            imports = imports or opcode.name in _GLOBAL_OPS
            calls = calls or opcode.name in _CALL_OPS
            if opcode.name == "STOP":
                return True
    except (ValueError, UnicodeDecodeError, struct.error, OverflowError, MemoryError):
        pass
    return imports and calls


def _is_zlib(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0


def _is_text(path: Path) -> bool:
    """Strict UTF-8 throughout (a BOM allowed) and no NUL bytes."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            if b"\x00" in chunk:
                return False
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return False
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _contains(path: Path, needles: tuple[bytes, ...]) -> bool:
    overlap = max(len(n) for n in needles)
    tail = b""
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            window = tail + chunk
            if any(n in window for n in needles):
                return True
            tail = window[-overlap:]
    return False


def _read_varint(fh: IO[bytes]) -> int | None:
    shift = value = 0
    for _ in range(10):
        byte = fh.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
    return None


def _is_protobuf(path: Path, size: int) -> bool:
    """Whether the file is a well-formed sequence of protobuf fields, end to end."""
    with open(path, "rb") as fh:
        fields = 0
        while fh.tell() < size:
            tag = _read_varint(fh)
            if tag is None or tag >> 3 == 0:
                return False
            wire = tag & 7
            if wire == 0:
                if _read_varint(fh) is None:
                    return False
            elif wire == 1:
                fh.seek(8, os.SEEK_CUR)
            elif wire == 5:
                fh.seek(4, os.SEEK_CUR)
            elif wire == 2:
                length = _read_varint(fh)
                if length is None or fh.tell() + length > size:
                    return False
                fh.seek(length, os.SEEK_CUR)
            else:
                return False
            fields += 1
        return fields > 0 and fh.tell() == size


def _is_msgpack(path: Path, size: int) -> bool:
    """Whether the file is exactly one well-formed msgpack value (Flax keeps weights so)."""
    with open(path, "rb") as fh:
        pending = 1  # values still to read
        while pending:
            byte = fh.read(1)
            if not byte:
                return False
            pending -= 1
            more, skip = _msgpack_item(byte[0], fh)
            if more is None:
                return False
            pending += more
            if skip:
                fh.seek(skip, os.SEEK_CUR)
            if fh.tell() > size or pending > 1 << 24:
                return False
        return fh.tell() == size


def _msgpack_item(code: int, fh: IO[bytes]) -> tuple[int | None, int]:
    """(values contained, payload bytes to skip) for one msgpack type byte; None if invalid."""

    def length(n: int) -> int | None:
        raw = fh.read(n)
        return int.from_bytes(raw, "big") if len(raw) == n else None

    if code <= 0x7F or code >= 0xE0 or code in (0xC0, 0xC2, 0xC3):
        return 0, 0
    if 0x80 <= code <= 0x8F:
        return 2 * (code & 0x0F), 0
    if 0x90 <= code <= 0x9F:
        return code & 0x0F, 0
    if 0xA0 <= code <= 0xBF:
        return 0, code & 0x1F
    fixed = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4,
             0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}  # fmt: skip
    if code in fixed:
        return 0, fixed[code]
    sized = {0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0), 0xD9: (1, 0), 0xDA: (2, 0),
             0xDB: (4, 0), 0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1)}  # fmt: skip
    if code in sized:
        width, ext_type = sized[code]
        n = length(width)
        return (None, 0) if n is None else (0, n + ext_type)
    containers = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}
    if code in containers:
        width, per = containers[code]
        n = length(width)
        return (None, 0) if n is None else (per * n, 0)
    return None, 0


@contextmanager
def _spooled(stream: IO[bytes], cap: int) -> Iterator[Path | None]:
    """Copy ``stream`` to a temporary file, at most ``cap`` bytes; None when it is longer."""
    with tempfile.TemporaryDirectory(prefix="scan-") as tmp:
        path = Path(tmp) / "member"
        written = 0
        with path.open("wb") as out:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                written += len(chunk)
                if written > cap:
                    yield None
                    return
                out.write(chunk)
        yield path


def _judge_member(stream, size: int, name: str, scan: _Scan, *, member: str, depth: int):
    """Judge one archive member or decompressed stream, if the limits allow its size."""
    if not scan.take(size, member):
        return None
    with _spooled(stream, size) as path:
        if path is None:
            scan.found.problem("is longer than its archive said", member)
            return None
        return _judge(path, name, scan, member=member, depth=depth + 1)


def _judge_zip(path: Path, scan: _Scan, *, member: str | None, depth: int) -> str:
    prefix = f"{member}/" if member else ""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        scan.found.problem(f"is not a readable zip file: {exc}", member)
        return "damaged zip archive"
    seen: set[str] = set()
    kinds: list[str] = []
    with zf:
        infos = zf.infolist()
        torch_zip = any(PurePosixPath(i.filename).name == "data.pkl" for i in infos)
        for info in infos:
            name = info.filename
            where = prefix + name
            if name in seen:
                scan.found.problem("appears more than once in the zip file", where)
                continue
            seen.add(name)
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                scan.found.problem("is encrypted", where)
                continue
            if info.file_size > RATIO_FLOOR and (
                info.compress_size <= 0
                or info.file_size / info.compress_size > scan.limits.max_ratio
            ):
                scan.found.problem("expands suspiciously far when decompressed", where)
                continue
            if torch_zip and _is_torch_storage(name):
                # Tensor bytes torch.load reads by offset; never unpickled.
                kinds.append("tensor data")
                continue
            try:
                with zf.open(info) as stream:
                    kind = _judge_member(
                        stream, info.file_size, name, scan, member=where, depth=depth
                    )
            except READ_ERRORS as exc:
                scan.found.problem(f"could not be read: {exc}", where)
                continue
            if kind:
                kinds.append(kind)
    what = "torch checkpoint" if torch_zip else "zip archive"
    return f"{what}: {', '.join(sorted(set(kinds)))}" if kinds else f"{what}, empty"


def _is_torch_storage(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return len(parts) >= 2 and parts[-2] == "data" and parts[-1].isdigit()


def _judge_tar(path: Path, scan: _Scan, *, member: str | None, depth: int) -> str:
    prefix = f"{member}/" if member else ""
    kinds: list[str] = []
    try:
        with tarfile.open(path, mode="r:", tarinfo=guarded_tarinfo()) as tar:
            for info in tar:
                where = prefix + info.name
                if info.isdir():
                    continue
                if not info.isfile():
                    scan.found.problem("is a link or device inside the archive", where)
                    continue
                stream = tar.extractfile(info)
                kind = _judge_member(stream, info.size, info.name, scan, member=where, depth=depth)
                if kind:
                    kinds.append(kind)
    except (UnsafeContent, *READ_ERRORS) as exc:
        scan.found.problem(f"could not be read as a tar archive: {exc}", member)
    # torch.load tries a file as a tar (its oldest format) before anything else.
    return f"tar archive: {', '.join(sorted(set(kinds)))}" if kinds else "tar archive, empty"


def _judge_compressed(path: Path, kind: str, name: str, scan: _Scan, *, member, depth) -> str:
    """Decompress (within the ratio and size limits) and judge what comes out."""
    size = path.stat().st_size
    cap = min(max(RATIO_FLOOR, int(size * scan.limits.max_ratio)), scan.limits.max_file_bytes)
    opener = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(kind)
    inner_name = name.rsplit(".", 1)[0] if "." in name else name
    where = f"{member or name} ({kind}-decompressed)"
    try:
        source = opener(path, "rb") if opener else _ZlibReader(path)
        with source as stream, _spooled(stream, cap) as inner:
            if inner is None:
                scan.found.problem("expands suspiciously far when decompressed", member or None)
                return f"{kind} stream (too large)"
            if not scan.take(inner.stat().st_size, member):
                return f"{kind} stream"
            what = _judge(inner, inner_name, scan, member=where, depth=depth + 1)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
        scan.found.problem(f"is a damaged {kind} stream: {exc}", member)
        return f"damaged {kind} stream"
    return f"{kind} → {what}"


class _ZlibReader:
    """A zlib stream (joblib's compression) read as a file."""

    def __init__(self, path: Path) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 (closed by __exit__)
        self._z = zlib.decompressobj()

    def read(self, n: int = -1) -> bytes:
        while True:
            data = self._fh.read(1 << 20)
            if not data:
                return self._z.flush()
            out = self._z.decompress(data)
            if out:
                return out

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()


def _judge_npy(path: Path, scan: _Scan, *, member: str | None, depth: int) -> str:
    """A numpy array: numbers are data; an object array is a pickle after the header."""
    with open(path, "rb") as fh:
        fh.seek(6)
        major = fh.read(2)[:1]
        width = 2 if major == b"\x01" else 4
        raw = fh.read(width)
        if len(raw) != width:
            scan.found.problem("is a truncated numpy file", member)
            return "damaged numpy array"
        length = int.from_bytes(raw, "little")
        header = fh.read(min(length, 1 << 20))
        offset = fh.tell()
    try:
        meta = ast.literal_eval(header.decode("latin-1").strip())
        descr = str(meta["descr"])
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
        scan.found.problem("has a numpy header that cannot be read", member)
        return "damaged numpy array"
    if "O" not in descr:
        scan.kinds.add("array")
        return f"numpy array ({descr})"
    scan.kinds.add("pickle")
    with open(path, "rb") as fh:
        fh.seek(offset)
        size = path.stat().st_size - offset
        with _spooled(fh, size) as body, open(body, "rb") as pickled:
            _scan_pickle_stream(pickled, size, member, scan.found, top_level=True)
    return "numpy object array (pickle)"


def _judge_hdf5(path: Path, scan: _Scan, member: str | None) -> str:
    scan.kinds.add("hdf5")
    if _contains(path, _KERAS_CODE):
        scan.found.add_global("keras.layers", "Lambda", "dangerous", member)
        return "HDF5 (Keras model with a Lambda layer)"
    return "HDF5"


# safetensors -----------------------------------------------------------------

_ST_MAX_HEADER = 100_000_000
# Bits per element of every dtype the safetensors format defines.
_ST_DTYPE_BITS = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _read_safetensors(path: Path) -> tuple[dict[str, list[int]], list[str]]:
    """Validate a safetensors header without reading any tensor data.

    Returns ({tensor name: shape}, problems). Beyond the brief's checks this
    requires the tensors to tile the data area exactly, as the safetensors
    library does ("file not fully covered"): bytes no tensor accounts for are
    bytes nobody has looked at.
    """
    header, data_bytes, problem = _safetensors_header(path)
    if problem:
        return {}, [problem]
    problems: list[str] = []
    shapes: dict[str, list[int]] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(
                isinstance(value, str) for value in entry.values()
            ):
                problems.append("the header's __metadata__ is not a map of strings to strings")
            continue
        problem = _tensor_entry_problem(f"tensor {name!r}", entry, data_bytes)
        if problem:
            problems.append(problem)
            continue
        shapes[name] = entry["shape"]
        spans.append((*entry["data_offsets"], name))
    if problems:
        return shapes, problems
    return shapes, _coverage_problems(spans, data_bytes)


def _safetensors_header(path: Path) -> tuple[dict, int, str]:
    """The parsed JSON header and the size of the data area, or a problem naming why not."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 8:
            return {}, 0, "the file is too short to be safetensors"
        (length,) = struct.unpack("<Q", fh.read(8))
        if length > _ST_MAX_HEADER:
            return {}, 0, f"the file declares a {human_size(length)} header; the limit is 100 MB"
        if length > size - 8:
            return {}, 0, "the file declares a header longer than itself"
        raw = fh.read(length)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {}, 0, "the header is not UTF-8"
    try:
        header = json.loads(text, object_pairs_hook=_strict_object, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        return {}, 0, f"the header is not valid JSON: {exc}"
    if not isinstance(header, dict):
        return {}, 0, "the header is not a JSON object"
    return header, size - 8 - length, ""


def _tensor_entry_problem(label: str, entry, data_bytes: int) -> str:
    """What is wrong with one tensor's header entry, or "" when it is well formed."""
    if not isinstance(entry, dict):
        return f"{label} is not described by an object"
    if set(entry) != {"dtype", "shape", "data_offsets"}:
        return f"{label} needs exactly dtype, shape and data_offsets"
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _ST_DTYPE_BITS:
        return f"{label} has unknown dtype {dtype!r}"
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        return f"{label} has a shape that is not a list of non-negative integers"
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) and o >= 0 for o in offsets)
    ):
        return f"{label} has data_offsets that are not two non-negative integers"
    begin, end = offsets
    if begin > end:
        return f"{label} ends before it begins"
    if end > data_bytes:
        return f"{label} ends past the end of the file"
    bits = math.prod(shape) * _ST_DTYPE_BITS[dtype]
    if bits % 8 or end - begin != bits // 8:
        return f"{label} takes {end - begin:,} bytes but its dtype and shape need {bits / 8:,g}"
    return ""


def _coverage_problems(spans: list[tuple[int, int, str]], data_bytes: int) -> list[str]:
    """The tensors must tile the data area: no overlap, no gap, nothing left over."""
    problems: list[str] = []
    position, previous = 0, None
    for begin, end, name in sorted(spans):
        if begin < position:
            problems.append(f"tensors {previous!r} and {name!r} overlap")
        elif begin > position:
            gap = begin - position
            problems.append(f"{gap:,} bytes before tensor {name!r} belong to no tensor")
        position, previous = max(position, end), name
    if position < data_bytes:
        problems.append(f"{data_bytes - position:,} bytes at the end belong to no tensor")
    return problems


def safetensors_parameter_count(path: Path) -> int | None:
    """Total number of elements in a safetensors file, or None if its header is not valid."""
    try:
        shapes, problems = _read_safetensors(Path(path))
    except OSError:
        return None
    if problems:
        return None
    return sum(math.prod(shape) for shape in shapes.values())
