"""The inbox, the notification settings, and (for staff) the webhook endpoints and their logs."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from governance import selectors
from governance.forms import NotificationPreferencesForm, WebhookEndpointForm
from governance.services import notify, webhooks
from portal.http import shown_to

INBOX_PAGE = 25
DELIVERY_PAGE = 50


def _back_to_inbox(request: HttpRequest) -> HttpResponse:
    """Back to the inbox page the button was pressed on (its own paths only)."""
    back = request.POST.get("next", "")
    if back.startswith("/notifications/") and url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}
    ):
        return redirect(back)
    return redirect("notifications:inbox")


@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    unread_only = request.GET.get("unread") == "1"
    page = Paginator(selectors.inbox_of(request.user, unread_only=unread_only), INBOX_PAGE)
    page = page.get_page(request.GET.get("page"))
    return render(
        request,
        "governance/notification_inbox.html",
        {
            "page": page,
            "unread_only": unread_only,
            "query": "unread=1" if unread_only else "",
            "here": request.get_full_path(),
        },
    )


@login_required
@require_POST
def notification_read(request: HttpRequest, pk: int) -> HttpResponse:
    notify.notification_mark_read(user=request.user, notification_id=pk)
    return _back_to_inbox(request)


@login_required
@require_POST
def notifications_read_all(request: HttpRequest) -> HttpResponse:
    marked = notify.notifications_mark_all_read(user=request.user)
    messages.success(request, f"Marked {marked} notification{'s' * (marked != 1)} read.")
    return _back_to_inbox(request)


@login_required
def notification_settings(request: HttpRequest) -> HttpResponse:
    channels = selectors.notification_channels(request.user)
    form = NotificationPreferencesForm(request.POST or None, channels=channels)
    if request.method == "POST" and form.is_valid():
        with shown_to(request, form) as attempt:
            changed = notify.notification_preferences_save(
                user=request.user, actor=request.user, choices=form.choices()
            )
        if attempt.succeeded:
            messages.success(
                request, "Notification settings saved." if changed else "Nothing changed."
            )
            return redirect("notifications:settings")
    return render(
        request,
        "governance/notification_settings.html",
        {"form": form},
        status=400 if form.is_bound and not form.is_valid() else 200,
    )


# --- webhook endpoints (staff) -------------------------------------------------------


@login_required
def webhook_list(request: HttpRequest) -> HttpResponse:
    """The endpoints; POST registers one and shows its secret in this answer only."""
    endpoints = selectors.webhook_endpoints_for(request.user)
    form = WebhookEndpointForm(request.POST or None)
    created = secret = None
    if request.method == "POST" and form.is_valid():
        with shown_to(request, form) as attempt:
            created, secret = webhooks.webhook_endpoint_create(
                actor=request.user, **form.cleaned_data
            )
        if attempt.succeeded:
            messages.success(request, f"Endpoint “{created.name}” registered.")
            form = WebhookEndpointForm()
    response = render(
        request,
        "governance/webhook_list.html",
        {"form": form, "endpoints": endpoints, "created": created, "secret": secret},
        status=400 if request.method == "POST" and secret is None else 200,
    )
    # The page may carry a secret: no cache, proxy or back button may keep it.
    response["Cache-Control"] = "no-store"
    return response


@login_required
def webhook_detail(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = selectors.get_webhook_endpoint_for_user(request.user, pk)
    deliveries = Paginator(selectors.webhook_deliveries(endpoint), DELIVERY_PAGE)
    return render(
        request,
        "governance/webhook_detail.html",
        {"endpoint": endpoint, "page": deliveries.get_page(request.GET.get("page"))},
    )


@login_required
@require_POST
def webhook_deactivate(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = selectors.get_webhook_endpoint_for_user(request.user, pk)
    with shown_to(request) as attempt:
        webhooks.webhook_endpoint_deactivate(actor=request.user, endpoint=endpoint)
    if attempt.succeeded:
        messages.success(request, f"Endpoint “{endpoint.name}” deactivated.")
    return redirect("notifications:webhook", pk=endpoint.pk)
