"""Launch a release check of a fine-tuned version as a job, and write back what it found.

Who may: stewards (they keep the catalogue), the person who made the fine-tune,
and staff. The check's row lives in zoo (the publish gate reads it); the job
that computes it is ``jobs.workers.release_checks``.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from governance.access import can_use_version
from governance.roles import is_steward
from jobs.engine import JobContext, job_create, owned_by
from jobs.models import DriftBatch, FineTuneRun, Job
from portal.errors import Conflict, Forbidden, NotFound, PortalError
from zoo.models import ModelVersion, ReleaseCheck, ReleaseCheckRule
from zoo.selectors.catalogue import versions_visible_to
from zoo.services import release_checks as checks


def may_launch_release_check(actor, version: ModelVersion) -> bool:
    """The version's stewards, the fine-tune's owner, and staff."""
    if not getattr(actor, "is_authenticated", False):
        return False
    if actor.is_staff or is_steward(actor):
        return True
    run = FineTuneRun.objects.filter(output_version=version).only("requested_by_id").first()
    return bool(run and run.requested_by_id == actor.pk)


def _drift_params(params: dict, run: FineTuneRun) -> dict[str, Any]:
    batch = params.get("batch")
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise PortalError(
            "A drift check compares one uploaded batch of production inputs: upload the batch in "
            "the version's Drift section, and its check runs by itself.",
            field="batch",
        )
    found = DriftBatch.objects.filter(pk=batch, version_id=run.output_version_id).first()
    if found is None:
        raise PortalError(f"This version has no drift batch #{batch}.", field="batch")
    if found.release_check_id is not None:
        raise Conflict(f"Drift batch #{batch} has its check already (#{found.release_check_id}).")
    return {"batch": batch}


def _number(params: dict, name: str, default: float, *, low: float, high: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise PortalError(f"{name} must be a number from {low:g} to {high:g}.", field=name)
    return float(value)


def _calibration_params(params: dict, run: FineTuneRun) -> dict[str, Any]:
    out: dict[str, Any] = {}
    target = params.get("target") or None
    if target is not None:
        if target not in ("recall", "precision"):
            raise PortalError("target must be 'recall' or 'precision' (or empty).", field="target")
        classes = list(run.training.get("classes") or [])
        if len(classes) != 2:
            raise PortalError(
                f"A decision threshold is for two classes; this model has {len(classes)}. "
                "Leave the target empty to calibrate only.",
                field="target",
            )
        positive = params.get("positive_class") or classes[-1]
        if positive not in classes:
            raise PortalError(
                f"positive_class must be one of {', '.join(classes)}.", field="positive_class"
            )
        out.update(
            target=target,
            target_value=_number(params, "target_value", 0.95, low=0.01, high=1.0),
            positive_class=positive,
        )
    return out


def _leakage_params(params: dict, run: FineTuneRun) -> dict[str, Any]:
    return {"cosine_threshold": _number(params, "cosine_threshold", 0.95, low=0.5, high=1.0)}


def _forgetting_params(params: dict, run: FineTuneRun) -> dict[str, Any]:
    if run.dataset_version.dataset.modality != "text":
        raise PortalError(
            "The forgetting check compares text encoders on the probes' reference sentences; "
            "it is not built for image models yet."
        )
    return {"k": int(_number(params, "k", 10, low=1, high=50))}


PARAMS = {
    "calibration": _calibration_params,
    "leakage": _leakage_params,
    "forgetting": _forgetting_params,
    "drift": _drift_params,
}
ALLOWED = {
    "calibration": {"target", "target_value", "positive_class", "threshold"},
    "leakage": {"cosine_threshold", "threshold"},
    "forgetting": {"k", "threshold"},
    "drift": {"batch", "threshold"},
}
# The kinds that can be launched: every kind with its settings reader above.
KINDS = [kind for kind in ReleaseCheck.Kind.values if kind in PARAMS]
# Kinds that also run on a version no fine-tune made (a base model): their settings
# reader is called with ``run=None`` and their job gets no ``run_id``.
WITHOUT_FINETUNE: set[str] = set()


def default_threshold(kind: str) -> float:
    """The strictest threshold any active rule sets for ``kind``, else the kind's default."""
    limits = [r.limit for r in ReleaseCheckRule.objects.filter(kind=kind, active=True)]
    if not limits:
        return ReleaseCheck.DEFAULT_THRESHOLDS[kind]
    return min(limits) if ReleaseCheck.DIRECTIONS[kind][1] == "max" else max(limits)


def release_check_launch(
    *, actor, version: ModelVersion, kind: str, params: dict | None = None
) -> ReleaseCheck:
    """Queue one release check of a fine-tuned version; nothing is written when refused."""
    params = dict(params or {})
    if not versions_visible_to(actor).filter(pk=version.pk).exists():
        raise NotFound("No such model version.")
    if not may_launch_release_check(actor, version) and not (
        kind == ReleaseCheck.Kind.DRIFT and can_use_version(actor, version)
    ):
        raise Forbidden(
            "Only stewards, the person who made this fine-tune, and staff may run its release "
            "checks."
        )
    if kind not in KINDS:
        raise PortalError(
            f"Unknown release check {kind!r}; choose one of {', '.join(KINDS)}.", field="kind"
        )
    unknown = sorted(set(params) - ALLOWED[kind])
    if unknown:
        raise PortalError(f"Unknown setting {unknown[0]!r} for a {kind} check.", field=unknown[0])
    run = FineTuneRun.objects.filter(output_version=version).first()
    if run is None and kind not in WITHOUT_FINETUNE:
        raise PortalError(
            f"{version.model.repo_id} {version.label} was not made by a fine-tune in the portal, "
            f"so there are no training, validation and test splits to run a {kind} check on."
        )
    cleaned = PARAMS[kind](params, run)
    threshold = (
        _number(params, "threshold", 0.0, low=0.0, high=1.0)
        if "threshold" in params
        else default_threshold(kind)
    )
    with transaction.atomic():
        open_checks = list(
            ReleaseCheck.objects.select_for_update().filter(
                version=version,
                kind=kind,
                status__in=("queued", "running"),
                # Each drift batch has its own check: batches uploaded together do not wait.
                **({"params__batch": cleaned["batch"]} if kind == ReleaseCheck.Kind.DRIFT else {}),
            )
        )
        live = set(
            Job.objects.filter(
                pk__in=[c.job_id for c in open_checks], status__in=Job.ACTIVE
            ).values_list("pk", flat=True)
        )
        if any(c.job_id in live for c in open_checks):
            raise Conflict(f"A {kind} check of this version is already queued or running.")
        for orphan in open_checks:
            # Its job ended without writing back (out of attempts, killed): say so, then rerun.
            checks.release_check_error(
                check_id=orphan.pk, error="Its job ended without a result; it was run again."
            )
        check = checks.release_check_open(
            version=version, kind=kind, params=cleaned, threshold=threshold, actor=actor
        )
        job = job_create(
            kind=Job.Kind.RELEASE_CHECK,
            requested_by=actor,
            params={"check_id": check.pk, "kind": kind, "run_id": run.pk if run else None},
        )
        checks.release_check_link_job(check=check, job_id=job.pk)
    return check


# --- what the worker writes, for the attempt that owns the job -------------------------------


def release_check_started(*, ctx: JobContext, check_id: int) -> None:
    with owned_by(ctx.job_id, ctx.attempt):
        checks.release_check_start(check_id=check_id)


def release_check_done(
    *, ctx: JobContext, check_id: int, measure: float, summary: str, result: dict, seconds: float
) -> ReleaseCheck:
    with owned_by(ctx.job_id, ctx.attempt):
        return checks.release_check_finish(
            check_id=check_id, measure=measure, summary=summary, result=result, seconds=seconds
        )


def release_check_failed(*, ctx: JobContext, check_id: int, error: str) -> None:
    with owned_by(ctx.job_id, ctx.attempt):
        checks.release_check_error(check_id=check_id, error=error)
