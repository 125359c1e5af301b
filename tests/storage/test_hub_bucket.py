"""The real Hugging Face client downloading from /hf/ while the files live in the bucket.

Streamed (the default) and redirected to a presigned bucket URL
(HUB_REDIRECT_DOWNLOADS); ranges are answered by the bucket in both cases.
Every client call gets a fresh cache: a warm one would hide the server's answers.
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import GatedRepoError
from huggingface_hub.utils import close_session

from governance.models import AuditEvent
from tests.builders.catalogue import import_model, small_model
from tests.builders.governance import approve, token_for
from tests.storage.conftest import files_under

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

REPO = "acme/bucketed"


@pytest.fixture
def endpoint(live_server, settings) -> str:
    settings.STATIC_URL = "/static/"
    return f"{live_server.url}/hf"


@pytest.fixture(autouse=True)
def _hang_up(live_server):
    """The client keeps connections alive; hang up before the database goes."""
    yield
    close_session()


@pytest.fixture
def version(bucket, sam):
    return import_model(small_model("bucketed"), REPO, actor=sam)


def _request(url: str, token: str | None, method: str = "GET", **headers: str):
    """One request without following redirects: what the portal itself answers."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    connection.request(method, path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, response.headers, body


def test_an_import_puts_every_file_in_the_bucket_and_none_on_local_disk(version, bucket, settings):
    artifacts = list(version.artifacts.all())
    assert len(artifacts) >= 5
    keys = set(bucket.names("blobs/"))
    for artifact in artifacts:
        assert artifact.blob_name in keys
        assert hashlib.sha256(bucket.read(artifact.blob_name)).hexdigest() == artifact.sha256
    assert bucket.names("incoming/") == []
    assert not settings.MEDIA_ROOT.exists() or files_under(settings.MEDIA_ROOT) == []


def test_the_client_downloads_a_snapshot_streamed_from_the_bucket(
    endpoint, version, bob, lena, tmp_path
):
    approve(bob, version, reviewer=lena)
    token = token_for(bob)

    folder = snapshot_download(
        REPO, revision="main", endpoint=endpoint, token=token, cache_dir=tmp_path / "bob"
    )

    got = {p.relative_to(folder).as_posix(): p.read_bytes() for p in Path(folder).rglob("*")
           if p.is_file()}  # fmt: skip
    expected = {a.path: a.sha256 for a in version.artifacts.all()}
    assert {path: hashlib.sha256(data).hexdigest() for path, data in got.items()} == expected
    assert AuditEvent.objects.filter(verb="hub.download", actor=bob).count() == len(expected)


def test_ranges_are_read_from_the_bucket(endpoint, version, bucket, sam):
    token = token_for(sam)
    artifact = version.artifacts.get(path="model.safetensors")
    data = bucket.read(artifact.blob_name)
    url = f"{endpoint}/{REPO}/resolve/{version.revision}/model.safetensors"

    status, headers, body = _request(url, token, Range="bytes=100-")
    assert (status, body) == (206, data[100:])
    assert headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
    status, headers, body = _request(url, token, Range="bytes=3-9")
    assert (status, body, headers["Content-Length"]) == (206, data[3:10], "7")
    status, headers, body = _request(url, token, Range=f"bytes={len(data)}-")
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(data)}"
    status, headers, body = _request(url, token, "HEAD")
    assert (status, headers["Content-Length"], body) == (200, str(len(data)), b"")
    status, headers, body = _request(url, token)
    assert (status, body) == (200, data)


def test_redirect_mode_hands_out_a_short_lived_bucket_url(
    endpoint, version, bucket, bob, lena, settings, tmp_path
):
    settings.HUB_REDIRECT_DOWNLOADS = True
    settings.HUB_REDIRECT_EXPIRY_S = 120
    approve(bob, version, reviewer=lena)
    token = token_for(bob)
    artifact = version.artifacts.get(path="model.safetensors")
    data = bucket.read(artifact.blob_name)
    url = f"{endpoint}/{REPO}/resolve/{version.revision}/model.safetensors"

    # The first answer carries what the client needs; the Location is the bucket's.
    status, headers, _ = _request(url, token, "HEAD")
    assert status == 302
    assert headers["X-Repo-Commit"] == version.revision
    assert headers["X-Linked-Etag"] == f'"{artifact.sha256}"'
    assert headers["X-Linked-Size"] == str(len(data))
    location = headers["Location"]
    assert location.startswith(bucket.endpoint)
    assert "X-Amz-Expires=120" in location
    # The presigned URL needs no token, and the bucket answers ranges itself.
    with urllib.request.urlopen(location, timeout=30) as response:  # noqa: S310 (loopback)
        assert response.read() == data
    ranged = urllib.request.Request(location, headers={"Range": "bytes=5-14"})  # noqa: S310
    with urllib.request.urlopen(ranged, timeout=30) as response:  # noqa: S310
        assert (response.status, response.read()) == (206, data[5:15])

    # The real client follows it to the same bytes.
    path = hf_hub_download(
        REPO, "model.safetensors", revision="main", endpoint=endpoint, token=token,
        cache_dir=tmp_path / "bob",
    )  # fmt: skip
    assert Path(path).read_bytes() == data
    redirects = AuditEvent.objects.filter(verb="hub.download", actor=bob, payload__redirect=True)
    assert redirects.count() >= 2  # each URL handed out is a download


def test_redirect_mode_still_refuses_who_is_not_approved(
    endpoint, version, alice, settings, tmp_path
):
    settings.HUB_REDIRECT_DOWNLOADS = True
    token = token_for(alice)
    url = f"{endpoint}/{REPO}/resolve/{version.revision}/model.safetensors"

    status, headers, _ = _request(url, token, "HEAD")

    assert status == 403
    assert "Location" not in headers
    with pytest.raises(GatedRepoError):
        hf_hub_download(
            REPO, "config.json", endpoint=endpoint, token=token, cache_dir=tmp_path / "alice"
        )
