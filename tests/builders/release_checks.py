"""Waiting for a release check a real worker runs."""

from __future__ import annotations

import time

from jobs.models import Job
from zoo.models import ReleaseCheck


def wait_for_check(check: ReleaseCheck, timeout: float = 240.0) -> ReleaseCheck:
    """Poll until the check's job has ended; fail with the job's log when it does not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check.refresh_from_db()
        job = Job.objects.get(pk=check.job_id)
        if not job.is_active:
            # Read again: the check may have been written between the two reads above
            # (the worker stores the check, then ends the job).
            check.refresh_from_db()
            return check
        time.sleep(0.1)
    raise AssertionError(f"check {check.pk} still {check.status}; job log:\n{job.log[-2000:]}")
