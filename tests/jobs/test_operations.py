"""What the operator sees: the status page and JSON, the job pages' banner, /metrics, heartbeats."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from jobs import engine
from jobs.engine import job_claim, job_execute, job_requeue_stale
from jobs.models import Job, PeriodicTaskRun, WorkerHeartbeat
from jobs.services.checks import worker_check_launch
from tests.builders.processes import broker_at, free_port, start_worker
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def _beat(hostname: str, queues: list[str], *, seen_s_ago: float = 0) -> WorkerHeartbeat:
    now = timezone.now()
    return WorkerHeartbeat.objects.create(
        hostname=hostname,
        queues=queues,
        started_at=now - timedelta(hours=1),
        last_seen=now - timedelta(seconds=seen_s_ago),
    )


def test_the_status_is_for_staff(client, alice, admin_user):
    client.force_login(alice)
    assert client.get("/jobs/status/").status_code == 403
    assert client.get("/jobs/status.json").status_code == 403
    client.force_login(admin_user)
    assert client.get("/jobs/status/").status_code in (200, 503)


def test_the_status_names_what_needs_attention(client, admin_user):
    _beat("cpu-1@node", ["default"])
    _beat("gpu-1@node", ["gpu"], seen_s_ago=600)  # silent: died without saying so
    waiting = JobFactory(queue="gpu")
    stale = JobFactory(status=Job.Status.RUNNING, lease_expires_at=timezone.now())
    client.force_login(admin_user)
    response = client.get("/jobs/status.json")
    assert response.status_code == 503
    body = response.json()
    queues = {q["queue"]: q for q in body["queues"]}
    assert queues["default"]["served"] is True
    assert queues["default"]["workers"] == ["cpu-1@node"]
    assert queues["gpu"]["served"] is False
    assert queues["gpu"]["queued_jobs"] == 1
    assert queues["gpu"]["oldest_queued_at"]
    assert [j["pk"] for j in body["stale_jobs"]] == [stale.pk]
    assert {p["task"] for p in body["periodic"] if p["late"]} >= {"jobs.requeue_stale_jobs"}
    assert body["broker"] == "ok"
    page = client.get("/jobs/status/").content.decode()
    assert "no live worker" in page
    assert f"#{stale.pk}" in page
    assert waiting.queue in page


def test_a_recent_run_of_every_periodic_task_and_live_workers_make_it_healthy(client, admin_user):
    from portal.celery import beat_schedule

    now = timezone.now()
    for entry in beat_schedule().values():
        PeriodicTaskRun.objects.create(
            name=entry["task"], last_started_at=now, last_finished_at=now, last_ok=True, runs=1
        )
    _beat("w@node", ["default", "gpu"])
    client.force_login(admin_user)
    response = client.get("/jobs/status.json")
    assert response.status_code == 200
    assert response.json()["healthy"] is True


def test_a_job_page_says_when_no_worker_serves_its_queue(client, admin_user):
    job = JobFactory(requested_by=admin_user, queue="gpu")
    client.force_login(admin_user)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "No worker is serving the &#x27;gpu&#x27; queue just now" in page
    _beat("gpu@node", ["gpu"])
    from django.core.cache import cache

    cache.clear()
    assert 'data-testid="queue-warning"' not in client.get(f"/jobs/{job.pk}/").content.decode()


def test_a_job_page_says_when_the_broker_cannot_be_reached(client, admin_user, settings):
    job = JobFactory(requested_by=admin_user)
    client.force_login(admin_user)
    with broker_at(f"redis://127.0.0.1:{free_port()}/0", settings):
        page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "The job queue cannot be reached just now" in page


def test_metrics_need_the_token_and_count_jobs_queues_and_requests(client, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    JobFactory(kind=Job.Kind.IMPORT)
    done = JobFactory(status=Job.Status.SUCCEEDED)
    Job.objects.filter(pk=done.pk).update(
        started_at=timezone.now() - timedelta(seconds=30), finished_at=timezone.now()
    )
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 404
    client.get("/accounts/login/")  # one request for the latency histogram
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})
    assert response.status_code == 200
    text = response.content.decode()
    assert 'portal_jobs{kind="import",state="queued"} 1.0' in text
    assert 'portal_jobs{kind="worker_check",state="succeeded"} 1.0' in text
    assert 'portal_queue_depth{queue="default"}' in text
    assert 'portal_queue_oldest_seconds{queue="default"}' in text
    assert 'portal_job_duration_seconds_bucket{le="60.0"} 1.0' in text
    assert 'portal_job_duration_seconds_bucket{le="10.0"} 0.0' in text
    assert "portal_job_requeues_total 0.0" in text
    assert 'portal_http_request_duration_seconds_count{method="GET",route="accounts/login/"' in text


def test_metrics_tell_worker_nodes_apart(client, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    _beat("cpu@node-a", ["default"], seen_s_ago=5)
    _beat("gpu@node-b", ["gpu"], seen_s_ago=400)
    JobFactory(status=Job.Status.RUNNING, worker="gpu@node-b")
    JobFactory(status=Job.Status.RUNNING, worker="gpu@node-b")

    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})

    text = response.content.decode()
    ages = {
        line.split('hostname="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("portal_worker_heartbeat_age_seconds{")
    }
    assert set(ages) == {"cpu@node-a", "gpu@node-b"}
    assert 4 < ages["cpu@node-a"] < 60
    assert 399 < ages["gpu@node-b"] < 460
    assert 'portal_worker_running_jobs{hostname="gpu@node-b"} 2.0' in text
    assert 'portal_worker_running_jobs{hostname="cpu@node-a"} 0.0' in text


def test_without_a_token_set_there_are_no_metrics(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_keeps_a_long_quiet_step_s_lease_alive(settings, monkeypatch):
    """A handler that reports nothing for longer than the lease is not taken over."""
    settings.JOB_LEASE_S = 2
    settings.JOB_HEARTBEAT_S = 0.3
    release = threading.Event()
    seen: list = []

    def quiet(ctx):
        release.wait(10)  # one long step: a model loading, a slow epoch
        return {"ok": True}

    monkeypatch.setitem(engine.HANDLERS, Job.Kind.WORKER_CHECK, quiet)
    job = JobFactory()

    def run() -> None:
        try:
            seen.append(job_execute(job_id=job.pk, worker="w"))
        finally:
            connection.close()

    runner = threading.Thread(target=run)
    runner.start()
    try:
        for _ in range(8):  # four times the lease, in steps
            time.sleep(1)
            assert job_requeue_stale() == []
            job.refresh_from_db()
            assert job.status == Job.Status.RUNNING
            assert job.lease_expires_at > timezone.now()
    finally:
        release.set()
        runner.join(10)
    assert seen == ["succeeded"]


def test_the_lease_is_a_setting(settings):
    settings.JOB_LEASE_S = 45
    job = JobFactory()
    before = timezone.now()
    assert job_claim(job_id=job.pk, worker="w", device="cpu") == 1
    job.refresh_from_db()
    lease = (job.lease_expires_at - before).total_seconds()
    assert 44 <= lease <= 46


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_beats_and_says_goodbye(tmp_path, settings):
    worker = start_worker("beating", tmp_path, queues="default", WORKER_HEARTBEAT_S="1")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not WorkerHeartbeat.objects.exists():
            time.sleep(0.3)
        beat = WorkerHeartbeat.objects.get()
        assert beat.hostname.startswith("beating@")
        assert beat.queues == ["default"]
        first = beat.last_seen
        time.sleep(2.5)
        beat.refresh_from_db()
        assert beat.last_seen > first
        # And it serves: a job on its queue runs.
        job = worker_check_launch(actor=None, queue="default")
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if not job.is_active:
                break
            time.sleep(0.3)
        assert job.status == Job.Status.SUCCEEDED, worker.output()
    finally:
        worker.stop()
    assert not WorkerHeartbeat.objects.exists(), worker.output()
