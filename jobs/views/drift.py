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

from governance.access import may_launch_finetunes
from jobs.models import FineTuneRun
from jobs.selectors import drift_batches_of, drift_run_of
from jobs.services.drift import MIN_ROWS, drift_batch_upload, may_upload_drift, retrain_suggestion
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
    run = drift_run_of(version.pk)
    return render(
        request,
        "jobs/_drift.html",
        {
            "version": version,
            "batches": list(reversed(batches)),
            "chart": drift_chart(batches),
            "may_upload": may_upload_drift(request.user, version),
            "min_rows": MIN_ROWS,
            "images": run is not None and run.dataset_version.dataset.modality == "vision",
            "retrain": _retrain(request, run, batches),
        },
    )


def _retrain(request: HttpRequest, run: FineTuneRun | None, batches: list):
    """The retrain suggestion, for those who may launch fine-tunes, once the newest judged
    batch is in the retrain band."""
    judged = [b for b in batches if b.release_check and (b.release_check.result or {}).get("band")]
    if run is None or not judged or judged[-1].release_check.result["band"] != "retrain":
        return None
    if not may_launch_finetunes(request.user):
        return None
    return retrain_suggestion(run, judged[-1], viewer=request.user)


@login_required
@require_POST
def drift_upload(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version(request, pk)
    back = f"{version.get_absolute_url()}#drift"
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(
            request,
            "Choose a file of production inputs: a CSV, TSV or JSONL table for a text model, "
            "a zip of images for an image model.",
        )
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
