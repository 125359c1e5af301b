"""What "verify, then make visible" costs on object storage, and how fast blobs stream back.

An S3-compatible server (moto's, or any given with --endpoint) holds the blobs.
For each size the script times, over several rounds:

* a plain upload through Django's storage API (what a write costs without checks);
* ``zoo.storage.store_blob``: upload under a temporary key, read back and hash,
  server-side copy to the content-hashed name, delete the temporary key;
* a full streamed read (``open_stream``) and a 1 MiB ranged read from the middle.

and prints the medians in MB/s with the ratio store_blob / plain upload. moto
keeps objects in memory on this machine, so the figures measure the portal's
own overhead (hashing, the extra read, the copy), not a network.

Usage: .venv/bin/python bench/bucket.py [--sizes-mb 16,128] [--rounds 3] [--endpoint URL]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MiB = 2**20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_moto() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("moto's S3 server did not start (pip install 'moto[server]')")


def _configure(endpoint: str, bucket: str) -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DEBUG": "1",
            "DATABASE_URL": "sqlite:///var/bench-bucket.sqlite3",
            "CELERY_BROKER_URL": "memory://",
            "LOG_LEVEL": "WARNING",
            "STORAGE_URL": f"s3://{bucket}/bench-{uuid.uuid4().hex[:8]}"
            f"?endpoint_url={endpoint}&region=us-east-1",
        }
    )
    import boto3
    import django

    django.setup()
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)


def _mbps(size: int, seconds: float) -> float:
    return size / MiB / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="16,128")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--endpoint", help="an S3-compatible endpoint (default: start moto)")
    parser.add_argument("--bucket", default="portal-bench")
    args = parser.parse_args()
    moto = None
    endpoint = args.endpoint
    if endpoint is None:
        moto, endpoint = _start_moto()
    try:
        _configure(endpoint, args.bucket)
        from django.conf import settings
        from django.core.files import File
        from django.core.files.storage import default_storage

        from zoo import storage

        print(
            f"endpoint {endpoint}; multipart from {settings.STORAGE_MULTIPART_THRESHOLD // MiB} "
            f"MiB in {settings.STORAGE_MULTIPART_CHUNK // MiB} MiB parts; {args.rounds} rounds"
        )
        print(f"{'size':>8} {'upload':>10} {'store_blob':>11} {'ratio':>6} "
              f"{'read':>10} {'1MiB range':>11}")  # fmt: skip
        for size_mb in (int(s) for s in args.sizes_mb.split(",")):
            size = size_mb * MiB
            plain, verified, reads, ranges = [], [], [], []
            with tempfile.TemporaryDirectory() as tmp:
                for _ in range(args.rounds):
                    path = Path(tmp) / "blob.bin"
                    path.write_bytes(os.urandom(size))
                    sha = hashlib.sha256(path.read_bytes()).hexdigest()
                    began = time.perf_counter()
                    with path.open("rb") as handle:
                        name = default_storage.save(f"plain/{uuid.uuid4().hex}", File(handle))
                    plain.append(time.perf_counter() - began)
                    default_storage.delete(name)
                    began = time.perf_counter()
                    blob = storage.store_blob(path, sha)
                    verified.append(time.perf_counter() - began)
                    began = time.perf_counter()
                    with storage.open_stream(blob) as stream:
                        while stream.read(MiB):
                            pass
                    reads.append(time.perf_counter() - began)
                    began = time.perf_counter()
                    with storage.open_stream(blob, start=size // 2, length=MiB) as stream:
                        assert len(stream.read()) == MiB
                    ranges.append(time.perf_counter() - began)
                    default_storage.delete(blob)
            up, st = statistics.median(plain), statistics.median(verified)
            print(
                f"{size_mb:>5} MB {_mbps(size, up):>7.0f} MB/s {_mbps(size, st):>7.0f} MB/s "
                f"{up / st:>5.2f}x {_mbps(size, statistics.median(reads)):>6.0f} MB/s "
                f"{statistics.median(ranges) * 1000:>8.1f} ms"
            )
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(10)


if __name__ == "__main__":
    main()
