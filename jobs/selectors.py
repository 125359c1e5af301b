"""Read queries over jobs, shared by views and the API."""

from __future__ import annotations

from django.db.models import QuerySet

from jobs.engine import may_cancel
from jobs.models import FineTuneRun, Job, ProbeResult, ProbeRun
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
    """Whether to offer "Cancel" (the cancel service decides with the same rule)."""
    return job.is_active and may_cancel(user, job)


def probe_runs_visible_to(user) -> QuerySet[ProbeRun]:
    """A probe is seen by whoever may see its job: the person who ran it, and staff."""
    return ProbeRun.objects.select_related(
        "job", "requested_by", "dataset_version__dataset__owner"
    ).filter(job__in=jobs_visible_to(user).values("pk"))


def get_probe_for_user(user, pk: int) -> ProbeRun:
    run = probe_runs_visible_to(user).filter(pk=pk).first()
    if run is None:
        raise NotFound("No such probe.")
    return run


def probe_results_of(run: ProbeRun) -> list[ProbeResult]:
    """The candidates ranked first, then those without a rank in the order they were listed."""
    results = list(run.results.select_related("version__model", "version__license"))
    return sorted(results, key=lambda r: (r.rank is None, r.rank or 0, r.position))


def probe_history(user, *, model_id: int | None = None, dataset_id: int | None = None):
    """Results of the user's probes that involve a catalogue model or a dataset, newest first."""
    qs = ProbeResult.objects.select_related(
        "run__job", "run__dataset_version__dataset", "version__model"
    ).filter(run__in=probe_runs_visible_to(user).values("pk"))
    if model_id is not None:
        qs = qs.filter(version__model_id=model_id)
    if dataset_id is not None:
        qs = qs.filter(run__dataset_version__dataset_id=dataset_id)
    return qs.order_by("-run__created_at", "position")


# --- fine-tunes -----------------------------------------------------------------


def finetune_runs_visible_to(user) -> QuerySet[FineTuneRun]:
    """A fine-tune is seen by whoever may see its job: the person who ran it, and staff."""
    return FineTuneRun.objects.select_related(
        "job",
        "requested_by",
        "base_version__model",
        "base_version__license",
        "dataset_version__dataset__owner",
        "test_dataset_version__dataset",
        "output_version__model",
        "output_version__license",
    ).filter(job__in=jobs_visible_to(user).values("pk"))


def get_finetune_for_user(user, pk: int) -> FineTuneRun:
    run = finetune_runs_visible_to(user).filter(pk=pk).first()
    if run is None:
        raise NotFound("No such fine-tune.")
    return run
