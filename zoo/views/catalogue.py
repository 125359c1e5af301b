"""Catalogue pages: search, a model's page, and the stewards' edits."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from governance.access import models_usable_by, versions_finetunable_by
from governance.forms import AttestForm, RiskForm
from governance.models import Incident, Rereview, RiskEntry
from governance.roles import is_steward
from governance.selectors import (
    can_edit_risks,
    incidents_visible_to,
    may_handle_incidents,
    overdue_model_ids,
)
from governance.services.rereview import may_attest
from portal.errors import Forbidden, NotFound
from portal.http import shown_to
from zoo.cards import render_markdown
from zoo.forms import (
    CatalogueFilterForm,
    ModelEditForm,
    ModelStatusForm,
    ScanWaiverForm,
    ScanWaiverRevokeForm,
    VersionLicenseForm,
    VersionNotesForm,
)
from zoo.hub.snippets import use_this_model
from zoo.models import Artifact, CatalogModel, ScanWaiver, VersionHold
from zoo.selectors import catalogue as selectors
from zoo.selectors.release_checks import latest_release_checks, release_checks_missing
from zoo.services import catalogue as services
from zoo.services import waivers


@login_required
def catalogue(request: HttpRequest) -> HttpResponse:
    form = CatalogueFilterForm(request.GET or None)
    query = selectors.CatalogueQuery()
    if form.is_bound and form.is_valid():
        query = selectors.CatalogueQuery(**form.cleaned_data)
    within = models_usable_by(request.user) if query.approved else None
    page, corrected = selectors.catalogue_page(
        request.user, query, within=within, cursor=request.GET.get("cursor"), size=20
    )
    params = request.GET.copy()
    params.pop("cursor", None)
    overdue = overdue_model_ids([m.pk for m in page.items])
    for m in page.items:
        m.rereview_overdue = m.pk in overdue
    form = form if form.is_bound else CatalogueFilterForm()
    return render(
        request,
        "zoo/catalogue.html",
        {
            "form": form,
            "filter_widgets": form.widgets_html(),
            "page": page,
            "ranked": page.order == selectors.search.RANKED_ORDER,
            "corrected": corrected,
            "query_string": params.urlencode(),
            "tasks": selectors.task_choices(),
            "is_steward": is_steward(request.user),
        },
    )


def _model(request: HttpRequest, namespace: str, name: str) -> CatalogModel:
    return selectors.get_model_for_user(request.user, f"{namespace}/{name}")


def _risk_context(user) -> dict:
    """The model page shows the version's risk register, which governance keeps."""
    return {
        "can_edit_risks": can_edit_risks(user),
        "risk_form": RiskForm(),
        "risk_statuses": RiskEntry.Status.choices,
    }


def _release_check_context(user, version, steward: bool, *, latest) -> dict:
    """The version's newest check of each kind, and whether this person may run them.

    The launch service decides (``jobs.services.release_checks``); this only says
    whether to show its form: stewards, staff, and the fine-tune's maker.
    """
    from_finetune = version.source == version.Source.FINETUNE
    keeper = steward or user.is_staff or (from_finetune and version.created_by_id == user.pk)
    return {
        "release_checks": sorted(latest_release_checks(version).values(), key=lambda c: c.kind),
        # What publishing still needs of the latest version: the steward's hint by the
        # Publish button (``catalog_model_set_status`` asks the same rule and decides).
        "release_checks_unpassed": release_checks_missing(latest)
        if steward and version.model.status in ("draft", "blocked")
        else [],
        "may_run_release_checks": keeper and from_finetune,
        # Word-association tests need only an encoder: base models too.
        "may_run_base_checks": keeper,
        # The serving check also runs on a base model, for whoever may fine-tune it.
        "may_check_serving": (keeper and from_finetune)
        or (
            version.kind == version.Kind.BASE
            and version.model.modality in ("text", "vision")
            and (
                steward
                or user.is_staff
                or versions_finetunable_by(user).filter(pk=version.pk).exists()
            )
        ),
        "other_versions": [v.label for v in version.model.versions.exclude(pk=version.pk)]
        if keeper and from_finetune
        else [],
        "sees_check_examples": keeper,
    }


def _lifecycle_context(user, version) -> dict:
    """Flags, the re-review schedule and incidents of the version shown (governance keeps them)."""
    rereview = Rereview.objects.filter(version=version).first()
    handler = may_handle_incidents(user)
    holds = list(VersionHold.objects.live().filter(version=version))
    return {
        "flags": [h for h in holds if not h.blocks],
        # The incidents whose recall blocks this version, for the blocked banner's advice.
        "recalls": sorted(
            int(h.source.split(":", 1)[1])
            for h in holds
            if h.blocks and h.source.startswith("incident:")
        ),
        "rereview": rereview,
        "rereview_overdue": bool(rereview and rereview.is_overdue()),
        "attest_form": AttestForm() if rereview and may_attest(user, version) else None,
        "incidents": list(
            incidents_visible_to(user).filter(version=version, status=Incident.Status.OPEN)
        ),
        "may_open_incident": handler,
    }


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
    steward = is_steward(request.user)
    artifacts = _with_waivers(version.artifacts.all())
    return render(
        request,
        "zoo/model_detail.html",
        {
            "model": model,
            "version": version,
            "versions": versions,
            "artifacts": artifacts,
            "has_pickles": any(a.format == "pickle" for a in artifacts),
            "blocking_files": [a for a in artifacts if a.blocks and a.live_waiver is None],
            "waiver_form": ScanWaiverForm() if steward else None,
            "card_html": render_markdown(version.card_markdown) if version.card_markdown else "",
            "lineage": selectors.lineage(request.user, version),
            "risks": version.risks.select_related("owner", "release_check__version__model"),
            **_risk_context(request.user),
            **_lifecycle_context(request.user, version),
            **_release_check_context(request.user, version, steward, latest=versions[0]),
            "is_steward": steward,
            **use_this_model(request, version),
            "status_form": ModelStatusForm(initial={"status": model.status}) if steward else None,
            "license_form": VersionLicenseForm(initial={"license": version.license.spdx_id})
            if steward
            else None,
        },
    )


@login_required
def model_edit(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    model = _model(request, namespace, name)
    if not is_steward(request.user):
        raise Forbidden("Only stewards may change catalogue entries.")
    version = model.versions.order_by("-created_at", "-id").first()
    form = ModelEditForm(request.POST or None, instance=model)
    notes = VersionNotesForm(request.POST or None, instance=version, prefix="v")
    if request.method == "POST" and form.is_valid() and notes.is_valid():
        with shown_to(request, form) as attempt, transaction.atomic():
            services.catalog_model_update(
                model=CatalogModel.objects.get(pk=model.pk),
                actor=request.user,
                **{k: form.cleaned_data[k] for k in (*form.Meta.fields, "domain_tags")},
            )
            services.version_update_metadata(
                version=version, actor=request.user, **notes.cleaned_data
            )
        if attempt.succeeded:
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
    form = ModelStatusForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a status.")
        return redirect("zoo:model", namespace=namespace, name=name)
    with shown_to(request) as attempt:
        services.catalog_model_set_status(
            model=model,
            status=form.cleaned_data["status"],
            reason=form.cleaned_data["reason"],
            actor=request.user,
        )
    if attempt.succeeded:
        messages.success(request, f"{model.repo_id} is now {form.cleaned_data['status']}.")
    return redirect("zoo:model", namespace=namespace, name=name)


@login_required
@require_POST
def version_license(request: HttpRequest, namespace: str, name: str, label: str) -> HttpResponse:
    model = _model(request, namespace, name)
    version = model.versions.filter(label=label).first()
    if version is None:
        raise NotFound("No such version.")
    form = VersionLicenseForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a license from the list.")
        return redirect(f"{model.get_absolute_url()}?version={label}")
    with shown_to(request) as attempt:
        version = services.version_set_license(
            version=version, license=form.cleaned_data["license"], actor=request.user
        )
    if attempt.succeeded:
        state = "still blocked" if version.is_blocked else "available"
        messages.success(
            request, f"License set to {version.license.spdx_id}; the version is {state}."
        )
    return redirect(f"{model.get_absolute_url()}?version={label}")


def _with_waivers(artifacts) -> list:
    """Each file with its waivers (newest first) and the one in force, if any."""
    artifacts = list(artifacts)
    history: dict[str, list[ScanWaiver]] = {}
    for waiver in ScanWaiver.objects.filter(
        sha256__in=[a.sha256 for a in artifacts]
    ).select_related("granted_by", "revoked_by"):
        history.setdefault(waiver.sha256, []).append(waiver)
    for artifact in artifacts:
        artifact.waivers = history.get(artifact.sha256, [])
        artifact.live_waiver = next((w for w in artifact.waivers if w.is_live()), None)
    return artifacts


@login_required
@require_POST
def artifact_waive(
    request: HttpRequest, namespace: str, name: str, label: str, pk: int
) -> HttpResponse:
    model = _model(request, namespace, name)
    artifact = Artifact.objects.filter(pk=pk, version__model=model, version__label=label).first()
    if artifact is None:
        raise NotFound("No such file.")
    back = f"{model.get_absolute_url()}?version={label}#files"
    form = ScanWaiverForm(request.POST)
    if not form.is_valid():
        for field, errors in form.errors.items():
            messages.error(request, f"{form.fields[field].label or field}: {' '.join(errors)}")
        return redirect(back)
    with shown_to(request) as attempt:
        waiver = waivers.scan_waiver_grant(
            artifact=artifact,
            actor=request.user,
            reason=form.cleaned_data["reason"],
            days=form.cleaned_data["days"],
        )
    if attempt.succeeded:
        messages.success(
            request,
            f"{artifact.path} is waived until {waiver.expires_at:%Y-%m-%d}, in every version "
            "that holds these bytes.",
        )
    return redirect(back)


@login_required
@require_POST
def waiver_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    waiver = ScanWaiver.objects.filter(pk=pk).first()
    if waiver is None:
        raise NotFound("No such waiver.")
    form = ScanWaiverRevokeForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    with shown_to(request) as attempt:
        waivers.scan_waiver_revoke(waiver=waiver, actor=request.user, reason=reason)
    if attempt.succeeded:
        messages.success(
            request, "The waiver is revoked; the versions holding the file are blocked."
        )
    back = request.POST.get("next", "")
    return redirect(back if back.startswith("/catalogue/") else "zoo:catalogue")
