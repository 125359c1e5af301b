"""Read queries over jobs, shared by views and the API."""

from __future__ import annotations

from django.db.models import QuerySet

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
    return job.is_active and (user.is_staff or job.requested_by_id == user.pk)


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


def may_launch_finetunes(user) -> bool:
    from governance.roles import ML_ENGINEERS, has_role

    return bool(user.is_authenticated and (user.is_staff or has_role(user, ML_ENGINEERS)))


def versions_finetunable_by(user) -> QuerySet:
    """Versions the user may fine-tune: visible, usable, not blocked, text or vision.

    The same rule as ``governance.selectors.can_use_version`` with the
    fine-tune permission, as one query for the form's choices.
    """
    from django.db.models import Q
    from guardian.shortcuts import get_objects_for_user

    from zoo.models import CatalogModel, ModelVersion
    from zoo.selectors import is_steward, versions_visible_to

    if not may_launch_finetunes(user):
        return ModelVersion.objects.none()
    qs = (
        versions_visible_to(user)
        .filter(status=ModelVersion.Status.AVAILABLE, model__modality__in=["text", "vision"])
        .exclude(model__status=CatalogModel.Status.BLOCKED)
        .exclude(kind=ModelVersion.Kind.ADAPTER)
        .select_related("model", "license")
    )
    if user.is_staff or is_steward(user):
        return qs
    granted = get_objects_for_user(
        user,
        "zoo.finetune_version",
        klass=ModelVersion,
        with_superuser=False,
        accept_global_perms=False,
    )
    # As in can_use_version: the approval's own expiry ends access, not the beat task.
    from django.utils import timezone

    from governance.models import ReuseRequest

    live = (
        ReuseRequest.objects.filter(requester=user, status=ReuseRequest.Status.APPROVED)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .values("version_id")
    )
    return qs.filter(Q(created_by=user) | (Q(pk__in=granted.values("pk")) & Q(pk__in=live)))


def can_finetune(user, version) -> bool:
    """Whether to offer "Fine-tune" on a page (the launch service checks everything again)."""
    from governance.selectors import can_use_version

    return (
        may_launch_finetunes(user)
        and not version.is_blocked
        and version.kind != "adapter"
        and version.model.status != "blocked"
        and version.model.modality in ("text", "vision")
        and can_use_version(user, version, "zoo.finetune_version")
    )


def finetune_view_data(run: FineTuneRun) -> dict:
    """What the run page draws: the curves, and the evaluation laid out next to the baseline."""
    curves = run.curves or {}
    metrics, baseline = run.metrics or {}, run.baseline or {}
    classes = (run.training or {}).get("classes") or list(metrics.get("per_class") or {})
    per_class = [
        {
            "name": name,
            **values,
            "baseline_f1": ((baseline.get("per_class") or {}).get(name) or {}).get("f1"),
        }
        for name, values in (metrics.get("per_class") or {}).items()
    ]
    confusion = [
        {"name": name, "cells": row}
        for name, row in zip(classes, metrics.get("confusion_matrix") or [], strict=False)
    ]
    slices = [
        {
            "name": name,
            **values,
            "baseline": (baseline.get("slices") or {}).get(name) or {},
        }
        for name, values in (metrics.get("slices") or {}).items()
    ]
    comparison = [
        (label, metrics.get(key), baseline.get(key), better)
        for label, key, better in (
            ("Accuracy", "accuracy", "higher"),
            ("Macro-F1", "macro_f1", "higher"),
            ("ECE (15 bins)", "ece", "lower"),
            ("Brier score", "brier", "lower"),
        )
        if key in metrics
    ]
    # The settings that mattered for this strategy, in the form's order.
    skip = set()
    if run.strategy != "lora":
        skip |= {"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"}
    if run.strategy != "partial":
        skip.add("unfreeze_layers")
    config = {k: v for k, v in (run.config or {}).items() if k not in skip and k != "strategy"}
    settings = [
        (name.replace("_", " "), ", ".join(v) if isinstance(v, list) else v)
        for name, v in config.items()
    ]
    split = {k: v for k, v in (run.split_params or {}).items() if k != "seed"}
    settings += [(name.replace("_", " "), v) for name, v in split.items()]
    return {
        "settings": settings,
        "chart": {
            "steps": curves.get("steps", []),
            "epochs": curves.get("epochs", []),
        },
        "comparison": comparison,
        "per_class": per_class,
        "confusion": confusion,
        "classes": classes,
        "slices": slices,
    }
