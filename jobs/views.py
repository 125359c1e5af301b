from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs.forms import WorkerCheckForm
from jobs.models import Job
from jobs.selectors import can_cancel, get_job_for_user, jobs_visible_to
from jobs.services import job_cancel, job_create


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
