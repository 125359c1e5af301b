"""Celery tasks: thin wrappers that take ids and call services; and the workers' heartbeat.

The periodic tasks (sent by ``celery beat``, schedule in portal/celery.py) each
record their last run (``PeriodicTaskRun``), which is how the status page
knows beat is ticking and a worker is running them.
"""

from __future__ import annotations

import functools
import logging
import threading

from celery import shared_task, signals
from django.conf import settings
from django.db import connection
from django.utils import timezone

from governance.anchors import anchor_write
from governance.services.notify import (
    EMAIL_TASK,
    WEBHOOK_TASK,
    notification_email_send,
    notifications_resend,
)
from governance.services.rereview import rereviews_remind
from governance.services.reuse import reuse_approvals_remind, reuse_requests_expire
from governance.services.webhooks import webhook_delivery_attempt
from jobs.engine import RUN_JOB_TASK, job_execute, job_reconcile, job_requeue_stale
from jobs.ml.device import describe_device
from jobs.services.operations import periodic_task_run, worker_gone, worker_heartbeat
from jobs.services.sweep import storage_sweep
from zoo.services.waivers import scan_waivers_lapse

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name=RUN_JOB_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=settings.JOB_TIME_LIMIT_S,
    soft_time_limit=settings.JOB_TIME_LIMIT_S - 60,
)
def run_job(self, job_id: int) -> str:
    return job_execute(job_id=job_id, worker=self.request.hostname)


def periodic(name: str, *, time_limit: int = 300):
    """A beat task that records its run; both time limits set, as Celery requires of a task
    whose hard limit is below the global soft one."""

    def decorate(func):
        @shared_task(
            name=name, acks_late=True, time_limit=time_limit, soft_time_limit=time_limit - 30
        )
        @functools.wraps(func)
        def task():
            with periodic_task_run(name) as outcome:
                outcome["result"] = func()
            return outcome["result"]

        return task

    return decorate


@periodic("governance.expire_reuse_requests", time_limit=600)
def expire_reuse_requests() -> dict:
    return {"expired": reuse_requests_expire()}


@periodic("governance.send_reminders", time_limit=600)
def send_reminders() -> dict:
    """Approvals expiring in 14 days and in 1 day; re-reviews due soon or overdue."""
    return {
        "expiring": reuse_approvals_remind(),
        **rereviews_remind(),
    }


@periodic("zoo.lapse_scan_waivers", time_limit=600)
def lapse_scan_waivers() -> dict:
    """Block again the versions whose scan waivers expired (see zoo.services.waivers)."""
    return {"lapsed": scan_waivers_lapse()}


@periodic("governance.anchor_audit")
def anchor_audit() -> dict:
    anchor = anchor_write()
    return {"event_id": anchor.event_id if anchor else None}


@periodic("jobs.requeue_stale_jobs")
def requeue_stale_jobs() -> dict:
    """Give jobs whose worker died back to the queue (see engine.job_requeue_stale)."""
    return {"requeued": job_requeue_stale()}


@periodic("jobs.reconcile_queued_jobs")
def reconcile_queued_jobs() -> dict:
    """Send again the queued jobs whose message the broker lost (see engine.job_reconcile)."""
    return {"resent": job_reconcile()}


@periodic("jobs.sweep_storage", time_limit=3600)
def sweep_storage() -> dict:
    """Remove what dead processes left (see services.sweep.storage_sweep)."""
    return storage_sweep()


# --- the worker's heartbeat ----------------------------------------------------------


class _WorkerHeartbeat(threading.Thread):
    """Writes this worker's row every WORKER_HEARTBEAT_S until the worker stops."""

    def __init__(self, hostname: str, queues: list[str]) -> None:
        super().__init__(name="worker-heartbeat", daemon=True)
        self.hostname = hostname
        self.queues = queues
        self.started_at = timezone.now()
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            try:
                worker_heartbeat(
                    hostname=self.hostname,
                    queues=self.queues,
                    device=describe_device(),
                    started_at=self.started_at,
                )
            except Exception:
                logger.warning("could not write the worker heartbeat", exc_info=True)
            finally:
                connection.close()
            if self.stopped.wait(settings.WORKER_HEARTBEAT_S):
                return


_heartbeats: dict[str, _WorkerHeartbeat] = {}


@signals.worker_ready.connect
def _start_heartbeat(sender=None, **kwargs) -> None:
    hostname = getattr(sender, "hostname", None) or "worker"
    queues = [q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", [])]
    beat = _WorkerHeartbeat(hostname, queues)
    _heartbeats[hostname] = beat
    beat.start()


@signals.worker_shutting_down.connect
@signals.worker_shutdown.connect
def _stop_heartbeat(sig=None, how=None, exitcode=None, **kwargs) -> None:
    for hostname, beat in list(_heartbeats.items()):
        beat.stopped.set()
        beat.join(timeout=5)
        _heartbeats.pop(hostname, None)
        try:
            worker_gone(hostname=hostname)
        except Exception:
            logger.warning("could not remove the worker heartbeat", exc_info=True)
        finally:
            connection.close()


# --- notifications: e-mail and webhooks ----------------------------------------------
# The Notification and WebhookDelivery rows are the truth: a task takes a row's id, a
# vanished or settled row makes it a no-op, and its retries (backoff from the row's
# attempt count) stop at NOTIFY_MAX_ATTEMPTS. Celery's own retry count is not the limit.


@shared_task(
    bind=True, name=EMAIL_TASK, acks_late=True, max_retries=None, time_limit=120, soft_time_limit=90
)
def send_notification_email(self, notification_id: int) -> str:
    outcome = notification_email_send(notification_id=notification_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


@shared_task(
    bind=True,
    name=WEBHOOK_TASK,
    acks_late=True,
    max_retries=None,
    time_limit=settings.WEBHOOK_TIMEOUT_S + 60,
    soft_time_limit=settings.WEBHOOK_TIMEOUT_S + 30,
)
def deliver_webhook(self, delivery_id: int) -> str:
    outcome = webhook_delivery_attempt(delivery_id=delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


@periodic("governance.resend_notifications")
def resend_notifications() -> dict:
    """Send again the e-mails and deliveries whose message was lost (see notify)."""
    return notifications_resend()
