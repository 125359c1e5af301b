"""Celery tasks: thin wrappers that take ids and call services."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from governance.services.reuse import reuse_requests_expire
from jobs.engine import RUN_JOB_TASK, job_execute, job_requeue_stale


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


@shared_task(name="governance.expire_reuse_requests", acks_late=True, time_limit=600)
def expire_reuse_requests() -> int:
    return reuse_requests_expire()


@shared_task(name="jobs.requeue_stale_jobs", acks_late=True, time_limit=300)
def requeue_stale_jobs() -> list[int]:
    """Give jobs whose worker died back to the queue (see engine.job_requeue_stale)."""
    return job_requeue_stale()
