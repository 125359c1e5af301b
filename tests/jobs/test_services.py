from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.engine import job_cancel, job_claim, job_execute, job_fail, job_report, job_succeed
from jobs.models import Job
from portal.errors import Conflict
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def test_claim_moves_a_queued_job_to_running_once():
    job = JobFactory()

    first = job_claim(job_id=job.pk, worker="w1", device="cpu")
    second = job_claim(job_id=job.pk, worker="w2", device="cpu")

    job.refresh_from_db()
    assert first == 1
    assert second is None
    assert job.status == Job.Status.RUNNING
    assert job.worker == "w1"
    assert job.started_at is not None
    assert job.lease_expires_at > timezone.now()


def test_an_expired_lease_lets_another_worker_take_over_and_silences_the_old_attempt():
    job = JobFactory()
    old = job_claim(job_id=job.pk, worker="w1", device="cpu")
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    new = job_claim(job_id=job.pk, worker="w2", device="cpu")

    assert new == old + 1
    assert job_report(job_id=job.pk, attempt=old, progress=0.9) is False
    assert job_succeed(job_id=job.pk, attempt=old, result={"from": "old"}) is False
    assert job_succeed(job_id=job.pk, attempt=new, result={"from": "new"}) is True
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.result == {"from": "new"}
    assert job.worker == "w2"


def test_a_job_out_of_attempts_fails_instead_of_running_again():
    job = JobFactory(max_attempts=1)
    job_claim(job_id=job.pk, worker="w1", device="cpu")
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert job_claim(job_id=job.pk, worker="w2", device="cpu") is None

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "every attempt" in job.error


def test_report_clamps_progress_and_appends_log_lines():
    job = JobFactory()
    attempt = job_claim(job_id=job.pk, worker="w1", device="cpu")

    job_report(job_id=job.pk, attempt=attempt, progress=1.7, stage="Embedding", log_line="one")
    job_report(job_id=job.pk, attempt=attempt, log_line="two")

    job.refresh_from_db()
    assert job.progress == 1.0
    assert job.stage == "Embedding"
    assert job.log.splitlines()[0].endswith(" one")
    assert job.log.splitlines()[1].endswith(" two")


def test_cancel_stops_a_queued_job_from_starting_and_refuses_twice(alice):
    job = JobFactory(requested_by=alice)

    job_cancel(job=job, actor=alice)

    assert job.status == Job.Status.CANCELLED
    assert job_claim(job_id=job.pk, worker="w1", device="cpu") is None
    with pytest.raises(Conflict):
        job_cancel(job=job, actor=alice)


def test_cancel_of_a_running_job_silences_its_worker(alice):
    job = JobFactory(requested_by=alice)
    attempt = job_claim(job_id=job.pk, worker="w1", device="cpu")

    job_cancel(job=job, actor=alice)

    assert job_report(job_id=job.pk, attempt=attempt, progress=0.5) is False
    assert job_fail(job_id=job.pk, attempt=attempt, error="late") is False
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert job.error == ""


def test_execute_runs_the_handler_and_records_success():
    job = JobFactory()

    outcome = job_execute(job_id=job.pk, worker="w1")

    job.refresh_from_db()
    assert outcome == "succeeded"
    assert job.status == Job.Status.SUCCEEDED
    assert job.device == "cpu"
    assert job.result["python"].startswith("3.")
    assert "torch" in job.log


def test_execute_records_a_handler_refusal_as_failed():
    job = JobFactory(params={"require_gpu": True})

    outcome = job_execute(job_id=job.pk, worker="w1")

    job.refresh_from_db()
    assert outcome == "failed"
    assert job.status == Job.Status.FAILED
    assert "no CUDA device" in job.error
    assert job.finished_at is not None


def test_execute_tolerates_a_vanished_job():
    assert job_execute(job_id=987654, worker="w1") == "missing"
