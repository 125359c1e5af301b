"""Reading and validating uploaded dataset files, with a message fit to show for every problem.

Text classification datasets arrive as CSV, TSV or JSON Lines; image
classification datasets as a zip holding one folder of images per class. The
web side reads an upload to show a preview and to validate the columns a user
picked; the worker later reads the same file with the same functions and gets
the same rows in the same order. Nothing here depends on the clock, the locale
or the process, so that holds.

The module imports nothing of Django (the worker shares it) and never runs
anything from the file: tables are parsed with the ``csv`` and ``json``
modules, archives are checked by ``zoo.safety`` before a byte is read from
them, and images are only identified and verified by Pillow, from memory.

Decisions a reader should know:

- Encoding: UTF-8, with or without a byte-order mark, and UTF-16 with a BOM
  (Excel's "Unicode text"). Anything else is refused, naming the offset and
  line of the first bad byte; guessing a legacy code page would silently
  change the user's text.
- Row numbers in messages are what a spreadsheet shows: for CSV/TSV the
  header is row 1 and the first data row is row 2 (a quoted cell spanning
  lines still counts as one row; the file line is added where it differs).
  JSON Lines are counted by file line. ``read_table`` puts these numbers in
  the DataFrame's index.
- TSV is read with standard double-quote quoting (as Excel and pandas write
  it), unless that reading makes a quoted cell run across lines while the
  file also reads cleanly with quotes as ordinary characters (plain TSV, as
  most NLP corpora are written): then it is read plainly. That is what makes
  the SMS Spam Collection, which holds unbalanced quotes, read right.
- Text and labels have surrounding whitespace stripped; a row whose text and
  label are both blank is skipped with a warning. A blank slice cell becomes
  the slice ``BLANK_SLICE`` ('(blank)'), with a warning. A blank time cell is
  an error: a time split needs every row dated.
- Times are read as ISO 8601 first; values that are not are read by pandas'
  'mixed' parser (month before day) with a warning, and must name a year.
  All are converted to UTC and returned as ISO strings.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from zoo import safety

__all__ = [
    "BLANK_SLICE",
    "FORMATS",
    "DatasetError",
    "DatasetLimits",
    "ImageDataset",
    "TablePreview",
    "TextDataset",
    "detect_format",
    "extract_image_archive",
    "load_image_archive",
    "load_text_dataset",
    "preview_table",
    "read_table",
]

FORMATS = ("csv", "tsv", "jsonl", "zip")
BLANK_SLICE = "(blank)"
EXAMPLES = 5  # examples named in one message
MAX_COLUMN_NAME = 200
# The csv module refuses longer cells (csv.field_size_limit, a process-wide
# setting this module leaves alone).
MAX_CSV_CELL = 131_072
HEAD_BYTES = 64 * 1024
SAMPLE_ROWS = 10
SUGGESTION_ROWS = 50_000  # rows the preview's suggestions look at

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
_PIL_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
_JUNK_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
_LABEL_NAMES = frozenset(
    {"label", "labels", "class", "category", "target", "y", "sentiment", "class_name"}
)
_DELIMITERS = (",", ";", "\t", "|")
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


class DatasetError(ValueError):
    """Problems fit to show a user; ``.messages`` holds one per problem (all found)."""

    def __init__(self, messages: list[str] | str) -> None:
        self.messages: list[str] = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


@dataclass(frozen=True)
class DatasetLimits:
    """Caps on one uploaded dataset; the archive_* fields feed zoo.safety for image zips."""

    max_bytes: int = 200 * 2**20
    max_rows: int = 1_000_000
    max_columns: int = 200
    max_text_chars: int = 20_000
    max_classes: int = 1_000
    max_images: int = 200_000
    max_image_pixels: int = 40_000_000
    # Files of any kind in an image zip (images plus skipped ones such as __MACOSX/).
    max_archive_files: int = 250_000
    max_archive_expanded_bytes: int = 2 * 2**30
    max_archive_member_bytes: int = 64 * 2**20
    max_archive_ratio: float = 100.0

    def archive_limits(self) -> safety.Limits:
        """The zoo.safety limits an image archive is inspected and extracted under."""
        return safety.Limits(
            max_files=self.max_archive_files,
            max_total_bytes=self.max_archive_expanded_bytes,
            max_ratio=self.max_archive_ratio,
            max_file_bytes=self.max_archive_member_bytes,
        )


@dataclass
class TablePreview:
    format: str
    encoding: str
    delimiter: str | None
    columns: list[str]
    n_rows: int
    sample: list[dict[str, str]]  # the first rows, as strings
    suggested_text: str | None
    suggested_label: str | None
    warnings: list[str] = field(default_factory=list)


@dataclass
class TextDataset:
    texts: list[str]
    labels: list[str]
    slices: list[str] | None
    times: list[str] | None  # ISO 8601, UTC
    label_counts: dict[str, int]  # sorted by label
    n_rows: int  # rows kept
    warnings: list[str]
    # Where each kept row came from: spreadsheet row (CSV/TSV) or file line (JSONL).
    row_numbers: list[int] = field(default_factory=list)


@dataclass
class ImageDataset:
    members: list[str]  # archive paths of the images, sorted
    labels: list[str]  # the class folder of each
    label_counts: dict[str, int]  # sorted by label
    n_rows: int
    warnings: list[str]


# --- message helpers ----------------------------------------------------------


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


def _listing(items: Sequence[str], total: int | None = None, limit: int = EXAMPLES) -> str:
    """'a, b, c' or 'a, b, c, d, e and 7 more'."""
    total = len(items) if total is None else total
    shown = ", ".join(items[:limit])
    return f"{shown} and {total - min(limit, len(items)):,} more" if total > limit else shown


def _rows(numbers: Sequence[int], unit: str) -> str:
    """'row 4' or 'rows 4, 19' (``unit`` is 'row' or 'line')."""
    word = unit if len(numbers) == 1 else unit + "s"
    return f"{word} {_listing([str(n) for n in numbers])}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _q(value: str, width: int = 60) -> str:
    """A value quoted for a message: shortened, control characters escaped."""
    text = value if len(value) <= width else value[: width - 1] + "…"
    if not text.isprintable():
        text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return f"'{text}'"


def _human(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if size < 1024:
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GiB"


def _column_letter(index: int) -> str:
    """Spreadsheet letters for a 1-based column number: 1 -> A, 27 -> AA."""
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _column_ref(index: int) -> str:
    return f"column {index} ({_column_letter(index)})"


# --- format and encoding --------------------------------------------------------

_UNSUPPORTED = "Upload a CSV, TSV or JSONL file, or a zip of images."
_SNIFFED_EXTENSIONS = frozenset({"", ".txt", ".text", ".dat", ".data"})


def detect_format(original_name: str, head: bytes) -> str:
    """'csv', 'tsv', 'jsonl' or 'zip', from the file's name and its first bytes.

    The extension decides (.csv, .tsv/.tab, .jsonl/.ndjson, .zip); a missing or
    vague one (.txt, .dat) is settled by sniffing ``head``.
    """
    suffix = PurePosixPath(original_name.replace("\\", "/")).suffix.lower()
    looks_zip = head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC))
    if suffix in {".xlsx", ".xlsm", ".xls", ".ods", ".numbers"}:
        raise DatasetError(
            "Spreadsheet workbooks cannot be read. Save the sheet as 'CSV UTF-8' and upload that."
        )
    if suffix == ".zip":
        if not looks_zip:
            raise DatasetError("The file is named .zip but is not a zip archive.")
        return "zip"
    if suffix in {".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".json"} and looks_zip:
        raise DatasetError(
            f"The file is named {suffix} but is a zip archive (perhaps an Excel workbook "
            "renamed). Save the sheet as 'CSV UTF-8' and upload that."
        )
    if suffix == ".csv":
        return "csv"
    if suffix in {".tsv", ".tab"}:
        return "tsv"
    if suffix in {".jsonl", ".ndjson"}:
        return "jsonl"
    if suffix == ".json":
        if _head_text(head).lstrip().startswith("["):
            raise DatasetError(
                "The file is a JSON array. Upload JSON Lines instead: one JSON object per line."
            )
        return "jsonl"
    if suffix not in _SNIFFED_EXTENSIONS:
        raise DatasetError(f"Files named {suffix} cannot be read. {_UNSUPPORTED}")
    if looks_zip:
        return "zip"
    text = _head_text(head)
    if "\x00" in text:
        raise DatasetError(f"The file does not look like text. {_UNSUPPORTED}")
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return "jsonl"
    if stripped.startswith("["):
        raise DatasetError(
            "The file is a JSON array. Upload JSON Lines instead: one JSON object per line."
        )
    if not stripped:
        raise DatasetError("The file is empty.")
    return "tsv" if _sniff_delimiter(text, truncated=True) == "\t" else "csv"


def _bom_encoding(head: bytes) -> tuple[str, int]:
    """(codec, BOM length) for the file's first bytes."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", 3
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", 0
    return "utf-8", 0


def _head_text(head: bytes) -> str:
    codec, bom = _bom_encoding(head)
    decoder = codecs.getincrementaldecoder("utf-16" if codec == "utf-16" else "utf-8")(
        errors="replace"
    )
    return decoder.decode(head[bom:], final=False)


def _check_size(path: Path, limits: DatasetLimits) -> int:
    size = os.stat(path).st_size
    if size > limits.max_bytes:
        raise DatasetError(f"The file is {_human(size)}; the limit is {_human(limits.max_bytes)}.")
    if size == 0:
        raise DatasetError("The file is empty.")
    return size


def _check_encoding(path: Path) -> str:
    """The codec the whole file decodes with, after checking every byte of it.

    Refuses invalid UTF-8 (or UTF-16), NUL characters (a binary file) and a file
    with nothing but whitespace.
    """
    with open(path, "rb") as fh:
        codec, bom = _bom_encoding(fh.read(4))
        fh.seek(bom)
        decoder = codecs.getincrementaldecoder("utf-16" if codec == "utf-16" else "utf-8")()
        offset, lines, content = bom, 1, False
        while True:
            chunk = fh.read(1 << 20)
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                bad = offset - pending + exc.start
                lines += chunk[: max(bad - offset, 0)].count(b"\n")
                name = "UTF-16" if codec == "utf-16" else "UTF-8"
                raise DatasetError(
                    f"The file is not {name} (first bad byte at offset {bad:,}, line {lines:,}). "
                    "Save it as UTF-8 (in Excel: 'CSV UTF-8') and upload again."
                ) from None
            if "\x00" in text:
                at = text.index("\x00")
                lines += text[:at].count("\n")
                raise DatasetError(
                    f"The file holds NUL characters (line {lines:,}): it looks like a binary "
                    f"file, not text. {_UNSUPPORTED}"
                )
            if not content and text.strip():
                content = True
            if not chunk:
                break
            offset += len(chunk)
            lines += chunk.count(b"\n") if codec != "utf-16" else text.count("\n")
    if not content:
        raise DatasetError("The file is empty.")
    return codec


# --- delimited text -------------------------------------------------------------


def _sniff_delimiter(text: str, *, truncated: bool) -> str:
    """The delimiter among , ; tab | that splits the sample into the most regular rows.

    The header's field count is the reference: the winner gives more than one
    field there and the most rows with the same count. Ties go to the earlier
    delimiter in that list.
    """
    best, best_score = ",", (False, 0.0, 0)
    for delim in _DELIMITERS:
        try:
            records = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delim) if r]
        except csv.Error:
            continue
        if truncated and len(records) > 1:
            records.pop()  # probably cut short
        if not records:
            continue
        width = len(records[0])
        regular = sum(len(r) == width for r in records) / len(records)
        score = (width > 1, regular, width)
        if score > best_score:
            best, best_score = delim, score
    return best


@dataclass
class _Parsed:
    records: list[list[str]]
    numbers: list[int]  # spreadsheet row number of each record (header = 1)
    lines: list[int]  # file line each record starts on
    ends: list[int]  # file line each record ends on
    multiline: bool = False  # some record spans more than one line
    error: str | None = None  # a record that could not be read
    too_many: bool = False

    def regular(self) -> bool:
        if not self.records:
            return False
        width = len(self.records[0])
        return all(len(r) == width or _blank(r) for r in self.records[1:])


def _blank(record: Sequence[str]) -> bool:
    return all(not cell.strip() for cell in record)


def _parse_delimited(
    path: Path, codec: str, delimiter: str, quoting: int, limits: DatasetLimits
) -> _Parsed:
    parsed = _Parsed([], [], [], [])
    with open(path, encoding=codec, newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter, quotechar='"', quoting=quoting)
        previous = 0
        while True:
            start = previous + 1
            try:
                record = next(reader, None)
            except csv.Error as exc:
                row = len(parsed.records) + 1
                where = f"Row {row:,}" + (f" (line {start:,})" if start != row else "")
                if "field larger than field limit" in str(exc):
                    parsed.error = (
                        f"{where} has a cell longer than {MAX_CSV_CELL:,} characters. "
                        "If a double quote opens a cell and is never closed, everything after "
                        "it is read as one cell."
                    )
                else:
                    parsed.error = f"{where} could not be read: {exc}."
                return parsed
            if record is None:
                return parsed
            previous = reader.line_num
            if previous > start:
                parsed.multiline = True
            parsed.records.append(record)
            parsed.numbers.append(len(parsed.records))
            parsed.lines.append(start)
            parsed.ends.append(previous)
            if len(parsed.records) > limits.max_rows + 1:
                parsed.too_many = True
                return parsed


def _read_delimited(path: Path, codec: str, delimiter: str, limits: DatasetLimits) -> pd.DataFrame:
    parsed = _parse_delimited(path, codec, delimiter, csv.QUOTE_MINIMAL, limits)
    if delimiter == "\t" and (parsed.multiline or parsed.error or not parsed.regular()):
        plain = _parse_delimited(path, codec, delimiter, csv.QUOTE_NONE, limits)
        if plain.error is None and plain.regular():
            parsed = plain
    if parsed.error:
        raise DatasetError(parsed.error)
    if parsed.too_many:
        raise DatasetError(
            f"The file has more than {limits.max_rows:,} data rows; the limit is "
            f"{limits.max_rows:,}."
        )
    # Blank lines before the header are not the header.
    while parsed.records and _blank(parsed.records[0]):
        parsed.records.pop(0)
        parsed.numbers.pop(0)
        parsed.lines.pop(0)
        parsed.ends.pop(0)
    if not parsed.records:
        raise DatasetError("The file is empty.")
    header = [name.strip() for name in parsed.records[0]]
    header_row = parsed.numbers[0]
    errors = _check_columns(header, limits, header_row=header_row)
    width = len(header)
    rows: list[list[str]] = []
    wrong: list[tuple[int, int, int, int]] = []  # (row, first line, last line, cells)
    for record, number, line, end in zip(
        parsed.records[1:], parsed.numbers[1:], parsed.lines[1:], parsed.ends[1:], strict=True
    ):
        if _blank(record):
            rows.append([""] * width)
        else:
            if len(record) != width:
                wrong.append((number, line, end, len(record)))
            rows.append(record)
    if wrong:
        examples = []
        for number, line, end, cells in wrong:
            where = f"lines {line:,}-{end:,}" if end > line else f"line {line:,}"
            shown = f" ({where})" if (line, end) != (number, number) else ""
            examples.append(f"row {number:,}{shown} has {_plural(cells, 'cell')}")
        name = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}[delimiter]
        hint = f" A cell that contains a {name} or a line break must be wrapped in double quotes."
        if any(end > line for _, line, end, _ in wrong):
            hint += (
                " A double quote that opens a cell and is never closed runs that cell on across"
                " lines, up to the next double quote."
            )
        errors.append(
            f"{_plural(len(wrong), 'row')} {'does' if len(wrong) == 1 else 'do'} not have "
            f"{_plural(width, 'cell')} like the header row: {_listing(examples)}.{hint}"
        )
    if len(rows) == 0:
        errors.append("The file has a header row but no data rows.")
    if errors:
        raise DatasetError(errors)
    return _frame(rows, header, parsed.numbers[1:], "row")


def _check_columns(names: Sequence[str], limits: DatasetLimits, *, header_row: int) -> list[str]:
    errors: list[str] = []
    if all(not name for name in names):
        return [f"Row {header_row} is blank; the first row must hold the column names."]
    if len(names) > limits.max_columns:
        errors.append(f"The file has {len(names):,} columns; the limit is {limits.max_columns:,}.")
    unnamed = [_column_ref(i) for i, name in enumerate(names, 1) if not name]
    if unnamed:
        errors.append(
            f"{_cap(_listing(unnamed))} {'has' if len(unnamed) == 1 else 'have'} no name "
            "in the header row. Give every column a name (or delete empty columns)."
        )
    long = [_column_ref(i) for i, name in enumerate(names, 1) if len(name) > MAX_COLUMN_NAME]
    if long:
        errors.append(
            f"{_cap(_listing(long))} {'has' if len(long) == 1 else 'have'} a name longer "
            f"than {MAX_COLUMN_NAME} characters; is the first row really the header?"
        )
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(names, 1):
        if name:
            positions.setdefault(name, []).append(i)
    for name, where in positions.items():
        if len(where) > 1:
            errors.append(
                f"The column name {_q(name)} is used more than once "
                f"({', '.join(_column_ref(i) for i in where[:EXAMPLES])}); names must be unique."
            )
    return errors


def _frame(
    rows: list[list[str]], columns: list[str], numbers: list[int], unit: str
) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    frame.index = pd.Index(numbers, name=unit)
    return frame


# --- JSON Lines -------------------------------------------------------------------


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def storable_text(text: str) -> bool:
    """Whether PostgreSQL can store ``text``: no NUL character and no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return repr(value) if isinstance(value, float) else str(value)


def _read_jsonl(path: Path, codec: str, limits: DatasetLimits) -> pd.DataFrame:
    lines = _JsonLines()
    with open(path, encoding=codec, newline="") as fh:
        first = True
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if first and line.lstrip().startswith("["):
                raise DatasetError(
                    "The file is a JSON array. Upload JSON Lines instead: one JSON object per line."
                )
            first = False
            lines.read(number, line)
            if len(lines.objects) > limits.max_rows:
                raise DatasetError(
                    f"The file has more than {limits.max_rows:,} lines of data; the limit is "
                    f"{limits.max_rows:,}."
                )
    errors = lines.problems(limits)
    if errors:
        raise DatasetError(errors)
    names = list(lines.columns)
    rows = [[obj.get(name, "") for name in names] for obj in lines.objects]
    return _frame(rows, names, lines.numbers, "line")


@dataclass
class _JsonLines:
    """JSON Lines read one line at a time, with what was wrong with each kept for the report."""

    objects: list[dict[str, str]] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    columns: dict[str, int] = field(default_factory=dict)  # name -> first line
    bad_json: list[str] = field(default_factory=list)
    not_object: list[int] = field(default_factory=list)
    nested: dict[str, list[int]] = field(default_factory=dict)
    empty_key: list[int] = field(default_factory=list)
    long_key: list[str] = field(default_factory=list)
    unstorable: list[int] = field(default_factory=list)

    def read(self, number: int, line: str) -> None:
        try:
            value = json.loads(
                line, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant
            )
        except _DuplicateKey as exc:
            self.bad_json.append(f"line {number:,} has the key {_q(str(exc))} twice")
            return
        except (ValueError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            column = f", column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            self.bad_json.append(f"line {number:,} ({reason}{column})")
            return
        if not isinstance(value, dict):
            self.not_object.append(number)
            return
        # JSON escapes (\u0000, \ud800) can spell what the file's bytes could not.
        if "\\" in line and not all(
            storable_text(k) and (not isinstance(v, str) or storable_text(v))
            for k, v in value.items()
        ):
            self.unstorable.append(number)
            return
        row: dict[str, str] = {}
        for raw_key, cell in value.items():
            key = raw_key.strip()
            if not key:
                self.empty_key.append(number)
                continue
            if len(key) > MAX_COLUMN_NAME:
                self.long_key.append(f"{_q(key, 40)} (line {number:,})")
                continue
            if key in row:
                self.bad_json.append(f"line {number:,} has the key {_q(key)} twice")
                continue
            if isinstance(cell, (dict, list)):
                self.nested.setdefault(key, []).append(number)
                cell = None
            self.columns.setdefault(key, number)
            row[key] = _cell(cell)
        self.objects.append(row)
        self.numbers.append(number)

    def problems(self, limits: DatasetLimits) -> list[str]:
        errors: list[str] = []
        if self.bad_json:
            errors.append(
                f"{_plural(len(self.bad_json), 'line')} "
                f"{'is' if len(self.bad_json) == 1 else 'are'} not valid "
                f"JSON: {_listing(self.bad_json, limit=EXAMPLES)}."
            )
        if self.not_object:
            errors.append(
                f"Each line must be a JSON object ({{...}}); {_rows(self.not_object, 'line')} "
                f"{'is' if len(self.not_object) == 1 else 'are'} not."
            )
        for key, where in self.nested.items():
            errors.append(
                f"The column {_q(key)} holds nested values (lists or objects) on "
                f"{_rows(where, 'line')}; each value must be text, a number, true/false or null."
            )
        if self.unstorable:
            errors.append(
                f"{_cap(_rows(self.unstorable, 'line'))} "
                f"{'holds' if len(self.unstorable) == 1 else 'hold'} text that cannot be "
                "stored: a NUL character (\\u0000) or half of a surrogate pair (such as "
                "\\ud800) written as a JSON escape. Remove them and upload again."
            )
        if self.empty_key:
            errors.append(
                f"{_cap(_rows(self.empty_key, 'line'))} "
                f"{'uses' if len(self.empty_key) == 1 else 'use'} an "
                "empty key; every key must name a column."
            )
        if self.long_key:
            errors.append(
                f"Keys longer than {MAX_COLUMN_NAME} characters cannot be column names: "
                f"{_listing(self.long_key)}."
            )
        if len(self.columns) > limits.max_columns:
            errors.append(
                f"The lines use {len(self.columns):,} different keys (columns); the limit is "
                f"{limits.max_columns:,}."
            )
        if not self.objects and not errors:
            errors.append("The file holds no JSON objects.")
        return errors


# --- tables -------------------------------------------------------------------------


def read_table(
    path: Path, *, fmt: str, limits: DatasetLimits
) -> tuple[pd.DataFrame, str, str | None]:
    """Read a CSV, TSV or JSONL file whole: (frame, encoding, delimiter).

    Every column holds Python strings (dtype object; blank cells are ''); the
    index holds the row numbers messages use (see the module docstring).
    Raises DatasetError listing every structural problem found.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    if fmt == "zip":
        raise DatasetError(
            "A zip archive is read as an image dataset (one folder per class), not as a table."
        )
    path = Path(path)
    _check_size(path, limits)
    codec = _check_encoding(path)
    if fmt == "jsonl":
        return _read_jsonl(path, codec, limits), codec, None
    if fmt == "tsv":
        delimiter = "\t"
    else:
        with open(path, encoding=codec, newline="") as fh:
            sample = fh.read(HEAD_BYTES)
            truncated = bool(fh.read(1))
        delimiter = _sniff_delimiter(sample, truncated=truncated)
    return _read_delimited(path, codec, delimiter, limits), codec, delimiter


def _label_name(name: str) -> bool:
    return re.sub(r"[\s\-]+", "_", name.strip().lower()) in _LABEL_NAMES


def _suggest(frame: pd.DataFrame, limits: DatasetLimits) -> tuple[str | None, str | None]:
    """(text column, label column) a user most likely means, from the first rows.

    Text: the column with the longest average cell. Label: a column named like
    a label (label, class, category, target, y...) with 2 to max_classes
    distinct values and fewer distinct values than rows, else the column with
    the fewest distinct values that qualifies the same way. Ties: leftmost.
    """
    head = frame.iloc[:SUGGESTION_ROWS]
    if head.empty or not len(head.columns):
        return None, None
    lengths = {name: head[name].map(lambda v: len(v.strip())).mean() for name in head.columns}
    text = max(head.columns, key=lambda name: lengths[name])
    n = len(head)
    cardinality = {
        name: head[name].map(str.strip).loc[lambda s: s != ""].nunique() for name in head.columns
    }

    def labelish(name: str) -> bool:
        distinct = cardinality[name]
        return name != text and 2 <= distinct <= limits.max_classes and distinct < n

    named = [name for name in head.columns if _label_name(name) and labelish(name)]
    if named:
        return text, named[0]
    others = [name for name in head.columns if labelish(name)]
    if not others:
        return text, None
    return text, min(others, key=lambda name: cardinality[name])


def preview_table(path: Path, *, original_name: str, limits: DatasetLimits) -> TablePreview:
    """Read an uploaded table and describe it for the column-picking form."""
    path = Path(path)
    _check_size(path, limits)
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    fmt = detect_format(original_name, head)
    frame, codec, delimiter = read_table(path, fmt=fmt, limits=limits)
    sample = [
        {name: str(value) for name, value in row.items()}
        for row in frame.iloc[:SAMPLE_ROWS].to_dict(orient="records")
    ]
    text, label = _suggest(frame, limits)
    notes: list[str] = []
    if fmt != "jsonl":
        head_rows = frame.iloc[:SUGGESTION_ROWS]
        looks_like_data = [
            name for name in frame.columns if (head_rows[name].map(str.strip) == name).any()
        ]
        if looks_like_data:
            notes.append(
                "The first row may be data rather than column names: "
                f"{_listing([_q(n) for n in looks_like_data])} also "
                f"{'appears' if len(looks_like_data) == 1 else 'appear'} as a value in "
                f"{'its' if len(looks_like_data) == 1 else 'their'} column. The first row "
                "must name the columns."
            )
    return TablePreview(
        format=fmt,
        encoding=codec,
        delimiter=delimiter,
        columns=[str(name) for name in frame.columns],
        n_rows=len(frame),
        sample=sample,
        suggested_text=text,
        suggested_label=label,
        warnings=notes,
    )


# --- text datasets -------------------------------------------------------------------


def _check_choice(
    columns: list[str],
    text_column: str,
    label_column: str,
    slice_column: str | None,
    time_column: str | None,
) -> list[str]:
    errors: list[str] = []
    chosen = [("text", text_column), ("label", label_column)]
    chosen += [(what, name) for what, name in (("slice", slice_column), ("time", time_column))]
    available = _listing([_q(c, 40) for c in columns], limit=20)
    for what, name in chosen:
        if name is not None and name not in columns:
            errors.append(
                f"There is no column {_q(name)} for the {what}. The columns are: {available}."
            )
    if text_column == label_column:
        errors.append(f"The text and label columns must differ (both are {_q(text_column)}).")
    for what, name in chosen[2:]:
        if name is not None and name in (text_column, label_column):
            errors.append(f"The {what} column must differ from the text and label columns.")
    if slice_column is not None and slice_column == time_column:
        errors.append("The slice and time columns must differ.")
    return errors


def _parse_times(
    values: list[str], numbers: list[int], column: str, unit: str
) -> tuple[list[str], list[str], list[str]]:
    """(ISO strings, errors, warnings) for the time column's cells."""
    blank = [n for v, n in zip(values, numbers, strict=True) if not v]
    series = pd.Series(values, dtype=object)
    iso = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
    fallback = iso.isna() & (series != "")
    guessed: list[int] = []
    if fallback.any():
        # Only values that name a four-digit year: pandas fills a missing year with 1.
        with_year = fallback & series.str.contains(r"(?<!\d)\d{4}(?!\d)", regex=True)
        if with_year.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mixed = pd.to_datetime(series[with_year], utc=True, format="mixed", errors="coerce")
            iso = iso.copy()
            iso[with_year] = mixed
            guessed = [int(i) for i in mixed.index[mixed.notna().to_numpy()]]
    stamps = iso.tolist()  # Timestamps and NaT, far faster to walk than the Series
    missing = (iso.isna() & (series != "")).to_numpy()
    bad = [(values[i], numbers[i]) for i in missing.nonzero()[0]]
    errors: list[str] = []
    notes: list[str] = []
    if blank:
        errors.append(f"The time column {_q(column)} is blank on {_rows(blank, unit)}.")
    if bad:
        examples = [f"{_q(v, 30)} ({unit} {n:,})" for v, n in bad]
        errors.append(
            f"The time column {_q(column)} has {_plural(len(bad), 'value')} that "
            f"{'is' if len(bad) == 1 else 'are'} not a date: {_listing(examples)}. "
            "Use dates like 2024-03-31 or 2024-03-31T14:05:00."
        )
    if guessed:
        first = guessed[0]
        notes.append(
            f"{_plural(len(guessed), 'value')} in the time column {_q(column)} "
            f"{'is' if len(guessed) == 1 else 'are'} not ISO 8601 dates; month before day was "
            f"assumed (e.g. {_q(values[first], 30)} was read as "
            f"{stamps[first].date().isoformat()}). Use YYYY-MM-DD to be sure."
        )
    times = ["" if t is pd.NaT else t.isoformat() for t in stamps]
    return times, errors, notes


def load_text_dataset(
    path: Path,
    *,
    fmt: str,
    text_column: str,
    label_column: str,
    slice_column: str | None = None,
    time_column: str | None = None,
    limits: DatasetLimits,
) -> TextDataset:
    """Read and validate a text classification table; every problem is in one DatasetError.

    Rows keep the file's order. Empty rows (no text and no label) are
    skipped and exact duplicates (same text and label) dropped, first kept,
    each with a warning.
    """
    frame, _codec, delimiter = read_table(Path(path), fmt=fmt, limits=limits)
    columns = [str(c) for c in frame.columns]
    choice = _check_choice(columns, text_column, label_column, slice_column, time_column)
    if choice:
        raise DatasetError(choice)
    table = _Table(
        unit="line" if delimiter is None else "row",
        numbers=[int(n) for n in frame.index],
        texts=[v.strip() for v in frame[text_column]],
        labels=[v.strip() for v in frame[label_column]],
    )
    candidates = _rows_with_text_and_label(table, text_column, label_column, limits)
    kept = _without_duplicates(table, candidates)
    counts = Counter(table.labels[i] for i in kept)
    _check_classes(table, kept, counts, label_column, limits)
    times = slices = None
    if time_column is not None:
        raw = [v.strip() for v in frame[time_column]]
        times, time_errors, time_notes = _parse_times(
            [raw[i] for i in kept], [table.numbers[i] for i in kept], time_column, table.unit
        )
        table.errors += time_errors
        table.notes += time_notes
    if slice_column is not None:
        slices = _slices(table, kept, [v.strip() for v in frame[slice_column]], slice_column)
    if table.errors:
        raise DatasetError(table.errors)
    return TextDataset(
        texts=[table.texts[i] for i in kept],
        labels=[table.labels[i] for i in kept],
        slices=slices,
        times=times,
        label_counts={label: counts[label] for label in sorted(counts)},
        n_rows=len(kept),
        warnings=table.notes,
        row_numbers=[table.numbers[i] for i in kept],
    )


@dataclass
class _Table:
    """A text table being checked: its columns as lists, and what was found so far."""

    unit: str  # "row" or "line", as the person would count them
    numbers: list[int]
    texts: list[str]
    labels: list[str]
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def has(self, rows: list[int]) -> str:
        return f"{_plural(len(rows), self.unit)} {'has' if len(rows) == 1 else 'have'}"


def _rows_with_text_and_label(
    table: _Table, text_column: str, label_column: str, limits: DatasetLimits
) -> list[int]:
    """Positions of the rows with both a text and a label; the others named by number."""
    empty: list[int] = []
    no_label: list[int] = []
    no_text: list[int] = []
    too_long: list[int] = []
    candidates: list[int] = []
    for i, (text, label) in enumerate(zip(table.texts, table.labels, strict=True)):
        if not text and not label:
            empty.append(table.numbers[i])
        elif not label:
            no_label.append(table.numbers[i])
        elif not text:
            no_text.append(table.numbers[i])
        else:
            if len(text) > limits.max_text_chars:
                too_long.append(table.numbers[i])
            candidates.append(i)
    unit = table.unit
    if no_label:
        table.errors.append(
            f"{table.has(no_label)} text but no label in {_q(label_column)}: "
            f"{_rows(no_label, unit)}."
        )
    if no_text:
        table.errors.append(
            f"{table.has(no_text)} a label but no text in {_q(text_column)}: "
            f"{_rows(no_text, unit)}."
        )
    if too_long:
        # Kept: a tokenizer truncates every text to the model's max_length (a few
        # hundred words), so a long post costs nothing but its unread tail; a real
        # corpus (20 Newsgroups has posts of 50,000 characters) must not be refused.
        table.notes.append(
            f"{table.has(too_long)} text longer than {limits.max_text_chars:,} characters "
            f"({_rows(too_long, unit)}); kept, but models read only the first max_length "
            "tokens of a text (128 by default, a few hundred words), so the rest is not used."
        )
    if empty:
        table.notes.append(f"Skipped {_plural(len(empty), 'empty row')} ({_rows(empty, unit)}).")
    return candidates


def _without_duplicates(table: _Table, candidates: list[int]) -> list[int]:
    """Exact duplicates go (first kept); the same text under different labels is an error."""
    seen: set[tuple[str, str]] = set()
    by_text: dict[str, dict[str, None]] = {}
    text_rows: dict[str, list[int]] = {}
    kept: list[int] = []
    for i in candidates:
        text, label = table.texts[i], table.labels[i]
        text_rows.setdefault(text, []).append(table.numbers[i])
        by_text.setdefault(text, {})[label] = None
        if (text, label) in seen:
            continue
        seen.add((text, label))
        kept.append(i)
    duplicates = len(candidates) - len(kept)
    if duplicates:
        table.notes.append(
            f"Removed {_plural(duplicates, 'duplicate row')} (same text and label); "
            "the first of each was kept."
        )
    conflicts = [(text, list(labels)) for text, labels in by_text.items() if len(labels) > 1]
    if conflicts:
        examples = []
        for text, labels in conflicts[:EXAMPLES]:
            named = [_q(label, 30) for label in labels]
            both = "both " if len(named) == 2 else ""
            said = f"{', '.join(named[:-1])} and {named[-1]}"
            rows = _rows(text_rows[text], table.unit)
            examples.append(f"{_q(text)} is labelled {both}{said} ({rows})")
        lead = (
            "A text has more than one label"
            if len(conflicts) == 1
            else f"{len(conflicts):,} texts have more than one label"
        )
        more = f"; and {len(conflicts) - EXAMPLES:,} more" if len(conflicts) > EXAMPLES else ""
        table.errors.append(f"{lead}: {'; '.join(examples)}{more}. Give each text one label.")
    return kept


def _check_classes(
    table: _Table, kept: list[int], counts: Counter, label_column: str, limits: DatasetLimits
) -> None:
    """Enough classes, each with two examples, not too many; case-only variants noted."""
    unit = table.unit
    if len(counts) > limits.max_classes:
        table.errors.append(
            f"The label column {_q(label_column)} has {len(counts):,} different values; the "
            f"limit is {limits.max_classes:,}. Is it the right column?"
        )
    elif len(counts) == 1:
        (only,) = counts
        table.errors.append(
            f"All {_plural(len(kept), unit)} have the label {_q(only)}; a classifier needs at "
            "least two classes."
        )
    elif counts:
        single = [label for label in sorted(counts) if counts[label] < 2]
        if single:
            first_row = {table.labels[i]: table.numbers[i] for i in reversed(kept)}
            examples = [f"{_q(label, 30)} ({unit} {first_row[label]:,})" for label in single]
            classes = _plural(len(single), "class", "classes")
            table.errors.append(
                f"Every class needs at least two examples; {classes} "
                f"{'has' if len(single) == 1 else 'have'} only one: {_listing(examples)}."
            )
    elif not table.errors:
        table.errors.append(f"No {unit} has both text and a label.")
    by_case: dict[str, list[str]] = {}
    for label in sorted(counts):
        by_case.setdefault(label.casefold(), []).append(label)
    variants = [names for names in by_case.values() if len(names) > 1]
    if variants:
        shown = _listing([" and ".join(_q(n, 30) for n in names) for names in variants])
        table.notes.append(
            f"Some labels differ only in case and count as different classes: {shown}."
        )


def _slices(table: _Table, kept: list[int], values: list[str], column: str) -> list[str]:
    """Each kept row's slice; rows without one form the slice BLANK_SLICE (noted)."""
    blank = [table.numbers[i] for i in kept if not values[i]]
    if blank:
        table.notes.append(
            f"{table.has(blank)} no value in the slice column {_q(column)} "
            f"({_rows(blank, table.unit)}); they form the slice {_q(BLANK_SLICE)}."
        )
    return [values[i] or BLANK_SLICE for i in kept]


# --- image archives --------------------------------------------------------------------


def _junk(rel: str) -> bool:
    parts = rel.split("/")
    return any(part in _JUNK_NAMES or part.startswith(".") for part in parts)


def _normalise(name: str) -> str:
    """An archive member name as zoo.safety reports it (it refuses anything worse)."""
    return "/".join(part for part in name.split("/") if part != ".")


def load_image_archive(path: Path, *, limits: DatasetLimits) -> ImageDataset:
    """Check a zip of class folders without extracting it, and verify every image in memory.

    The class of an image is its top folder, after one folder wrapping
    everything (as zipping a folder makes) is set aside. Hidden files,
    __MACOSX/ and files that are not images by extension are skipped with a
    warning.
    """
    path = Path(path)
    images, notes = _listed_images(path, limits)
    errors: list[str] = []
    members, labels = _class_folders(images, errors)
    counts = Counter(labels)
    _check_image_classes(counts, len(members), errors, limits)
    _verify_images(path, images, errors, limits)
    if errors:
        raise DatasetError(errors)
    return ImageDataset(
        members=members,
        labels=labels,
        label_counts={label: counts[label] for label in sorted(counts)},
        n_rows=len(members),
        warnings=notes,
    )


def _listed_images(path: Path, limits: DatasetLimits) -> tuple[list[str], list[str]]:
    """The archive's image members (sorted), once the archive itself passed the safety rules."""
    _check_size(path, limits)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == _EMPTY_ZIP_MAGIC:
        raise DatasetError("The zip archive is empty.")
    if magic != _ZIP_MAGIC:
        raise DatasetError(
            "The file is not a zip archive. Upload a .zip holding one folder of images per class."
        )
    try:
        listed = safety.inspect_archive(path, limits=limits.archive_limits())
    except safety.UnsafeContent as exc:
        raise DatasetError(f"The archive was refused: {exc.message}.") from None
    images: list[str] = []
    skipped: list[str] = []
    for rel, _size in listed:
        if not _junk(rel) and PurePosixPath(rel).suffix.lower() in IMAGE_EXTENSIONS:
            images.append(rel)
        else:
            skipped.append(rel)
    images.sort()
    notes: list[str] = []
    if skipped:
        notes.append(
            f"Skipped {_plural(len(skipped), 'file')} that {'is' if len(skipped) == 1 else 'are'}"
            f" not images: {_listing(sorted(skipped))}."
        )
    kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
    if not images:
        raise DatasetError(f"The archive holds no images ({kinds}).")
    if len(images) > limits.max_images:
        raise DatasetError(
            f"The archive holds {len(images):,} images; the limit is {limits.max_images:,}."
        )
    return images, notes


def _class_folders(images: list[str], errors: list[str]) -> tuple[list[str], list[str]]:
    """The images inside a class folder and their classes; loose images are an error."""
    # One folder wrapping everything is not a class.
    split = [rel.split("/") for rel in images]
    depth = 0
    tops = {parts[0] for parts in split}
    if len(tops) == 1 and all(len(p) >= 2 for p in split) and any(len(p) >= 3 for p in split):
        depth = 1
    top_level = [rel for rel, parts in zip(images, split, strict=True) if len(parts) == depth + 1]
    if top_level:
        errors.append(
            f"Images must sit in one folder per class; {_plural(len(top_level), 'image')} "
            f"{'is' if len(top_level) == 1 else 'are'} not in a class folder: "
            f"{_listing(top_level)}."
        )
    members = [rel for rel, parts in zip(images, split, strict=True) if len(parts) > depth + 1]
    return members, [rel.split("/")[depth] for rel in members]


def _check_image_classes(
    counts: Counter, n_members: int, errors: list[str], limits: DatasetLimits
) -> None:
    if len(counts) > limits.max_classes:
        errors.append(
            f"The archive has {len(counts):,} class folders; the limit is {limits.max_classes:,}."
        )
    elif len(counts) == 1:
        (only,) = counts
        errors.append(
            f"All {_plural(n_members, 'image')} are in the folder {_q(only)}; a classifier "
            "needs at least two classes (one folder per class)."
        )
    elif not counts:
        errors.append("The archive has no class folders; put the images in one folder per class.")
    else:
        single = [label for label in sorted(counts) if counts[label] < 2]
        if single:
            errors.append(
                f"Every class needs at least two images; {_listing([_q(s) for s in single])} "
                f"{'has' if len(single) == 1 else 'have'} only one."
            )


def _verify_images(path: Path, images: list[str], errors: list[str], limits) -> None:
    """Decode every image in memory: damaged ones and decompression bombs are named."""
    from PIL import Image

    corrupt: list[str] = []
    too_big: list[str] = []
    with zipfile.ZipFile(path) as zf:
        infos = {_normalise(info.filename): info for info in zf.infolist() if not info.is_dir()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            for rel in images:
                info = infos[rel]
                try:
                    with zf.open(info) as member:
                        data = member.read(info.file_size + 1)
                except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as exc:
                    corrupt.append(f"{rel} ({exc})")
                    continue
                if len(data) != info.file_size:
                    corrupt.append(f"{rel} (its size does not match the archive's directory)")
                    continue
                problem = _check_image(Image, data, limits)
                if problem == "pixels":
                    too_big.append(rel)
                elif problem:
                    corrupt.append(f"{rel} ({problem})")
    if corrupt:
        errors.append(
            f"{_plural(len(corrupt), 'image')} could not be read (damaged or not really an "
            f"image): {_listing(corrupt)}."
        )
    if too_big:
        errors.append(
            f"{_plural(len(too_big), 'image')} {'has' if len(too_big) == 1 else 'have'} more than "
            f"{limits.max_image_pixels:,} pixels: {_listing(too_big)}."
        )


def _check_image(image_module: Any, data: bytes, limits: DatasetLimits) -> str | None:
    """None for a sound image; 'pixels' when it is too large; else what is wrong with it."""
    try:
        with image_module.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
            width, height = im.size
            if width * height > limits.max_image_pixels:
                return "pixels"
            im.verify()
    except image_module.DecompressionBombError:
        return "pixels"
    except image_module.UnidentifiedImageError:
        return "not a recognised image format"
    except Exception as exc:  # Pillow's decoders fail on damaged data in many ways
        return str(exc) or type(exc).__name__
    return None


def extract_image_archive(path: Path, dest: Path, *, limits: DatasetLimits) -> list[Path]:
    """Validate as load_image_archive does, then unpack through zoo.safety into ``dest``.

    ``dest`` must be an existing empty folder. Returns the image paths in the
    order of ``load_image_archive(path).members``.
    """
    dataset = load_image_archive(path, limits=limits)
    try:
        safety.extract_archive(Path(path), Path(dest), limits=limits.archive_limits())
    except safety.UnsafeContent as exc:
        raise DatasetError(f"The archive was refused: {exc.message}.") from None
    return [Path(dest) / member for member in dataset.members]


@dataclass
class ImageBatch:
    """A zip of production images: sorted members, and their classes where it has them."""

    members: list[str]
    labels: list[str] | None  # the class folder of each, when every one is a known class
    warnings: list[str]

    @property
    def n_rows(self) -> int:
        return len(self.members)


def load_image_batch(
    path: Path, *, limits: DatasetLimits, classes: Sequence[str] = ()
) -> ImageBatch:
    """Check a zip of production images without extracting it, as a dataset archive is
    checked (the safety rules, the counts, every image decoded in memory).

    Unlike a training archive the images need no class folders: production
    inputs usually have no labels. Where every image sits in a folder named
    after one of ``classes`` (after one wrapping folder), those are its labels.
    """
    path = Path(path)
    images, notes = _listed_images(path, limits)
    errors: list[str] = []
    _verify_images(path, images, errors, limits)
    if errors:
        raise DatasetError(errors)
    loose: list[str] = []
    _, labels = _class_folders(images, loose)
    known = set(classes)
    labelled = bool(known) and not loose and bool(labels) and set(labels) <= known
    return ImageBatch(
        members=images,
        labels=labels if labelled else None,
        warnings=notes,
    )


def extract_image_batch(
    path: Path, dest: Path, *, limits: DatasetLimits, classes: Sequence[str] = ()
) -> tuple[list[Path], list[str] | None]:
    """Validate as load_image_batch does, then unpack through zoo.safety into ``dest``
    (an existing empty folder). The image paths, sorted by their archive names, and their
    classes where the batch has them."""
    batch = load_image_batch(path, limits=limits, classes=classes)
    try:
        safety.extract_archive(Path(path), Path(dest), limits=limits.archive_limits())
    except safety.UnsafeContent as exc:
        raise DatasetError(f"The archive was refused: {exc.message}.") from None
    return [Path(dest) / member for member in batch.members], batch.labels


THUMBNAIL_PX = 96


def image_thumbnail(archive: Any, member: str, *, max_bytes: int, max_pixels: int) -> bytes:
    """A small PNG of one image in an image-dataset zip (a seekable file object).

    The archive was checked at upload; the member is still read with its size
    capped and its pixels counted before decoding, since the page asks for it
    by name.
    """
    from PIL import Image

    with zipfile.ZipFile(archive) as zf:
        infos = {_normalise(i.filename): i for i in zf.infolist() if not i.is_dir()}
        info = infos.get(_normalise(member))
        if info is None or info.file_size > max_bytes:
            raise ValueError(f"{member} is not an image of this dataset.")
        with zf.open(info) as fh:
            data = fh.read(max_bytes + 1)
    with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
        if im.size[0] * im.size[1] > max_pixels:
            raise ValueError(f"{member} is too large to preview.")
        im.draft("RGB", (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))
        picture = im.convert("RGB")
    picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return out.getvalue()
