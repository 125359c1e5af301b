from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs.forms import FineTuneForm, ImportForm, ProbeForm, WorkerCheckForm
from jobs.models import Job
from jobs.selectors import (
    can_cancel,
    finetune_runs_visible_to,
    finetune_view_data,
    get_finetune_for_user,
    get_job_for_user,
    get_probe_for_user,
    jobs_visible_to,
    may_launch_finetunes,
    probe_history,
    probe_results_of,
    probe_runs_visible_to,
)
from jobs.services import (
    finetune_launch,
    import_launch,
    job_cancel,
    job_create,
    lora_targets_for,
    probe_launch,
)
from portal.errors import Forbidden, PortalError, record_refusal
from zoo.selectors import is_steward


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    jobs = jobs_visible_to(request.user)
    status = request.GET.get("status", "")
    if status in Job.Status.values:
        jobs = jobs.filter(status=status)
    page = Paginator(jobs, 25).get_page(request.GET.get("page"))
    return render(
        request,
        "jobs/job_list.html",
        {
            "page": page,
            "status": status,
            "statuses": Job.Status.choices,
            "worker_check_form": WorkerCheckForm() if request.user.is_staff else None,
        },
    )


@login_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_job_for_user(request.user, pk)
    context = {"job": job, "can_cancel": can_cancel(request.user, job)}
    if request.headers.get("HX-Request"):
        return render(request, "jobs/_job_status.html", context)
    return render(request, "jobs/job_detail.html", context)


@login_required
@require_POST
def job_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_job_for_user(request.user, pk)
    if not can_cancel(request.user, job):
        messages.error(request, "This job cannot be cancelled by you, or has already finished.")
    else:
        job_cancel(job=job, actor=request.user)
        messages.success(request, f"Job #{job.pk} cancelled.")
    return redirect("jobs:detail", pk=job.pk)


@staff_member_required
@require_POST
def worker_check(request: HttpRequest) -> HttpResponse:
    form = WorkerCheckForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a queue for the worker check.")
        return redirect("jobs:list")
    with transaction.atomic():
        job = job_create(
            kind=Job.Kind.WORKER_CHECK,
            requested_by=request.user,
            params={"require_gpu": form.cleaned_data["require_gpu"]},
            queue=form.cleaned_data["queue"],
        )
    messages.success(request, f"Worker check queued on '{job.queue}'.")
    return redirect("jobs:detail", pk=job.pk)


@login_required
def import_model(request: HttpRequest) -> HttpResponse:
    if not is_steward(request.user):
        raise Forbidden("Only stewards may import models.")
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            with transaction.atomic():
                job = import_launch(
                    actor=request.user,
                    source=data["source"],
                    repo_id=data["repo_id"],
                    hub_repo_id=data.get("hub_repo_id", ""),
                    revision=data.get("revision", ""),
                    folder=data.get("folder", ""),
                    upload=data.get("archive"),
                )
        except PortalError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"Import queued as job #{job.pk}.")
            return redirect("jobs:detail", pk=job.pk)
    return render(
        request,
        "jobs/import.html",
        {"form": form, "import_roots": settings.IMPORT_ROOTS, "hf_endpoint": settings.HF_ENDPOINT},
    )


# --- probes ---------------------------------------------------------------------


@login_required
def probe_list(request: HttpRequest) -> HttpResponse:
    runs = probe_runs_visible_to(request.user).annotate(candidates=Count("results"))
    page = Paginator(runs, 25).get_page(request.GET.get("page"))
    return render(request, "jobs/probe_list.html", {"page": page})


@login_required
def probe_new(request: HttpRequest) -> HttpResponse:
    from zoo.selectors import dataset_versions_visible_to

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
        try:
            run = probe_launch(
                actor=request.user,
                dataset_version=data["dataset_version"],
                versions=list(data["versions"]),
                max_examples=data["max_examples"],
                seed=data["seed"],
            )
        except PortalError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
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
        "chart": {
            "labels": [f"{r.version.model.repo_id} {r.version.label}" for r in scored],
            "knn": [r.knn_accuracy for r in scored],
            "linear": [r.linear_probe_accuracy for r in scored],
            "logme": [r.logme for r in scored],
        },
    }
    if request.headers.get("HX-Request"):
        return render(request, "jobs/_probe_status.html", context)
    return render(request, "jobs/probe_detail.html", context)


@login_required
@require_POST
def probe_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_probe_for_user(request.user, pk)
    if not can_cancel(request.user, run.job):
        messages.error(request, "This probe cannot be cancelled by you, or has already finished.")
    else:
        job_cancel(job=run.job, actor=request.user)
        messages.success(request, "Probe cancelled.")
    return redirect(run.get_absolute_url())


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


# --- fine-tunes -----------------------------------------------------------------


@login_required
def finetune_list(request: HttpRequest) -> HttpResponse:
    runs = finetune_runs_visible_to(request.user)
    page = Paginator(runs, 25).get_page(request.GET.get("page"))
    return render(
        request,
        "jobs/finetune_list.html",
        {"page": page, "may_launch": may_launch_finetunes(request.user)},
    )


def _picked(queryset, raw):
    return queryset.filter(pk=raw).first() if str(raw or "").isdigit() else None


@login_required
def finetune_new(request: HttpRequest) -> HttpResponse:
    """The launch form; ``?version=`` and ``?dataset_version=`` preselect the pair."""
    from jobs.models import FineTuneRun
    from jobs.selectors import versions_finetunable_by
    from jobs.services import finetune_defaults
    from zoo.selectors import dataset_versions_visible_to

    if not may_launch_finetunes(request.user):
        raise Forbidden("Only members of ml-engineers may launch fine-tunes.")
    source = request.POST if request.method == "POST" else request.GET
    strategy = source.get("strategy", "head")
    if strategy not in FineTuneRun.Strategy.values:
        strategy = "head"
    base = _picked(
        versions_finetunable_by(request.user), source.get("base_version") or source.get("version")
    )
    dataset_version = _picked(
        dataset_versions_visible_to(request.user), source.get("dataset_version")
    )
    lora_targets = lora_targets_for(base) if base is not None else []
    form = FineTuneForm(
        request.POST or None,
        user=request.user,
        strategy=strategy,
        lora_targets=lora_targets,
        initial={"base_version": base, "dataset_version": dataset_version},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            run = finetune_launch(
                actor=request.user,
                base_version=data["base_version"],
                dataset_version=data["dataset_version"],
                strategy=data["strategy"],
                config=form.config(),
                split=data["split"],
                test_fraction=data["test_fraction"],
                val_fraction=data["val_fraction"],
                test_dataset_version=data.get("test_dataset_version"),
            )
        except PortalError as exc:
            if isinstance(exc, Forbidden):
                record_refusal(request, exc)
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"Fine-tune queued as job #{run.job_id}.")
            return redirect(run.get_absolute_url())
    # Each strategy's defaults, so the page can refill the fields when the strategy changes.
    defaults = {}
    for name in FineTuneRun.Strategy.values:
        values = finetune_defaults(name)
        values["lora_target_modules"] = ", ".join(
            lora_targets or values.get("lora_target_modules") or []
        )
        defaults[name] = values
    return render(
        request,
        "jobs/finetune_new.html",
        {
            "form": form,
            "strategy": strategy,
            "defaults": defaults,
            "lora_fields": FineTuneForm.LORA_FIELDS,
            "hyperparameters": [
                form[name]
                for name in FineTuneForm.CONFIG_FIELDS
                if name not in FineTuneForm.LORA_FIELDS
            ],
            "lora": [form[name] for name in FineTuneForm.LORA_FIELDS],
        },
    )


@login_required
def finetune_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_finetune_for_user(request.user, pk)
    context = {
        "run": run,
        "job": run.job,
        "can_cancel": can_cancel(request.user, run.job),
        **finetune_view_data(run),
    }
    if request.headers.get("HX-Request"):
        return render(request, "jobs/_finetune_status.html", context)
    return render(request, "jobs/finetune_detail.html", context)


@login_required
@require_POST
def finetune_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_finetune_for_user(request.user, pk)
    if not can_cancel(request.user, run.job):
        messages.error(
            request, "This fine-tune cannot be cancelled by you, or has already finished."
        )
    else:
        job_cancel(job=run.job, actor=request.user)
        messages.success(request, "Fine-tune cancelled.")
    return redirect(run.get_absolute_url())
