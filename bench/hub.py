"""Download throughput of the Hugging Face-compatible endpoint against a plain static file server.

Two random safetensors files (200 MB and 50 MB by default) are imported into the catalogue
through the real importer. The portal then runs under gunicorn as in docker-compose.yml
(sync workers, sendfile on), and ``python -m http.server`` serves the artifact storage's
blob folder, so both servers send the very same bytes from the same disk. Each round
downloads every file from both with the same streaming HTTP client (1 MiB reads, bytes
discarded); the portal's requests carry a token and pass the full gate and audit path.
A last row times ``huggingface_hub.hf_hub_download`` end to end (HEAD, GET, cache write)
into a fresh cache. The figure to watch is the ratio portal / static (aim: at least 0.8x).

Usage: .venv/bin/python bench/hub.py [--sizes-mb 200,50] [--rounds 5]
Needs PostgreSQL at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/portal_bench;
created and migrated on the first run, shared with bench/catalogue.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REPO = "bench/hub-throughput"
CARD = (
    "---\nlicense: apache-2.0\n---\n# Random weights for a benchmark\n\n"
    "## Intended use\n\nTiming downloads.\n\n## Limitations\n\nRandom bytes.\n\n"
    "## Training data\n\nNone.\n\n## Evaluation\n\nNone: nothing to evaluate.\n"
)


def _env(database_url: str, work: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-secret-key-that-is-long-enough-0123456789abcdefghijkl",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "CELERY_BROKER_URL": "memory://",
        "LOG_LEVEL": "WARNING",
        "MEDIA_ROOT": str(work / "media"),
        "IMPORT_ROOTS": str(work / "imports"),
        "IMPORT_STAGING_DIR": str(work / "staging"),
        "STATIC_ROOT": str(Path(tempfile.gettempdir()) / "portal-bench-static"),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
    }


def _setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    Path(env["STATIC_ROOT"]).mkdir(parents=True, exist_ok=True)  # whitenoise warns without it
    from bench._database import create_and_migrate

    create_and_migrate(env["DATABASE_URL"])


def _write_safetensors(path: Path, size: int) -> None:
    """A valid safetensors file of about ``size`` bytes of random uint8s, written in chunks."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}})
    header += " " * (-len(header) % 8)
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(header)) + header.encode())
        left = size
        while left:
            chunk = min(left, 8 << 20)
            out.write(os.urandom(chunk))
            left -= chunk


def _import(work: Path, sizes_mb: list[int]):
    """Import the files as a steward; returns (version, token of a user approved for it)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from governance.services import tokens as gov
    from zoo import importers
    from zoo.models import CatalogModel
    from zoo.services import catalogue as services

    folder = work / "imports" / "model"
    folder.mkdir(parents=True)
    (folder / "README.md").write_text(CARD)
    (folder / "config.json").write_text('{"model_type": "bench"}')
    for i, mb in enumerate(sizes_mb):
        _write_safetensors(folder / f"weights-{i + 1}-of-{len(sizes_mb)}.safetensors", mb << 20)
    users = get_user_model().objects
    steward, _ = users.get_or_create(username="bench-hub-steward")
    steward.groups.add(Group.objects.get(name="stewards"))
    started = time.perf_counter()
    version, _ = importers.import_from_folder(folder=folder, repo_id=REPO, actor=steward)
    print(f"imported {version.file_count} files in {time.perf_counter() - started:.1f}s")
    model = CatalogModel.objects.get(pk=version.model_id)
    if model.status != CatalogModel.Status.AVAILABLE:
        services.catalog_model_set_status(model=model, status="available", actor=steward)
    row, token = gov.access_token_create(user=steward, name="bench", days=1)
    shutil.rmtree(folder)  # the bytes now live only in the artifact storage
    return version, row, token


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import httpx2 as httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {url}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"server did not answer: {url}")


def _download(client, url: str, headers: dict[str, str], *, check: bool = False):
    """Seconds to stream the body (discarded), and its sha256 when asked to prove the bytes."""
    digest = hashlib.sha256() if check else None
    started = time.perf_counter()
    with client.stream("GET", url, headers=headers) as response:
        response.raise_for_status()
        for chunk in response.iter_raw(1 << 20):
            if digest is not None:
                digest.update(chunk)
    return time.perf_counter() - started, digest.hexdigest() if digest else None


def _peak_rss_mb(master_pid: int) -> float:
    """Highest resident set size reached by any gunicorn worker (VmHWM), in MB."""
    peaks = []
    for task in Path(f"/proc/{master_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            status = Path(f"/proc/{child}/status").read_text()
            line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
            peaks.append(int(line.split()[1]) / 1024)
    return max(peaks, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mb", default="200,50", help="comma-separated file sizes in MB")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sizes_mb = [int(x) for x in args.sizes_mb.split(",") if x.strip()]
    database_url = os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal_bench"
    )
    work = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    env = {**os.environ, **_env(database_url, work)}
    servers: list[subprocess.Popen] = []
    token_row = None
    try:
        _setup(env)
        version, token_row, token = _import(work, sizes_mb)
        files = [a for a in version.artifacts.order_by("-size") if a.path.endswith(".safetensors")]

        portal_port, static_port = _free_port(), _free_port()
        gunicorn = [
            str(Path(sys.executable).parent / "gunicorn"),
            "portal.wsgi:application",
            f"--bind=127.0.0.1:{portal_port}",
            "--workers=3",
            "--timeout=120",
            "--log-level=warning",
        ]
        servers.append(subprocess.Popen(gunicorn, cwd=ROOT, env=env))
        servers.append(
            subprocess.Popen(
                [sys.executable, "-m", "http.server", str(static_port), "--bind", "127.0.0.1"],
                cwd=work / "media",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        portal = f"http://127.0.0.1:{portal_port}/hf"
        static = f"http://127.0.0.1:{static_port}"
        _wait_for(f"{portal}/", servers[0])
        _wait_for(f"{static}/", servers[1])

        import httpx2 as httpx

        auth = {"Authorization": f"Bearer {token}"}
        for _ in range(6):  # every worker loads the app before its memory is measured
            httpx.get(f"{portal}/{REPO}/resolve/main/config.json", headers=auth, timeout=30)
        rss_before = _peak_rss_mb(servers[0].pid)
        rows: dict[str, list[float]] = {"static": [], "portal": []}
        total_mb = sum(a.size for a in files) / 1e6
        with httpx.Client(timeout=120) as client:
            for a in files:  # warm the page cache and the connections; check the bytes once
                for url, headers in (
                    (f"{static}/{a.blob_name}", {}),
                    (f"{portal}/{REPO}/resolve/main/{a.path}", auth),
                ):
                    _, sha = _download(client, url, headers, check=True)
                    assert sha == a.sha256, (url, sha)
            for round_ in range(args.rounds):
                seconds = {"static": 0.0, "portal": 0.0}
                # File by file, the two servers back to back, alternating which goes first,
                # so load from other processes on the machine hits both alike.
                order = ("static", "portal") if round_ % 2 == 0 else ("portal", "static")
                for a in files:
                    for name in order:
                        if name == "static":
                            url, headers = f"{static}/{a.blob_name}", {}
                        else:
                            url, headers = f"{portal}/{REPO}/resolve/main/{a.path}", auth
                        seconds[name] += _download(client, url, headers)[0]
                for name, spent in seconds.items():
                    rows[name].append(total_mb / spent)

        from huggingface_hub import hf_hub_download

        client_rates = []
        for round_ in range(args.rounds):
            cache = work / f"hf-cache-{round_}"
            started = time.perf_counter()
            for a in files:
                path = hf_hub_download(
                    REPO, a.path, revision="main", endpoint=portal, token=token, cache_dir=cache
                )
                assert Path(path).stat().st_size == a.size
            client_rates.append(total_mb / (time.perf_counter() - started))
            shutil.rmtree(cache)

        static_mbs = statistics.median(rows["static"])
        portal_mbs = statistics.median(rows["portal"])
        client_mbs = statistics.median(client_rates)
        sizes = " + ".join(f"{a.size / 1e6:.0f} MB" for a in files)
        print(f"files: {sizes}; {args.rounds} rounds, median MB/s (1 MB = 10^6 bytes)")
        print(f"{'static file server (python -m http.server)':48} {static_mbs:9.1f} MB/s")
        print(f"{'portal /hf resolve (gunicorn, token, audit)':48} {portal_mbs:9.1f} MB/s")
        print(f"{'portal via hf_hub_download (HEAD+GET+cache)':48} {client_mbs:9.1f} MB/s")
        print(f"ratio portal / static: {portal_mbs / static_mbs:.2f}x")
        print(f"ratio hf_hub_download / static: {client_mbs / static_mbs:.2f}x")
        print(
            f"peak RSS of a gunicorn worker: {rss_before:.0f} MB before the downloads, "
            f"{_peak_rss_mb(servers[0].pid):.0f} MB after (largest file "
            f"{files[0].size / 1e6:.0f} MB)"
        )
    finally:
        for proc in servers:
            proc.send_signal(signal.SIGTERM)
        for proc in servers:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
        if token_row is not None:
            from governance.services.tokens import access_token_revoke

            access_token_revoke(token=token_row, actor=token_row.user)


if __name__ == "__main__":
    main()
