from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs.forms import ImportForm, WorkerCheckForm
from jobs.models import Job
from jobs.selectors import can_cancel, get_job_for_user, jobs_visible_to
from jobs.services import import_launch, job_cancel, job_create
from portal.errors import Forbidden, PortalError
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
