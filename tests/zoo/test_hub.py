"""The Hugging Face-compatible endpoint at the request level: headers, ranges, errors, gating,
audit and personal access tokens. The real client runs in test_hub_client.py."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.files.storage import default_storage
from django.utils import timezone

from governance.models import AccessToken, AuditEvent
from governance.selectors import user_for_token
from governance.services import reuse as gov_reuse
from governance.services import tokens as gov_tokens
from portal.errors import Conflict, Forbidden, PortalError
from tests.builders.catalogue import import_model as import_folder
from tests.builders.catalogue import small_model
from tests.builders.files import Evil
from tests.builders.governance import approve, bearer, token_for
from tests.factories import UserFactory
from zoo.hub import files as hub_files
from zoo.hub import views as hub
from zoo.models import CatalogModel

pytestmark = pytest.mark.django_db

REPO = "acme/router"


@pytest.fixture
def v1(sam):
    return import_folder(small_model("router-v1"), REPO, actor=sam)


@pytest.fixture
def v2(sam, v1):
    folder = small_model("router-v2", extra={"notes/changelog.md": b"second cut\n"})
    return import_folder(folder, REPO, actor=sam)


@pytest.fixture
def steward_token(sam):
    return token_for(sam)


@pytest.fixture
def bob_token(bob):
    return token_for(bob)


def blob(version, path: str) -> bytes:
    artifact = version.artifacts.get(path=path)
    with default_storage.open(artifact.blob_name, "rb") as handle:
        return handle.read()


def error_of(response) -> tuple[int, str | None]:
    """Status and X-Error-Code; the JSON body repeats the message header."""
    assert json.loads(response.content) == {"error": response["X-Error-Message"]}
    return response.status_code, response.headers.get("X-Error-Code")


def model_urls(version, revision: str = "main") -> list[str]:
    return [
        f"/hf/api/models/{REPO}",
        f"/hf/api/models/{REPO}/revision/{revision}",
        f"/hf/api/models/{REPO}/tree/{revision}?recursive=true",
        f"/hf/api/models/{REPO}/tree/{revision}/tokenizer",
        f"/hf/api/models/{REPO}/refs",
        f"/hf/{REPO}/resolve/{revision}/config.json",
    ]


# --- model info, tree, refs ---------------------------------------------------------------------


def test_model_info_names_the_commit_and_every_file(client, v1, steward_token):
    for revision in ("", "/revision/main", f"/revision/{v1.revision}", "/revision/v1"):
        response = client.get(f"/hf/api/models/{REPO}{revision}", headers=bearer(steward_token))
        assert response.status_code == 200, response.content
        info = response.json()
        assert (info["id"], info["sha"]) == (REPO, v1.revision)
    siblings = {s["rfilename"]: s for s in info["siblings"]}
    assert set(siblings) == set(v1.artifacts.values_list("path", flat=True))
    weights = v1.artifacts.get(path="model.safetensors")
    assert siblings["model.safetensors"]["lfs"]["sha256"] == weights.sha256
    config = v1.artifacts.get(path="config.json")
    assert siblings["config.json"]["blobId"] == config.git_sha1
    assert "lfs" not in siblings["config.json"]
    assert "xetHash" not in response.content.decode()
    assert info["cardData"]["license"] == "mit"
    assert info["pipeline_tag"] == "text-classification"
    # The client's own spelling of a branch, %2F-encoded, resolves too.
    response = client.get(
        f"/hf/api/models/{REPO}/revision/refs%2Fheads%2Fmain", headers=bearer(steward_token)
    )
    assert response.json()["sha"] == v1.revision


def test_main_is_the_newest_version_the_caller_may_use(
    client, v1, v2, bob, bob_token, lena, steward_token, django_capture_on_commit_callbacks
):
    info = client.get(f"/hf/api/models/{REPO}", headers=bearer(steward_token)).json()
    assert info["sha"] == v2.revision
    with django_capture_on_commit_callbacks(execute=True):
        approve(bob, v1, reviewer=lena)
    info = client.get(f"/hf/api/models/{REPO}", headers=bearer(bob_token)).json()
    assert info["sha"] == v1.revision
    refs = client.get(f"/hf/api/models/{REPO}/refs", headers=bearer(bob_token)).json()
    assert refs["branches"] == [
        {"name": "main", "ref": "refs/heads/main", "targetCommit": v1.revision}
    ]
    assert refs["tags"] == [{"name": "v1", "ref": "refs/tags/v1", "targetCommit": v1.revision}]
    response = client.get(f"/hf/api/models/{REPO}/revision/v2", headers=bearer(bob_token))
    assert error_of(response) == (403, "GatedRepo")
    steward_refs = client.get(f"/hf/api/models/{REPO}/refs", headers=bearer(steward_token)).json()
    assert [t["name"] for t in steward_refs["tags"]] == ["v1", "v2"]


def test_tree_lists_folders_recursively_and_pages(client, v1, steward_token, monkeypatch):
    url = f"/hf/api/models/{REPO}/tree/{v1.revision}"
    top = client.get(url, headers=bearer(steward_token))
    assert top.status_code == 200
    assert top["X-Repo-Commit"] == v1.revision
    assert {(e["type"], e["path"]) for e in top.json()} == {
        ("directory", "notes"),
        ("directory", "tokenizer"),
        ("file", "README.md"),
        ("file", "config.json"),
        ("file", "model.safetensors"),
    }
    # transformers 4.57 spells the boolean 'True'.
    everything = client.get(f"{url}?recursive=True", headers=bearer(steward_token)).json()
    files = {e["path"]: e for e in everything if e["type"] == "file"}
    assert set(files) == set(v1.artifacts.values_list("path", flat=True))
    assert "tokenizer/special" in {e["path"] for e in everything if e["type"] == "directory"}
    weights = v1.artifacts.get(path="model.safetensors")
    assert files["model.safetensors"]["lfs"]["oid"] == weights.sha256
    assert files["model.safetensors"]["size"] == weights.size
    nested = client.get(f"{url}/tokenizer", headers=bearer(steward_token)).json()
    assert [e["path"] for e in nested] == ["tokenizer/special", "tokenizer/vocab.txt"]
    expanded = client.get(f"{url}/tokenizer?expand=1", headers=bearer(steward_token)).json()
    assert {e["lastCommit"]["id"] for e in expanded} == {v1.revision}

    missing = client.get(f"{url}/absent", headers=bearer(steward_token))
    assert error_of(missing) == (404, "EntryNotFound")
    assert missing["X-Repo-Commit"] == v1.revision

    monkeypatch.setattr(hub, "TREE_PAGE_SIZE", 3)
    seen, page_url, pages = [], f"{url}?recursive=true", 0
    while page_url:
        response = client.get(page_url, headers=bearer(steward_token))
        seen += [e["path"] for e in response.json()]
        link = response.headers.get("Link")
        page_url = link[1 : link.index(">")].removeprefix("http://testserver") if link else None
        pages += 1
    assert pages == 3
    assert seen == [e["path"] for e in everything]
    bad = client.get(f"{url}?cursor=minus", headers=bearer(steward_token))
    assert bad.status_code == 400


def test_git_ids_match_what_git_computes(client, v1, steward_token, tmp_path):
    """Blob and tree ids are git's own: the same files committed with git give the same ids."""
    listing = client.get(
        f"/hf/api/models/{REPO}/tree/main?recursive=1", headers=bearer(steward_token)
    ).json()
    work = tmp_path / "git"
    work.mkdir()
    for artifact in v1.artifacts.all():
        target = work / artifact.path
        target.parent.mkdir(parents=True, exist_ok=True)
        f = hub_files.HubFile.of(artifact)
        target.write_bytes(f.pointer if f.lfs else blob(v1, artifact.path))

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(work), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("write-tree")
    for entry in listing:
        assert git("rev-parse", f"{git('write-tree')}:{entry['path']}") == entry["oid"], entry


# --- resolve: headers, bytes, ranges ----------------------------------------------------------


def test_head_carries_what_the_client_needs_and_is_not_audited(client, v1, steward_token):
    weights = v1.artifacts.get(path="model.safetensors")
    before = AuditEvent.objects.count()
    response = client.head(
        f"/hf/{REPO}/resolve/main/model.safetensors",
        headers={**bearer(steward_token), "Accept-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert response["X-Repo-Commit"] == v1.revision
    assert response["ETag"] == response["X-Linked-Etag"] == f'"{weights.sha256}"'
    assert response["Content-Length"] == response["X-Linked-Size"] == str(weights.size)
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Disposition"] == 'attachment; filename="model.safetensors"'
    assert "X-Xet-Hash" not in response
    assert "Content-Encoding" not in response
    assert "Location" not in response
    assert response.content == b""
    assert AuditEvent.objects.count() == before

    config = v1.artifacts.get(path="config.json")
    response = client.head(f"/hf/{REPO}/resolve/v1/config.json", headers=bearer(steward_token))
    assert response["ETag"] == f'"{config.git_sha1}"'
    assert response["Content-Length"] == str(config.size)


def test_get_streams_the_stored_bytes_and_audits_the_download(client, v1, sam, steward_token):
    for path in ("model.safetensors", "tokenizer/special/added_tokens.json"):
        response = client.get(
            f"/hf/{REPO}/resolve/{v1.revision}/{path}", headers=bearer(steward_token)
        )
        assert response.status_code == 200
        assert response.streaming
        assert b"".join(response.streaming_content) == blob(v1, path)
        assert response["Content-Length"] == str(v1.artifacts.get(path=path).size)
        assert response["X-Repo-Commit"] == v1.revision
        name = path.rsplit("/", 1)[-1]
        assert response["Content-Disposition"] == f'attachment; filename="{name}"'
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Security-Policy"] == "sandbox; default-src 'none'"
    event = AuditEvent.objects.filter(verb="hub.download").order_by("id").first()
    assert (event.actor_id, event.target_id) == (sam.pk, str(v1.pk))
    assert event.payload == {
        "path": "model.safetensors",
        "sha256": v1.artifacts.get(path="model.safetensors").sha256,
        "range": None,
    }


@pytest.mark.parametrize(
    ("header", "status", "window"),
    [
        ("bytes=10-", 206, slice(10, None)),
        ("bytes=2-5", 206, slice(2, 6)),
        ("bytes=-4", 206, slice(-4, None)),
        ("bytes=0-999999999", 206, slice(0, None)),
        ("bytes=5-2", 200, slice(None)),  # invalid: ignored, the whole file
        ("lines=1-2", 200, slice(None)),
        ("bytes=0-1,4-5", 200, slice(None)),  # several ranges: the whole file
    ],
)
def test_ranges(client, v1, steward_token, header, status, window):
    data = blob(v1, "model.safetensors")
    response = client.get(
        f"/hf/{REPO}/resolve/main/model.safetensors",
        headers={**bearer(steward_token), "Range": header},
    )
    assert response.status_code == status
    body = b"".join(response.streaming_content)
    assert body == data[window]
    assert response["Content-Length"] == str(len(body))
    if status == 206:
        first = len(data) + window.start if window.start < 0 else window.start
        assert response["Content-Range"] == f"bytes {first}-{first + len(body) - 1}/{len(data)}"
        event = AuditEvent.objects.filter(verb="hub.download").latest("id")
        assert event.payload["range"] == f"bytes={first}-{first + len(body) - 1}"


def test_unsatisfiable_range_and_if_range(client, v1, steward_token):
    weights = v1.artifacts.get(path="model.safetensors")
    url = f"/hf/{REPO}/resolve/main/model.safetensors"
    response = client.get(url, headers={**bearer(steward_token), "Range": f"bytes={weights.size}-"})
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{weights.size}"
    assert response["X-Repo-Commit"] == v1.revision
    stale = client.get(
        url, headers={**bearer(steward_token), "Range": "bytes=4-", "If-Range": '"other"'}
    )
    assert stale.status_code == 200
    fresh = client.get(
        url,
        headers={**bearer(steward_token), "Range": "bytes=4-", "If-Range": f'"{weights.sha256}"'},
    )
    assert fresh.status_code == 206
    assert b"".join(fresh.streaming_content) == blob(v1, "model.safetensors")[4:]
    assert len(b"".join(stale.streaming_content)) == weights.size


def test_window_reads_only_its_bytes_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "STREAM_BLOCK", 4)
    path = tmp_path / "f"
    path.write_bytes(bytes(range(100)))
    reads = []

    class Spy:
        def __init__(self, handle):
            self.handle = handle

        def seek(self, offset):
            self.handle.seek(offset)

        def read(self, size):
            reads.append(size)
            return self.handle.read(size)

        def close(self):
            self.handle.close()

    window = hub._Window(Spy(path.open("rb")), 10, 10)
    assert b"".join(iter(lambda: window.read(-1), b"")) == bytes(range(10, 20))
    assert max(reads) <= 4
    assert sum(reads) == 10
    assert not hasattr(window, "fileno")
    window.close()


def test_lfs_rule_follows_the_hub():
    assert hub_files.is_lfs("model.safetensors", 10)
    assert hub_files.is_lfs("sub/pytorch_model.BIN", 10)
    assert not hub_files.is_lfs("config.json", 10)
    assert hub_files.is_lfs("big.txt", hub_files.LFS_THRESHOLD)
    assert not hub_files.is_lfs("README", 100)


# --- errors and gating ----------------------------------------------------------------------


def test_no_token_is_401_gated_on_every_route(client, v1):
    for url in model_urls(v1):
        assert error_of(client.get(url)) == (401, "GatedRepo"), url
    response = client.get(f"/hf/{REPO}/resolve/main/config.json", headers={"Authorization": "x"})
    assert error_of(response) == (401, "GatedRepo")
    # Unauthenticated callers learn nothing about which repos exist.
    assert error_of(client.get("/hf/api/models/acme/nothing")) == (401, "GatedRepo")


def test_unapproved_user_is_403_gated_on_every_route_and_refusals_are_audited(
    client, v1, bob, bob_token
):
    for url in model_urls(v1):
        response = client.get(url, headers=bearer(bob_token))
        assert error_of(response) == (403, "GatedRepo"), url
        assert "Request reuse" in response["X-Error-Message"]
    response = client.head(
        f"/hf/{REPO}/resolve/{v1.revision}/config.json", headers=bearer(bob_token)
    )
    assert response.status_code == 403
    refusals = AuditEvent.objects.filter(verb="hub.refused", actor=bob)
    assert refusals.count() == len(model_urls(v1)) + 1
    assert refusals.filter(target_id=str(v1.pk)).exists()
    assert not AuditEvent.objects.filter(verb="hub.download").exists()
    dumped = json.dumps(list(AuditEvent.objects.values("payload", "target_repr")))
    assert bob_token not in dumped
    assert bob_token[8:] not in dumped


def test_unknown_repo_revision_and_file(client, v1, steward_token):
    auth = bearer(steward_token)
    assert error_of(client.get("/hf/api/models/acme/nothing", headers=auth)) == (
        404,
        "RepoNotFound",
    )
    assert client.head("/hf/acme/nothing/resolve/main/x", headers=auth).status_code == 404
    assert error_of(client.get("/hf/acme/nothing/resolve/main/x", headers=auth)) == (
        404,
        "RepoNotFound",
    )
    for revision in ("v9", "f" * 40, "nope"):
        response = client.get(f"/hf/api/models/{REPO}/revision/{revision}", headers=auth)
        assert error_of(response) == (404, "RevisionNotFound")
        response = client.get(f"/hf/{REPO}/resolve/{revision}/config.json", headers=auth)
        assert error_of(response) == (404, "RevisionNotFound")
    for method in (client.get, client.head):
        response = method(f"/hf/{REPO}/resolve/main/pytorch_model.bin", headers=auth)
        assert response.status_code == 404
        assert response["X-Error-Code"] == "EntryNotFound"
        assert response["X-Repo-Commit"] == v1.revision


def test_drafts_answer_like_unknown_repos_to_non_stewards(client, sam, bob_token, steward_token):
    draft = import_folder(small_model("draft"), "acme/draft", actor=sam)
    CatalogModel.objects.filter(pk=draft.model_id).update(status="draft")
    response = client.get("/hf/api/models/acme/draft", headers=bearer(bob_token))
    assert error_of(response) == (404, "RepoNotFound")
    assert client.get("/hf/api/models/acme/draft", headers=bearer(steward_token)).status_code == 200


def test_blocked_versions_are_never_served(client, v1, sam, steward_token):
    unsafe = small_model("router-evil", extra={"extra.pkl": pickle.dumps(Evil())})
    blocked = import_folder(unsafe, REPO, actor=sam)
    assert blocked.is_blocked
    auth = bearer(steward_token)
    # main skips it; naming it is refused, with the reason, even to a steward.
    assert client.get(f"/hf/api/models/{REPO}", headers=auth).json()["sha"] == v1.revision
    response = client.get(f"/hf/{REPO}/resolve/{blocked.label}/config.json", headers=auth)
    assert error_of(response) == (403, "GatedRepo")
    assert "blocked" in response["X-Error-Message"]
    assert not AuditEvent.objects.filter(verb="hub.download").exists()


def test_blocked_model_is_not_served(client, v1, sam, steward_token):
    from zoo.services.catalogue import catalog_model_set_status

    catalog_model_set_status(model=v1.model, status="blocked", reason="License dispute", actor=sam)
    response = client.get(f"/hf/{REPO}/resolve/main/config.json", headers=bearer(steward_token))
    assert error_of(response) == (403, "GatedRepo")
    assert "License dispute" in response["X-Error-Message"]


def test_approval_opens_and_expiry_or_revocation_closes_access(
    client, v1, bob, bob_token, lena, sam, django_capture_on_commit_callbacks
):
    url = f"/hf/{REPO}/resolve/main/config.json"
    assert client.get(url, headers=bearer(bob_token)).status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        request = approve(bob, v1, reviewer=lena, days=10)
    response = client.get(url, headers=bearer(bob_token))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == blob(v1, "config.json")
    event = AuditEvent.objects.get(verb="hub.download")
    assert (event.actor_id, event.payload["path"]) == (bob.pk, "config.json")

    # The approval lapses at its expiry even before the beat task takes the permission back.
    with time_machine.travel(request.expires_at + timedelta(seconds=1)):
        assert client.get(url, headers=bearer(bob_token)).status_code == 403

    with django_capture_on_commit_callbacks(execute=True):
        gov_reuse.reuse_request_revoke(request=request, actor=sam, reason="Project ended")
    assert error_of(client.get(url, headers=bearer(bob_token))) == (403, "GatedRepo")


def test_write_methods_are_refused_with_405(client, v1, steward_token):
    for url in [*model_urls(v1), "/hf/api/models/acme/router/paths-info/main", "/hf/"]:
        for method in ("post", "put", "patch", "delete"):
            response = getattr(client, method)(url, headers=bearer(steward_token))
            assert response.status_code == 405, (method, url)
            assert response["Allow"] == "GET, HEAD"
    assert client.post(f"/hf/{REPO}/resolve/main/config.json").status_code == 405
    assert client.delete(f"/hf/api/models/{REPO}").status_code == 405


def test_other_paths_under_hf_answer_json_not_redirects(client, steward_token):
    response = client.get("/hf/api/nothing-here", headers=bearer(steward_token))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    response = client.get("/hf/api/datasets/acme/data", headers=bearer(steward_token))
    assert error_of(response) == (404, "RepoNotFound")
    assert client.get("/hf/").json()["tokens"].endswith("/account/tokens/")


def test_whoami(client, sam, steward_token):
    assert client.get("/hf/api/whoami-v2").status_code == 401
    me = client.get("/hf/api/whoami-v2", headers=bearer(steward_token)).json()
    assert me["name"] == "sam"
    assert me["auth"]["accessToken"]["role"] == "read"


def test_query_budget_of_a_download(
    client, v1, bob, bob_token, lena, django_assert_max_num_queries,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        approve(bob, v1, reviewer=lena)
    client.get(f"/hf/api/models/{REPO}", headers=bearer(bob_token))  # last_used_at written
    with django_assert_max_num_queries(14):
        response = client.get(f"/hf/{REPO}/resolve/main/config.json", headers=bearer(bob_token))
        assert b"".join(response.streaming_content) == blob(v1, "config.json")


# --- tokens -----------------------------------------------------------------------------------


def test_token_is_shown_once_and_stored_hashed(sam):
    token, plaintext = gov_tokens.access_token_create(user=sam, name="laptop", days=30)
    assert plaintext.startswith("zoo_pat_")
    assert len(plaintext) == len("zoo_pat_") + 43
    assert token.prefix == plaintext[:16]
    assert token.digest == hashlib.sha256(plaintext.encode()).hexdigest()
    stored = json.dumps(list(AccessToken.objects.values()), default=str)
    assert plaintext not in stored
    assert plaintext[16:] not in stored
    event = AuditEvent.objects.get(verb="token.create")
    assert event.payload["name"] == "laptop"
    audit = json.dumps(list(AuditEvent.objects.values("payload", "target_repr")), default=str)
    assert plaintext[16:] not in audit
    assert token.digest not in audit
    assert user_for_token(plaintext) == sam
    assert token.expires_at - token.created_at == pytest.approx(
        timedelta(days=30), abs=timedelta(seconds=5)
    )


def test_tokens_are_checked_strictly(sam, bob):
    _, plaintext = gov_tokens.access_token_create(user=sam, name="t", days=1)
    assert user_for_token(plaintext + "x") is None
    assert user_for_token(plaintext[:-1]) is None
    assert user_for_token("hf_" + plaintext[8:]) is None
    assert user_for_token("") is None
    assert user_for_token(None) is None
    assert user_for_token("zoo_pat_" + "a" * 5000) is None
    with time_machine.travel(timezone.now() + timedelta(days=1, seconds=1)):
        assert user_for_token(plaintext) is None
    sam.is_active = False
    sam.save()
    assert user_for_token(plaintext) is None


@pytest.mark.parametrize(
    ("name", "days", "message"),
    [
        ("", 30, "name"),
        ("x" * 101, 30, "100 characters"),
        ("t", 0, "between 1 and 365"),
        ("t", 366, "between 1 and 365"),
    ],
)
def test_token_creation_refuses_bad_input(bob, name, days, message):
    with pytest.raises(PortalError, match=message):
        gov_tokens.access_token_create(user=bob, name=name, days=days)
    assert not AccessToken.objects.exists()


def test_last_used_is_written_at_most_once_a_minute(bob):
    token, plaintext = gov_tokens.access_token_create(user=bob, name="t", days=5)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        user_for_token(plaintext)
    token.refresh_from_db()
    assert token.last_used_at == start
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        user_for_token(plaintext)
    token.refresh_from_db()
    assert token.last_used_at == start
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        user_for_token(plaintext)
    token.refresh_from_db()
    assert token.last_used_at == start + timedelta(seconds=61)


def test_revoked_and_expired_tokens_are_refused(client, v1, sam):
    token, plaintext = gov_tokens.access_token_create(user=sam, name="t", days=2)
    url = f"/hf/api/models/{REPO}"
    assert client.get(url, headers=bearer(plaintext)).status_code == 200
    with time_machine.travel(token.expires_at + timedelta(seconds=1)):
        assert error_of(client.get(url, headers=bearer(plaintext))) == (401, "GatedRepo")
    with pytest.raises(Forbidden):
        gov_tokens.access_token_revoke(token=token, actor=UserFactory(username="mallory"))
    gov_tokens.access_token_revoke(token=token, actor=sam)
    with pytest.raises(Conflict):
        gov_tokens.access_token_revoke(token=token, actor=sam)
    response = client.get(url, headers=bearer(plaintext))
    assert error_of(response) == (401, "GatedRepo")
    assert "expired or revoked" in response["X-Error-Message"]
    event = AuditEvent.objects.get(verb="token.revoke")
    assert event.payload["prefix"] == token.prefix


def test_foreign_tokens_are_refused_and_never_recorded(client, v1, caplog):
    caplog.set_level(logging.DEBUG)
    foreign = "hf_" + "Q" * 34
    response = client.get(
        f"/hf/{REPO}/resolve/main/config.json", headers={"Authorization": f"Bearer {foreign}"}
    )
    assert error_of(response) == (401, "GatedRepo")
    assert "not Hugging Face tokens" in response["X-Error-Message"]
    assert foreign not in response.content.decode()
    assert foreign not in json.dumps(list(AuditEvent.objects.values()), default=str)
    assert foreign not in caplog.text
    assert "Q" * 34 not in caplog.text


def test_token_page_creates_shows_once_and_revokes(client, bob, sam):
    assert client.get("/account/tokens/").status_code == 302  # sign in first
    client.force_login(bob)
    response = client.post("/account/tokens/", {"name": "laptop", "days": "30"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    token = AccessToken.objects.get(user=bob)
    page = response.content.decode()
    plaintext = page.split('id="token-value" type="text" readonly size="60" value="')[1]
    plaintext = plaintext.split('"')[0]
    assert plaintext.startswith(token.prefix)
    assert user_for_token(plaintext) == bob
    again = client.get("/account/tokens/").content.decode()
    assert plaintext not in again
    assert f"{token.prefix}…" in again

    bad = client.post("/account/tokens/", {"name": "x", "days": "400"})
    assert bad.status_code == 400
    assert AccessToken.objects.filter(user=bob).count() == 1

    other, _ = gov_tokens.access_token_create(user=sam, name="sams", days=5)
    assert client.post(f"/account/tokens/{other.pk}/revoke/").status_code == 404
    response = client.post(f"/account/tokens/{token.pk}/revoke/", follow=True)
    assert "is revoked" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert user_for_token(plaintext) is None
    assert client.get(f"/account/tokens/{token.pk}/revoke/").status_code == 405


# --- the model page -------------------------------------------------------------------------


def test_model_page_shows_the_client_snippet(
    client, v1, bob, sam, lena, django_capture_on_commit_callbacks
):
    client.force_login(bob)
    page = client.get(f"/catalogue/{REPO}/").content.decode()
    assert "Use this model" in page
    assert "HF_ENDPOINT=http://testserver/hf" in page
    assert f'snapshot_download(\n    "{REPO}",\n    revision="{v1.revision}"' in page
    # The card names a base model: a fine-tuned classifier, loaded with its head and labels.
    assert "AutoModelForSequenceClassification.from_pretrained(" in page
    assert "print(model.config.id2label)" in page
    assert "/account/tokens/" in page
    assert "You may not download v1 yet" in page
    assert f"/catalogue/{REPO}/request/" in page
    with django_capture_on_commit_callbacks(execute=True):
        approve(bob, v1, reviewer=lena)
    page = client.get(f"/catalogue/{REPO}/").content.decode()
    assert "You may download v1" in page
    client.force_login(sam)
    assert "You may download v1" in client.get(f"/catalogue/{REPO}/").content.decode()


def test_staff_revoke_tokens_in_the_admin(client, admin_user, bob):
    token, plaintext = gov_tokens.access_token_create(user=bob, name="leaked", days=5)
    client.force_login(admin_user)
    listing = client.get("/admin/governance/accesstoken/").content.decode()
    assert token.prefix in listing
    assert token.digest not in listing
    assert (
        token.digest
        not in client.get(f"/admin/governance/accesstoken/{token.pk}/change/").content.decode()
    )
    response = client.post(
        "/admin/governance/accesstoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
        follow=True,
    )
    assert "Revoked 1 token(s)." in response.content.decode()
    assert user_for_token(plaintext) is None
    assert AuditEvent.objects.get(verb="token.revoke").actor_id == admin_user.pk


def test_a_damaged_stored_copy_is_never_served(client, v1, steward_token):
    artifact = v1.artifacts.get(path="model.safetensors")
    stored = Path(default_storage.path(artifact.blob_name))
    stored.write_bytes(stored.read_bytes()[:10])  # what a half-finished write would leave
    url = f"/hf/{REPO}/resolve/main/model.safetensors"
    response = client.get(url, headers=bearer(steward_token))
    assert error_of(response) == (500, None)
    assert "damaged" in response["X-Error-Message"]
    assert not AuditEvent.objects.filter(verb="hub.download").exists()
