"""Blobs are verified before they take their name; a damaged one is replaced, never trusted."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from portal.errors import PortalError
from zoo.storage import blob_is_intact, blob_name, remove_tree, store_blob

pytestmark = pytest.mark.django_db


def _file(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _blob_folder(sha256: str) -> Path:
    return Path(default_storage.path(blob_name(sha256))).parent


def test_a_blob_is_stored_whole_under_its_hash_and_nothing_else_is_left(tmp_path):
    path, sha = _file(tmp_path, b"weights " * 1000)
    name = store_blob(path, sha)
    assert name == blob_name(sha)
    assert blob_is_intact(name, sha256=sha, size=8000)
    assert [p.name for p in _blob_folder(sha).iterdir()] == [sha]  # no temporary left behind


def test_a_truncated_blob_left_by_a_killed_writer_is_replaced(tmp_path):
    data = b"x" * 5000
    path, sha = _file(tmp_path, data)
    default_storage.save(blob_name(sha), ContentFile(data[:1234]))  # what a kill mid-write left
    assert not blob_is_intact(blob_name(sha), sha256=sha, size=len(data))
    store_blob(path, sha)
    with default_storage.open(blob_name(sha), "rb") as handle:
        assert handle.read() == data


def test_a_blob_of_the_right_size_but_other_bytes_is_replaced(tmp_path):
    data = b"abcdefgh" * 100
    path, sha = _file(tmp_path, data)
    default_storage.save(blob_name(sha), ContentFile(b"Z" * len(data)))
    store_blob(path, sha)
    with default_storage.open(blob_name(sha), "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == sha


def test_an_intact_blob_is_kept_as_it_is(tmp_path):
    path, sha = _file(tmp_path, b"same content")
    store_blob(path, sha)
    stored = Path(default_storage.path(blob_name(sha)))
    inode = stored.stat().st_ino
    store_blob(path, sha)
    assert stored.stat().st_ino == inode


def test_a_file_that_changed_before_storing_is_refused(tmp_path):
    path, sha = _file(tmp_path, b"one")
    path.write_bytes(b"two")
    with pytest.raises(PortalError, match="changed before it could be stored"):
        store_blob(path, sha)
    assert not default_storage.exists(blob_name(sha))


def test_remove_tree_removes_the_folder_but_never_follows_a_link_out_of_it(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not part of the folder")
    folder = tmp_path / "staging"
    (folder / "nested").mkdir(parents=True)
    (folder / "nested" / "member.bin").write_bytes(b"x")
    (folder / "link").symlink_to(outside, target_is_directory=True)
    assert remove_tree(folder)
    assert not folder.exists()
    assert (outside / "keep.txt").read_text() == "not part of the folder"
