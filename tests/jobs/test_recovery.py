"""A killed worker's job is running again on another worker within two minutes, at the defaults.

Real processes throughout: the worker holding the job is SIGKILLed (no cleanup,
no acknowledgement); a second worker and celery beat run with the default
lease, heartbeat and requeue interval. ``bench/recovery.py`` repeats this ten
times and prints the median and the worst case.
"""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.db import transaction

from jobs.engine import job_cancel
from jobs.models import Job
from jobs.services.checks import worker_check_launch
from tests.builders.processes import empty_broker, start_beat, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _wait(job: Job, predicate, *, timeout: float, processes) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        job.refresh_from_db()
        if predicate(job):
            return time.monotonic() - began
        time.sleep(0.2)
    logs = "\n".join(f"--- {p.name}\n{p.output()}" for p in processes)
    raise AssertionError(f"job {job.pk} is {job.status} (attempt {job.attempts})\n{logs}")


def test_a_killed_workers_job_runs_again_within_two_minutes(tmp_path):
    assert settings.JOB_LEASE_S == 60  # the defaults are what is measured
    empty_broker()
    with transaction.atomic():
        job = worker_check_launch(actor=None, queue="default", hold_s=600)
    first = start_worker("first", tmp_path, queues="default")
    processes = [first]
    try:
        _wait(job, lambda j: j.status == Job.Status.RUNNING, timeout=60, processes=processes)
        second = start_worker("second", tmp_path, queues="default")
        beat = start_beat(tmp_path)
        processes += [second, beat]
        first.kill()
        killed = time.monotonic()
        _wait(
            job,
            lambda j: j.status == Job.Status.RUNNING and j.attempts == 2,
            timeout=150,
            processes=processes,
        )
        recovered = time.monotonic() - killed
        assert job.worker.startswith("second@"), job.worker
        job_cancel(job=job, actor=None)  # the drill is over
        _wait(job, lambda j: not j.is_active, timeout=30, processes=processes)
    finally:
        for process in processes:
            process.stop()
    print(f"\nkilled -> running again on another worker in {recovered:.1f} s")
    assert recovered < 120, recovered
