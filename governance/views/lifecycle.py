"""Lifecycle pages: incidents and recalls, re-attestation, my access, the steward
queue and the compliance dashboard. Each view reads through a selector and
changes things through one service."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from governance import selectors
from governance.forms import AttestForm, IncidentForm, IncidentStepForm, ReasonForm
from governance.models import Incident, IncidentStep
from governance.roles import is_steward
from governance.services import incidents, rereview
from portal.csvexport import csv_response
from portal.errors import Forbidden, NotFound, PortalError
from portal.http import shown_to
from zoo.selectors import catalogue as zoo_selectors


def _version(user, namespace: str, name: str, label: str):
    model = zoo_selectors.get_model_for_user(user, f"{namespace}/{name}")
    version = model.versions.select_related("model", "license").filter(label=label).first()
    if version is None:
        raise NotFound("No such version.")
    return version


@login_required
def incident_list(request: HttpRequest) -> HttpResponse:
    shown = request.GET.get("status", "open")
    qs = selectors.incidents_visible_to(request.user)
    if shown in Incident.Status.values:
        qs = qs.filter(status=shown)
    return render(
        request,
        "governance/incident_list.html",
        {
            "incidents": qs.order_by("-opened_at", "-id")[:200],
            "shown": shown,
            "may_handle": selectors.may_handle_incidents(request.user),
        },
    )


@login_required
def incident_new(request: HttpRequest, namespace: str, name: str, label: str) -> HttpResponse:
    version = _version(request.user, namespace, name, label)
    if not selectors.may_handle_incidents(request.user):
        raise Forbidden("Only stewards, reviewers and staff open incidents.")
    form = IncidentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with shown_to(request, form) as attempt:
            incident = incidents.incident_open(
                version=version, actor=request.user, **form.cleaned_data
            )
        if attempt.succeeded:
            messages.success(
                request,
                f"Incident #{incident.pk} opened"
                + (" and the version recalled." if incident.recall_active else "."),
            )
            return redirect("governance:incident", pk=incident.pk)
    return render(
        request,
        "governance/incident_new.html",
        {"form": form, "version": version, "descendants": len(incidents.descendants(version))},
    )


@login_required
def incident_detail(request: HttpRequest, pk: int) -> HttpResponse:
    incident = selectors.get_incident_for_user(request.user, pk)
    handler = selectors.may_handle_incidents(request.user)
    recorded = {s.step: s for s in incident.steps.select_related("done_by")}
    return render(
        request,
        "governance/incident_detail.html",
        {
            "incident": incident,
            "steps": [
                {
                    "key": key,
                    "label": label,
                    "done": next(
                        (s for s in incident.steps.select_related("done_by") if s.step == key), None
                    ),
                }
                for key, label in IncidentStep.Step.choices
            ],
            "effects": incident.effects.select_related("version__model").order_by(
                "depth", "version__model__repo_id"
            ),
            "may_handle": handler,
            "step_form": IncidentStepForm(
                initial={
                    "step": next((k for k in IncidentStep.Step.values if k not in recorded), "")
                }
            )
            if handler and incident.status == Incident.Status.OPEN
            else None,
            "lift_form": ReasonForm() if handler and incident.recall_active else None,
        },
    )


@login_required
@require_POST
def incident_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    incident = selectors.get_incident_for_user(request.user, pk)
    if action not in ("recall", "lift", "step"):
        raise NotFound("No such action.")
    with shown_to(request) as attempt:
        if action == "recall":
            incidents.incident_recall(incident=incident, actor=request.user)
            said = "Recalled: the version and everything made from it are held."
        elif action == "lift":
            form = ReasonForm(request.POST)
            if not form.is_valid():
                raise PortalError("Say why the recall is lifted.")
            restored = incidents.incident_recall_lift(
                incident=incident, actor=request.user, reason=form.cleaned_data["reason"]
            )
            said = f"Recall lifted; {len(restored)} approval(s) restored."
        else:
            form = IncidentStepForm(request.POST)
            if not form.is_valid():
                raise PortalError("Choose a step and say what was done.")
            step = incidents.incident_step_record(
                incident=incident, actor=request.user, **form.cleaned_data
            )
            said = f"{step.get_step_display()} recorded."
    if attempt.succeeded:
        messages.success(request, said)
    return redirect("governance:incident", pk=incident.pk)


@login_required
@require_POST
def version_attest(request: HttpRequest, namespace: str, name: str, label: str) -> HttpResponse:
    version = _version(request.user, namespace, name, label)
    form = AttestForm(request.POST)
    with shown_to(request) as attempt:
        if not form.is_valid():
            raise PortalError("Say what you checked.", field="note")
        schedule = rereview.version_attest(
            version=version, actor=request.user, note=form.cleaned_data["note"]
        )
    if attempt.succeeded:
        messages.success(
            request, f"Re-attested; the next re-review is due {schedule.due_at:%Y-%m-%d}."
        )
    return redirect(version.get_absolute_url())


@login_required
def my_access(request: HttpRequest) -> HttpResponse:
    return render(request, "governance/my_access.html", selectors.my_access(request.user))


@login_required
def steward_queue(request: HttpRequest) -> HttpResponse:
    if not (request.user.is_staff or is_steward(request.user)):
        raise Forbidden("The steward queue is for stewards.")
    return render(request, "governance/steward_queue.html", selectors.steward_queue())


@login_required
def compliance(request: HttpRequest) -> HttpResponse:
    if not selectors.may_see_compliance(request.user):
        raise Forbidden("The compliance dashboard is for reviewers and staff.")
    summary = selectors.compliance_summary()
    if request.GET.get("format") == "csv":
        return csv_response(
            selectors.compliance_rows(summary), f"compliance-{timezone.now():%Y%m%d}.csv"
        )
    chart = {
        "labels": [row["label"] for row in summary["license_mix"]],
        "counts": [row["count"] for row in summary["license_mix"]],
    }
    return render(request, "governance/compliance.html", {**summary, "chart": chart})
