"""Launch a release check of a fine-tuned version as a job, and write back what it found.

Who may: stewards (they keep the catalogue), the person who made the fine-tune,
and staff. The check's row lives in zoo (the publish gate reads it); the job
that computes it is ``jobs.workers.release_checks``.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from governance.access import can_use_version, versions_finetunable_by
from governance.roles import is_steward
from governance.services.risks import risk_entry_open_for_check
from jobs.engine import JobContext, job_create, owned_by
from jobs.models import DriftBatch, FineTuneRun, Job
from portal.errors import Conflict, Forbidden, NotFound, PortalError
from zoo.models import AssociationTestSet, ModelVersion, ReleaseCheck, ReleaseCheckRule
from zoo.selectors.catalogue import versions_visible_to
from zoo.services import release_checks as checks


def may_launch_release_check(actor, version: ModelVersion, kind: str | None = None) -> bool:
    """The version's stewards, the fine-tune's owner, and staff; for a check that also runs
    on base models (the serving check), anyone who may fine-tune the base: they check it
    exports before training on it."""
    if not getattr(actor, "is_authenticated", False):
        return False
    if actor.is_staff or is_steward(actor):
        return True
    run = FineTuneRun.objects.filter(output_version=version).only("requested_by_id").first()
    if run is None and kind in BASE_CHECKS_BY_FINETUNERS:
        return versions_finetunable_by(actor).filter(pk=version.pk).exists()
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
    # Text encoders are compared on the reference sentences, image backbones on the
    # reference crops and the labelled digits (jobs.workers.release_checks).
    return {"k": int(_number(params, "k", 10, low=1, high=50))}


def _association_params(params: dict, run: FineTuneRun | None) -> dict[str, Any]:
    if run is not None and run.is_adapter:
        raise PortalError(
            "An adapter shares its base's encoder for the words these tests use; run the "
            "association check on the base model instead."
        )
    if run is not None and run.dataset_version.dataset.modality != "text":
        raise PortalError("Word-association tests are for text encoders; this is an image model.")
    named = params.get("sets") or []
    if isinstance(named, str):
        named = [n.strip() for n in named.replace(",", " ").split() if n.strip()]
    if not isinstance(named, list) or any(not isinstance(n, str) for n in named):
        raise PortalError("sets must be a list of test names, e.g. weat-6 weat-7.", field="sets")
    available = {s.name: s for s in AssociationTestSet.objects.all()}
    unknown = [n for n in named if n not in available]
    if unknown:
        raise PortalError(
            f"No association test named {unknown[0]!r}; the tests are "
            f"{', '.join(sorted(available)) or '(none)'}.",
            field="sets",
        )
    chosen = named or [s.name for s in available.values() if s.active]
    if not chosen:
        raise PortalError(
            "No association test is active; a steward can switch one on, or name tests in sets."
        )
    return {
        "sets": chosen,
        "permutations": int(_number(params, "permutations", 10_000, low=100, high=100_000)),
        "alpha": _number(params, "alpha", 0.05, low=0.0001, high=0.5),
    }


def _slices_params(params: dict, run: FineTuneRun | None) -> dict[str, Any]:
    dataset = run.dataset_version.dataset
    if not run.dataset_version.slice_column:
        raise PortalError(
            f"The dataset {dataset.name!r} the fine-tune used has no slice column, so there are "
            "no slices to compare; upload a version that names one."
        )
    out: dict[str, Any] = {
        "min_count": int(_number(params, "min_count", 20, low=2, high=100_000)),
    }
    classes = list(run.training.get("classes") or [])
    positive = params.get("positive_class") or None
    if positive is not None and len(classes) != 2:
        raise PortalError(
            "positive_class is for two classes; with more, recall and false-positive rate are "
            "macro averages.",
            field="positive_class",
        )
    if len(classes) == 2:
        positive = positive or classes[-1]
        if positive not in classes:
            raise PortalError(
                f"positive_class must be one of {', '.join(classes)}.", field="positive_class"
            )
        out["positive_class"] = positive
    return out


def _flag(params: dict, name: str) -> bool:
    value = params.get(name, False)
    if value in (True, False, 0, 1, "on", "true", "false", ""):
        return value in (True, 1, "on", "true")
    raise PortalError(f"{name} must be yes or no.", field=name)


def _serving_params(params: dict, run: FineTuneRun | None) -> dict[str, Any]:
    register = _flag(params, "register")
    if run is None and register:
        raise PortalError(
            "Registering the checked ONNX file is offered for fine-tunes; a base model's export "
            "is checked but not stored.",
            field="register",
        )
    return {"register": register, "calls": int(_number(params, "calls", 50, low=5, high=500))}


def _base_serving_refusal(version: ModelVersion) -> None:
    if version.kind != ModelVersion.Kind.BASE:
        raise PortalError(
            f"{version.model.repo_id} {version.label} is neither a base model nor made by a "
            "fine-tune in the portal, so there is no test split to run a serving check on."
        )
    if version.model.modality not in ("text", "vision"):
        raise PortalError(
            "The serving check of a base model exports a text encoder or an image backbone and "
            "compares it on the probes' reference sentences or photos; it is not built for "
            f"{version.model.get_modality_display().lower()} base models."
        )


def _inconsistency_params(params: dict, run: FineTuneRun) -> dict[str, Any]:
    raw = params.get("other_version")
    if raw in (None, ""):
        raise PortalError(
            "Choose the other version to compare with (its id, or its label such as v2).",
            field="other_version",
        )
    out: dict[str, Any] = {"other_version": str(raw).strip()}
    batch = params.get("batch")
    if batch not in (None, ""):
        if isinstance(batch, bool) or not (
            isinstance(batch, int) or (isinstance(batch, str) and batch.strip().isdigit())
        ):
            raise PortalError(
                "batch must be the number of a drift batch (as #12 in the Drift section), or "
                "empty for the test split.",
                field="batch",
            )
        out["batch"] = int(batch)
    return out


def inconsistency_batch(
    *, actor, version: ModelVersion, other: ModelVersion, batch_id: int
) -> DriftBatch:
    """The uploaded drift batch whose production inputs both versions are run on, or a clear
    refusal: it must be a batch of one of the two versions' models that the actor can see."""
    found = (
        DriftBatch.objects.select_related("version__model", "release_check")
        .filter(pk=batch_id, version__in=versions_visible_to(actor))
        .first()
    )
    if found is None:
        raise PortalError(f"There is no drift batch #{batch_id} that you can see.", field="batch")
    models = {version.model_id, other.model_id}
    if found.version.model_id not in models:
        names = " or ".join(sorted({version.model.repo_id, other.model.repo_id}))
        raise PortalError(
            f"Drift batch #{batch_id} holds production inputs of {found.version.model.repo_id}, "
            f"not of {names}; choose a batch uploaded for one of the two versions' models.",
            field="batch",
        )
    return found


def inconsistency_other(*, actor, version: ModelVersion, run: FineTuneRun, raw: str):
    """The version ``raw`` names that this fine-tune may be compared with, or a clear refusal.

    Another version of the same model, or a retrain: a fine-tune of the same
    base model on the same dataset. It must predict the same classes in the
    same order, or "the label changed" would mean nothing.
    """
    visible = versions_visible_to(actor).select_related("model")
    if str(raw).isdigit():
        other = visible.filter(pk=int(raw)).first()
    else:
        other = visible.filter(model=version.model, label=raw).first()
    if other is None:
        raise PortalError(
            f"No version {raw!r} that you can see; give another version's id, or the label of "
            f"another version of {version.model.repo_id}.",
            field="other_version",
        )
    if other.pk == version.pk:
        raise PortalError(
            "That is this version itself; choose another version or a retrain.",
            field="other_version",
        )
    other_run = finetune_behind(other)
    retrain = (
        other_run is not None
        and other_run.base_version.model_id == run.base_version.model_id
        and other_run.dataset_version.dataset_id == run.dataset_version.dataset_id
    )
    if other.model_id != version.model_id and not retrain:
        raise PortalError(
            f"{other.model.repo_id} {other.label} is another model, not a version of "
            f"{version.model.repo_id} nor a retrain of it (a fine-tune of the same base on the "
            "same dataset).",
            field="other_version",
        )
    if other_run is None:
        raise PortalError(
            f"{other.model.repo_id} {other.label} was not made by a fine-tune in the portal, so "
            "its classes and how it reads inputs are not known.",
            field="other_version",
        )
    mine = list(run.training.get("classes") or [])
    theirs = list(other_run.training.get("classes") or [])
    if mine != theirs:
        raise PortalError(
            f"{other.model.repo_id} {other.label} predicts other classes "
            f"({', '.join(theirs) or 'none recorded'}) than this version "
            f"({', '.join(mine)}); a changed label would mean nothing.",
            field="other_version",
        )
    if other.is_blocked:
        raise PortalError(
            f"{other.model.repo_id} {other.label} is blocked; its files are not loaded.",
            field="other_version",
        )
    return other


def finetune_behind(version: ModelVersion) -> FineTuneRun | None:
    """The fine-tune that made ``version``, looking through conversions (an ONNX or
    safetensors copy has the same weights as the version it was converted from)."""
    seen = 0
    while version is not None and seen < 10:
        run = (
            FineTuneRun.objects.select_related(
                "base_version__model", "dataset_version__dataset", "test_dataset_version__dataset"
            )
            .filter(output_version=version)
            .first()
        )
        if run is not None:
            return run
        if version.source != ModelVersion.Source.CONVERSION:
            return None
        version, seen = version.parent, seen + 1
    return None


PARAMS = {
    "calibration": _calibration_params,
    "leakage": _leakage_params,
    "forgetting": _forgetting_params,
    "drift": _drift_params,
    "association": _association_params,
    "slices": _slices_params,
    "serving": _serving_params,
    "inconsistency": _inconsistency_params,
}
ALLOWED = {
    "calibration": {"target", "target_value", "positive_class", "threshold"},
    "leakage": {"cosine_threshold", "threshold"},
    "forgetting": {"k", "threshold"},
    "drift": {"batch", "threshold"},
    "association": {"sets", "permutations", "alpha", "threshold"},
    "slices": {"min_count", "positive_class", "threshold"},
    "serving": {"register", "calls", "threshold"},
    "inconsistency": {"other_version", "batch", "threshold"},
}
# The kinds that can be launched: every kind with its settings reader above.
KINDS = [kind for kind in ReleaseCheck.Kind.values if kind in PARAMS]
# Kinds that also run on a version no fine-tune made (a base model): their settings
# reader is called with ``run=None`` and their job gets no ``run_id``.
WITHOUT_FINETUNE: set[str] = {"association", "serving"}
# The largest threshold a launcher may set, where the measure is not a share (|d| <= 2).
THRESHOLD_HIGH = {"association": 2.0}
# Kinds whose failure opens a bias risk on the version (governance keeps the register).
RISK_KINDS = {"association", "slices"}
# Of those, the kinds anyone who may fine-tune a base may run on it (the others: stewards).
BASE_CHECKS_BY_FINETUNERS = {"serving"}


def default_threshold(kind: str) -> float:
    """The strictest threshold any active rule sets for ``kind``, else the kind's default."""
    limits = [r.limit for r in ReleaseCheckRule.objects.filter(kind=kind, active=True)]
    if not limits:
        return ReleaseCheck.DEFAULT_THRESHOLDS[kind]
    return min(limits) if ReleaseCheck.DIRECTIONS[kind][1] == "max" else max(limits)


def release_check_open_of(*, version: ModelVersion, kind: str) -> ReleaseCheck | None:
    """The check of ``kind`` on ``version`` whose job is still queued or running, if any."""
    for check in ReleaseCheck.objects.filter(
        version=version, kind=kind, status__in=("queued", "running")
    ):
        if Job.objects.filter(pk=check.job_id, status__in=Job.ACTIVE).exists():
            return check
    return None


def release_check_launch(
    *, actor, version: ModelVersion, kind: str, params: dict | None = None
) -> ReleaseCheck:
    """Queue one release check of a fine-tuned version; nothing is written when refused."""
    params = dict(params or {})
    if not versions_visible_to(actor).filter(pk=version.pk).exists():
        raise NotFound("No such model version.")
    if not may_launch_release_check(actor, version, kind) and not (
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
    if kind == "serving" and run is None:
        _base_serving_refusal(version)
    if kind == "inconsistency":
        other = inconsistency_other(
            actor=actor, version=version, run=run, raw=cleaned["other_version"]
        )
        batch = cleaned.get("batch")
        cleaned = {"other_version": other.pk, "other_label": f"{other.model.repo_id} {other.label}"}
        if batch is not None:
            inconsistency_batch(actor=actor, version=version, other=other, batch_id=batch)
            cleaned["batch"] = batch
    threshold = (
        _number(params, "threshold", 0.0, low=0.0, high=THRESHOLD_HIGH.get(kind, 1.0))
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
        stored = checks.release_check_finish(
            check_id=check_id, measure=measure, summary=summary, result=result, seconds=seconds
        )
        if stored.kind in RISK_KINDS and stored.status == ReleaseCheck.Status.FAILED:
            risk_entry_open_for_check(check=stored)
        return stored


def release_check_failed(*, ctx: JobContext, check_id: int, error: str) -> None:
    with owned_by(ctx.job_id, ctx.attempt):
        checks.release_check_error(check_id=check_id, error=error)
