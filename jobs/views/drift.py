"""Drift monitoring on a fine-tuned version's page: upload a batch, see every batch and a chart.

The section is loaded into the version page by htmx (as the probe history is),
so the catalogue page needs nothing of jobs; the upload posts here and goes back.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from jobs.selectors import drift_batches_of
from jobs.services.drift import MIN_ROWS, drift_batch_upload, may_upload_drift
from jobs.views.drift_chart import drift_chart
from portal.errors import NotFound
from portal.http import shown_to
from zoo.selectors.catalogue import versions_visible_to


def _version(request: HttpRequest, pk: int):
    version = versions_visible_to(request.user).select_related("model").filter(pk=pk).first()
    if version is None:
        raise NotFound("No such version.")
    return version


@login_required
@require_GET
def drift_section(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version(request, pk)
    batches = drift_batches_of(request.user, version.pk)
    return render(
        request,
        "jobs/_drift.html",
        {
            "version": version,
            "batches": list(reversed(batches)),
            "chart": drift_chart(batches),
            "may_upload": may_upload_drift(request.user, version),
            "min_rows": MIN_ROWS,
        },
    )


@login_required
@require_POST
def drift_upload(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version(request, pk)
    back = f"{version.get_absolute_url()}#drift"
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, "Choose a CSV, TSV or JSONL file of production inputs.")
        return redirect(back)
    with shown_to(request) as attempt:
        batch = drift_batch_upload(
            actor=request.user,
            version=version,
            upload=upload,
            text_column=request.POST.get("text_column", ""),
        )
    if attempt.succeeded:
        messages.success(
            request,
            f"Batch #{batch.pk} ({batch.n_rows} inputs) is compared with the training data as "
            f"job #{batch.release_check.job_id}; its result appears here and in the card.",
        )
    return redirect(back)
