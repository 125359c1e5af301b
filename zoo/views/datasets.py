"""Dataset pages: upload (file, then columns), a dataset's page, sharing."""

from __future__ import annotations

import re
import zipfile

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal.errors import NotFound, PortalError
from portal.http import shown_to
from zoo import datasets
from zoo.forms import DatasetConfirmForm, DatasetShareForm, DatasetUploadForm
from zoo.selectors import datasets as selectors
from zoo.services import datasets as services


@login_required
def dataset_list(request: HttpRequest) -> HttpResponse:
    datasets = (
        selectors.datasets_visible_to(request.user)
        .annotate(version_count=Count("versions"))
        .order_by("-updated_at", "-id")
    )
    page = Paginator(datasets, 25).get_page(request.GET.get("page"))
    return render(request, "zoo/dataset_list.html", {"page": page})


@login_required
def dataset_upload(request: HttpRequest) -> HttpResponse:
    form = DatasetUploadForm(
        request.POST or None,
        request.FILES or None,
        user=request.user,
        initial={"dataset": request.GET.get("dataset")},
    )
    if request.method == "POST" and form.is_valid():
        with shown_to(request, form) as attempt:
            staged = services.dataset_stage_upload(
                actor=request.user, upload=form.cleaned_data["file"]
            )
        if attempt.succeeded:
            dataset = form.cleaned_data["dataset"]
            preview = staged.preview
            confirm = DatasetConfirmForm(
                user=request.user,
                columns=preview.get("columns", []),
                initial={
                    "token": staged.token(request.user),
                    "dataset": dataset,
                    "name": _suggest_name(staged.original_name) if dataset is None else "",
                    "sensitivity": dataset.sensitivity if dataset else "internal",
                    "text_column": preview.get("suggested_text") or "",
                    "label_column": preview.get("suggested_label") or "",
                },
            )
            return _confirm_page(request, confirm, staged, dataset)
    return render(request, "zoo/dataset_upload.html", {"form": form})


def _suggest_name(original: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", original.rsplit(".", 1)[0]).strip("-._")
    return stem[:100] or "dataset"


def _confirm_page(request, form, staged, dataset) -> HttpResponse:
    # The same bytes already recorded under another dataset you can see: say so, with a
    # link, before a second dataset is made of them.
    same_file = (
        selectors.dataset_versions_visible_to(request.user)
        .filter(sha256=staged.sha256)
        .exclude(dataset=dataset)
        .select_related("dataset__owner")
        .order_by("-created_at")
        .first()
    )
    return render(
        request,
        "zoo/dataset_confirm.html",
        {
            "form": form,
            "staged": staged,
            "preview": staged.preview,
            "dataset": dataset,
            "same_file": same_file,
        },
    )


@login_required
@require_POST
def dataset_confirm(request: HttpRequest) -> HttpResponse:
    with shown_to(request) as attempt:
        staged = services.StagedUpload.from_token(request.POST.get("token", ""), request.user)
    if not attempt.succeeded:
        return redirect("datasets:upload")
    form = DatasetConfirmForm(
        request.POST, user=request.user, columns=staged.preview.get("columns", [])
    )
    dataset = None
    if form.is_valid():
        data = form.cleaned_data
        dataset = data["dataset"]
        with shown_to(request, form) as attempt:
            version, created = services.dataset_create(
                actor=request.user,
                staged=staged,
                dataset=dataset,
                name=data["name"],
                description=data["description"],
                sensitivity=data["sensitivity"],
                text_column=data["text_column"],
                label_column=data["label_column"],
                slice_column=data["slice_column"],
                time_column=data["time_column"],
            )
        if attempt.succeeded:
            if created:
                messages.success(
                    request,
                    f"{version} recorded: {version.n_rows:,} rows, {version.n_classes} classes.",
                )
            else:
                messages.info(request, f"This file is already {version}; nothing was added.")
            for warning in version.warnings if created else []:
                messages.warning(request, warning)
            return redirect(f"{version.dataset.get_absolute_url()}?version={version.label}")
    # Only a page shown again needs the preview: it is read from the stored file.
    return _confirm_page(request, form, services.dataset_stage_preview(staged), dataset)


@login_required
def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = selectors.get_dataset_for_user(request.user, pk)
    versions = list(dataset.versions.select_related("created_by").order_by("-created_at", "-id"))
    wanted = request.GET.get("version")
    version = next((v for v in versions if v.label == wanted), versions[0] if versions else None)
    is_owner = dataset.owner_id == request.user.pk
    return render(
        request,
        "zoo/dataset_detail.html",
        {
            "dataset": dataset,
            "versions": versions,
            "version": version,
            "is_owner": is_owner,
            "shared_with": selectors.dataset_shared_with(dataset) if is_owner else [],
            "share_form": DatasetShareForm() if is_owner else None,
            "chart": {
                "labels": list(version.label_counts) if version else [],
                "counts": list(version.label_counts.values()) if version else [],
            },
        },
    )


def _share_target(form):
    user = get_user_model().objects.filter(username=form.cleaned_data["username"]).first()
    if user is None:
        raise PortalError(f"No user called {form.cleaned_data['username']!r}.", field="username")
    return user


@login_required
@require_POST
def dataset_share(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = selectors.get_dataset_for_user(request.user, pk)
    form = DatasetShareForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a user name.")
    else:
        with shown_to(request) as attempt:
            user = _share_target(form)
            services.dataset_share(dataset=dataset, actor=request.user, user=user)
        if attempt.succeeded:
            messages.success(request, f"{dataset} is now shared with {user.get_username()}.")
    return redirect(dataset.get_absolute_url())


@login_required
@require_POST
def dataset_unshare(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = selectors.get_dataset_for_user(request.user, pk)
    form = DatasetShareForm(request.POST)
    if form.is_valid():
        with shown_to(request) as attempt:
            user = _share_target(form)
            services.dataset_unshare(dataset=dataset, actor=request.user, user=user)
        if attempt.succeeded:
            messages.success(request, f"{user.get_username()} no longer sees {dataset}.")
    return redirect(dataset.get_absolute_url())


@login_required
def dataset_thumbnail(request: HttpRequest, pk: int, label: str, index: int) -> HttpResponse:
    """A thumbnail of one of a version's sample images (only those: the page shows them)."""
    dataset = selectors.get_dataset_for_user(request.user, pk)
    version = dataset.versions.filter(label=label).first()
    sample = version.sample if version is not None else []
    if not 0 <= index < len(sample) or not (sample[index] or {}).get("image"):
        raise NotFound("No such image.")
    limits = services.dataset_limits()
    try:
        with default_storage.open(version.blob_name, "rb") as stored:
            png = datasets.image_thumbnail(
                stored,
                sample[index]["image"],
                max_bytes=limits.max_archive_member_bytes,
                max_pixels=limits.max_image_pixels,
            )
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise NotFound(f"The image cannot be shown: {exc}") from None
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response
