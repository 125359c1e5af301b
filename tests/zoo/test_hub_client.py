"""The real Hugging Face client against the portal's endpoint on Django's live server.

``huggingface_hub`` downloads into a fresh cache per user (a warm cache would hide a
refusal), and ``transformers`` runs in a subprocess because it reads HF_ENDPOINT once,
at import.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import close_session

from governance.models import AuditEvent, ReuseRequest
from governance.services import reuse as gov_reuse
from tests.builders.catalogue import import_model as import_folder
from tests.builders.catalogue import small_model
from tests.builders.governance import approve, token_for
from tests.builders.weights import tiny_bert_folder
from tests.factories import UserFactory
from zoo.hub import views as hub

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

REPO = "acme/router"


@pytest.fixture
def endpoint(live_server, settings) -> str:
    settings.STATIC_URL = "/static/"
    return f"{live_server.url}/hf"


@pytest.fixture(autouse=True)
def _hang_up(live_server):
    """The client keeps connections alive, and the live server thread behind each one holds
    a database connection until its socket closes: hang up before the database goes."""
    yield
    close_session()


@pytest.fixture
def v1(sam):
    return import_folder(small_model("router-v1"), REPO, actor=sam)


def stored(version) -> dict[str, bytes]:
    files = {}
    for artifact in version.artifacts.all():
        with default_storage.open(artifact.blob_name, "rb") as handle:
            files[artifact.path] = handle.read()
    return files


def folder_files(folder: str | Path) -> dict[str, bytes]:
    root = Path(folder)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_approved_user_snapshot_is_byte_identical(endpoint, v1, bob, lena, tmp_path):
    approve(bob, v1, reviewer=lena)
    token = token_for(bob)
    expected = stored(v1)
    for revision in ("main", "v1", v1.revision):
        folder = snapshot_download(
            REPO,
            revision=revision,
            endpoint=endpoint,
            token=token,
            cache_dir=tmp_path / f"bob-{revision}",
        )
        assert Path(folder).name == v1.revision
        assert folder_files(folder) == expected
    single = hf_hub_download(
        REPO,
        "tokenizer/vocab.txt",
        revision="v1",
        endpoint=endpoint,
        token=token,
        cache_dir=tmp_path / "bob-single",
    )
    assert Path(single).read_bytes() == expected["tokenizer/vocab.txt"]
    downloads = AuditEvent.objects.filter(verb="hub.download", actor=bob)
    assert downloads.count() == 3 * len(expected) + 1
    assert {e.payload["path"] for e in downloads} == set(expected)
    assert {e.target_id for e in downloads} == {str(v1.pk)}


def test_steward_gets_newest_version_and_hf_api_calls_work(
    endpoint, v1, sam, tmp_path, monkeypatch
):
    v2 = import_folder(
        small_model("router-v2", extra={"notes/changelog.md": b"v2\n"}), REPO, actor=sam
    )
    token = token_for(sam)
    monkeypatch.setattr(hub, "TREE_PAGE_SIZE", 2)  # the client must follow the Link pages
    folder = snapshot_download(REPO, endpoint=endpoint, token=token, cache_dir=tmp_path / "sam")
    assert Path(folder).name == v2.revision
    assert folder_files(folder) == stored(v2)

    api = HfApi(endpoint=endpoint, token=token)
    info = api.model_info(REPO, files_metadata=True)
    assert info.sha == v2.revision
    weights = next(s for s in info.siblings if s.rfilename == "model.safetensors")
    assert weights.lfs.sha256 == v2.artifacts.get(path="model.safetensors").sha256
    paths = {entry.path for entry in api.list_repo_tree(REPO, recursive=True, revision="v1")}
    assert set(v1.artifacts.values_list("path", flat=True)) <= paths
    refs = api.list_repo_refs(REPO)
    assert [(t.name, t.target_commit) for t in refs.tags] == [
        ("v1", v1.revision),
        ("v2", v2.revision),
    ]
    assert api.file_exists(REPO, "tokenizer/vocab.txt")
    assert not api.file_exists(REPO, "absent.txt")
    assert api.revision_exists(REPO, "v1")
    assert not api.revision_exists(REPO, "v7")
    assert api.whoami()["name"] == "sam"


def test_tokenless_unapproved_expired_and_foreign_tokens_are_gated(
    endpoint, v1, bob, lena, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    bob_token = token_for(bob)
    foreign = "hf_" + "z" * 34
    cases = {"tokenless": False, "unapproved": bob_token, "foreign": foreign}
    for who, token in cases.items():
        with pytest.raises(GatedRepoError):
            snapshot_download(REPO, endpoint=endpoint, token=token, cache_dir=tmp_path / who)
        with pytest.raises(GatedRepoError):
            hf_hub_download(
                REPO,
                "config.json",
                revision=v1.revision,  # a pinned commit skips /api: /resolve is gated too
                endpoint=endpoint,
                token=token,
                cache_dir=tmp_path / f"{who}-file",
            )

    request = approve(bob, v1, reviewer=lena)
    snapshot_download(REPO, endpoint=endpoint, token=bob_token, cache_dir=tmp_path / "approved")
    # The approval runs out; the beat task has not run yet, and access ends anyway.
    ReuseRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now())
    with pytest.raises(GatedRepoError):
        snapshot_download(REPO, endpoint=endpoint, token=bob_token, cache_dir=tmp_path / "expired")
    assert gov_reuse.reuse_requests_expire() == 1
    with pytest.raises(GatedRepoError):
        hf_hub_download(
            REPO,
            "config.json",
            revision=v1.revision,
            endpoint=endpoint,
            token=bob_token,
            cache_dir=tmp_path / "expired-file",
        )
    assert foreign not in caplog.text
    assert "z" * 34 not in caplog.text
    everything = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert foreign not in everything
    assert bob_token not in everything


def test_unknown_repo_revision_and_file(endpoint, v1, sam, tmp_path):
    token = token_for(sam)
    with pytest.raises(RepositoryNotFoundError) as raised:
        snapshot_download("acme/nothing", endpoint=endpoint, token=token, cache_dir=tmp_path / "a")
    assert not isinstance(raised.value, GatedRepoError)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(
            REPO, revision="v9", endpoint=endpoint, token=token, cache_dir=tmp_path / "b"
        )
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(
            REPO, "absent.bin", endpoint=endpoint, token=token, cache_dir=tmp_path / "c"
        )


def test_real_server_answers_head_and_ranges(endpoint, v1, sam):
    """Through the live server's WSGI stack: HEAD sizes and 206 bodies as sent on the wire."""
    token = token_for(sam)
    data = stored(v1)["model.safetensors"]
    url = f"{endpoint}/{REPO}/resolve/main/model.safetensors"

    def fetch(method: str = "GET", **headers: str):
        request = urllib.request.Request(  # noqa: S310 (http to the live server)
            url, method=method, headers={"Authorization": f"Bearer {token}", **headers}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    status, headers, body = fetch("HEAD")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == str(len(data))
    assert headers["X-Repo-Commit"] == v1.revision
    status, headers, body = fetch(Range="bytes=100-")
    assert (status, body) == (206, data[100:])
    assert headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
    status, headers, body = fetch(Range="bytes=3-9")
    assert (status, body, headers["Content-Length"]) == (206, data[3:10], "7")
    status, _, body = fetch("POST")
    assert status == 405


TRANSFORMERS_SCRIPT = r"""
import hashlib, json, sys
from transformers import AutoModel, AutoTokenizer

repo, revision, other_token, other_cache = sys.argv[1:5]
model = AutoModel.from_pretrained(repo, revision=revision)
tokenizer = AutoTokenizer.from_pretrained(repo, revision=revision)
digest = hashlib.sha256()
for name, tensor in sorted(model.state_dict().items()):
    digest.update(name.encode())
    digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
try:
    AutoModel.from_pretrained(repo, revision="main", token=other_token, cache_dir=other_cache)
    refused = None
except Exception as exc:
    chain, refused = exc, []
    while chain is not None:
        refused.append(type(chain).__name__)
        chain = chain.__cause__ or chain.__context__
print(json.dumps({
    "digest": digest.hexdigest(),
    "ids": tokenizer("hello portal world")["input_ids"],
    "refused": refused,
}))
"""


def state_digest(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_transformers_loads_the_same_weights_and_tokenizer(endpoint, sam, bob, lena, tmp_path):
    from django.conf import settings
    from transformers import AutoTokenizer, BertModel

    source = tiny_bert_folder(Path(settings.IMPORT_ROOTS[0]) / "tiny-bert")
    version = import_folder(source, "acme/tiny-bert", actor=sam)
    approve(bob, version, reviewer=lena)
    carol = UserFactory(username="carol")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))
    }
    env.update(
        HF_ENDPOINT=endpoint,
        HF_TOKEN=token_for(bob),
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            TRANSFORMERS_SCRIPT,
            "acme/tiny-bert",
            "v1",
            token_for(carol),
            str(tmp_path / "carol-cache"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["digest"] == state_digest(BertModel.from_pretrained(source))
    assert out["ids"] == AutoTokenizer.from_pretrained(source)("hello portal world")["input_ids"]
    assert "GatedRepoError" in out["refused"], out["refused"]
    snapshot = next((tmp_path / "hf-home" / "hub").glob("models--acme--tiny-bert/snapshots/*"))
    assert snapshot.name == version.revision
    for path in folder_files(snapshot):
        assert folder_files(snapshot)[path] == (source / path).read_bytes()
    assert AuditEvent.objects.filter(verb="hub.download", actor=bob).exists()
    assert AuditEvent.objects.filter(verb="hub.refused", actor=carol).exists()


def test_a_recall_of_the_base_stops_the_client_on_a_fine_tune_at_once(
    endpoint, v1, people, tmp_path
):
    from governance.services import incidents as gov_incidents
    from tests.builders.catalogue import finetune_of

    child = finetune_of(
        v1, "router-ft", "acme/router-ft", author=people["alice"], steward=people["sam"]
    )
    approve(people["bob"], child, reviewer=people["lena"])
    token = token_for(people["bob"])

    def pull(tag: str):
        return hf_hub_download(
            "acme/router-ft",
            "config.json",
            revision=child.revision,
            endpoint=endpoint,
            token=token,
            cache_dir=tmp_path / tag,
        )

    assert Path(pull("before")).read_bytes() == stored(child)["config.json"]
    incident = gov_incidents.incident_open(
        version=v1,
        actor=people["sean"],
        category="backdoor",
        severity=4,
        title="Backdoor in the base",
        description="A trigger phrase flips every label.",
        recall=True,
    )
    with pytest.raises(GatedRepoError, match="recalled by incident"):
        pull("during")
    gov_incidents.incident_recall_lift(
        incident=incident, actor=people["sean"], reason="The trigger came from a test harness."
    )
    assert Path(pull("after")).read_bytes() == stored(child)["config.json"]
