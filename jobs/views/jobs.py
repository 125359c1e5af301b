"""The jobs list and a job's page, with live progress, cancel and the staff's worker check."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from jobs.engine import job_cancel
from jobs.forms import WorkerCheckForm
from jobs.models import Job
from jobs.selectors import can_cancel, get_job_for_user, jobs_visible_to, queue_warning
from jobs.services.checks import worker_check_launch
from portal.http import shown_to


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
    context = {
        "job": job,
        "can_cancel": can_cancel(request.user, job),
        "queue_warning": queue_warning(job),
    }
    return live_page(request, "jobs/job_detail.html", "jobs/_job_status.html", context)


def live_page(request: HttpRequest, page: str, fragment: str, context: dict) -> HttpResponse:
    """The whole page, or only its live part when htmx polls for it."""
    return render(request, fragment if request.headers.get("HX-Request") else page, context)


def cancel_and_return(request: HttpRequest, job: Job, *, what: str, to: str) -> HttpResponse:
    """Cancel ``job`` for the person at the keyboard and go back to ``to``."""
    with shown_to(request) as attempt:
        job_cancel(job=job, actor=request.user)
    if attempt.succeeded:
        messages.success(request, f"{what} cancelled.")
    return redirect(to)


@login_required
@require_POST
def job_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_job_for_user(request.user, pk)
    to = reverse("jobs:detail", kwargs={"pk": job.pk})
    return cancel_and_return(request, job, what=f"Job #{job.pk}", to=to)


@login_required
@require_POST
def worker_check(request: HttpRequest) -> HttpResponse:
    form = WorkerCheckForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a queue for the worker check.")
        return redirect("jobs:list")
    with shown_to(request) as attempt:
        job = worker_check_launch(
            actor=request.user,
            queue=form.cleaned_data["queue"],
            require_gpu=form.cleaned_data["require_gpu"],
        )
    if not attempt.succeeded:
        return redirect("jobs:list")
    messages.success(request, f"Worker check queued on '{job.queue}'.")
    return redirect("jobs:detail", pk=job.pk)
