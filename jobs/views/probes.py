"""Probe pages: the list, the launch form, a probe's live ranking, and probe history."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs.forms import ProbeForm
from jobs.selectors import (
    can_cancel,
    get_probe_for_user,
    probe_history,
    probe_results_of,
    probe_runs_visible_to,
    queue_warning,
)
from jobs.services.probes import probe_launch
from jobs.views.jobs import cancel_and_return, live_page
from portal.http import shown_to
from zoo.selectors.datasets import dataset_versions_visible_to


@login_required
def probe_list(request: HttpRequest) -> HttpResponse:
    runs = probe_runs_visible_to(request.user).annotate(candidates=Count("results"))
    page = Paginator(runs, 25).get_page(request.GET.get("page"))
    return render(request, "jobs/probe_list.html", {"page": page})


@login_required
def probe_new(request: HttpRequest) -> HttpResponse:
    chosen = request.POST.get("dataset_version") or request.GET.get("dataset_version")
    dataset_version = (
        dataset_versions_visible_to(request.user).filter(pk=chosen).first()
        if str(chosen or "").isdigit()
        else None
    )
    modality = dataset_version.dataset.modality if dataset_version else ""
    initial = {"dataset_version": dataset_version}
    if request.GET.get("version", "").isdigit():
        initial["versions"] = [int(request.GET["version"])]
    form = ProbeForm(request.POST or None, user=request.user, modality=modality, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        with shown_to(request, form) as attempt:
            run = probe_launch(
                actor=request.user,
                dataset_version=data["dataset_version"],
                versions=list(data["versions"]),
                max_examples=data["max_examples"],
                seed=data["seed"],
            )
        if attempt.succeeded:
            messages.success(request, f"Probe queued as job #{run.job_id}.")
            return redirect(run.get_absolute_url())
    return render(
        request,
        "jobs/probe_new.html",
        {"form": form, "dataset_version": dataset_version, "modality": modality},
    )


@login_required
def probe_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_probe_for_user(request.user, pk)
    results = probe_results_of(run)
    scored = [r for r in results if r.rank is not None]
    context = {
        "run": run,
        "job": run.job,
        "results": results,
        "best": scored[0] if scored else None,
        "can_cancel": can_cancel(request.user, run.job),
        "queue_warning": queue_warning(run.job),
        "chart": {
            "labels": [f"{r.version.model.repo_id} {r.version.label}" for r in scored],
            "knn": [r.knn_accuracy for r in scored],
            "linear": [r.linear_probe_accuracy for r in scored],
            "logme": [r.logme for r in scored],
        },
    }
    return live_page(request, "jobs/probe_detail.html", "jobs/_probe_status.html", context)


@login_required
@require_POST
def probe_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_probe_for_user(request.user, pk)
    return cancel_and_return(request, run.job, what="Probe", to=run.get_absolute_url())


@login_required
def probe_history_fragment(request: HttpRequest) -> HttpResponse:
    """Probe history for the model and dataset pages, loaded into them by htmx."""
    model_id = request.GET.get("model", "")
    dataset_id = request.GET.get("dataset", "")
    results = probe_history(
        request.user,
        model_id=int(model_id) if model_id.isdigit() else None,
        dataset_id=int(dataset_id) if dataset_id.isdigit() else None,
    )[:20]
    return render(
        request,
        "jobs/_probe_history.html",
        {"results": results, "for_model": bool(model_id), "for_dataset": bool(dataset_id)},
    )
