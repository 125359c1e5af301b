"""The embedded default that ``make run`` uses: SQLite plus the on-disk broker.

Boots ``manage.py serve`` (web server, worker and beat inside it) as a
subprocess with no database or broker server, runs a job through it, sees every
periodic task run, and stops it with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from portal.celery import beat_schedule

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def embedded_env(tmp_path):
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CELERY_"))}
    return {
        **keep,
        "DEBUG": "1",
        # Nothing under var/ exists yet, as in a fresh checkout.
        "PORTAL_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/var/portal.sqlite3",
        "CELERY_BROKER_URL": "filesystem://",
        "PYTHONUNBUFFERED": "1",
        # Beat runs inside the embedded worker; short intervals so the test sees it tick.
        "EXPIRE_EVERY_S": "1",
        "REQUEUE_EVERY_S": "1",
        "RECONCILE_EVERY_S": "1",
        "SWEEP_EVERY_S": "2",
        "AUDIT_ANCHOR_EVERY_S": "1",
        "REMIND_EVERY_S": "1",
        "NOTIFY_EVERY_S": "1",
    }


def _manage(env, *args, timeout=180):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _periodic_tasks_that_ran(env, timeout: float = 60) -> list[str]:
    """The periodic tasks with a successful run recorded, once all of them have one."""
    script = (
        "from jobs.models import PeriodicTaskRun as P; "
        "print(','.join(sorted(P.objects.filter(last_ok=True).values_list('name', flat=True))))"
    )
    deadline = time.monotonic() + timeout
    names: list[str] = []
    while time.monotonic() < deadline:
        done = _manage(env, "shell", "-c", script)
        last = done.stdout.strip().splitlines()[-1:] or [""]  # after shell's own notice
        names = [n for n in last[0].split(",") if n]
        if len(names) == len(beat_schedule()):
            break
        time.sleep(1)
    return names


def test_embedded_portal_serves_runs_a_job_and_stops_on_ctrl_c(embedded_env, tmp_path):
    migrated = _manage(embedded_env, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=embedded_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        health = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and health is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    health = json.load(r)
            except OSError:
                time.sleep(0.5)
        assert health == {
            "status": "ok",
            "node": socket.gethostname(),
            "database": "ok",
            "broker": "ok",
            "storage": "local",
        }

        checked = _manage(embedded_env, "check_workers", "--timeout", "90")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "answered on cpu" in checked.stdout
        assert (tmp_path / "var" / "portal.sqlite3").exists()
        assert any((tmp_path / "var" / "broker").iterdir())
        assert _periodic_tasks_that_ran(embedded_env) == [
            "governance.anchor_audit",
            "governance.expire_reuse_requests",
            "governance.resend_notifications",
            "governance.send_reminders",
            "jobs.reconcile_queued_jobs",
            "jobs.requeue_stale_jobs",
            "jobs.sweep_storage",
            "zoo.lapse_scan_waivers",
        ]

        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=40) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert "Stopped web server and worker." in output
    # The address comes once both are up, after the worker's banner and start-up lines.
    announced = output.index(f"Portal on http://127.0.0.1:{port}/")
    assert output.index(f"embedded@127.0.0.1:{port} ready.") < announced
    leftovers = subprocess.run(
        ["pgrep", "-f", f"embedded@127.0.0.1:{port}"], capture_output=True, check=False
    )
    assert leftovers.stdout == b"", "the worker outlived the serve command"
