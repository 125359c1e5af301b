"""Selection studies: a probe's top candidates fine-tuned alike, compared on validation, one chosen.

Test data is write-only: every choice (learning rate, epoch, which candidate)
is made on the validation split. The study's fine-tunes are deferred (their
worker trains, validates and keeps the best-validation weights, and never
scores the test split); choosing one queues the one job that scores it on
test and registers it, through the same path as any fine-tune.
"""

from __future__ import annotations

from typing import Any

from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from governance.access import finetune_refusal, may_launch_finetunes
from governance.audit import audit_record
from jobs.engine import JobContext, job_cancel, job_create, owned_by
from jobs.ml.config import FineTuneConfig
from jobs.models import FineTuneRun, Job, ProbeResult, ProbeRun, Study
from jobs.services.finetunes import finetune_check, finetune_record
from portal.errors import Conflict, Forbidden, NotFound, PortalError

MIN_K = 2


def _is_staff(actor) -> bool:
    return bool(getattr(actor, "is_authenticated", False) and actor.is_staff)


MAX_REASON = 2000


def study_candidates(probe: ProbeRun) -> list[ProbeResult]:
    """The probe's scored candidates in rank order: what a study picks its top k from."""
    return list(
        probe.results.filter(status=ProbeResult.Status.SUCCEEDED, rank__isnull=False)
        .select_related("version__model", "version__license")
        .order_by("rank", "position")
    )


def study_launch(
    *,
    actor,
    probe: ProbeRun,
    k: int,
    reason: str = "",
    config: dict[str, Any] | None = None,
) -> Study:
    """Fine-tune the probe's top ``k`` candidates with one recipe, as one study; all or nothing.

    The recipe is the automatic one (``FineTuneConfig()``'s defaults; ``config``
    overrides fields for every candidate alike), on the probe's dataset with the
    same split and seed for all, so the comparison is fair. Each candidate goes
    through every check of ``finetune_launch``; the first refusal names the
    candidate and nothing is created.
    """
    _check_probe(actor, probe)
    if not may_launch_finetunes(actor):
        raise Forbidden("Only members of ml-engineers may launch fine-tunes.")
    candidates = study_candidates(probe)
    k = _check_k(k, len(candidates))
    reason = _clean_reason(reason, field="reason", required=False)
    chosen = candidates[:k]
    strategy = FineTuneConfig().strategy
    plans = [_plan_for(actor, probe, result, strategy=strategy, config=config) for result in chosen]
    recipe = plans[0].config.as_dict()
    with transaction.atomic():
        study = Study.objects.create(
            probe=probe,
            requested_by=actor,
            k=k,
            candidates=[{"version": r.version_id, "result": r.pk, "rank": r.rank} for r in chosen],
            reason=reason,
            config=recipe,
            split_params=plans[0].split_params,
        )
        runs = [finetune_record(actor=actor, plan=plan, study=study) for plan in plans]
        audit_record(
            actor=actor,
            verb="study.launch",
            target=study,
            payload={
                "probe": probe.pk,
                "k": k,
                "versions": [r.version_id for r in chosen],
                "runs": [run.pk for run in runs],
                "reason": reason,
                "config": recipe,
                "split_params": plans[0].split_params,
            },
        )
    return study


def _check_probe(actor, probe: ProbeRun) -> None:
    visible = probe.requested_by_id == getattr(actor, "pk", None) or _is_staff(actor)
    if not visible:
        raise NotFound("No such probe.", field="probe")
    if probe.job.status != Job.Status.SUCCEEDED:
        raise PortalError(
            f"Probe #{probe.pk} has not finished ({probe.job.get_status_display().lower()}); a "
            "study fine-tunes the candidates of a finished probe.",
            field="probe",
        )


def _check_k(k, scored: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise PortalError("k must be a whole number of candidates.", field="k")
    if scored < MIN_K:
        raise PortalError(
            f"The probe scored {scored} candidate{'s' if scored != 1 else ''}; a study compares "
            f"at least {MIN_K}.",
            field="k",
        )
    if not MIN_K <= k <= scored:
        raise PortalError(
            f"k must be between {MIN_K} and {scored} (the candidates this probe scored).",
            field="k",
        )
    return k


def _clean_reason(reason: str, *, field: str, required: bool, missing: str = "") -> str:
    reason = (reason or "").strip()
    if required and not reason:
        raise PortalError(
            missing or "Say why you chose this one: the study keeps it for the next team.",
            field=field,
        )
    if len(reason) > MAX_REASON:
        raise PortalError(f"Keep the reason under {MAX_REASON:,} characters.", field=field)
    return reason


def _plan_for(actor, probe: ProbeRun, result: ProbeResult, *, strategy: str, config):
    """The checks of ``finetune_launch`` for one candidate; a refusal names which one."""
    try:
        return finetune_check(
            actor=actor,
            base_version=result.version,
            dataset_version=probe.dataset_version,
            strategy=strategy,
            config=config,
        )
    except PortalError as exc:
        name = f"{result.version.model.repo_id} {result.version.label}"
        message = exc.message if name in exc.message else f"{name} (rank {result.rank}): {exc}"
        raise type(exc)(message, field=exc.field) from exc


def study_choose(*, actor, study: Study, run: FineTuneRun, reason: str) -> Study:
    """Choose the study's winner, once: queue its one test scoring and registration.

    Only the study's requester (or staff) may choose, only a run of this study
    that trained and kept its weights, only once every run has finished, and
    only while the study is open. The
    other runs' kept weights are removed after commit; they were never scored
    on test and never will be.
    """
    if study.requested_by_id != getattr(actor, "pk", None) and not _is_staff(actor):
        raise Forbidden("Only the person who launched the study (or staff) may choose its winner.")
    reason = _clean_reason(reason, field="reason", required=True)
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        if locked.status != Study.Status.OPEN:
            raise Conflict(
                f"Study #{locked.pk} was decided already: fine-tune #{locked.chosen_run_id} "
                "was chosen. A study chooses once."
            )
        run = _check_choice(locked, run)
        unfinished = list(
            locked.runs.filter(job__status__in=Job.ACTIVE).values_list("pk", flat=True)
        )
        if unfinished:
            raise Conflict(
                f"Fine-tune #{unfinished[0]} of the study is still running; choose once every "
                "candidate has finished (or cancel those you no longer need), so the choice "
                "compares them all."
            )
        job = job_create(
            kind=Job.Kind.STUDY_CHOICE,
            requested_by=actor,
            params={"study": locked.pk, "run": run.pk},
        )
        others = list(locked.runs.exclude(pk=run.pk).values_list("pk", "kept_weights"))
        locked.runs.exclude(pk=run.pk).update(kept_weights={})
        Study.objects.filter(pk=locked.pk).update(
            status=Study.Status.SCORING,
            chosen_run=run,
            chosen_by=actor,
            choice_reason=reason,
            chosen_at=timezone.now(),
            final_job=job,
        )
        audit_record(
            actor=actor,
            verb="study.choose",
            target=locked,
            payload={
                "run": run.pk,
                "version": run.base_version_id,
                "reason": reason,
                "validation": (run.training or {}).get("validation"),
                "job": job.pk,
                "discarded": [pk for pk, _ in others],
            },
        )
        transaction.on_commit(lambda: _drop_weights([w for _, w in others]))
    locked.refresh_from_db()
    return locked


def study_retry_scoring(*, actor, study: Study) -> Study:
    """Queue the chosen run's scoring again after its job failed or was cancelled.

    The choice stands (the same run, the same reason); a test score an earlier
    job already wrote is reused, so the test split is still scored once.
    """
    if study.requested_by_id != getattr(actor, "pk", None) and not _is_staff(actor):
        raise Forbidden("Only the person who launched the study (or staff) may retry its scoring.")
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        final = Job.objects.filter(pk=locked.final_job_id).first()
        if locked.status != Study.Status.SCORING or final is None or final.is_active:
            raise Conflict(f"Study #{locked.pk} is not waiting for a failed scoring job.")
        if final.status == Job.Status.SUCCEEDED:
            raise Conflict(f"Study #{locked.pk}'s scoring job succeeded already.")
        job = job_create(
            kind=Job.Kind.STUDY_CHOICE,
            requested_by=actor,
            params={"study": locked.pk, "run": locked.chosen_run_id, "retry_of": final.pk},
        )
        Study.objects.filter(pk=locked.pk).update(final_job=job)
        audit_record(
            actor=actor,
            verb="study.retry_scoring",
            target=locked,
            payload={"run": locked.chosen_run_id, "job": job.pk, "failed_job": final.pk},
        )
    locked.refresh_from_db()
    return locked


def study_close(*, actor, study: Study, reason: str) -> Study:
    """Close an open study without choosing: when no candidate is worth registering.

    Only the study's requester (or staff), only while it is open. Candidates
    still training are cancelled; every kept weight is removed after commit;
    nothing is scored on test or registered, and the study with its reason
    stays on record.
    """
    if study.requested_by_id != getattr(actor, "pk", None) and not _is_staff(actor):
        raise Forbidden("Only the person who launched the study (or staff) may close it.")
    reason = _clean_reason(
        reason,
        field="reason",
        required=True,
        missing="Say why you close it without a choice: the study keeps it for the next team.",
    )
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        if locked.status != Study.Status.OPEN:
            raise Conflict(
                f"Study #{locked.pk} is {locked.get_status_display().lower()}: only an open "
                "study can be closed without a choice."
            )
        runs = list(locked.runs.select_related("job"))
        cancelled = []
        for run in runs:
            if run.job.is_active:
                job_cancel(job=run.job, actor=actor)
                cancelled.append(run.pk)
        kept = [run.kept_weights for run in runs if run.kept_weights]
        locked.runs.update(kept_weights={})
        Study.objects.filter(pk=locked.pk).update(
            status=Study.Status.CLOSED,
            closed_by=actor,
            close_reason=reason,
            closed_at=timezone.now(),
        )
        audit_record(
            actor=actor,
            verb="study.close",
            target=locked,
            payload={
                "reason": reason,
                "cancelled": cancelled,
                "validation": {str(run.pk): (run.training or {}).get("validation") for run in runs},
            },
        )
        transaction.on_commit(lambda: _drop_weights(kept))
    locked.refresh_from_db()
    return locked


def _check_choice(study: Study, run: FineTuneRun) -> FineTuneRun:
    run = (
        FineTuneRun.objects.select_related("job", "requested_by", "base_version__model")
        .filter(pk=run.pk)
        .first()
    )
    if run is None or run.study_id != study.pk:
        raise PortalError(f"That fine-tune is not part of study #{study.pk}.", field="run")
    if run.job.status != Job.Status.SUCCEEDED or not run.kept_weights:
        raise PortalError(
            f"Fine-tune #{run.pk} has not finished training "
            f"({run.job.get_status_display().lower()}); choose among those that did.",
            field="run",
        )
    # The approval behind it may have lapsed, or the base been blocked, since it trained.
    refusal = finetune_refusal(run.requested_by, run.base_version)
    if refusal is not None:
        raise refusal
    return run


def _drop_weights(kept: list[dict]) -> None:
    for weights in kept:
        if weights.get("name"):
            default_storage.delete(weights["name"])


def study_decided(*, ctx: JobContext, study_id: int) -> None:
    """The chosen run is registered: the study is decided (for the attempt that owns the job)."""
    with owned_by(ctx.job_id, ctx.attempt):
        study = Study.objects.select_for_update().get(pk=study_id)
        if study.status == Study.Status.DECIDED:
            return
        run = FineTuneRun.objects.select_related("output_version").get(pk=study.chosen_run_id)
        Study.objects.filter(pk=study.pk).update(status=Study.Status.DECIDED)
        FineTuneRun.objects.filter(pk=run.pk).update(kept_weights={})
        audit_record(
            actor=study.chosen_by,
            verb="study.decide",
            target=study,
            payload={
                "run": run.pk,
                "version": run.output_version_id,
                "test": {
                    "accuracy": (run.metrics or {}).get("accuracy"),
                    "macro_f1": (run.metrics or {}).get("macro_f1"),
                },
            },
        )
