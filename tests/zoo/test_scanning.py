"""zoo.scanning: every file judged by its bytes, whatever it is called.

The corpus here is what real attacks look like: pickles renamed, zipped,
compressed, wrapped in numpy or Keras files, and the ordinary files a model
repository holds, which must still pass.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import sys
import tarfile
import types
import zipfile

import numpy as np
import pytest
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

from tests.builders import corpus
from tests.builders.files import Evil, patch_zip, zip_archive
from zoo import scanning
from zoo.safety import Limits

# --- formats -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("model.safetensors", "safetensors"),
        ("sub/Model-00001-of-00002.SAFETENSORS", "safetensors"),
        ("pytorch_model.bin", "pickle"),
        ("training_args.bin", "pickle"),
        ("ckpt/model.pt", "pickle"),
        ("model.pth", "pickle"),
        ("state.pkl", "pickle"),
        ("state.pickle", "pickle"),
        ("last.ckpt", "pickle"),
        ("clf.joblib", "pickle"),
        ("array.npy", "other"),
        ("arrays.npz", "other"),
        ("model.onnx", "onnx"),
        ("tokenizer.json", "tokenizer"),
        ("tokenizer_config.json", "tokenizer"),
        ("vocab.txt", "tokenizer"),
        ("vocab.json", "tokenizer"),
        ("merges.txt", "tokenizer"),
        ("special_tokens_map.json", "tokenizer"),
        ("spiece.model", "tokenizer"),
        ("sentencepiece.bpe.model", "tokenizer"),
        ("tokenizer.model", "tokenizer"),
        ("cl100k_base.tiktoken", "tokenizer"),
        ("config.json", "config"),
        ("generation_config.json", "config"),
        ("preprocessor_config.json", "config"),
        ("model.safetensors.index.json", "config"),
        ("adapter_config.json", "config"),
        ("params.yaml", "config"),
        ("hparams.yml", "config"),
        ("README.md", "other"),
        ("LICENSE", "other"),
        ("tf_model.h5", "other"),
    ],
)
def test_classify_format(name, fmt):
    assert scanning.classify_format(name) == fmt
    assert fmt in scanning.FORMATS


# --- scanning pickles --------------------------------------------------------


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a scan executed a pickle"


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_pickle_calling_os_system_is_dangerous(tmp_path, marker, protocol):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Evil(f"touch {marker}"), protocol=protocol))

    report = scanning.scan_file(path, "pickle")

    assert report.status == "dangerous"
    assert report.blocks
    assert {"module": os.name, "name": "system", "safety": "dangerous"} in report.findings
    json.dumps(report.findings)


def test_pickle_of_an_unknown_global_blocks_in_strict_mode(tmp_path, monkeypatch):
    module = types.ModuleType("mypkg.evil")

    class Thing:
        pass

    Thing.__module__ = "mypkg.evil"
    Thing.__qualname__ = "Thing"
    module.Thing = Thing
    monkeypatch.setitem(sys.modules, "mypkg", types.ModuleType("mypkg"))
    monkeypatch.setitem(sys.modules, "mypkg.evil", module)
    path = tmp_path / "thing.pkl"
    path.write_bytes(pickle.dumps(Thing(), protocol=4))

    report = scanning.scan_file(path, "pickle")

    assert report.status == "dangerous"
    assert {"module": "mypkg.evil", "name": "Thing", "safety": "suspicious"} in report.findings


def test_hand_written_global_opcode_is_seen(tmp_path):
    path = tmp_path / "proto0.pkl"
    path.write_bytes(b"cmypkg.evil\nThing\n)R.")  # GLOBAL, EMPTY_TUPLE, REDUCE, STOP
    report = scanning.scan_file(path, "pickle")
    assert report.findings == [{"module": "mypkg.evil", "name": "Thing", "safety": "suspicious"}]


def test_extension_registry_opcode_is_dangerous(tmp_path):
    path = tmp_path / "ext.pkl"
    path.write_bytes(b"\x80\x02\x82\x05)R.")  # PROTO 2, EXT1 5, EMPTY_TUPLE, REDUCE, STOP
    report = scanning.scan_file(path, "pickle")
    assert report.status == "dangerous"
    assert report.findings[0]["module"] == "copyreg"


def test_plain_data_pickles_are_clean(tmp_path):
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2.5, "x", b"y"], "b": (None, True)}, protocol=4))
    report = scanning.scan_file(path, "data.pkl")
    assert (report.status, report.findings, report.format) == ("clean", [], "pickle")
    path.write_bytes(pickle.dumps(np.arange(6).reshape(2, 3)))
    assert scanning.scan_file(path, "pickle").status == "clean"


@pytest.mark.parametrize("zipped", [True, False], ids=["zip-format", "legacy-format"])
def test_torch_state_dict_is_clean(tmp_path, zipped):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(4, 3).state_dict(), path, _use_new_zipfile_serialization=zipped)
    report = scanning.scan_file(path, "model.pt")
    assert (report.status, report.findings, report.format) == ("clean", [], "pickle")


@pytest.mark.parametrize("protocol", [0, 2])  # protocol 0 has no \x80 prefix to sniff
def test_zip_format_torch_file_with_malicious_data_pkl_is_dangerous(tmp_path, marker, protocol):
    good = tmp_path / "good.pt"
    torch.save(torch.nn.Linear(4, 3).state_dict(), good)
    evil = tmp_path / "evil.bin"  # no telling name: pytorch_model.bin-style
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                data = pickle.dumps(Evil(f"touch {marker}"), protocol=protocol)
            dst.writestr(info, data)

    report = scanning.scan_file(evil, "pickle")

    assert report.status == "dangerous"
    finding = report.findings[0]
    assert (finding["module"], finding["name"]) == (os.name, "system")
    assert finding["file"].endswith("data.pkl")


def test_zip_format_torch_file_with_ambiguous_members_is_unscannable(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(torch.nn.Linear(4, 3).state_dict(), good)
    twice = tmp_path / "twice.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(twice, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        with pytest.warns(UserWarning, match="Duplicate name"):
            dst.writestr("good/data.pkl", pickle.dumps({}))
    report = scanning.scan_file(twice, "pickle")
    assert report.status == "unscannable"
    assert "appears more than once" in report.findings[0]["message"]

    data = good.read_bytes()
    with zipfile.ZipFile(good) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".pkl"))
    flags = struct.pack("<H", 0x1)
    locked = tmp_path / "locked.pt"
    locked.write_bytes(patch_zip(data, name, local={6: flags}, central={8: flags}))
    report = scanning.scan_file(locked, "pickle")
    assert report.status == "unscannable"
    assert report.findings[0] == {"message": f"{name} is encrypted", "file": name}


def test_compressed_pickle_bomb_inside_a_zip_is_unscannable(tmp_path):
    path = tmp_path / "bomb.pt"
    zip_archive(path, {"archive/data.pkl": pickle.dumps(bytes(8 * 2**20))})
    report = scanning.scan_file(path, "pickle")
    assert report.status == "unscannable"
    assert report.findings == [
        {
            "message": "archive/data.pkl expands suspiciously far when decompressed",
            "file": "archive/data.pkl",
        }
    ]


def test_malicious_pickle_followed_by_a_zip_is_still_seen(tmp_path, marker):
    # pickle.load reads the pickle at the start; a scanner that trusts the zip
    # directory at the end would only look at the harmless member.
    decoy = io.BytesIO()
    with zipfile.ZipFile(decoy, "w") as zf:
        zf.writestr("harmless.txt", "nothing here")
    path = tmp_path / "polyglot.pkl"
    path.write_bytes(pickle.dumps(Evil(f"touch {marker}")) + decoy.getvalue())

    report = scanning.scan_file(path, "pickle")

    assert report.status == "dangerous"
    assert report.findings[0]["name"] == "system"


def test_malicious_pickle_cut_short_is_still_dangerous(tmp_path, marker):
    # Loading runs the call before it reaches the missing STOP.
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps(Evil(f"touch {marker}"), protocol=2)[:-1])
    report = scanning.scan_file(path, "pickle")
    assert report.status == "dangerous"
    assert report.findings[0]["name"] == "system"
    assert "not a complete pickle" in report.findings[1]["message"]


def test_tar_format_torch_file_is_judged_by_its_members(tmp_path, marker):
    # torch.load tries a tar archive first and unpickles its members.
    path = tmp_path / "ancient.pt"
    with tarfile.open(path, "w") as tf:
        payload = pickle.dumps(Evil(f"touch {marker}"))
        info = tarfile.TarInfo("pickle")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    report = scanning.scan_file(path, "ancient.pt")
    assert report.status == "dangerous"
    assert report.findings[0]["name"] == "system"
    assert report.findings[0]["file"] == "pickle"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"\x00garbage" * 20, id="garbage"),
        pytest.param(pickle.dumps({"a": 1})[:-3], id="truncated-pickle"),
        pytest.param(pickle.dumps({"a": 1}) + b"trailing junk", id="trailing-junk"),
        pytest.param(b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"x", id="huge-length"),
        pytest.param(corpus.torch_bytes()[:1500], id="truncated-torch-zip"),
    ],
)
def test_files_that_do_not_parse_are_unscannable(tmp_path, content):
    path = tmp_path / "weights.bin"
    path.write_bytes(content)
    report = scanning.scan_file(path, "pickle")
    assert report.status == "unscannable"
    assert report.blocks
    assert all("message" in finding for finding in report.findings)


def test_scan_judges_bytes_not_the_name(tmp_path, marker):
    path = tmp_path / "000001"  # how the importer stages files
    path.write_bytes(pickle.dumps(Evil(f"touch {marker}")))
    assert scanning.scan_file(path, "pickle").status == "dangerous"


# --- scanning safetensors ----------------------------------------------------


def test_valid_safetensors_are_clean(tmp_path):
    from_numpy = tmp_path / "a.safetensors"
    save_numpy({"w": np.ones((3, 4), np.float32), "b": np.arange(5, dtype=np.int64)}, from_numpy)
    from_torch = tmp_path / "b.safetensors"
    save_torch(torch.nn.Linear(4, 3).state_dict(), from_torch, metadata={"format": "pt"})
    for path in (from_numpy, from_torch):
        report = scanning.scan_file(path, path.name)
        assert (report.status, report.findings, report.format) == ("clean", [], "safetensors")
    assert scanning.safetensors_parameter_count(from_numpy) == 17
    assert scanning.safetensors_parameter_count(from_torch) == 15


def safetensors_bytes(header, data: bytes = b"", *, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def f32(shape, offsets):
    return {"dtype": "F32", "shape": shape, "data_offsets": offsets}


ONE = {"a": f32([2], [0, 8])}
BAD_SAFETENSORS = {
    "header-past-end": (safetensors_bytes(ONE, bytes(8), length=10_000), "longer than itself"),
    "header-too-large": (safetensors_bytes(ONE, bytes(8), length=200_000_000), "limit is 100 MB"),
    "too-short": (b"\x01\x02", "too short"),
    "bad-json": (safetensors_bytes(b'{"a": ', b""), "not valid JSON"),
    "not-utf8": (safetensors_bytes(b'{"\xff": 1}'), "not UTF-8"),
    "not-an-object": (safetensors_bytes(b"[]"), "not a JSON object"),
    "nan": (safetensors_bytes(b'{"__metadata__": {"k": NaN}}'), "not valid JSON"),
    "overlap": (
        safetensors_bytes({"a": f32([2], [0, 8]), "b": f32([2], [4, 12])}, bytes(12)),
        "'a' and 'b' overlap",
    ),
    "wrong-length": (
        safetensors_bytes({"a": f32([3], [0, 8])}, bytes(8)),
        "takes 8 bytes but its dtype and shape need 12",
    ),
    "end-past-data": (safetensors_bytes({"a": f32([4], [0, 16])}, bytes(8)), "past the end"),
    "unknown-dtype": (
        safetensors_bytes({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}),
        "unknown dtype",
    ),
    "negative-shape": (safetensors_bytes({"a": f32([-2], [0, 8])}, bytes(8)), "non-negative"),
    "metadata-not-strings": (
        safetensors_bytes({"__metadata__": {"k": 1}, **ONE}, bytes(8)),
        "__metadata__ is not a map of strings",
    ),
    "gap": (
        safetensors_bytes({"a": f32([1], [0, 4]), "b": f32([1], [8, 12])}, bytes(12)),
        "4 bytes before tensor 'b' belong to no tensor",
    ),
    "trailing-bytes": (safetensors_bytes(ONE, bytes(16)), "8 bytes at the end belong to no"),
    "half-byte": (
        safetensors_bytes({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, bytes(2)),
        "need 1.5",
    ),
}
# Stricter than the safetensors library, which accepts these two.
STRICTER = {
    "duplicate-key": (
        safetensors_bytes(
            b'{"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, '
            b'"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
            bytes(8),
        ),
        "duplicate key",
    ),
    "extra-key": (safetensors_bytes({"a": {**f32([2], [0, 8]), "x": 1}}, bytes(8)), "exactly"),
}


@pytest.mark.parametrize(("content", "match"), BAD_SAFETENSORS.values(), ids=BAD_SAFETENSORS)
def test_corrupt_safetensors_are_unscannable_as_the_library_agrees(tmp_path, content, match):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)

    report = scanning.scan_file(path, path.name)

    assert report.status == "unscannable"
    assert match in report.findings[0]["message"]
    assert scanning.safetensors_parameter_count(path) is None
    with pytest.raises(SafetensorError, match="header"), safe_open(path, "np"):
        pass


@pytest.mark.parametrize(("content", "match"), STRICTER.values(), ids=STRICTER)
def test_ambiguous_safetensors_headers_are_unscannable(tmp_path, content, match):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    report = scanning.scan_file(path, path.name)
    assert report.status == "unscannable"
    assert match in report.findings[0]["message"]


def test_sub_byte_dtypes_that_fill_whole_bytes_are_fine(tmp_path):
    path = tmp_path / "model.safetensors"
    header = {"a": {"dtype": "F4", "shape": [2, 2], "data_offsets": [0, 2]}}
    path.write_bytes(safetensors_bytes(header, bytes(2)))
    assert scanning.scan_file(path, "safetensors").status == "clean"
    assert scanning.safetensors_parameter_count(path) == 4


# --- other formats and the report --------------------------------------------


@pytest.mark.parametrize(
    "name", ["model.onnx", "config.json", "tokenizer.json", "README.md", "weights.gguf", "x"]
)
def test_a_pickle_is_judged_whatever_its_name(tmp_path, name, marker):
    path = tmp_path / "file"
    path.write_bytes(pickle.dumps(Evil(f"touch {marker}")))
    report = scanning.scan_file(path, name)
    assert report.status == "dangerous"
    assert report.format == "pickle"


def _onnx_bytes() -> bytes:
    # ModelProto: ir_version=8 (field 1, varint), producer_name="t" (field 2, bytes)
    return b"\x08\x08\x12\x01t"


@pytest.mark.parametrize(
    ("name", "content", "fmt"),
    [
        ("model.onnx", _onnx_bytes(), "onnx"),
        ("config.json", b'{"model_type": "bert"}', "config"),
        ("tokenizer.json", b'{"version": "1.0"}', "tokenizer"),
        ("README.md", "# Model\n\nÜber.".encode(), "other"),
        ("model.gguf", b"GGUF\x03\x00\x00\x00" + bytes(64), "other"),
        ("empty.txt", b"", "other"),
        ("logo.png", b"\x89PNG\r\n\x1a\n" + bytes(32), "other"),
    ],
)
def test_files_without_code_are_not_applicable(tmp_path, name, content, fmt):
    path = tmp_path / "file"
    path.write_bytes(content)
    report = scanning.scan_file(path, name)
    assert (report.status, report.findings, report.format) == ("not_applicable", [], fmt)
    assert report.detected


@pytest.mark.parametrize(
    ("status", "blocks"),
    [("clean", False), ("not_applicable", False), ("dangerous", True), ("unscannable", True)],
)
def test_report_blocks(status, blocks):
    assert scanning.ScanReport(status, []).blocks is blocks


# --- the corpus: pickles in disguise -----------------------------------------


@pytest.mark.parametrize("name", corpus.DISGUISES)
def test_code_in_disguise_is_dangerous(tmp_path, marker, name):
    path = tmp_path / "000001"  # staged files lose their names
    path.write_bytes(corpus.DISGUISES[name](marker))

    report = scanning.scan_file(path, name)

    assert report.status == "dangerous", (report.findings, report.detected)
    assert report.blocks
    names = {finding.get("name") for finding in report.findings}
    assert names & {"system", "Lambda"}, report.findings
    json.dumps(report.findings)


def test_nesting_past_the_depth_limit_is_unscannable(tmp_path):
    data = pickle.dumps({"a": 1})
    for _ in range(scanning.MAX_DEPTH + 1):
        data = gzip.compress(data)
    path = tmp_path / "deep.gz"
    path.write_bytes(data)
    report = scanning.scan_file(path, path.name)
    assert report.status == "unscannable"
    assert "nested too deeply" in report.findings[0]["message"]


def test_archive_formats_the_portal_cannot_open_are_unscannable(tmp_path):
    path = tmp_path / "model.7z"
    path.write_bytes(b"7z\xbc\xaf\x27\x1c" + bytes(32))
    report = scanning.scan_file(path, path.name)
    assert report.status == "unscannable"
    assert "cannot open" in report.findings[0]["message"]


def test_unpacking_is_held_to_the_limits(tmp_path):
    path = tmp_path / "many.zip"
    path.write_bytes(corpus.zip_bytes({f"f{i}.txt": b"x" for i in range(6)}))
    tight = Limits(max_files=3, max_total_bytes=2**20, max_ratio=50, max_file_bytes=2**20)
    report = scanning.scan_file(path, path.name, limits=tight)
    assert report.status == "unscannable"
    assert "more than 3 members" in report.findings[0]["message"]


# --- the corpus: what a model repository ordinarily holds --------------------


@pytest.mark.parametrize("name", corpus.BENIGN)
def test_ordinary_files_pass(tmp_path, name):
    build, status, fmt = corpus.BENIGN[name]
    path = tmp_path / "000001"
    path.write_bytes(build())
    report = scanning.scan_file(path, name)
    assert (report.status, report.findings, report.format) == (status, [], fmt), report.detected
    assert report.detected
