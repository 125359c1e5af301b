"""Start a transferability probe, and the writes its worker makes for it."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.db import transaction

from governance.access import probe_refusal
from jobs.engine import JobContext, job_create, owned_by
from jobs.models import FeatureSet, Job, ProbeResult, ProbeRun
from portal.errors import NotFound, PortalError
from zoo.models import CatalogModel
from zoo.selectors.datasets import dataset_versions_visible_to


def probe_launch(
    *,
    actor,
    dataset_version,
    versions: list,
    max_examples: int,
    seed: int = 0,
    max_parameters: int | None = None,
    max_latency_ms: float | None = None,
    shortlist_k: int = 0,
) -> ProbeRun:
    """Check a probe request and queue it: one job, one row per candidate.

    Every candidate must be one the user may probe (``governance.access.probe_refusal``:
    published or approved for them, unblocked, and confidential or restricted data
    only under an approval that covers it) and of the dataset's modality; otherwise
    nothing is created and the message says which. The optional budget (largest
    model, slowest CPU latency per example) does not change the ranking; the
    run also names the best-ranked candidate within it. ``shortlist_k`` (0: off)
    asks the worker to fine-tune the top k by scores briefly and order them by
    validation accuracy (``jobs.workers.probe_shortlist``).
    """
    if not dataset_versions_visible_to(actor).filter(pk=dataset_version.pk).exists():
        raise NotFound("No such dataset.", field="dataset_version")
    _check_candidates(actor, dataset_version, versions)
    if not 10 <= max_examples <= settings.PROBE_MAX_EXAMPLES:
        raise PortalError(
            f"The number of examples must be between 10 and {settings.PROBE_MAX_EXAMPLES:,}.",
            field="max_examples",
        )
    max_parameters, max_latency_ms = _check_budget(max_parameters, max_latency_ms)
    _check_shortlist(shortlist_k, len(versions))
    with transaction.atomic():
        job = job_create(
            kind=Job.Kind.PROBE,
            requested_by=actor,
            params={
                "dataset_version": dataset_version.pk,
                "versions": [v.pk for v in versions],
                "max_examples": max_examples,
                "seed": seed,
                "max_parameters": max_parameters,
                "max_latency_ms": max_latency_ms,
                "shortlist_k": shortlist_k,
            },
        )
        run = ProbeRun.objects.create(
            job=job,
            dataset_version=dataset_version,
            requested_by=actor,
            max_examples=max_examples,
            seed=seed,
            max_parameters=max_parameters,
            max_latency_ms=max_latency_ms,
            shortlist_k=shortlist_k,
        )
        ProbeResult.objects.bulk_create(
            ProbeResult(run=run, version=v, position=i) for i, v in enumerate(versions)
        )
    return run


def _check_candidates(actor, dataset_version, versions: list) -> None:
    if not versions:
        raise PortalError("Choose at least one candidate model version.", field="versions")
    if len({v.pk for v in versions}) != len(versions):
        raise PortalError("A candidate is listed twice.", field="versions")
    if len(versions) > settings.PROBE_MAX_CANDIDATES:
        raise PortalError(
            f"Choose at most {settings.PROBE_MAX_CANDIDATES} candidates per probe.",
            field="versions",
        )
    dataset = dataset_version.dataset
    wanted = (
        CatalogModel.Modality.VISION if dataset.modality == "vision" else CatalogModel.Modality.TEXT
    )
    for version in versions:
        refusal = probe_refusal(actor, version, dataset=dataset)
        if refusal is not None:
            raise refusal
        if version.model.modality != wanted:
            raise PortalError(
                f"{version.model.repo_id} is a {version.model.get_modality_display().lower()} "
                f"model; {dataset} holds {dataset.get_modality_display().lower()} data.",
                field="versions",
            )


# Sanity caps on a budget: beyond them the number is a typo, not a limit.
MAX_PARAMETER_LIMIT = 10**13
MAX_LATENCY_LIMIT_MS = 600_000.0


def _check_budget(
    max_parameters: int | None, max_latency_ms: float | None
) -> tuple[int | None, float | None]:
    """The budget as stored, or a PortalError naming the limit that is not a usable number."""
    if max_parameters is not None and (
        isinstance(max_parameters, bool)
        or not isinstance(max_parameters, int)
        or not 0 < max_parameters <= MAX_PARAMETER_LIMIT
    ):
        raise PortalError(
            "The parameter limit must be a whole number of parameters above 0 (such as "
            f"110000000 for 110M), at most {MAX_PARAMETER_LIMIT:,}; leave it empty for no limit.",
            field="max_parameters",
        )
    if max_latency_ms is not None:
        value = max_latency_ms
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 < value <= MAX_LATENCY_LIMIT_MS
        ):
            raise PortalError(
                "The latency limit must be a number of milliseconds per example above 0, "
                f"at most {MAX_LATENCY_LIMIT_MS:,.0f}; leave it empty for no limit.",
                field="max_latency_ms",
            )
        max_latency_ms = float(value)
    return max_parameters, max_latency_ms


def _check_shortlist(shortlist_k: int, candidates: int) -> None:
    """0 (off), or 2 up to the number of candidates and ``ProbeRun.SHORTLIST_MAX_K``."""
    if isinstance(shortlist_k, bool) or not isinstance(shortlist_k, int):
        raise PortalError(
            "The number of candidates to check with a brief fine-tune must be a whole number.",
            field="shortlist_k",
        )
    if shortlist_k == 0:
        return
    most = min(candidates, ProbeRun.SHORTLIST_MAX_K)
    if candidates < 2:
        raise PortalError(
            "A brief fine-tune re-orders the top candidates: choose at least two candidates, "
            "or set the number to check to 0.",
            field="shortlist_k",
        )
    if not 2 <= shortlist_k <= most:
        raise PortalError(
            f"The number of top candidates to check with a brief fine-tune must be 0 (off) or "
            f"between 2 and {most} (with {candidates} candidates; each costs a short fine-tune).",
            field="shortlist_k",
        )


def probe_result_update(*, ctx: JobContext, result_id: int, **fields: Any) -> None:
    """Write one candidate's state for the attempt that owns the job (a stale attempt cannot)."""
    with owned_by(ctx.job_id, ctx.attempt):
        ProbeResult.objects.filter(pk=result_id).update(**fields)


def probe_run_update(*, ctx: JobContext, run_id: int, **fields: Any) -> None:
    with owned_by(ctx.job_id, ctx.attempt):
        ProbeRun.objects.filter(pk=run_id).update(**fields)


def feature_set_record(*, ctx: JobContext, **fields: Any) -> FeatureSet:
    """Remember extracted features; when another worker recorded the same key first, keep theirs."""
    key = {k: fields.pop(k) for k in ("version", "dataset_version", "preprocessing", "sample_key")}
    with owned_by(ctx.job_id, ctx.attempt):
        feature_set, _ = FeatureSet.objects.get_or_create(**key, defaults=fields)
    return feature_set
