from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal.errors import Forbidden, NotFound, PortalError
from zoo import selectors, services
from zoo.cards import render_markdown
from zoo.forms import (
    CatalogueFilterForm,
    DatasetConfirmForm,
    DatasetShareForm,
    DatasetUploadForm,
    ModelEditForm,
    ModelStatusForm,
    VersionLicenseForm,
    VersionNotesForm,
)
from zoo.hub import use_this_model
from zoo.models import CatalogModel


@login_required
def catalogue(request: HttpRequest) -> HttpResponse:
    form = CatalogueFilterForm(request.GET or None)
    query = selectors.CatalogueQuery()
    if form.is_bound and form.is_valid():
        query = selectors.CatalogueQuery(**form.cleaned_data)
    results = selectors.search_catalogue(request.user, query)
    page = Paginator(results, 20).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    return render(
        request,
        "zoo/catalogue.html",
        {
            "form": form if form.is_bound else CatalogueFilterForm(),
            "page": page,
            "query_string": params.urlencode(),
            "tasks": selectors.task_choices(),
            "is_steward": selectors.is_steward(request.user),
        },
    )


def _model(request: HttpRequest, namespace: str, name: str) -> CatalogModel:
    return selectors.get_model_for_user(request.user, f"{namespace}/{name}")


def _risk_context(user) -> dict:
    # The model page shows the version's risk register, which governance keeps.
    from governance.forms import RiskForm
    from governance.models import RiskEntry
    from governance.selectors import can_edit_risks

    return {
        "can_edit_risks": can_edit_risks(user),
        "risk_form": RiskForm(),
        "risk_statuses": RiskEntry.Status.choices,
    }


def _steward_only(request: HttpRequest) -> None:
    if not selectors.is_steward(request.user):
        raise Forbidden("Only stewards may change catalogue entries.")


@login_required
def model_detail(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    model = _model(request, namespace, name)
    versions = list(
        model.versions.select_related("license", "parent__model", "created_by").order_by(
            "-created_at", "-id"
        )
    )
    if not versions:
        raise NotFound("This model has no versions yet.")
    wanted = request.GET.get("version")
    version = next((v for v in versions if wanted in (v.label, v.revision)), versions[0])
    is_steward = selectors.is_steward(request.user)
    return render(
        request,
        "zoo/model_detail.html",
        {
            "model": model,
            "version": version,
            "versions": versions,
            "artifacts": version.artifacts.all(),
            "card_html": render_markdown(version.card_markdown) if version.card_markdown else "",
            "lineage": selectors.lineage(version),
            "risks": version.risks.select_related("owner"),
            **_risk_context(request.user),
            "is_steward": is_steward,
            **use_this_model(request, version),
            "status_form": ModelStatusForm(initial={"status": model.status})
            if is_steward
            else None,
            "license_form": VersionLicenseForm(initial={"license": version.license.spdx_id})
            if is_steward
            else None,
        },
    )


@login_required
def model_edit(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    model = _model(request, namespace, name)
    _steward_only(request)
    version = model.versions.order_by("-created_at", "-id").first()
    form = ModelEditForm(request.POST or None, instance=model)
    notes = VersionNotesForm(request.POST or None, instance=version, prefix="v")
    if request.method == "POST" and form.is_valid() and notes.is_valid():
        services.catalog_model_update(
            model=CatalogModel.objects.get(pk=model.pk),
            actor=request.user,
            **{k: form.cleaned_data[k] for k in (*form.Meta.fields, "domain_tags")},
        )
        services.version_update_metadata(version=version, actor=request.user, **notes.cleaned_data)
        messages.success(request, "Saved.")
        return redirect("zoo:model", namespace=namespace, name=name)
    return render(
        request,
        "zoo/model_edit.html",
        {"model": model, "form": form, "notes": notes, "version": version},
    )


@login_required
@require_POST
def model_status(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    model = _model(request, namespace, name)
    _steward_only(request)
    form = ModelStatusForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a status.")
    else:
        services.catalog_model_set_status(
            model=model,
            status=form.cleaned_data["status"],
            reason=form.cleaned_data["reason"],
            actor=request.user,
        )
        messages.success(request, f"{model.repo_id} is now {form.cleaned_data['status']}.")
    return redirect("zoo:model", namespace=namespace, name=name)


@login_required
@require_POST
def version_license(request: HttpRequest, namespace: str, name: str, label: str) -> HttpResponse:
    model = _model(request, namespace, name)
    _steward_only(request)
    version = model.versions.filter(label=label).first()
    if version is None:
        raise NotFound("No such version.")
    form = VersionLicenseForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a license from the list.")
    else:
        version = services.version_set_license(
            version=version, license=form.cleaned_data["license"], actor=request.user
        )
        state = "still blocked" if version.is_blocked else "available"
        messages.success(
            request, f"License set to {version.license.spdx_id}; the version is {state}."
        )
    return redirect(f"{model.get_absolute_url()}?version={label}")


# --- datasets -------------------------------------------------------------------


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
        try:
            staged = services.dataset_stage_upload(
                actor=request.user, upload=form.cleaned_data["file"]
            )
        except PortalError as exc:
            form.add_error("file", exc.message)
        else:
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
    return render(
        request,
        "zoo/dataset_confirm.html",
        {"form": form, "staged": staged, "preview": staged.preview, "dataset": dataset},
    )


@login_required
@require_POST
def dataset_confirm(request: HttpRequest) -> HttpResponse:
    try:
        staged = services.StagedUpload.from_token(request.POST.get("token", ""), request.user)
    except PortalError as exc:
        messages.error(request, exc.message)
        return redirect("datasets:upload")
    form = DatasetConfirmForm(
        request.POST, user=request.user, columns=staged.preview.get("columns", [])
    )
    dataset = None
    if form.is_valid():
        data = form.cleaned_data
        dataset = data["dataset"]
        try:
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
        except PortalError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
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


def _share_target(request, form):
    from django.contrib.auth import get_user_model

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
        try:
            user = _share_target(request, form)
            services.dataset_share(dataset=dataset, actor=request.user, user=user)
        except Forbidden:
            raise
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{dataset} is now shared with {user.get_username()}.")
    return redirect(dataset.get_absolute_url())


@login_required
@require_POST
def dataset_unshare(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = selectors.get_dataset_for_user(request.user, pk)
    form = DatasetShareForm(request.POST)
    if form.is_valid():
        try:
            user = _share_target(request, form)
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            services.dataset_unshare(dataset=dataset, actor=request.user, user=user)
            messages.success(request, f"{user.get_username()} no longer sees {dataset}.")
    return redirect(dataset.get_absolute_url())
