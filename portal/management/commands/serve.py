"""Run the web server and a Celery worker (with beat inside it) together, for ``make run``.

Both children get their own process group so that Ctrl-C reaches only this
command, which then stops them in order and waits for them: no worker is left
running in the background after the terminal closes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand

STOP_GRACE_S = 20
READY_WAIT_S = 120


class Command(BaseCommand):
    help = "Serve the portal and run a Celery worker in this terminal until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--queues", default="default,gpu")

    def handle(self, *args, host: str, port: int, queues: str, **options) -> None:
        python = sys.executable
        manage = str(settings.BASE_DIR / "manage.py")
        worker_cmd = [
            python, "-m", "celery", "-A", "portal", "worker",
            "-Q", queues, "--concurrency", "1", "--loglevel", "INFO",
            "--hostname", f"embedded@{host}:{port}",
            # Beat inside the worker: expiry, requeue, reconcile and sweep run here too.
            "--beat", "--schedule", str(settings.VAR_DIR / "celerybeat-schedule"),
        ]  # fmt: skip
        web_cmd = [python, manage, "runserver", "--noreload", f"{host}:{port}"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        children: dict[str, subprocess.Popen] = {}
        stopping = False
        exit_code = 0

        def request_stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        try:
            children["worker"] = subprocess.Popen(worker_cmd, env=env, start_new_session=True)  # noqa: S603
            children["web"] = subprocess.Popen(web_cmd, env=env, start_new_session=True)  # noqa: S603
            announced = False
            started = time.monotonic()
            while not stopping:
                if not announced and (
                    self._ready(host, port) or time.monotonic() - started > READY_WAIT_S
                ):
                    # Printed once both are up, so it is the last thing on the screen.
                    self._announce(host, port, queues)
                    announced = True
                for name, proc in children.items():
                    if proc.poll() is not None:
                        self.stderr.write(
                            f"The {name} process exited ({proc.returncode}); stopping."
                        )
                        exit_code = proc.returncode or 1
                        stopping = True
                        break
                time.sleep(0.3)
        finally:
            self._stop(children)
        if exit_code:
            sys.exit(exit_code)
        self.stdout.write("Stopped web server and worker.")

    def _ready(self, host: str, port: int) -> bool:
        """The web server answers and the worker has written its first heartbeat."""
        from jobs.models import WorkerHeartbeat

        try:
            with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=1) as answer:
                if answer.status != 200:
                    return False
        except OSError:
            return False
        return WorkerHeartbeat.objects.filter(hostname__startswith="embedded@").exists()

    def _announce(self, host: str, port: int, queues: str) -> None:
        from django.contrib.auth import get_user_model

        from portal.management.commands.seed_demo import DEFAULT_PASSWORD, DEMO_USERS

        self.stdout.write(
            "\n"
            + self.style.SUCCESS(f"Portal on http://{host}:{port}/ with a worker on {queues}.")
            + " Press Ctrl-C to stop both."
        )
        names = [u[0] for u in DEMO_USERS]
        present = set(
            get_user_model().objects.filter(username__in=names).values_list("username", flat=True)
        )
        if present:
            password = os.environ.get("DEMO_PASSWORD", DEFAULT_PASSWORD)
            self.stdout.write(
                f"Sign in as {', '.join(n for n in names if n in present)} (password {password})."
            )

    def _stop(self, children: dict[str, subprocess.Popen]) -> None:
        # Web first so no new jobs are queued, then a warm shutdown of the worker.
        for name in ("web", "worker"):
            proc = children.get(name)
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
