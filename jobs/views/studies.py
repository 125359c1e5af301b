"""Study pages: launch a bake-off from a probe, compare its fine-tunes, choose one to register."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from jobs.forms import StudyChoiceForm, StudyCloseForm, StudyForm
from jobs.models import Study
from jobs.selectors import get_probe_for_user, get_study_for_user, study_rows
from jobs.services.studies import study_choose, study_close, study_launch, study_retry_scoring
from jobs.views.jobs import live_page
from portal.errors import NotFound
from portal.http import shown_to


def _first_error(form) -> str:
    return next(iter(form.errors.values()))[0]


@login_required
@require_POST
def study_new(request: HttpRequest, pk: int) -> HttpResponse:
    """The probe page's "fine-tune the top k" form."""
    probe = get_probe_for_user(request.user, pk)
    form = StudyForm(request.POST)
    if not form.is_valid():
        messages.error(request, _first_error(form))
        return redirect(probe.get_absolute_url())
    with shown_to(request) as attempt:
        study = study_launch(
            actor=request.user,
            probe=probe,
            k=form.cleaned_data["k"],
            reason=form.cleaned_data["reason"],
        )
    if not attempt.succeeded:
        return redirect(probe.get_absolute_url())
    messages.success(request, f"Study #{study.pk} queued: {study.k} fine-tunes.")
    return redirect(study.get_absolute_url())


@login_required
def study_detail(request: HttpRequest, pk: int) -> HttpResponse:
    study = get_study_for_user(request.user, pk)
    rows = study_rows(study)
    runs = [row["run"] for row in rows if row["run"] is not None]
    context = {
        "study": study,
        "probe": study.probe,
        "rows": rows,
        "active": any(run.job.is_active for run in runs)
        or (study.final_job is not None and study.final_job.is_active),
        "may_choose": study.status == Study.Status.OPEN
        and (request.user.pk == study.requested_by_id or request.user.is_staff),
        "charts": [
            {
                "id": f"study-chart-{run.pk}",
                "data_id": f"study-chart-{run.pk}-data",
                "run": run,
                "data": {
                    "steps": (run.curves or {}).get("steps", []),
                    "epochs": (run.curves or {}).get("epochs", []),
                },
            }
            for run in runs
        ],
        "chosen": study.chosen_run,
        "recipe": _recipe(study.config),
        "probe_first": rows[0]["result"] if rows else None,
        "validation_best": max(
            (row for row in rows if row["validation"].get("macro_f1") is not None),
            key=lambda row: row["validation"]["macro_f1"],
            default=None,
        ),
    }
    return live_page(request, "jobs/study_detail.html", "jobs/_study_status.html", context)


def _recipe(config: dict) -> str:
    """The recipe in one line: strategy, epochs, learning rate and its search."""
    search = "searched on validation around " if config.get("lr_search") else ""
    return (
        f"{config.get('strategy', '?')} fine-tune, up to {config.get('epochs')} epochs "
        f"(early stop after {config.get('patience')} without progress; 0 = never), learning rate "
        f"{search}{config.get('learning_rate')}, batch {config.get('batch_size')}, seed "
        f"{config.get('seed')}"
    )


@login_required
@require_POST
def study_choose_view(request: HttpRequest, pk: int) -> HttpResponse:
    study = get_study_for_user(request.user, pk)
    form = StudyChoiceForm(request.POST)
    if not form.is_valid():
        messages.error(request, _first_error(form))
        return redirect(study.get_absolute_url())
    run = study.runs.filter(pk=form.cleaned_data["run"]).first()
    if run is None:
        raise NotFound(f"That fine-tune is not part of study #{study.pk}.")
    with shown_to(request) as attempt:
        study = study_choose(
            actor=request.user, study=study, run=run, reason=form.cleaned_data["reason"]
        )
    if attempt.succeeded:
        messages.success(
            request,
            f"Fine-tune #{run.pk} chosen: job #{study.final_job_id} scores it on the test split "
            "once and registers it.",
        )
    return redirect(study.get_absolute_url())


@login_required
@require_POST
def study_retry_view(request: HttpRequest, pk: int) -> HttpResponse:
    study = get_study_for_user(request.user, pk)
    with shown_to(request) as attempt:
        study = study_retry_scoring(actor=request.user, study=study)
    if attempt.succeeded:
        messages.success(request, f"Scoring queued again as job #{study.final_job_id}.")
    return redirect(study.get_absolute_url())


@login_required
@require_POST
def study_close_view(request: HttpRequest, pk: int) -> HttpResponse:
    study = get_study_for_user(request.user, pk)
    form = StudyCloseForm(request.POST)
    if not form.is_valid():
        messages.error(request, _first_error(form))
        return redirect(study.get_absolute_url())
    with shown_to(request) as attempt:
        study = study_close(actor=request.user, study=study, reason=form.cleaned_data["reason"])
    if attempt.succeeded:
        messages.success(
            request, f"Study #{study.pk} closed without a choice; its kept weights are removed."
        )
    return redirect(study.get_absolute_url())
