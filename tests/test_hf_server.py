"""The fake Hub against the real huggingface_hub client.

Importer tests trust FakeHub to behave like huggingface.co; these tests are what earns that trust.
Every call passes ``endpoint=`` explicitly (``HF_ENDPOINT`` is read once, at import),
``token=False`` (a developer's saved Hub token must never be sent or change the outcome) and a fresh
cache/local dir (a warm cache would hide server answers).
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError

import numpy as np
import pytest
from huggingface_hub import HfApi, ModelCard, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder
from safetensors.numpy import save_file

from tests.hf_server import FakeHub

REPO = "acme/tiny-bert"

README = """---
license: apache-2.0
tags:
  - text-classification
  - tiny
pipeline_tag: text-classification
library_name: transformers
---

# Tiny BERT

A model card.
"""


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


def make_repo(folder: Path, *, hidden: int = 8) -> Path:
    """A tiny model folder: card, config, safetensors weights (LFS by extension), a nested file."""
    folder.mkdir(parents=True)
    (folder / "README.md").write_text(README)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": hidden}))
    save_file(
        {"weight": np.arange(hidden * 4, dtype=np.float32).reshape(hidden, 4)},
        folder / "model.safetensors",
    )
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    return folder


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as running:
        yield running
    assert running.errors == [], running.errors[0] if running.errors else ""


def fetch(url: str, *, method: str = "GET", headers: dict[str, str] | None = None):
    """(status, headers, body) without raising on 4xx, to look at raw answers."""
    request = urllib.request.Request(url, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.headers, response.read()
    except HTTPError as error:
        return error.code, error.headers, error.read()


def test_model_info_resolves_branch_tag_and_commit_with_file_metadata(
    hub: FakeHub, tmp_path: Path
) -> None:
    first = hub.add_repo(REPO, make_repo(tmp_path / "v1"), tags={"v1.0": "main"})
    second = hub.add_repo(REPO, make_repo(tmp_path / "v2", hidden=16))
    assert first != second
    api = HfApi(endpoint=hub.endpoint, token=False)

    assert api.model_info(REPO).sha == second
    assert api.model_info(REPO, revision="main").sha == second
    assert api.model_info(REPO, revision="v1.0").sha == first
    info = api.model_info(REPO, revision=first, files_metadata=True)
    assert info.sha == first
    assert info.id == REPO

    siblings = {s.rfilename: s for s in info.siblings}
    assert set(siblings) == {"README.md", "config.json", "model.safetensors", "tokenizer/vocab.txt"}
    weights = (tmp_path / "v1" / "model.safetensors").read_bytes()
    assert siblings["model.safetensors"].size == len(weights)
    assert siblings["model.safetensors"].lfs is not None
    assert siblings["model.safetensors"].lfs.sha256 == hashlib.sha256(weights).hexdigest()
    assert siblings["model.safetensors"].lfs.size == len(weights)
    config = (tmp_path / "v1" / "config.json").read_bytes()
    assert siblings["config.json"].lfs is None
    assert siblings["config.json"].size == len(config)
    assert siblings["config.json"].blob_id == git_blob_oid(config)

    assert info.card_data is not None
    assert info.card_data.license == "apache-2.0"
    assert info.tags == ["text-classification", "tiny"]
    assert info.pipeline_tag == "text-classification"
    assert info.library_name == "transformers"
    assert info.gated is False
    assert info.last_modified is not None


def test_model_info_without_files_metadata_lists_names_only(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_repo(REPO, make_repo(tmp_path / "repo"))
    info = HfApi(endpoint=hub.endpoint, token=False).model_info(REPO)
    assert all(s.size is None and s.lfs is None for s in info.siblings)
    assert ("GET", f"/api/models/{REPO}") in hub.requests


def test_model_info_expand_returns_only_requested_properties(hub: FakeHub, tmp_path: Path) -> None:
    commit = hub.add_repo(REPO, make_repo(tmp_path / "repo"))
    info = HfApi(endpoint=hub.endpoint, token=False).model_info(REPO, expand=["sha", "cardData"])
    assert info.sha == commit
    assert info.card_data.license == "apache-2.0"
    assert info.siblings is None
    assert info.tags is None


def test_malformed_card_front_matter_is_omitted(hub: FakeHub, tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "repo")
    (folder / "README.md").write_text("---\nlicense: [unclosed\n---\n# Card\n")
    hub.add_repo(REPO, folder)
    info = HfApi(endpoint=hub.endpoint, token=False).model_info(REPO)
    assert info.card_data is None
    assert info.tags == []


def test_snapshot_download_pinned_commit_is_byte_identical(hub: FakeHub, tmp_path: Path) -> None:
    source = make_repo(tmp_path / "repo")
    commit = hub.add_repo(REPO, source)
    # A newer commit on main must not leak into a download pinned to the older one.
    hub.add_repo(REPO, make_repo(tmp_path / "newer", hidden=32))

    target = tmp_path / "download"
    result = snapshot_download(
        REPO,
        revision=commit,
        endpoint=hub.endpoint,
        local_dir=target,
        cache_dir=tmp_path / "cache",
        token=False,
    )
    assert Path(result) == target.resolve()
    for original in source.rglob("*"):
        if original.is_file():
            rel = original.relative_to(source)
            assert (target / rel).read_bytes() == original.read_bytes(), rel

    card = ModelCard.load(target / "README.md")
    assert card.data.license == "apache-2.0"
    # A commit needs no resolution: the client goes straight to the tree, then HEAD+GET per file.
    paths = [path for _, path in hub.requests]
    assert not any(path.startswith(f"/api/models/{REPO}/revision/") for path in paths)
    assert any(path.startswith(f"/api/models/{REPO}/tree/{commit}") for path in paths)
    assert ("GET", f"/{REPO}/resolve/{commit}/model.safetensors") in hub.requests


def test_snapshot_download_by_branch_into_cache(hub: FakeHub, tmp_path: Path) -> None:
    source = make_repo(tmp_path / "repo")
    commit = hub.add_repo(REPO, source)
    result = snapshot_download(
        REPO, revision="main", endpoint=hub.endpoint, cache_dir=tmp_path / "cache", token=False
    )
    assert Path(result).name == commit
    assert (Path(result) / "model.safetensors").read_bytes() == (
        source / "model.safetensors"
    ).read_bytes()


def test_hf_hub_download_and_model_card(hub: FakeHub, tmp_path: Path) -> None:
    source = make_repo(tmp_path / "repo")
    commit = hub.add_repo(REPO, source)
    path = hf_hub_download(
        REPO,
        "tokenizer/vocab.txt",
        revision="main",
        endpoint=hub.endpoint,
        cache_dir=tmp_path / "cache",
        token=False,
    )
    assert Path(path).read_bytes() == (source / "tokenizer" / "vocab.txt").read_bytes()
    assert commit in path
    readme = hf_hub_download(
        REPO, "README.md", endpoint=hub.endpoint, cache_dir=tmp_path / "cache", token=False
    )
    assert ModelCard.load(readme).data.pipeline_tag == "text-classification"


@pytest.mark.parametrize(
    ("repo_id", "filename", "revision", "error"),
    [
        (REPO, "config.json", "no-such-branch", RevisionNotFoundError),
        (REPO, "config.json", "0" * 40, RevisionNotFoundError),
        ("acme/missing", "config.json", "main", RepositoryNotFoundError),
        (REPO, "missing.bin", "main", RemoteEntryNotFoundError),
    ],
)
def test_hf_hub_download_errors(
    hub: FakeHub, tmp_path: Path, repo_id: str, filename: str, revision: str, error: type
) -> None:
    hub.add_repo(REPO, make_repo(tmp_path / "repo"))
    with pytest.raises(error):
        hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            endpoint=hub.endpoint,
            cache_dir=tmp_path / "cache",
            token=False,
        )


def test_missing_file_is_an_entry_not_found_error(hub: FakeHub, tmp_path: Path) -> None:
    """RemoteEntryNotFoundError is the HTTP flavour of the generic EntryNotFoundError."""
    hub.add_repo(REPO, make_repo(tmp_path / "repo"))
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "nope.txt", endpoint=hub.endpoint, cache_dir=tmp_path, token=False)


def test_snapshot_download_of_unknown_revision_raises(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_repo(REPO, make_repo(tmp_path / "repo"))
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(
            REPO, revision="v9", endpoint=hub.endpoint, cache_dir=tmp_path / "c", token=False
        )
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download(
            "acme/nope",
            revision="main",
            endpoint=hub.endpoint,
            cache_dir=tmp_path / "c",
            token=False,
        )


def test_gated_repo_needs_a_token_for_files_only(hub: FakeHub, tmp_path: Path) -> None:
    source = make_repo(tmp_path / "repo")
    hub.add_repo(REPO, source, gated=True)
    # Like huggingface.co: metadata is public, so an importer can see the gate before downloading.
    info = HfApi(endpoint=hub.endpoint, token=False).model_info(REPO)
    assert info.gated == "auto"
    with pytest.raises(GatedRepoError):
        hf_hub_download(
            REPO, "config.json", endpoint=hub.endpoint, cache_dir=tmp_path / "a", token=False
        )
    with pytest.raises(GatedRepoError):
        snapshot_download(REPO, endpoint=hub.endpoint, cache_dir=tmp_path / "b", token=False)
    path = hf_hub_download(
        REPO, "config.json", endpoint=hub.endpoint, cache_dir=tmp_path / "c", token="hf_test"
    )
    assert Path(path).read_bytes() == (source / "config.json").read_bytes()


def test_resolve_headers_and_ranges(hub: FakeHub, tmp_path: Path) -> None:
    source = make_repo(tmp_path / "repo")
    commit = hub.add_repo(REPO, source)
    weights = (source / "model.safetensors").read_bytes()
    url = f"{hub.endpoint}/{REPO}/resolve/main/model.safetensors"

    status, headers, body = fetch(url, method="HEAD")
    assert (status, body) == (200, b"")
    assert headers["X-Repo-Commit"] == commit
    assert headers["X-Linked-Etag"] == f'"{hashlib.sha256(weights).hexdigest()}"'
    assert headers["ETag"] == headers["X-Linked-Etag"]
    assert headers["X-Linked-Size"] == headers["Content-Length"] == str(len(weights))
    assert headers["Accept-Ranges"] == "bytes"
    assert "X-Xet-Hash" not in headers

    status, headers, body = fetch(url, headers={"Range": "bytes=10-"})
    assert status == 206
    assert body == weights[10:]
    assert headers["Content-Range"] == f"bytes 10-{len(weights) - 1}/{len(weights)}"
    status, headers, body = fetch(url, headers={"Range": "bytes=2-5"})
    assert (status, body) == (206, weights[2:6])
    assert headers["Content-Length"] == "4"
    status, headers, _ = fetch(url, headers={"Range": f"bytes={len(weights)}-"})
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(weights)}"

    # Small files carry their git blob oid as ETag.
    config = (source / "config.json").read_bytes()
    _, headers, body = fetch(f"{hub.endpoint}/{REPO}/resolve/{commit}/config.json")
    assert body == config
    assert headers["ETag"] == f'"{git_blob_oid(config)}"'


def test_error_answers_carry_codes_and_commit(hub: FakeHub, tmp_path: Path) -> None:
    commit = hub.add_repo(REPO, make_repo(tmp_path / "repo"))
    status, headers, body = fetch(f"{hub.endpoint}/{REPO}/resolve/main/nope.bin", method="HEAD")
    assert (status, headers["X-Error-Code"], headers["X-Repo-Commit"]) == (
        404,
        "EntryNotFound",
        commit,
    )
    status, headers, body = fetch(f"{hub.endpoint}/{REPO}/resolve/main/nope.bin")
    assert json.loads(body) == {"error": headers["X-Error-Message"]}
    status, headers, _ = fetch(f"{hub.endpoint}/api/models/{REPO}/revision/nope")
    assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
    status, headers, _ = fetch(f"{hub.endpoint}/api/models/acme/none")
    assert (status, headers["X-Error-Code"]) == (404, "RepoNotFound")


def test_tree_listing(hub: FakeHub, tmp_path: Path) -> None:
    source = make_repo(tmp_path / "repo")
    commit = hub.add_repo(REPO, source)
    api = HfApi(endpoint=hub.endpoint, token=False)

    top = {entry.path: entry for entry in api.list_repo_tree(REPO, revision=commit)}
    assert set(top) == {"README.md", "config.json", "model.safetensors", "tokenizer"}
    assert isinstance(top["tokenizer"], RepoFolder)
    weights = top["model.safetensors"]
    assert isinstance(weights, RepoFile)
    assert weights.lfs is not None
    assert (
        weights.lfs.sha256
        == hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()
    )

    everything = {entry.path for entry in api.list_repo_tree(REPO, recursive=True)}
    assert "tokenizer/vocab.txt" in everything
    nested = [entry.path for entry in api.list_repo_tree(REPO, path_in_repo="tokenizer")]
    assert nested == ["tokenizer/vocab.txt"]
    with pytest.raises(RemoteEntryNotFoundError):
        list(api.list_repo_tree(REPO, path_in_repo="absent"))

    # transformers 4.57 spells the boolean 'True'.
    status, _, body = fetch(f"{hub.endpoint}/api/models/{REPO}/tree/main?recursive=True")
    assert status == 200
    assert "tokenizer/vocab.txt" in {entry["path"] for entry in json.loads(body)}

    refs = api.list_repo_refs(REPO)
    assert [(ref.name, ref.target_commit) for ref in refs.branches] == [("main", commit)]


def test_mutate_on_download_breaks_the_promise(hub: FakeHub, tmp_path: Path) -> None:
    source = make_repo(tmp_path / "repo")
    commit = hub.add_repo(REPO, source)
    original = (source / "model.safetensors").read_bytes()
    tampered = bytes(len(original))  # same length: gets past the client's own size check
    hub.mutate_on_download(REPO, "model.safetensors", tampered)

    info = HfApi(endpoint=hub.endpoint, token=False).model_info(REPO, files_metadata=True)
    promised = next(s for s in info.siblings if s.rfilename == "model.safetensors")
    assert promised.lfs.sha256 == hashlib.sha256(original).hexdigest()
    path = hf_hub_download(
        REPO,
        "model.safetensors",
        revision=commit,
        endpoint=hub.endpoint,
        cache_dir=tmp_path / "c",
        token=False,
    )
    assert Path(path).read_bytes() == tampered
    assert hashlib.sha256(tampered).hexdigest() != promised.lfs.sha256

    with pytest.raises(KeyError):
        hub.mutate_on_download(REPO, "absent.bin", b"")


def test_requests_are_logged_not_printed(
    hub: FakeHub, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    hub.add_repo(REPO, make_repo(tmp_path / "repo"))
    fetch(f"{hub.endpoint}/api/models/{REPO}")
    fetch(f"{hub.endpoint}/nowhere")
    assert hub.requests == [("GET", f"/api/models/{REPO}"), ("GET", "/nowhere")]
    captured = capfd.readouterr()
    assert captured.out == captured.err == ""


def test_default_commit_is_stable_and_readding_moves_main(tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "repo")
    hub = FakeHub()
    first = hub.add_repo(REPO, folder)
    assert first == FakeHub().add_repo(REPO, folder)
    assert len(first) == 40
    pinned = hub.add_repo(REPO, folder, commit="a" * 40, branches=("main", "dev"))
    with hub:
        api = HfApi(endpoint=hub.endpoint, token=False)
        assert api.model_info(REPO, revision="dev").sha == pinned
        assert api.model_info(REPO).sha == pinned
        assert api.model_info(REPO, revision=first).sha == first
    with pytest.raises(ValueError, match="org/name"):
        hub.add_repo("no-slash", folder)


def test_existence_helpers_and_paths_info(hub: FakeHub, tmp_path: Path) -> None:
    """HfApi's convenience calls ride on the same routes (HEAD /resolve, model info, paths-info)."""
    hub.add_repo(REPO, make_repo(tmp_path / "repo"), tags={"v1": "main"})
    api = HfApi(endpoint=hub.endpoint, token=False)
    assert api.repo_exists(REPO)
    assert not api.repo_exists("acme/nope")
    assert api.revision_exists(REPO, "v1")
    assert not api.revision_exists(REPO, "v2")
    assert api.file_exists(REPO, "tokenizer/vocab.txt")
    assert not api.file_exists(REPO, "nope.txt")
    infos = api.get_paths_info(REPO, ["config.json", "tokenizer", "absent"], revision="v1")
    assert {(type(i).__name__, i.path) for i in infos} == {
        ("RepoFile", "config.json"),
        ("RepoFolder", "tokenizer"),
    }
