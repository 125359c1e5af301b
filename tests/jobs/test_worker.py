"""A real Celery worker consuming from Redis runs jobs through their whole life."""

from __future__ import annotations

import threading
import time

import pytest
from celery.worker import state as worker_state
from django.db import transaction

from jobs import engine
from jobs.engine import job_create
from jobs.models import Job
from jobs.workers.checks import worker_check

pytestmark = [pytest.mark.integration]


def _wait_for(job: Job, statuses: set[str], timeout: float = 60.0) -> list[str]:
    """Poll the row and return every status it was seen in, until one in ``statuses``."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if not seen or seen[-1] != job.status:
            seen.append(job.status)
        if job.status in statuses:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"job {job.pk} stayed {job.status} for {timeout}s (seen {seen})")


@pytest.fixture
def gated_worker_check(monkeypatch):
    """The real worker-check handler, held at its start until the test releases it.

    Lets the test see the row in ``running`` however fast the work itself is.
    """
    release = threading.Event()

    def handler(ctx):
        ctx.progress(0.05, stage="Waiting for the test")
        assert release.wait(30), "the test never released the job"
        return worker_check(ctx)

    monkeypatch.setitem(engine.HANDLERS, Job.Kind.WORKER_CHECK, handler)
    return release


def test_worker_moves_a_job_from_queued_through_running_to_succeeded(
    celery_worker, gated_worker_check, alice
):
    with transaction.atomic():
        job = job_create(kind=Job.Kind.WORKER_CHECK, requested_by=alice, params={})
    assert job.status == Job.Status.QUEUED

    seen = _wait_for(job, {Job.Status.RUNNING})
    assert job.stage == "Waiting for the test"
    assert job.worker
    gated_worker_check.set()
    seen += _wait_for(job, {Job.Status.SUCCEEDED, Job.Status.FAILED})

    assert seen[0] == Job.Status.QUEUED
    assert seen[-1] == Job.Status.SUCCEEDED, job.error
    assert job.celery_task_id
    assert job.attempts == 1
    assert job.device == "cpu"
    assert job.result["torch"]
    assert job.progress == 1.0
    assert job.finished_at >= job.started_at


def test_worker_records_a_failing_job_with_its_error(celery_worker, alice):
    with transaction.atomic():
        job = job_create(
            kind=Job.Kind.WORKER_CHECK, requested_by=alice, params={"require_gpu": True}
        )

    seen = _wait_for(job, {Job.Status.SUCCEEDED, Job.Status.FAILED})

    assert seen[-1] == Job.Status.FAILED
    assert "no CUDA device" in job.error
    assert job.finished_at is not None


def test_worker_uses_the_queue_the_job_names(celery_worker, alice):
    with transaction.atomic():
        job = job_create(kind=Job.Kind.WORKER_CHECK, requested_by=alice, queue="gpu")

    _wait_for(job, {Job.Status.SUCCEEDED, Job.Status.FAILED})

    assert job.queue == "gpu"
    assert job.status == Job.Status.SUCCEEDED


def test_a_job_cancelled_while_running_stays_cancelled(celery_worker, gated_worker_check, alice):
    with transaction.atomic():
        job = job_create(kind=Job.Kind.WORKER_CHECK, requested_by=alice)
    _wait_for(job, {Job.Status.RUNNING})

    engine.job_cancel(job=job, actor=alice)
    gated_worker_check.set()
    # Wait for the worker to finish the task, i.e. to have tried writing its result.
    deadline = time.monotonic() + 30
    while worker_state.active_requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not worker_state.active_requests

    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert job.result == {}
