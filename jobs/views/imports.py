"""The import form: a model from the Hub, a server folder or an uploaded archive."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from governance.roles import is_steward
from jobs.forms import ImportForm
from jobs.services.imports import import_launch
from portal.errors import Forbidden
from portal.http import shown_to


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
        {"form": form, "import_roots": settings.IMPORT_ROOTS, "hf_endpoint": settings.HF_ENDPOINT},
    )
