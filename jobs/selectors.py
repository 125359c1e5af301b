"""Read queries over jobs, shared by views and the API."""

from __future__ import annotations

from django.db.models import QuerySet

from jobs.models import Job
from portal.errors import NotFound


def jobs_visible_to(user) -> QuerySet[Job]:
    """Staff see every job; everyone else sees the jobs they asked for."""
    qs = Job.objects.select_related("requested_by")
    if not user.is_authenticated:
        return qs.none()
    if user.is_staff:
        return qs
    return qs.filter(requested_by=user)


def get_job_for_user(user, job_id: int) -> Job:
    job = jobs_visible_to(user).filter(pk=job_id).first()
    if job is None:
        raise NotFound("No such job.")
    return job


def can_cancel(user, job: Job) -> bool:
    return job.is_active and (user.is_staff or job.requested_by_id == user.pk)
