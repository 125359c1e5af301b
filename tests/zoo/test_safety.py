"""zoo.safety against hostile input built on the spot: archives, folders, pickles, headers.

Nothing here needs the database; every file lives under tmp_path. Malicious
pickles are written with pickle.dumps (which runs nothing) and are never
loaded: the payloads touch a marker file, so a scan that unpickled one would
be caught.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.builders.files import patch_zip
from zoo import safety
from zoo.safety import Limits, UnsafeContent

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL = Limits(max_files=50, max_total_bytes=64 * 2**20, max_ratio=50, max_file_bytes=64 * 2**20)


# --- helpers -----------------------------------------------------------------


def make_zip(path: Path, members, *, compression=zipfile.ZIP_DEFLATED) -> Path:
    """members: (name or ZipInfo, bytes) pairs, written in order."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def entry(name: str, data: bytes = b"", *, kind=tarfile.REGTYPE, linkname: str = ""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def make_tgz(path: Path, entries) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under folder, by relative posix path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def refuse_cleanly(archive: Path, tmp_path: Path, match: str, limits: Limits = SMALL) -> str:
    """Both entry points refuse, and a refused extraction leaves dest empty and nothing outside."""
    with pytest.raises(UnsafeContent, match=match) as inspected:
        safety.inspect_archive(archive, limits=limits)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeContent, match=match):
        safety.extract_archive(archive, dest, limits=limits)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil").exists()
    return inspected.value.message


@pytest.fixture
def inflated(monkeypatch):
    """Counts the bytes gzip hands out, to show a bomb was not decompressed in full."""
    count = [0]
    real_read = gzip.GzipFile.read

    def counting_read(self, size=-1):
        chunk = real_read(self, size)
        count[0] += len(chunk)
        return chunk

    monkeypatch.setattr(gzip.GzipFile, "read", counting_read)
    return count


# --- the module itself -------------------------------------------------------


def test_imports_without_django():
    code = (
        "import sys, zoo.safety; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_unsafe_content_carries_its_message():
    exc = UnsafeContent("archive member ../x escapes the folder")
    assert exc.message == "archive member ../x escapes the folder"
    assert str(exc) == exc.message


# --- archives: good ones -----------------------------------------------------


def test_good_zip_is_listed_and_extracts_byte_identical(tmp_path):
    weights = os.urandom(300_000)
    members = [
        ("model/", b""),
        ("model/config.json", b'{"hidden": 8}'),
        ("model/weights/part-1.bin", weights),
        ("model/empty.txt", b""),
        ("README.md", b"# hi\n"),
    ]
    archive = make_zip(tmp_path / "upload.bin", members)  # the name does not matter
    expected = [(name, len(data)) for name, data in members if not name.endswith("/")]

    assert safety.inspect_archive(archive, limits=SMALL) == expected

    dest = tmp_path / "dest"
    dest.mkdir()
    written = safety.extract_archive(archive, dest, limits=SMALL)
    assert written == sorted(dest / name for name, _ in expected)
    assert tree(dest) == {name: data for name, data in members if not name.endswith("/")}


def test_good_tgz_with_dot_prefixes_extracts_byte_identical(tmp_path):
    blob = os.urandom(200_000)
    archive = make_tgz(
        tmp_path / "model.tgz",
        [
            entry(".", kind=tarfile.DIRTYPE),
            entry("./model", kind=tarfile.DIRTYPE),
            entry("./model/config.json", b"{}"),
            entry("./model/pytorch_model.bin", blob),
            entry("./model/sub/vocab.txt", b"a\nb\n"),
            entry("./model/" + "long-" * 40 + "näme.txt", b"pax"),
        ],
    )
    listed = safety.inspect_archive(archive, limits=SMALL)
    assert listed == [
        ("model/config.json", 2),
        ("model/pytorch_model.bin", len(blob)),
        ("model/sub/vocab.txt", 4),
        ("model/" + "long-" * 40 + "näme.txt", 3),
    ]
    dest = tmp_path / "dest"
    dest.mkdir()
    written = safety.extract_archive(archive, dest, limits=SMALL)
    assert written == sorted(dest / name for name, _ in listed)
    assert tree(dest) == {
        "model/" + "long-" * 40 + "näme.txt": b"pax",
        "model/config.json": b"{}",
        "model/pytorch_model.bin": blob,
        "model/sub/vocab.txt": b"a\nb\n",
    }


def test_extract_wants_an_empty_folder_and_leaves_a_full_one_alone(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [("x.txt", b"x")])
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="not empty"):
        safety.extract_archive(archive, dest, limits=SMALL)
    assert tree(dest) == {"mine.txt": b"keep"}


# --- archives: names ---------------------------------------------------------

BAD_NAMES = [
    ("../evil", "escapes the folder"),
    ("a/../../evil", "escapes the folder"),
    ("/etc/x", "absolute path"),
    ("C:/x", "names a drive"),
    ("a\\..\\..\\evil", "backslashes"),
    ("a//b", "empty path component"),
    ("bad\nname", "control characters"),
]


@pytest.mark.parametrize(("name", "match"), BAD_NAMES)
def test_zip_member_names_that_leave_the_folder_are_refused(tmp_path, name, match):
    archive = make_zip(tmp_path / "a.zip", [("ok.txt", b"fine"), (name, b"evil")])
    message = refuse_cleanly(archive, tmp_path, match)
    assert "archive member" in message


@pytest.mark.parametrize(("name", "match"), BAD_NAMES)
def test_tar_member_names_that_leave_the_folder_are_refused(tmp_path, name, match):
    archive = make_tgz(tmp_path / "a.tgz", [entry("ok.txt", b"fine"), entry(name, b"evil")])
    refuse_cleanly(archive, tmp_path, match)


def test_empty_member_name_is_refused(tmp_path):
    archive = make_tgz(tmp_path / "a.tgz", [entry("", b"x")])
    refuse_cleanly(archive, tmp_path, "empty name")


def test_duplicate_zip_members_are_refused(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        archive = make_zip(tmp_path / "a.zip", [("a.txt", b"one"), ("a.txt", b"two")])
    refuse_cleanly(archive, tmp_path, "a.txt appears more than once")


def test_duplicate_tar_members_after_normalising_are_refused(tmp_path):
    archive = make_tgz(tmp_path / "a.tgz", [entry("a.txt", b"one"), entry("./a.txt", b"two")])
    refuse_cleanly(archive, tmp_path, "a.txt appears more than once")


@pytest.mark.parametrize(
    "entries",
    [
        [entry("a", b"file"), entry("a/b", b"inside")],
        [entry("a/b", b"inside"), entry("a", b"file")],
        [entry("a", b"file"), entry("a", kind=tarfile.DIRTYPE)],
    ],
    ids=["file-then-child", "child-then-file", "file-then-folder-entry"],
)
def test_a_path_that_is_both_file_and_folder_is_refused(tmp_path, entries):
    archive = make_tgz(tmp_path / "a.tgz", entries)
    refuse_cleanly(archive, tmp_path, "a is both a file and a folder")


# --- archives: member types --------------------------------------------------


def test_zip_symlink_member_is_refused(tmp_path):
    link = zipfile.ZipInfo("model/link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = make_zip(tmp_path / "a.zip", [(link, b"/etc/passwd")])
    refuse_cleanly(archive, tmp_path, "model/link is a symbolic link")


def test_zip_device_member_is_refused(tmp_path):
    device = zipfile.ZipInfo("dev")
    device.create_system = 3
    device.external_attr = (stat.S_IFCHR | 0o666) << 16
    archive = make_zip(tmp_path / "a.zip", [(device, b"")])
    refuse_cleanly(archive, tmp_path, "special file")


@pytest.mark.parametrize(
    ("kind", "linkname", "match"),
    [
        (tarfile.SYMTYPE, "/etc/passwd", "is a symbolic link"),
        (tarfile.LNKTYPE, "ok.txt", "is a hard link"),
        (tarfile.FIFOTYPE, "", "is a device or pipe"),
        (tarfile.CHRTYPE, "", "is a device or pipe"),
        (tarfile.BLKTYPE, "", "is a device or pipe"),
    ],
)
def test_tar_links_and_special_members_are_refused(tmp_path, kind, linkname, match):
    archive = make_tgz(
        tmp_path / "a.tgz",
        [entry("ok.txt", b"fine"), entry("special", kind=kind, linkname=linkname)],
    )
    refuse_cleanly(archive, tmp_path, f"special {match}")


def test_zip_folder_entry_with_data_is_refused(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [("folder/", b"hidden payload")])
    refuse_cleanly(archive, tmp_path, "folder entry folder/ carries data")


def test_zip_member_marked_as_folder_without_a_slash_is_refused(tmp_path):
    odd = zipfile.ZipInfo("model")
    odd.create_system = 3
    odd.external_attr = (stat.S_IFDIR | 0o755) << 16
    archive = make_zip(tmp_path / "a.zip", [(odd, b"")])
    refuse_cleanly(archive, tmp_path, "marked as a folder but named as a file")


def test_zip_member_with_unknown_compression_is_refused(tmp_path):
    data = make_zip(tmp_path / "plain.zip", [("w.bin", b"x" * 100)]).read_bytes()
    method = struct.pack("<H", 99)  # AES-encrypted entries use 99
    archive = tmp_path / "a.zip"
    archive.write_bytes(patch_zip(data, "w.bin", local={8: method}, central={10: method}))
    refuse_cleanly(archive, tmp_path, "unsupported compression method")


def test_encrypted_zip_member_is_refused(tmp_path):
    data = make_zip(tmp_path / "plain.zip", [("secret.txt", b"hidden")]).read_bytes()
    flags = struct.pack("<H", 0x1)
    archive = tmp_path / "a.zip"
    archive.write_bytes(patch_zip(data, "secret.txt", local={6: flags}, central={8: flags}))
    refuse_cleanly(archive, tmp_path, "secret.txt is encrypted")


# --- archives: limits and bombs ----------------------------------------------


@pytest.mark.parametrize("kind", ["zip", "tgz"])
def test_too_many_files_are_refused(tmp_path, kind):
    names = [f"f{i}.txt" for i in range(4)]
    if kind == "zip":
        archive = make_zip(tmp_path / "a.zip", [(n, b"x") for n in names])
    else:
        archive = make_tgz(tmp_path / "a.tgz", [entry(n, b"x") for n in names])
    assert len(safety.inspect_archive(archive, limits=Limits(max_files=4))) == 4
    refuse_cleanly(archive, tmp_path, "more than 3 files", Limits(max_files=3))


def test_zip_bomb_member_is_refused_by_its_ratio(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", [("zeros.bin", bytes(50 * 2**20))])
    assert archive.stat().st_size < 2**20
    message = refuse_cleanly(archive, tmp_path, "expands more than 50 times")
    assert message.startswith("archive member zeros.bin")


def test_zip_of_many_small_compressible_members_is_refused_as_a_whole(tmp_path):
    # Each member is too small for its own ratio to be judged; together they are a bomb.
    members = [(f"z{i}.bin", bytes(256 * 2**10)) for i in range(40)]
    archive = make_zip(tmp_path / "many.zip", members)
    message = refuse_cleanly(archive, tmp_path, "expands more than 50 times")
    assert message.startswith("the archive expands")


def test_zip_within_the_ratio_is_accepted(tmp_path):
    archive = make_zip(tmp_path / "ok.zip", [("noise.bin", os.urandom(2 * 2**20))])
    assert safety.inspect_archive(archive, limits=SMALL) == [("noise.bin", 2 * 2**20)]


def test_tgz_bomb_is_refused_at_its_header_before_later_members(tmp_path, inflated):
    # If the walk went on past the bomb it would meet '../evil' and say so instead.
    archive = make_tgz(
        tmp_path / "bomb.tgz", [entry("zeros.bin", bytes(32 * 2**20)), entry("../evil", b"x")]
    )
    refuse_cleanly(archive, tmp_path, "the archive expands more than 50 times its size")
    # The header alone gave it away: the member's data was never inflated.
    assert inflated[0] < 2 * 64 << 10


def test_tgz_of_folder_headers_alone_is_refused_by_the_decompression_cap(tmp_path):
    archive = make_tgz(
        tmp_path / "headers.tgz",
        [entry(f"d{i:05d}", kind=tarfile.DIRTYPE) for i in range(5000)],
    )
    limits = Limits(max_ratio=5)
    refuse_cleanly(archive, tmp_path, "expands more than 5 times its size", limits)


@pytest.mark.parametrize("size", [9 << 10, 32 << 20])
def test_oversized_pax_headers_are_refused_before_tarfile_parses_them(tmp_path, inflated, size):
    # tarfile reads a PAX record whole and, before CPython 3.11.10, parses a long
    # run of digits in quadratic time: 64 KiB of them takes seconds.
    info, data = entry("a.txt", b"x")
    info.pax_headers = {"comment": "0" * size}
    archive = tmp_path / "pax.tgz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(data))
    refuse_cleanly(archive, tmp_path, "oversized extended")
    assert inflated[0] < 2 * 64 << 10


def gnu_sparse_header(name: str, *, extended: bool) -> bytes:
    head = bytearray(tarfile.TarInfo(name).tobuf(format=tarfile.GNU_FORMAT))
    head[156:157] = tarfile.GNUTYPE_SPARSE
    head[482] = int(extended)  # isextended: more sparse map blocks follow
    head[148:156] = b" " * 8
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head)


def test_sparse_tar_member_is_refused(tmp_path):
    archive = tmp_path / "sparse.tgz"
    archive.write_bytes(gzip.compress(gnu_sparse_header("holes", extended=False) + bytes(1024)))
    refuse_cleanly(archive, tmp_path, "holes is a sparse file")


def test_endless_tar_header_chain_is_stopped_by_the_decompression_cap(tmp_path, inflated):
    # A GNU sparse header announcing extension block after extension block: tarfile
    # reads them all before yielding the member, so no per-member check can stop it.
    head = gnu_sparse_header("sparse", extended=True)
    link = bytearray(512)
    link[504] = 1  # another extension block follows
    raw = bytes(head) + bytes(link) * (64 * 2**20 // 512) + bytes(512) * 3
    archive = tmp_path / "chain.tgz"
    archive.write_bytes(gzip.compress(raw))
    refuse_cleanly(archive, tmp_path, "expands more than 50 times its size")
    # Two passes (inspect, then extract's own inspection), each stopped at 50x the file.
    allowance = 50 * archive.stat().st_size + (64 << 10)
    assert allowance < len(raw) / 4
    assert inflated[0] <= 2 * allowance


def test_too_many_folder_entries_are_refused(tmp_path):
    archive = make_tgz(tmp_path / "a.tgz", [entry(f"d{i}", kind=tarfile.DIRTYPE) for i in range(4)])
    refuse_cleanly(archive, tmp_path, "more than 3 folders", Limits(max_files=3))


@pytest.mark.parametrize(
    ("limits", "match"),
    [
        (Limits(max_total_bytes=2 * 2**20), "expands to more than 2.0 MiB"),
        (Limits(max_file_bytes=2**20), "big.bin is 3.0 MiB; the limit is 1.0 MiB"),
    ],
)
def test_declared_sizes_over_the_limits_are_refused(tmp_path, limits, match):
    noise = os.urandom(3 * 2**20)
    zipped = make_zip(tmp_path / "a.zip", [("big.bin", noise)], compression=zipfile.ZIP_STORED)
    tarred = make_tgz(tmp_path / "a.tgz", [entry("big.bin", noise)])
    for archive, sub in ((zipped, "z"), (tarred, "t")):
        (tmp_path / sub).mkdir()
        refuse_cleanly(archive, tmp_path / sub, match, limits)


# --- archives: damage and lies -----------------------------------------------


def test_zip_header_understating_its_data_is_caught_while_extracting(tmp_path):
    real = bytes(range(256)) * 40  # 10,240 bytes
    data = make_zip(
        tmp_path / "plain.zip",
        [("first.txt", b"written before the lie is found"), ("liar.txt", real)],
        compression=zipfile.ZIP_STORED,
    ).read_bytes()
    small = struct.pack("<I", 100)
    archive = tmp_path / "liar.zip"
    archive.write_bytes(patch_zip(data, "liar.txt", local={22: small}, central={24: small}))
    # The headers are consistent with each other, so inspection cannot tell...
    assert ("liar.txt", 100) in safety.inspect_archive(archive, limits=SMALL)
    dest = tmp_path / "dest"
    dest.mkdir()
    # ...but the bytes do not match the header, and first.txt is cleaned away.
    with pytest.raises(UnsafeContent, match=r"liar\.txt could not be read"):
        safety.extract_archive(archive, dest, limits=SMALL)
    assert list(dest.iterdir()) == []


def test_zip_header_overstating_its_data_is_caught_while_extracting(tmp_path):
    data = make_zip(
        tmp_path / "plain.zip", [("liar.txt", b"x" * 1000)], compression=zipfile.ZIP_STORED
    ).read_bytes()
    big = struct.pack("<I", 1500)
    archive = tmp_path / "liar.zip"
    archive.write_bytes(patch_zip(data, "liar.txt", local={22: big}, central={24: big}))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeContent, match=r"liar\.txt holds less data than its header declares"):
        safety.extract_archive(archive, dest, limits=SMALL)
    assert list(dest.iterdir()) == []


def test_truncated_tgz_leaves_nothing_behind(tmp_path):
    whole = make_tgz(
        tmp_path / "whole.tgz",
        [entry("a.bin", os.urandom(100_000)), entry("b.bin", os.urandom(100_000))],
    ).read_bytes()
    archive = tmp_path / "cut.tgz"
    archive.write_bytes(whole[: len(whole) * 3 // 4])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeContent, match=r"damaged|could not be read"):
        safety.extract_archive(archive, dest, limits=SMALL)
    assert list(dest.iterdir()) == []


def test_tgz_changed_between_inspection_and_extraction_is_refused(tmp_path, monkeypatch):
    archive = make_tgz(tmp_path / "a.tgz", [entry("a.txt", b"one")])
    swapped = make_tgz(tmp_path / "b.tgz", [entry("b.txt", b"two")]).read_bytes()
    opened = 0
    real_init = gzip.GzipFile.__init__

    def init(self, *args, **kwargs):
        nonlocal opened
        opened += 1
        if opened == 2:  # extraction's second pass: rewrite the same file in place
            with archive.open("r+b") as fh:
                fh.truncate()
                fh.write(swapped)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(gzip.GzipFile, "__init__", init)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeContent, match="changed while it was being extracted"):
        safety.extract_archive(archive, dest, limits=SMALL)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"just some text, not an archive", "not a .zip or .tar.gz archive"),
        (b"", "not a .zip or .tar.gz archive"),
        (b"PK\x03\x04 and then nothing sensible", "the archive is damaged"),
        (b"\x1f\x8b\x08\x00garbage after a gzip magic", "the archive is damaged"),
    ],
)
def test_things_that_are_not_good_archives_are_refused(tmp_path, content, match):
    archive = tmp_path / "upload.zip"
    archive.write_bytes(content)
    refuse_cleanly(archive, tmp_path, match)


def test_uncompressed_tar_is_not_accepted(tmp_path):
    archive = tmp_path / "model.tar"
    with tarfile.open(archive, "w") as tf:
        info, data = entry("a.txt", b"x")
        tf.addfile(info, io.BytesIO(data))
    refuse_cleanly(archive, tmp_path, "not a .zip or .tar.gz archive")


# --- folders -----------------------------------------------------------------


def make_model_folder(root: Path) -> Path:
    (root / "sub" / ".git").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".cache" / "huggingface").mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / "sub" / "model.safetensors").write_bytes(b"x" * 10)
    (root / "sub" / ".git" / "kept").write_text("only the top-level .git is skipped")
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main")
    (root / ".cache" / "huggingface" / "download").write_text("metadata")
    return root


def test_check_folder_lists_regular_files_and_skips_top_level_metadata(tmp_path):
    root = make_model_folder(tmp_path / "model")
    assert safety.check_folder(root, limits=SMALL) == [
        Path("config.json"),
        Path("sub/.git/kept"),
        Path("sub/model.safetensors"),
    ]


@pytest.mark.parametrize("target", ["/etc/passwd", "config.json", "/etc"])
def test_check_folder_refuses_symlinks(tmp_path, target):
    root = make_model_folder(tmp_path / "model")
    (root / "sub" / "sneaky").symlink_to(target)
    with pytest.raises(UnsafeContent, match="sub/sneaky is a symbolic link"):
        safety.check_folder(root, limits=SMALL)


def test_check_folder_refuses_a_root_that_is_a_symlink(tmp_path):
    root = make_model_folder(tmp_path / "model")
    (tmp_path / "alias").symlink_to(root)
    with pytest.raises(UnsafeContent, match="alias is a symbolic link"):
        safety.check_folder(tmp_path / "alias", limits=SMALL)


def test_check_folder_refuses_a_fifo(tmp_path):
    root = make_model_folder(tmp_path / "model")
    os.mkfifo(root / "pipe")
    with pytest.raises(UnsafeContent, match="pipe is a device, pipe, socket or other special"):
        safety.check_folder(root, limits=SMALL)


def test_check_folder_refuses_hard_links(tmp_path):
    root = make_model_folder(tmp_path / "model")
    os.link(root / "config.json", tmp_path / "elsewhere.json")
    with pytest.raises(UnsafeContent, match=r"config\.json has other hard links"):
        safety.check_folder(root, limits=SMALL)


@pytest.mark.parametrize(
    ("limits", "match"),
    [
        (Limits(max_files=2), "more than 2 files"),
        (Limits(max_file_bytes=5), "sub/model.safetensors is 10 bytes; the limit is 5 bytes"),
        (Limits(max_total_bytes=11), "holds more than 11 bytes"),
    ],
)
def test_check_folder_limits(tmp_path, limits, match):
    root = make_model_folder(tmp_path / "model")
    with pytest.raises(UnsafeContent, match=match):
        safety.check_folder(root, limits=limits)


def test_check_folder_caps_folders_too(tmp_path):
    for i in range(3):
        (tmp_path / "model" / f"empty{i}").mkdir(parents=True)
    with pytest.raises(UnsafeContent, match="more than 2 folders"):
        safety.check_folder(tmp_path / "model", limits=Limits(max_files=2))
    assert safety.check_folder(tmp_path / "model", limits=Limits(max_files=3)) == []


# --- digests -----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4096, 250_001])
def test_digest_file_matches_hashlib_and_git(tmp_path, size):
    path = tmp_path / "blob.bin"
    content = os.urandom(size)
    path.write_bytes(content)
    git = subprocess.run(
        ["git", "hash-object", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()

    digest = safety.digest_file(path, chunk=1000)

    assert digest == safety.FileDigest(
        size=size, sha256=hashlib.sha256(content).hexdigest(), git_sha1=git
    )


def test_copy_with_digest_copies_and_hashes_in_one_pass(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(300_000))
    dst = io.BytesIO()
    digest = safety.copy_with_digest(src, dst, chunk=4096)
    assert dst.getvalue() == src.read_bytes()
    assert digest == safety.digest_file(src)


class Dribble(io.BytesIO):
    """A destination that takes at most 7 bytes a call, as a raw file may."""

    def write(self, data):
        return super().write(bytes(data[:7]))


class Silent(io.BytesIO):
    """A destination whose write reports nothing, as some file-likes do."""

    def write(self, data):
        super().write(data)


@pytest.mark.parametrize("sink", [Dribble, Silent])
def test_copy_with_digest_copies_into_awkward_destinations(tmp_path, sink):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(5000))
    dst = sink()
    assert safety.copy_with_digest(src, dst, chunk=1000) == safety.digest_file(src)
    assert dst.getvalue() == src.read_bytes()


class Saboteur(io.BytesIO):
    """A destination whose first write changes the source behind the copy's back."""

    def __init__(self, sabotage):
        super().__init__()
        self.sabotage = sabotage

    def write(self, data):
        if self.sabotage:
            self.sabotage()
            self.sabotage = None
        return super().write(data)


def _append(src: Path):
    with src.open("ab") as fh:
        fh.write(b"more")


def _touch_later(src: Path):
    st = os.stat(src)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def _replace_same_size_same_mtime(src: Path):
    st = os.stat(src)
    other = src.with_name("other")
    other.write_bytes(b"y" * st.st_size)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, src)


@pytest.mark.parametrize("change", [_append, _touch_later, _replace_same_size_same_mtime])
def test_copy_with_digest_notices_a_file_changing_mid_copy(tmp_path, change):
    src = tmp_path / "weights.bin"
    src.write_bytes(b"x" * 50_000)
    dst = Saboteur(lambda: change(src))
    with pytest.raises(UnsafeContent, match=r"weights\.bin changed while it was being imported"):
        safety.copy_with_digest(src, dst, chunk=1024)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_copy_with_digest_refuses_a_file_that_yields_other_than_its_size():
    # /proc files stat as empty but read as text: the bytes do not add up.
    with pytest.raises(UnsafeContent, match="status changed while it was being imported"):
        safety.copy_with_digest(Path("/proc/self/status"), io.BytesIO())


def test_copy_with_digest_refuses_a_symlink(tmp_path):
    (tmp_path / "real").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafeContent, match="link is a symbolic link"):
        safety.copy_with_digest(tmp_path / "link", io.BytesIO())
