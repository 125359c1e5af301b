"""Fine-tunes on real Celery workers: end to end in-thread, and a worker process killed mid-run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.engine import job_requeue_stale
from jobs.models import FineTuneRun, Job
from jobs.services.finetunes import finetune_launch
from tests.builders.catalogue import base_model
from tests.builders.datasets import ticket_dataset
from tests.builders.governance import approve_reuse
from tests.builders.processes import empty_broker
from zoo.models import ModelVersion

pytestmark = [pytest.mark.integration]

STEP_STAGE = re.compile(r"^epoch \d+/\d+, step \d+/\d+, loss \d+\.\d+$")


def _wait(run: FineTuneRun, predicate, *, timeout: float = 180.0, log: Path | None = None):
    """Poll the run and its job until ``predicate(run)``; returns every stage seen."""
    stages: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        run.job.refresh_from_db()
        if run.job.stage and (not stages or stages[-1] != run.job.stage):
            stages.append(run.job.stage)
        if predicate(run):
            return stages
        time.sleep(0.02)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(
        f"fine-tune {run.pk} is {run.job.status} (attempt {run.job.attempts}) at "
        f"{run.job.stage!r} after {timeout}s\njob log:\n{run.job.log[-2000:]}\nworker:\n{tail}"
    )


@pytest.fixture
def people(transactional_db, alice, sam):
    """alice and sam, with committed rows: the worker reads through its own connection."""
    return alice, sam


@pytest.fixture
def approved_base(people, tmp_path):
    alice, sam = people
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    return base


def test_a_worker_fine_tunes_end_to_end(celery_worker, people, approved_base):
    alice, _ = people
    data = ticket_dataset(alice, n_per_class=20)
    with transaction.atomic():
        run = finetune_launch(
            actor=alice,
            base_version=approved_base,
            dataset_version=data,
            strategy="partial",
            config={"epochs": 3, "batch_size": 4, "patience": 0, "unfreeze_layers": 1},
        )

    stages = _wait(run, lambda r: not r.job.is_active)

    job = run.job
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 1
    assert job.device == "cpu"
    assert any(STEP_STAGE.match(stage) for stage in stages), stages
    assert [e["epoch"] for e in run.curves["epochs"]] == [1, 2, 3]
    assert run.curves["steps"][-1][0] == run.training["steps"]
    version = run.output_version
    assert version.kind == ModelVersion.Kind.FINETUNED
    assert version.parent == approved_base
    assert version.model.status == "draft"
    assert run.metrics["n"] == run.training["n_test"]


def test_a_cancelled_fine_tune_stops_and_keeps_nothing(celery_worker, people, approved_base):
    from celery.worker import state as worker_state
    from django.core.files.storage import default_storage

    from jobs.engine import job_cancel

    alice, _ = people
    data = ticket_dataset(alice, n_per_class=60)
    with transaction.atomic():
        run = finetune_launch(
            actor=alice,
            base_version=approved_base,
            dataset_version=data,
            strategy="full",
            config={"epochs": 4, "batch_size": 4, "patience": 0},
        )
    _wait(run, lambda r: bool(r.last_checkpoint))

    job_cancel(job=run.job, actor=alice)
    deadline = time.monotonic() + 60
    while worker_state.active_requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not worker_state.active_requests

    run.refresh_from_db()
    run.job.refresh_from_db()
    assert run.job.status == Job.Status.CANCELLED
    assert run.output_version is None
    assert not ModelVersion.objects.filter(parent=approved_base).exists()
    assert len(run.curves["epochs"]) < 4
    folder = f"checkpoints/finetune-{run.pk}"
    assert not default_storage.exists(folder) or default_storage.listdir(folder)[1] == []


def _database_url() -> str:
    """The test database, as a DATABASE_URL another process can use."""
    db = settings.DATABASES["default"]
    auth = quote(db["USER"] or "")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"])
    host = db["HOST"] or "127.0.0.1"
    return f"postgres://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def _start_worker(name: str, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """A real worker process on the gpu and default queues, in its own process group."""
    log = tmp_path / f"{name}.log"
    env = {
        **os.environ,
        "DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "MODEL_CACHE_DIR": str(tmp_path / f"{name}-model-cache"),
        "IMPORT_STAGING_DIR": str(settings.IMPORT_STAGING_DIR),
        "PORTAL_VAR_DIR": str(tmp_path / f"{name}-var"),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "-Q",
            "gpu,default",
            "--pool",
            "solo",
            "-c",
            "1",
            "-n",
            f"{name}@%h",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "INFO",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, log


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_a_killed_worker_leaves_the_job_to_another_that_resumes_from_the_checkpoint(
    people, approved_base, tmp_path
):
    alice, _ = people
    empty_broker()
    data = ticket_dataset(alice, n_per_class=60)
    with transaction.atomic():
        run = finetune_launch(
            actor=alice,
            base_version=approved_base,
            dataset_version=data,
            strategy="full",
            config={"epochs": 4, "batch_size": 4, "patience": 0},
        )
    first, first_log = _start_worker("first", tmp_path)
    try:
        _wait(run, lambda r: bool(r.last_checkpoint), log=first_log)
        # The whole worker dies at once: no cleanup, no acknowledgement, no last report.
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        _stop(first)
    run.refresh_from_db()
    run.job.refresh_from_db()
    killed_at = run.last_checkpoint["epoch"]
    assert run.job.status == Job.Status.RUNNING
    assert 1 <= killed_at < 4, "the job finished before the worker could be killed"

    # Ten minutes later the lease has run out (the test moves the clock on the row),
    # and the beat task that watches leases puts the job back on its queue.
    Job.objects.filter(pk=run.job_id).update(lease_expires_at=timezone.now() - timedelta(1))
    assert job_requeue_stale() == [run.job_id]
    second, second_log = _start_worker("second", tmp_path)
    try:
        _wait(run, lambda r: not r.job.is_active, log=second_log)
    finally:
        _stop(second)

    job = run.job
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 2
    resumed = re.search(r"Resuming from the checkpoint of epoch (\d+)", job.log)
    assert resumed, job.log
    assert int(resumed.group(1)) == killed_at
    assert [e["epoch"] for e in run.curves["epochs"]] == [1, 2, 3, 4]
    assert ModelVersion.objects.filter(parent=approved_base).count() == 1
    assert ModelVersion.objects.filter(finetune_source=run).count() == 1
    assert run.training["resumed_from_epoch"] == int(resumed.group(1))
