"""Read queries over jobs, shared by views and the API."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Min, QuerySet
from django.utils import timezone

from jobs.engine import may_cancel
from jobs.models import (
    DriftBatch,
    FineTuneRun,
    Job,
    PeriodicTaskRun,
    ProbeResult,
    ProbeRun,
    Study,
    WorkerHeartbeat,
)
from portal import broker
from portal.celery import QUEUES, beat_schedule
from portal.errors import NotFound
from portal.health import check_broker
from zoo.selectors.catalogue import versions_visible_to
from zoo.selectors.datasets import dataset_versions_visible_to


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
        "job", "requested_by", "dataset_version__dataset__owner", "budget_choice"
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
    """Results of the user's probes that involve a catalogue model or a dataset, newest first.

    Only the user's own probes (all of them for staff), and only candidates the
    user may still see: a panel never names a colleague's draft or their data.
    """
    qs = (
        ProbeResult.objects.select_related(
            "run__job", "run__dataset_version__dataset", "version__model"
        )
        .filter(run__in=probe_runs_visible_to(user).values("pk"))
        .filter(version__in=versions_visible_to(user).values("pk"))
        .filter(run__dataset_version__in=dataset_versions_visible_to(user).values("pk"))
    )
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


def studies_visible_to(user) -> QuerySet[Study]:
    """A study is seen by whoever may see its probe: the person who ran it, and staff."""
    return Study.objects.select_related(
        "probe__job",
        "probe__dataset_version__dataset",
        "requested_by",
        "chosen_by",
        "closed_by",
        "chosen_run__output_version__model",
        "final_job",
    ).filter(probe__in=probe_runs_visible_to(user).values("pk"))


def get_study_for_user(user, pk: int) -> Study:
    study = studies_visible_to(user).filter(pk=pk).first()
    if study is None:
        raise NotFound("No such study.")
    return study


def study_rows(study: Study) -> list[dict]:
    """One row per candidate, in the probe's rank order: the probe's scores next to the run's."""
    results = {
        r.pk: r for r in study.probe.results.select_related("version__model", "version__license")
    }
    runs = {
        r.base_version_id: r
        for r in study.runs.select_related("job", "output_version__model", "base_version__model")
    }
    rows = []
    for candidate in study.candidates:
        run = runs.get(candidate["version"])
        training = (run.training if run else None) or {}
        rows.append(
            {
                "result": results.get(candidate["result"]),
                "run": run,
                "validation": training.get("validation") or {},
                "learning_rate": training.get("learning_rate"),
                "seconds": (training.get("train_seconds") or 0)
                + (training.get("search_seconds") or 0)
                if training
                else None,
                "chosen": run is not None and run.pk == study.chosen_run_id,
            }
        )
    return rows


def study_selection(study: Study) -> dict:
    """What the winner's model card records of its study (``jobs.ml.card``'s ``selection``)."""
    candidates = []
    for row in study_rows(study):
        result = row["result"]
        version = result.version if result is not None else row["run"].base_version
        candidates.append(
            {
                "repo_id": version.model.repo_id,
                "label": version.label,
                "rank": result.rank if result is not None else None,
                "knn": result.knn_accuracy if result is not None else None,
                "linear": result.linear_probe_accuracy if result is not None else None,
                "val_accuracy": row["validation"].get("accuracy"),
                "val_macro_f1": row["validation"].get("macro_f1"),
                "chosen": row["chosen"],
            }
        )
    return {
        "study": study.pk,
        "reason": study.reason,
        "choice_reason": study.choice_reason,
        "candidates": candidates,
    }


def studies_of_probe(user, probe: ProbeRun) -> QuerySet[Study]:
    return studies_visible_to(user).filter(probe=probe)


# --- operations -------------------------------------------------------------------------


def _periodic_status(now) -> list[dict]:
    runs = {r.name: r for r in PeriodicTaskRun.objects.all()}
    rows = []
    for entry in beat_schedule().values():
        name, every = entry["task"], float(entry["schedule"])
        run = runs.get(name)
        last = run.last_started_at if run else None
        # Beat sends on schedule; a run missing for two intervals (and a minute) means
        # beat is not ticking, or no worker runs what it sends.
        late = last is None or (now - last).total_seconds() > 2 * every + 60
        rows.append(
            {
                "task": name,
                "every_s": every,
                "last_started_at": last,
                "last_finished_at": run.last_finished_at if run else None,
                "ok": bool(run and run.last_ok),
                "error": (run.last_error.splitlines() or [""])[0] if run else "",
                "runs": run.runs if run else 0,
                "late": late,
            }
        )
    return rows


def _queue_status(now, workers: list[dict]) -> list[dict]:
    oldest = {
        row["queue"]: row
        for row in Job.objects.filter(status=Job.Status.QUEUED)
        .values("queue")
        .annotate(n=Count("pk"), oldest=Min("created_at"))
    }
    depths = broker.queue_depths(list(QUEUES))
    rows = []
    for queue in QUEUES:
        waiting = oldest.get(queue, {})
        served_by = [w["hostname"] for w in workers if w["alive"] and queue in w["queues"]]
        rows.append(
            {
                "queue": queue,
                "workers": served_by,
                "served": bool(served_by),
                "queued_jobs": waiting.get("n", 0),
                "oldest_queued_at": waiting.get("oldest"),
                "oldest_queued_age_s": (now - waiting["oldest"]).total_seconds()
                if waiting.get("oldest")
                else None,
                "broker_depth": depths.get(queue),
            }
        )
    return rows


def operations_status(*, now=None) -> dict:
    """Workers by queue, beat's last ticks, the oldest queued job per queue, jobs gone stale."""
    now = now or timezone.now()
    stale_after = settings.WORKER_STALE_S
    workers = [
        {
            "hostname": w.hostname,
            "queues": w.queues,
            "device": w.device,
            "pid": w.pid,
            "started_at": w.started_at,
            "last_seen": w.last_seen,
            "alive": (now - w.last_seen).total_seconds() <= stale_after,
        }
        for w in WorkerHeartbeat.objects.all()
    ]
    stale = list(
        Job.objects.filter(status=Job.Status.RUNNING, lease_expires_at__lt=now)
        .order_by("lease_expires_at")
        .values("pk", "kind", "queue", "worker", "attempts", "lease_expires_at")[:50]
    )
    broker_error = check_broker()
    queues = _queue_status(now, workers)
    periodic = _periodic_status(now)
    return {
        "checked_at": now,
        "broker": "ok" if broker_error is None else broker_error,
        "workers": workers,
        "queues": queues,
        "periodic": periodic,
        "stale_jobs": stale,
        "healthy": broker_error is None
        and all(q["served"] for q in queues)
        and not any(p["late"] for p in periodic)
        and not stale,
    }


def queue_warning(job: Job) -> str:
    """Why an active job may not move right now, in a sentence; "" when nothing is wrong.

    Cached for a few seconds: the job pages poll every two.
    """
    if not job.is_active:
        return ""
    key = f"jobs:queue-warning:{job.queue}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    warning = ""
    if check_broker(timeout=1.0) is not None:
        warning = (
            "The job queue cannot be reached just now: this job waits, and starts once it is back."
        )
    else:
        fresh = timezone.now() - timedelta(seconds=settings.WORKER_STALE_S)
        serving = WorkerHeartbeat.objects.filter(last_seen__gte=fresh, queues__contains=[job.queue])
        if not serving.exists():
            warning = (
                f"No worker is serving the '{job.queue}' queue just now: this job waits until "
                "one starts. Staff can see the workers on the status page."
            )
    cache.set(key, warning, timeout=5)
    return warning


def drift_run_of(version_id: int) -> FineTuneRun | None:
    """The fine-tune that made a version (its drift is judged against that run's data)."""
    return (
        FineTuneRun.objects.select_related("base_version__model", "dataset_version__dataset")
        .filter(output_version_id=version_id)
        .first()
    )


def drift_batches_of(user, version_id: int) -> list[DriftBatch]:
    """The drift batches of a version the user can see, oldest first (the chart's order).

    Their results are aggregates (shares, PSI, MMD), shown to everyone who sees the
    version; the uploaded texts stay in storage and are never shown.
    """
    if not versions_visible_to(user).filter(pk=version_id).exists():
        raise NotFound("No such model version.")
    return list(
        DriftBatch.objects.filter(version_id=version_id)
        .select_related("release_check", "uploaded_by")
        .order_by("created_at", "id")
    )
