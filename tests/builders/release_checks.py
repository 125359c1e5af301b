"""Fine-tunes to check, and waiting for a release check a real worker runs."""

from __future__ import annotations

import time

from jobs.engine import job_execute
from jobs.models import FineTuneRun, Job
from jobs.services.finetunes import finetune_launch
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


def finetune_here(actor, base, data, *, strategy: str, config: dict) -> FineTuneRun:
    """Launch a fine-tune and run its job in this process (before any worker can take it)."""
    run = finetune_launch(
        actor=actor, base_version=base, dataset_version=data, strategy=strategy, config=config
    )
    assert job_execute(job_id=run.job_id) == "succeeded", Job.objects.get(pk=run.job_id).error
    return FineTuneRun.objects.select_related("output_version__model").get(pk=run.pk)
