"""Real processes for the fault tests: Celery workers, celery beat, a Redis server of their own.

Everything runs in its own process group so a test can SIGKILL a worker
outright, and ``stop`` never leaves one behind. The fault tests that flush or
restart Redis start their own server on a spare port: the machine's shared
Redis is never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from kombu import pools as kombu_pools

from portal.celery import app as celery_app


def empty_broker() -> None:
    """Drop every message on the broker, including those an earlier worker reserved.

    ``purge()`` empties the queues but not the messages a worker had taken and
    not acknowledged: kombu keeps them in ``unacked`` and hands them to the next
    worker. Left over from an earlier run, whose test database numbered its jobs
    from 1 too, they would run this run's jobs at moments no test chose.
    """
    import redis

    celery_app.control.purge()
    redis.Redis.from_url(celery_app.conf.broker_url).delete(
        "unacked", "unacked_index", "unacked_mutex"
    )


def database_url() -> str:
    """The test database, as a DATABASE_URL another process can use."""
    db = settings.DATABASES["default"]
    auth = quote(db["USER"] or "")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"])
    host = db["HOST"] or "127.0.0.1"
    return f"postgres://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def portal_env(name: str, tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The environment a portal process of this test runs with (test database, test storage)."""
    return {
        **os.environ,
        "DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "MODEL_CACHE_DIR": str(tmp_path / f"{name}-model-cache"),
        "IMPORT_STAGING_DIR": str(settings.IMPORT_STAGING_DIR),
        "WORK_DIR": str(settings.WORK_DIR),
        "AUDIT_ANCHOR_FILE": str(settings.AUDIT_ANCHOR_FILE),
        "PORTAL_VAR_DIR": str(tmp_path / f"{name}-var"),
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }


@dataclass
class Process:
    """A child process and the file its output goes to."""

    name: str
    popen: subprocess.Popen
    log: Path

    def output(self, tail: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole group: no cleanup, no acknowledgement, no last report."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(30)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def _spawn(name: str, args: list[str], tmp_path: Path, env: dict[str, str]) -> Process:
    log = tmp_path / f"{name}.log"
    popen = subprocess.Popen(
        args,
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Process(name, popen, log)


def start_worker(name: str, tmp_path: Path, *, queues: str = "gpu,default", **env: str) -> Process:
    """A real worker process consuming ``queues``."""
    args = [
        sys.executable, "-m", "celery", "-A", "portal", "worker",
        "-Q", queues, "--pool", "solo", "-c", "1", "-n", f"{name}@%h",
        "--without-heartbeat", "--without-mingle", "--without-gossip", "--loglevel", "INFO",
    ]  # fmt: skip
    return _spawn(name, args, tmp_path, portal_env(name, tmp_path, **env))


def start_beat(tmp_path: Path, **env: str) -> Process:
    """A real ``celery beat`` process, its schedule file in the test's folder."""
    args = [
        sys.executable, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO",
        "--schedule", str(tmp_path / "celerybeat-schedule"),
    ]  # fmt: skip
    return _spawn("beat", args, tmp_path, portal_env("beat", tmp_path, **env))


class RedisServer:
    """A throwaway redis-server on a spare port, for tests that flush or restart the broker."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.folder = tmp_path / "redis"
        self.folder.mkdir(exist_ok=True)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed for the broker fault tests"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=(self.folder / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def flushall(self) -> None:
        import redis

        redis.Redis(port=self.port).flushall()


@contextmanager
def broker_at(url: str, settings):
    """Point this process's Celery app (and the settings other code reads) at ``url``."""
    keys = ("broker_url", "broker_read_url", "broker_write_url")
    before = {key: celery_app.conf[key] for key in keys}
    settings.CELERY_BROKER_URL = url
    celery_app.conf.update(dict.fromkeys(keys, url))
    _drop_pooled_connections()
    try:
        yield
    finally:
        celery_app.conf.update(before)
        _drop_pooled_connections()


def _drop_pooled_connections() -> None:
    """The app and kombu keep producers connected to the broker first used; forget them."""
    kombu_pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
