"""Queue a worker-check job and wait for a worker to answer it.

Exit status 0 when a worker on the queue ran it (and had a GPU, with
--require-gpu); 1 when it failed or nobody picked it up in time.
"""

from __future__ import annotations

import contextlib
import time

from django.core.management.base import BaseCommand, CommandError

from jobs.engine import job_cancel
from jobs.models import Job
from jobs.services.checks import QUEUES, worker_check_launch
from portal.errors import Conflict


class Command(BaseCommand):
    help = "Check that a worker serves a queue, and report its Python, torch and device."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--queue", default="default", choices=QUEUES)
        parser.add_argument("--require-gpu", action="store_true")
        parser.add_argument("--timeout", type=float, default=60.0, help="Seconds to wait.")
        parser.add_argument(
            "--hold",
            type=int,
            default=0,
            help="Seconds the worker keeps the job: a failover drill.",
        )

    def handle(
        self, *args, queue: str, require_gpu: bool, timeout: float, hold: int, **options
    ) -> None:
        job = worker_check_launch(actor=None, queue=queue, require_gpu=require_gpu, hold_s=hold)
        self.stdout.write(
            f"Queued worker check #{job.pk} on '{queue}'; waiting up to {timeout:g}s."
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if not job.is_active:
                break
            time.sleep(0.25)
        if job.status == Job.Status.SUCCEEDED:
            self.stdout.write(self.style.SUCCESS(f"Worker {job.worker} answered on {job.device}."))
            for key, value in job.result.items():
                self.stdout.write(f"  {key}: {value}")
            return
        if job.is_active:
            # Nobody answered: withdraw the job so a worker that starts later does not run it.
            with contextlib.suppress(Conflict):
                job_cancel(job=job, actor=None)
            raise CommandError(
                f"No worker finished job #{job.pk} within {timeout:g}s ({job.status})."
            )
        raise CommandError(f"Worker check #{job.pk} {job.status}: {job.error}")
