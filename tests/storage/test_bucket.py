"""Blobs in an S3-compatible bucket: round trip, verify then make visible, multipart, health."""

from __future__ import annotations

import hashlib
import os

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from portal.env import parse_storage_url
from portal.errors import PortalError
from zoo import storage
from zoo.bucket import BucketStorage

MiB = 2**20


def _file(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_a_blob_round_trips_through_the_bucket_and_nothing_stays_local(bucket, tmp_path, settings):
    data = os.urandom(200_000)
    path, sha = _file(tmp_path, "weights.bin", data)

    name = storage.store_blob(path, sha)

    assert isinstance(default_storage, BucketStorage)
    assert bucket.names() == [storage.blob_name(sha)]
    assert bucket.read(name) == data
    assert storage.blob_is_intact(name, sha256=sha, size=len(data))
    copied = storage.copy_blob_to(name, tmp_path / "out" / "copy.bin")
    assert copied.read_bytes() == data
    assert not settings.MEDIA_ROOT.exists()  # nothing went to the local folder
    # Stored again: the intact object is kept as it is, no second copy, no temporary left.
    assert storage.store_blob(path, sha) == name
    assert bucket.names() == [name]


def test_a_ranged_read_streams_only_the_window(bucket, tmp_path):
    data = bytes(range(256)) * 100
    path, sha = _file(tmp_path, "f.bin", data)
    name = storage.store_blob(path, sha)

    with storage.open_stream(name, start=1000, length=300) as stream:
        assert stream.read() == data[1000:1300]
    with storage.open_stream(name, start=25_000) as stream:
        assert stream.read() == data[25_000:]
    with pytest.raises(FileNotFoundError):
        storage.open_stream("blobs/sha256/00/00/none")


def test_a_short_write_never_becomes_visible_and_leaves_no_temporary_object(
    bucket, tmp_path, monkeypatch
):
    data = os.urandom(50_000)
    path, sha = _file(tmp_path, "w.bin", data)
    real_save = BucketStorage._save

    def short_write(self, name, content):
        return real_save(self, name, ContentFile(content.read()[:-10]))

    monkeypatch.setattr(BucketStorage, "_save", short_write)

    with pytest.raises(PortalError, match="did not leave the bytes it read"):
        storage.store_blob(path, sha)

    assert bucket.names() == []


def test_a_failed_copy_to_the_final_name_leaves_nothing_behind(bucket, tmp_path, monkeypatch):
    path, sha = _file(tmp_path, "w.bin", os.urandom(10_000))

    def lost_connection(self, source, dest):
        raise ConnectionError("the bucket went away mid-copy")

    monkeypatch.setattr(BucketStorage, "copy_within", lost_connection)

    with pytest.raises(ConnectionError):
        storage.store_blob(path, sha)

    assert bucket.names() == []


def test_a_damaged_object_under_the_blob_name_is_replaced(bucket, tmp_path):
    data = os.urandom(30_000)
    path, sha = _file(tmp_path, "w.bin", data)
    name = storage.blob_name(sha)
    bucket.client.put_object(Bucket="portal-test", Key=f"{bucket.prefix}/{name}", Body=b"x" * 10)

    assert storage.store_blob(path, sha) == name

    assert bucket.read(name) == data
    assert bucket.names() == [name]


def test_a_checkpoint_is_verified_before_its_name_shows_it(bucket, tmp_path, monkeypatch):
    path, _ = _file(tmp_path, "checkpoint.zip", os.urandom(20_000))
    stored = storage.save_verified(path, "checkpoints/7/attempt1-epoch1.zip")
    assert bucket.names("checkpoints/") == ["checkpoints/7/attempt1-epoch1.zip"]
    assert hashlib.sha256(bucket.read(stored["name"])).hexdigest() == stored["sha256"]

    real_save = BucketStorage._save
    monkeypatch.setattr(
        BucketStorage,
        "_save",
        lambda self, name, content: real_save(self, name, ContentFile(b"truncated")),
    )
    with pytest.raises(PortalError):
        storage.save_verified(path, "checkpoints/7/attempt1-epoch2.zip")
    assert bucket.names() == ["checkpoints/7/attempt1-epoch1.zip"]


def test_files_over_the_threshold_go_up_in_parts(bucket, tmp_path, settings):
    settings.STORAGE_MULTIPART_THRESHOLD = 5 * MiB
    settings.STORAGE_MULTIPART_CHUNK = 5 * MiB
    settings.STORAGES = {**settings.STORAGES}  # a fresh storage reads the new settings
    big = os.urandom(11 * MiB)
    small = os.urandom(1 * MiB)
    big_path, big_sha = _file(tmp_path, "big.safetensors", big)
    small_path, small_sha = _file(tmp_path, "small.json", small)

    big_name = storage.store_blob(big_path, big_sha)
    small_name = storage.store_blob(small_path, small_sha)

    # An S3 ETag is "<md5 of the part md5s>-<parts>" for a multipart object, a plain md5 else.
    assert default_storage.etag(big_name).endswith("-3")
    assert default_storage.etag(small_name) == hashlib.md5(small).hexdigest()  # noqa: S324
    assert hashlib.sha256(bucket.read(big_name)).hexdigest() == big_sha
    assert sorted(bucket.names()) == sorted([big_name, small_name])


def test_the_storage_url_is_read_strictly():
    options = parse_storage_url(
        "s3://models/zoo/prod?endpoint_url=http://minio:9000&region=eu-west-1"
    )
    assert options["bucket_name"] == "models"
    assert options["location"] == "zoo/prod"
    assert options["endpoint_url"] == "http://minio:9000"
    assert options["region_name"] == "eu-west-1"
    assert parse_storage_url("s3://models")["location"] == ""
    for bad, says in [
        ("gs://models", "scheme"),
        ("s3://key:secret@models", "credentials"),
        ("s3:///prefix", "names no bucket"),
        ("s3://models?endpoint=http://x", "unknown option endpoint"),
        ("s3://models?endpoint_url=minio:9000", "not an http"),
    ]:
        with pytest.raises(ImproperlyConfigured, match=says):
            parse_storage_url(bad)


@pytest.mark.django_db
def test_healthz_reports_the_bucket_and_answers_503_without_it(bucket, client, settings):
    body = client.get("/healthz").json()
    assert body["storage"] == "bucket"
    assert body["node"]

    dead = parse_storage_url(bucket.url.replace(bucket.endpoint.rsplit(":", 1)[1], "1"))
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "zoo.bucket.BucketStorage", "OPTIONS": dead},
    }
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "EndpointConnectionError" in response.json()["storage"]


@pytest.mark.django_db
def test_the_sweep_removes_temporaries_a_killed_write_left_in_the_bucket(bucket, settings):
    from datetime import timedelta

    from django.utils import timezone

    from jobs.services.sweep import storage_sweep

    left = default_storage.save(f"{storage.INCOMING}/abandoned", ContentFile(b"half a file"))
    recent = storage_sweep()
    assert bucket.names() == [left]
    assert recent["kept_for_grace"] >= 1

    later = timezone.now() + timedelta(seconds=settings.SWEEP_GRACE_S + 60)
    report = storage_sweep(now=later)

    assert report["counts"]["incoming_temporaries"] == 1
    assert bucket.names() == []


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"STORAGE_URL": "s3://key:secret@models"}, "STORAGE_URL must not hold credentials"),
        ({"HUB_REDIRECT_DOWNLOADS": "1"}, "HUB_REDIRECT_DOWNLOADS needs object storage"),
        ({"STORAGE_MULTIPART_CHUNK": "1024"}, "STORAGE_MULTIPART_CHUNK=1024 is below"),
    ],
)
def test_a_bad_storage_setting_stops_start_up_with_its_name(env, says):
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k not in {"STORAGE_URL", *env}}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**base, "DJANGO_SETTINGS_MODULE": "portal.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert says in result.stderr
