"""Probe pages: the list, the launch form, a probe's live ranking, and probe history."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from governance.access import may_launch_finetunes
from jobs.forms import ProbeForm
from jobs.models import Job, ProbeRun
from jobs.selectors import (
    can_cancel,
    get_probe_for_user,
    probe_history,
    probe_results_of,
    probe_runs_visible_to,
    queue_warning,
    studies_of_probe,
)
from jobs.services.probes import probe_launch
from jobs.views.jobs import cancel_and_return, live_page
from jobs.views.probe_chart import tradeoff_charts
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
                max_parameters=data["max_parameters"],
                max_latency_ms=data["max_latency_ms"],
                shortlist_k=data["shortlist_k"],
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
        "near_tied": _near_tied(run, scored),
        "budget_choice": next((r for r in results if r.pk == run.budget_choice_id), None),
        "over_budget": [r for r in scored if r.budget_misses],
        "cost_method": next((r.cost_method for r in scored if r.cost_method), None),
        "tradeoff": tradeoff_charts(scored, run),
        "can_cancel": can_cancel(request.user, run.job),
        "queue_warning": queue_warning(run.job),
        "scored_count": len(scored),
        "may_study": len(scored) >= 2
        and run.job.status == Job.Status.SUCCEEDED
        and may_launch_finetunes(request.user),
        "studies": list(studies_of_probe(request.user, run)),
        "chart": {
            "labels": [f"{r.version.model.repo_id} {r.version.label}" for r in scored],
            "knn": [r.knn_accuracy for r in scored],
            "linear": [r.linear_probe_accuracy for r in scored],
            "logme": [r.logme for r in scored],
        },
    }
    return live_page(request, "jobs/probe_detail.html", "jobs/_probe_status.html", context)


def _near_tied(run: ProbeRun, scored: list) -> list:
    """The first place and every candidate within noise of it, in rank order; [] if clear."""
    if run.confidence != ProbeRun.Confidence.NEAR_TIE:
        return []
    return scored[:1] + [r for r in scored[1:] if r.within_noise]


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
