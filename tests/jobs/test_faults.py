"""Keeping promises under faults: beat's tasks run, lost messages are re-sent, the broker down.

The flush and restart cases use a Redis server of their own on a spare port; the
machine's shared Redis is never flushed. Workers and beat are real processes.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from jobs import tasks  # noqa: F401 (registers the periodic tasks on the app)
from jobs.engine import job_reconcile
from jobs.models import Job, PeriodicTaskRun
from jobs.services.checks import worker_check_launch
from portal import broker
from portal.celery import app as celery_app
from portal.celery import beat_schedule
from tests.builders.processes import (
    RedisServer,
    broker_at,
    empty_broker,
    free_port,
    start_beat,
    start_worker,
)

pytestmark = [pytest.mark.integration]


def test_every_periodic_task_can_be_sent_with_its_own_time_limits():
    for entry in beat_schedule().values():
        task = celery_app.tasks[entry["task"]]
        assert task.soft_time_limit < task.time_limit, entry["task"]


@pytest.mark.django_db(transaction=True)
def test_a_real_beat_sends_every_periodic_task_and_a_worker_runs_it(tmp_path):
    fast = {
        "EXPIRE_EVERY_S": "2",
        "REQUEUE_EVERY_S": "1",
        "RECONCILE_EVERY_S": "1",
        "SWEEP_EVERY_S": "2",
        "AUDIT_ANCHOR_EVERY_S": "2",
        "REMIND_EVERY_S": "2",
        "NOTIFY_EVERY_S": "2",
    }
    empty_broker()
    worker = start_worker("periodic", tmp_path, queues="default", **fast)
    beat = start_beat(tmp_path, **fast)
    names = {entry["task"] for entry in beat_schedule().values()}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            done = set(
                PeriodicTaskRun.objects.filter(runs__gte=1, last_ok=True).values_list(
                    "name", flat=True
                )
            )
            if done >= names:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(
                f"ran: {sorted(done)} of {sorted(names)}\n"
                f"beat:\n{beat.output()}\nworker:\n{worker.output()}"
            )
    finally:
        beat.stop()
        worker.stop()
    for run in PeriodicTaskRun.objects.all():
        assert run.last_error == "", (run.name, run.last_error)


def _queue_checks(n: int) -> list[int]:
    ids = []
    for _ in range(n):
        with transaction.atomic():
            ids.append(worker_check_launch(actor=None, queue="default").pk)
    return ids


def _wait_until_done(ids: list[int], *, timeout: float, worker) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        left = Job.objects.filter(pk__in=ids).exclude(status=Job.Status.SUCCEEDED).count()
        if not left:
            return time.monotonic() - began
        time.sleep(0.5)
    states = dict(Job.objects.filter(pk__in=ids).values_list("pk", "status"))
    raise AssertionError(f"not all done after {timeout}s: {states}\n{worker.output()}")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fault", ["flushall", "restart"])
def test_fifty_queued_jobs_whose_messages_the_broker_lost_all_run(fault, tmp_path, settings):
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        with broker_at(redis.url, settings):
            ids = _queue_checks(50)
            sent = {j.celery_task_id for j in Job.objects.filter(pk__in=ids)}
            assert broker.pending_task_ids(["default"]) >= sent
            if fault == "flushall":
                redis.flushall()
            else:  # no persistence: a restart loses every message
                redis.stop()
                redis.start()
            assert not broker.pending_task_ids(["default"])
            # The broker is back: a worker and beat (with the default intervals) start.
            worker = start_worker("after-" + fault, tmp_path, CELERY_BROKER_URL=redis.url)
            beat = start_beat(tmp_path, CELERY_BROKER_URL=redis.url)
            try:
                seconds = _wait_until_done(ids, timeout=120, worker=worker)
            finally:
                beat.stop()
                worker.stop()
    finally:
        redis.stop()
    print(f"\n50/50 jobs done {seconds:.1f} s after the broker came back ({fault})")
    assert Job.objects.filter(pk__in=ids, status=Job.Status.SUCCEEDED).count() == 50
    # Each ran once: the re-sent message and any stray duplicate never made a second attempt.
    assert set(Job.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == {1}


@pytest.mark.django_db
def test_with_the_broker_down_the_api_answers_503_and_starts_nothing(settings, admin_user):
    with broker_at(f"redis://127.0.0.1:{free_port()}/0", settings):
        api = APIClient()
        api.force_authenticate(admin_user)
        response = api.post("/api/jobs/worker-check/", {"queue": "default"}, format="json")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "unavailable"
    assert "cannot be reached" in body["detail"]
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_with_the_broker_down_the_form_says_so_and_starts_nothing(settings, client, admin_user):
    client.force_login(admin_user)
    with broker_at(f"redis://127.0.0.1:{free_port()}/0", settings):
        response = client.post("/jobs/worker-check/", {"queue": "default"}, follow=True)
    assert response.status_code == 200
    assert "The job queue cannot be reached just now" in response.content.decode()
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_send_that_fails_after_commit_is_made_good_by_the_reconciler(monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("the broker went away between the check and the send")

    with monkeypatch.context() as patch:
        patch.setattr(celery_app, "send_task", broken)
        job = worker_check_launch(actor=None, queue="default")
    job.refresh_from_db()
    assert (job.status, job.enqueued_at, job.sends) == (Job.Status.QUEUED, None, 0)

    assert job_reconcile() == []  # within the grace period nothing is sent
    later = job.created_at + timedelta(minutes=5)
    assert job_reconcile(now=later) == [job.pk]
    job.refresh_from_db()
    assert job.sends == 1
    assert job.celery_task_id in broker.pending_task_ids(["default"])
    # Its message is on the broker now: the next round leaves it alone.
    assert job_reconcile(now=later + timedelta(minutes=5)) == []
    empty_broker()


@pytest.mark.django_db(transaction=True)
def test_beat_reminds_holders_and_owners_through_a_real_worker(tmp_path, people):
    """Reminders come from beat's schedule alone: an approval 13 days from expiry and a
    published version whose re-review is a week overdue."""
    from governance.models import Notification, Rereview
    from governance.services import rereview as gov_rereview
    from tests.builders.governance import approve
    from tests.factories import ModelVersionFactory

    held = approve(people["alice"], ModelVersionFactory(), reviewer=people["lena"], days=13)
    owned = ModelVersionFactory(model__owner=people["sam"])
    gov_rereview.rereviews_remind()
    Rereview.objects.filter(version=owned).update(due_at=held.created_at - timedelta(days=7))
    Notification.objects.all().delete()
    fast = {"REMIND_EVERY_S": "1"}
    empty_broker()
    worker = start_worker("reminders", tmp_path, queues="default", **fast)
    beat = start_beat(tmp_path, **fast)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            kinds = set(Notification.objects.values_list("user__username", "kind"))
            if {("alice", "expiring"), ("sam", "rereview_due")} <= kinds:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(
                f"told: {kinds}\nbeat:\n{beat.output()}\nworker:\n{worker.output()}"
            )
    finally:
        beat.stop()
        worker.stop()
    # however often beat ran the task meanwhile, each reminder landed once
    assert Notification.objects.filter(user=people["alice"], kind="expiring").count() == 1
    overdue = Notification.objects.get(user=people["sam"], kind="rereview_due")
    assert "overdue" in overdue.title
