"""The Celery application: queues ``default`` and ``gpu``, tuned for long jobs.

Jobs run for minutes to hours, so a message is acknowledged only after its task
finishes (a worker that dies mid-job leaves it for another worker), each worker
takes one message at a time, and the broker's visibility timeout is longer than
the longest job so a running job is never handed out twice.
"""

from __future__ import annotations

import os

from celery import Celery
from django.conf import settings
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")

# The queues workers consume: "gpu" for probes and fine-tunes (GPU nodes, CPU fallback).
QUEUES = ("default", "gpu")


def _configure(app: Celery) -> None:
    limit = settings.JOB_TIME_LIMIT_S
    transport_options: dict = {"visibility_timeout": limit + 3600}
    if settings.BROKER_IS_FILESYSTEM:
        folder = settings.CELERY_BROKER_FOLDER
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        transport_options.update(
            data_folder_in=str(folder / "queue"),
            data_folder_out=str(folder / "queue"),
            processed_folder=str(folder / "processed"),
            control_folder=str(folder / "control"),
            store_processed=False,
            polling_interval=0.5,
        )
    app.conf.update(
        broker_url=settings.CELERY_BROKER_URL,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        # The Job row is the record of a job; Celery's result backend is not used.
        result_backend=None,
        task_ignore_result=True,
        task_default_queue="default",
        task_queues=tuple(Queue(name, routing_key=name) for name in QUEUES),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=limit,
        task_soft_time_limit=limit - 60,
        task_track_started=False,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        timezone=settings.TIME_ZONE,
        enable_utc=True,
        # The on-disk broker has no broadcast channel worth polling; cancellation
        # goes through the Job row, which every broker supports.
        worker_enable_remote_control=not settings.BROKER_IS_FILESYSTEM,
        worker_send_task_events=False,
        beat_schedule=beat_schedule(),
        beat_schedule_filename=str(settings.VAR_DIR / "celerybeat-schedule"),
    )


def beat_schedule() -> dict:
    """The periodic tasks, at intervals from the settings (see jobs/tasks.py)."""
    return {
        "expire-reuse-approvals": {
            "task": "governance.expire_reuse_requests",
            "schedule": settings.EXPIRE_EVERY_S,
        },
        # Approvals about to expire, re-reviews due: each reminder goes out once.
        "send-reminders": {
            "task": "governance.send_reminders",
            "schedule": settings.REMIND_EVERY_S,
        },
        # Stored block state follows expired scan waivers (the hub checks at each download).
        "lapse-scan-waivers": {
            "task": "zoo.lapse_scan_waivers",
            "schedule": settings.EXPIRE_EVERY_S,
        },
        # A worker killed outright leaves its message unacknowledged until the
        # visibility timeout (hours); the job's lease notices within a minute.
        "requeue-stale-jobs": {
            "task": "jobs.requeue_stale_jobs",
            "schedule": settings.REQUEUE_EVERY_S,
        },
        # A message the broker lost (a flush, a restart) is sent again.
        "reconcile-queued-jobs": {
            "task": "jobs.reconcile_queued_jobs",
            "schedule": settings.RECONCILE_EVERY_S,
        },
        "sweep-storage": {"task": "jobs.sweep_storage", "schedule": settings.SWEEP_EVERY_S},
        # A signed checkpoint of the audit chain's head, outside the database.
        "anchor-audit": {
            "task": "governance.anchor_audit",
            "schedule": settings.AUDIT_ANCHOR_EVERY_S,
        },
        # E-mails and webhook deliveries whose message the broker lost are sent again.
        "resend-notifications": {
            "task": "governance.resend_notifications",
            "schedule": settings.NOTIFY_EVERY_S,
        },
    }


@app.on_configure.connect
def _on_configure(sender: Celery, **kwargs) -> None:
    _configure(sender)


app.autodiscover_tasks(["jobs"])
