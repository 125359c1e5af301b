"""The import form (a model from the Hub, a server folder or an uploaded archive), and the
version page's "convert to safetensors" button."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from governance.roles import is_steward
from jobs.forms import ImportForm
from jobs.services.conversions import conversion_launch
from jobs.services.imports import import_launch
from portal.errors import Forbidden, NotFound
from portal.http import shown_to
from zoo.selectors.catalogue import versions_visible_to


@login_required
def import_model(request: HttpRequest) -> HttpResponse:
    if not is_steward(request.user):
        raise Forbidden("Only stewards may import models.")
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        with shown_to(request, form) as attempt, transaction.atomic():
            job = import_launch(
                actor=request.user,
                source=data["source"],
                repo_id=data["repo_id"],
                hub_repo_id=data.get("hub_repo_id", ""),
                revision=data.get("revision", ""),
                folder=data.get("folder", ""),
                upload=data.get("archive"),
            )
        if attempt.succeeded:
            messages.success(request, f"Import queued as job #{job.pk}.")
            return redirect("jobs:detail", pk=job.pk)
    return render(
        request,
        "jobs/import.html",
        {
            "form": form,
            "import_roots": [
                {"path": str(root), "exists": Path(root).is_dir()} for root in settings.IMPORT_ROOTS
            ],
            "hf_endpoint": settings.HF_ENDPOINT,
        },
    )


@login_required
@require_POST
def version_convert(request: HttpRequest, pk: int) -> HttpResponse:
    version = versions_visible_to(request.user).select_related("model").filter(pk=pk).first()
    if version is None:
        raise NotFound("No such version.")
    with shown_to(request) as attempt, transaction.atomic():
        job = conversion_launch(actor=request.user, version=version)
    if attempt.succeeded:
        messages.success(
            request,
            f"Converting {version.model.repo_id} {version.label} to safetensors as job #{job.pk}; "
            "the result is a new version.",
        )
        return redirect("jobs:detail", pk=job.pk)
    return redirect(f"{version.model.get_absolute_url()}?version={version.label}#files")
