"""An S3-compatible server on loopback for the object storage tests, and storage pointed at it.

moto's standalone server runs in a process of its own for the session; each
test gets a prefix of its own in one bucket, so tests never see each other's
objects. Without the server the tests fail: object storage is what they test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from portal.env import parse_storage_url
from tests.builders.processes import free_port

BUCKET = "portal-test"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "portal-test-key",
    "AWS_SECRET_ACCESS_KEY": "portal-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class Bucket:
    """One test's place in the bucket: the STORAGE_URL other processes use, and a client."""

    endpoint: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{BUCKET}/{self.prefix}?endpoint_url={self.endpoint}&region=us-east-1"

    @property
    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def names(self, under: str = "") -> list[str]:
        """Every object key below the test's prefix (and ``under``), the prefix taken off."""
        start = f"{self.prefix}/{under}"
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=start)
        found = [item["Key"] for page in pages for item in page.get("Contents", [])]
        return sorted(key[len(self.prefix) + 1 :] for key in found)

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=f"{self.prefix}/{key}")["Body"].read()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    """moto's S3 server on a free loopback port, for the whole session."""
    os.environ.update(CREDENTIALS)  # worker processes inherit them, as on a real node
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(
                    "The S3-compatible test server (moto[server], a dev dependency) did not "
                    f"start:\n{Path(log).read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.1)
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield endpoint
    process.terminate()
    process.wait(10)


@pytest.fixture
def bucket(s3_endpoint, settings) -> Bucket:
    """Storage for this test is the bucket, under a prefix of its own; MEDIA_ROOT stays unused."""
    place = Bucket(endpoint=s3_endpoint, prefix=f"t-{uuid.uuid4().hex[:12]}")
    settings.STORAGE_URL = place.url
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "zoo.bucket.BucketStorage", "OPTIONS": parse_storage_url(place.url)},
    }
    return place


def files_under(folder: Path) -> list[str]:
    """The files in a local folder (none, when the bucket holds everything)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
