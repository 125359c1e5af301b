from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from governance import selectors
from governance.forms import (
    AccessTokenForm,
    AuditFilterForm,
    ReuseRequestForm,
    ReviewForm,
    RiskForm,
    SignInForm,
)
from governance.models import RiskEntry
from governance.roles import is_steward
from governance.services import policy, reuse, risks, tokens
from portal.csvexport import csv_response
from portal.errors import Forbidden, NotFound, PortalError
from portal.http import shown_to
from zoo.selectors import catalogue as zoo_selectors

CSV_COLUMNS = [
    "id", "created_at", "actor_name", "verb", "target_type", "target_id", "target_repr",
    "payload", "request_id", "prev_hash", "hash",
]  # fmt: skip


class SignInView(LoginView):
    """Django's sign-in page with the portal's throttle: a throttled try answers 429."""

    form_class = SignInForm

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            sso_enabled=settings.OIDC_ENABLED,
            sso_name=settings.OIDC_PROVIDER_NAME,
            local_signin_enabled=settings.LOCAL_SIGNIN_ENABLED,
            **kwargs,
        )

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.throttled is not None:
            response.status_code = 429
            response["Retry-After"] = str(form.throttled.retry_after)
        else:
            response.status_code = 400
        return response


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    if not selectors.can_read_audit(request.user):
        raise Forbidden("The audit log is for staff, stewards and reviewers.")
    choices = selectors.audit_choices()
    form = AuditFilterForm(request.GET or None, choices=choices)
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    events = selectors.audit_events(**{k: v for k, v in filters.items() if v})
    if form.is_bound and not form.is_valid():
        events = events.none()  # a filter that cannot match (an unknown action) matches nothing
    if request.GET.get("format") == "csv":

        def rows():
            yield CSV_COLUMNS
            for e in events.iterator(chunk_size=2000):
                values = [getattr(e, c) for c in CSV_COLUMNS]
                values[CSV_COLUMNS.index("payload")] = json.dumps(e.payload, sort_keys=True)
                values[CSV_COLUMNS.index("created_at")] = e.created_at.isoformat()
                yield values

        return csv_response(rows(), "audit-log.csv")
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    return render(
        request,
        "governance/audit.html",
        {
            "form": form if form.is_bound else AuditFilterForm(choices=choices),
            "page": page,
            "rows": selectors.audit_rows(page.object_list),
            "query": params.urlencode(),
        },
    )


def _versions_for_request(model):
    return model.versions.filter(status="available").order_by("-created_at", "-id")


@login_required
def request_new(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    model = zoo_selectors.get_model_for_user(request.user, f"{namespace}/{name}")
    versions = _versions_for_request(model)
    form = ReuseRequestForm(request.POST or None, versions=versions)
    if request.method == "POST" and form.is_valid():
        with shown_to(request, form) as attempt:
            created = reuse.reuse_request_submit(requester=request.user, **form.cleaned_data)
        if attempt.succeeded:
            messages.success(request, "Request submitted: " + created.policy_explanation)
            return redirect("governance:request", pk=created.pk)
    return render(request, "governance/request_new.html", {"model": model, "form": form})


@login_required
def policy_preview(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    """The policy's answer for the form's current choices, shown before submitting."""
    model = zoo_selectors.get_model_for_user(request.user, f"{namespace}/{name}")
    version = _versions_for_request(model).filter(label=request.GET.get("version")).first()
    outcome = None
    if version is not None:
        outcome = policy.policy_evaluate(
            version=version,
            use_type=request.GET.get("use_type", ""),
            sensitivity=request.GET.get("data_sensitivity", ""),
        )
    return render(request, "governance/_policy_preview.html", {"outcome": outcome})


@login_required
def request_list(request: HttpRequest) -> HttpResponse:
    mine = selectors.requests_visible_to(request.user).filter(requester=request.user)
    others = None
    if request.user.is_staff or is_steward(request.user):
        others = selectors.requests_visible_to(request.user).exclude(requester=request.user)[:100]
    return render(request, "governance/request_list.html", {"mine": mine, "others": others})


@login_required
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    reuse = selectors.get_request_for_user(request.user, pk)
    roles = next((r for req, r in selectors.review_queue(request.user) if req.pk == reuse.pk), [])
    checklist = selectors.review_checklist(reuse)
    return render(
        request,
        "governance/request_detail.html",
        {
            "reuse": reuse,
            "reviews": reuse.reviews.select_related("reviewer"),
            "checklist": checklist,
            "state": selectors.request_state(reuse, checklist),
            "progress": selectors.review_progress(reuse, checklist),
            "review_form": ReviewForm(roles=roles) if roles else None,
            "is_requester": reuse.requester_id == request.user.pk,
            "can_revoke": reuse.status == "approved"
            and (request.user.is_staff or is_steward(request.user)),
        },
    )


@login_required
@require_POST
def request_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    reuse_request = selectors.get_request_for_user(request.user, pk)
    if action not in ("review", "withdraw", "resubmit", "revoke"):
        raise NotFound("No such action.")
    with shown_to(request) as attempt:
        _request_action(request, reuse_request, action)
    if attempt.succeeded:
        reuse_request.refresh_from_db()
        messages.success(
            request,
            f"Request #{reuse_request.pk}: {selectors.request_state(reuse_request)}.",
        )
    return redirect("governance:request", pk=reuse_request.pk)


def _request_action(request: HttpRequest, reuse_request, action: str) -> None:
    if action == "review":
        form = ReviewForm(request.POST, roles=list(reuse_request.required_roles))
        if not form.is_valid():
            raise PortalError("Choose a role and a decision.")
        reuse.review_submit(request=reuse_request, reviewer=request.user, **form.cleaned_data)
    elif action == "withdraw":
        reuse.reuse_request_withdraw(request=reuse_request, requester=request.user)
    elif action == "resubmit":
        reuse.reuse_request_resubmit(
            request=reuse_request,
            requester=request.user,
            justification=request.POST.get("justification", reuse_request.justification),
        )
    else:
        reuse.reuse_request_revoke(
            request=reuse_request, actor=request.user, reason=request.POST.get("reason", "")
        )


@login_required
def review_queue(request: HttpRequest) -> HttpResponse:
    return render(
        request, "governance/review_queue.html", {"queue": selectors.review_queue(request.user)}
    )


@login_required
@require_POST
def risk_add(request: HttpRequest, namespace: str, name: str, label: str) -> HttpResponse:
    model = zoo_selectors.get_model_for_user(request.user, f"{namespace}/{name}")
    version = model.versions.filter(label=label).first()
    if version is None:
        raise NotFound("No such version.")
    form = RiskForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Fill in the risk's category, title, severity and likelihood.")
    else:
        with shown_to(request) as attempt:
            risks.risk_entry_save(
                actor=request.user, version=version, owner=request.user, **form.cleaned_data
            )
        if attempt.succeeded:
            messages.success(request, "Risk recorded.")
    return redirect(f"{model.get_absolute_url()}?version={label}")


@login_required
@require_POST
def risk_status(request: HttpRequest, pk: int) -> HttpResponse:
    risk = RiskEntry.objects.select_related("version__model").filter(pk=pk).first()
    if risk is None:
        raise NotFound("No such risk.")
    zoo_selectors.get_model_for_user(request.user, risk.version.model.repo_id)
    new_status = request.POST.get("status", "")
    if new_status not in RiskEntry.Status.values:
        messages.error(request, "Choose a status.")
    else:
        with shown_to(request):
            risks.risk_entry_save(
                actor=request.user, version=risk.version, risk=risk, status=new_status
            )
    return redirect(f"{risk.version.model.get_absolute_url()}?version={risk.version.label}")


# --- personal access tokens ------------------------------------------------------


@login_required
def token_list(request: HttpRequest) -> HttpResponse:
    """Your tokens; POST creates one and shows its secret in this answer only."""
    form = AccessTokenForm(request.POST or None)
    created = plaintext = None
    if request.method == "POST" and form.is_valid():
        with shown_to(request, form) as attempt:
            created, plaintext = tokens.access_token_create(
                user=request.user,
                name=form.cleaned_data["name"],
                days=form.cleaned_data["days"],
                scope=form.cleaned_data["scope"],
            )
        if attempt.succeeded:
            form = AccessTokenForm()
    response = render(
        request,
        "governance/tokens.html",
        {
            "form": form,
            "tokens": selectors.access_tokens_of(request.user),
            "created": created,
            "plaintext": plaintext,
            "hub_endpoint": request.build_absolute_uri("/hf"),
            "api_root": request.build_absolute_uri("/api/"),
            "now": timezone.now(),
        },
        status=400 if request.method == "POST" and plaintext is None else 200,
    )
    # The page may carry a secret: no cache, proxy or back button may keep it.
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = selectors.access_tokens_of(request.user).filter(pk=pk).first()
    if token is None:
        raise NotFound("No such token.")
    with shown_to(request) as attempt:
        tokens.access_token_revoke(token=token, actor=request.user)
    if attempt.succeeded:
        messages.success(request, f"Token “{token.name}” ({token.prefix}…) is revoked.")
    return redirect("tokens:list")
