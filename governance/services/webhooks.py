"""Webhook endpoints (staff register them) and the delivery of one signed event to one.

Deliveries follow the Standard Webhooks scheme (https://www.standardwebhooks.com):
the body is the delivery's JSON payload, and the ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature`` headers let the receiver check it
with the endpoint's secret, e.g. ``standardwebhooks.Webhook(secret).verify(body,
headers)``. A receiver that answers anything but 2xx is tried again with doubling
backoff, NOTIFY_MAX_ATTEMPTS times in all; redirects are not followed (an
endpoint that moved is re-registered, not chased).
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import timedelta

import httpx2 as httpx  # the httpx API, as huggingface_hub ships it
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from governance.audit import audit_record
from governance.models import NotificationKind, WebhookDelivery, WebhookEndpoint
from governance.services.notify import SendOutcome, backoff_s
from portal.errors import Conflict, Forbidden, PortalError

SECRET_PREFIX = "whsec_"  # noqa: S105 (the scheme's prefix, not a secret)
SECRET_BYTES = 32
USER_AGENT = "ModelZooPortal-Webhooks/1"


def webhook_secret_new() -> str:
    """A signing secret in the scheme's form: "whsec_" and base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _require_staff(actor) -> None:
    if not getattr(actor, "is_authenticated", False) or not actor.is_staff:
        raise Forbidden("Webhook endpoints are managed by staff.")


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise PortalError("Give the endpoint a name, e.g. the system it feeds.", field="name")
    if len(name) > 100:
        raise PortalError("An endpoint name has at most 100 characters.", field="name")
    return name


def _clean_url(url: str) -> str:
    url = (url or "").strip()
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise PortalError(
            "The URL must be a full http:// or https:// address, "
            "e.g. https://hooks.example.com/zoo.",
            field="url",
        ) from None
    if len(url) > 500:
        raise PortalError("The URL has at most 500 characters.", field="url")
    return url


def _clean_kinds(kinds) -> list[str]:
    kinds = sorted(set(kinds or []))
    unknown = [k for k in kinds if k not in NotificationKind.values]
    if unknown:
        raise PortalError(f"Unknown kind of event: {', '.join(unknown)}.", field="kinds")
    return kinds


def webhook_endpoint_create(*, actor, name: str, url: str, kinds=()) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint (empty ``kinds``: every kind); returns (row, secret).

    The secret is returned here to be shown once; the audit event never holds it.
    """
    _require_staff(actor)
    fields = {"name": _clean_name(name), "url": _clean_url(url), "kinds": _clean_kinds(kinds)}
    secret = webhook_secret_new()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            **fields, secret=secret, created_by=actor, created_at=timezone.now()
        )
        audit_record(actor=actor, verb="webhook.create", target=endpoint, payload=fields)
    return endpoint, secret


def webhook_endpoint_update(
    *, actor, endpoint: WebhookEndpoint, name: str | None = None, url: str | None = None, kinds=None
) -> WebhookEndpoint:
    """Change an endpoint's name, URL or kinds; the secret stays."""
    _require_staff(actor)
    wanted = {}
    if name is not None:
        wanted["name"] = _clean_name(name)
    if url is not None:
        wanted["url"] = _clean_url(url)
    if kinds is not None:
        wanted["kinds"] = _clean_kinds(kinds)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        changed = {k: v for k, v in wanted.items() if getattr(endpoint, k) != v}
        if not changed:
            return endpoint
        before = {k: getattr(endpoint, k) for k in changed}
        for key, value in changed.items():
            setattr(endpoint, key, value)
        endpoint.save(update_fields=list(changed))
        audit_record(
            actor=actor,
            verb="webhook.update",
            target=endpoint,
            payload={"before": before, "after": changed},
        )
    return endpoint


def webhook_endpoint_deactivate(*, actor, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Stop sending to an endpoint; what was still pending for it is marked failed."""
    _require_staff(actor)
    with transaction.atomic():
        moved = WebhookEndpoint.objects.filter(pk=endpoint.pk, active=True).update(active=False)
        if not moved:
            raise Conflict("This endpoint is already inactive.")
        dropped = WebhookDelivery.objects.filter(
            endpoint_id=endpoint.pk, status=WebhookDelivery.Status.PENDING
        ).update(
            status=WebhookDelivery.Status.FAILED,
            error="The endpoint was deactivated before delivery.",
        )
        endpoint.refresh_from_db()
        audit_record(
            actor=actor,
            verb="webhook.deactivate",
            target=endpoint,
            payload={"name": endpoint.name, "url": endpoint.url, "pending_dropped": dropped},
        )
    return endpoint


# --- delivering ----------------------------------------------------------------------


def signed_request(delivery: WebhookDelivery, *, secret: str, now) -> tuple[bytes, dict]:
    """The body and the Standard Webhooks headers for one attempt."""
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(delivery.message_id, now, body),
    }
    return body.encode(), headers


def _post(url: str, body: bytes, headers: dict) -> tuple[int | None, str]:
    """(response code, error): the error is empty for a 2xx answer."""
    try:
        response = httpx.post(
            url,
            content=body,
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT_S,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:2000]
    code = response.status_code
    if 200 <= code < 300:
        return code, ""
    if response.is_redirect:
        return (
            code,
            f"HTTP {code}: redirect to {response.headers.get('location', '?')} not followed",
        )
    return code, f"HTTP {code}: {response.text[:500]}"


def webhook_delivery_attempt(*, delivery_id: int) -> SendOutcome:
    """Try once to deliver one event; the row records the outcome.

    The row stays locked during the request, so a copy of the task resent by
    beat skips it; an attempt before its backoff has passed (that copy, early)
    does nothing.
    """
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING)
            .first()
        )
        if delivery is None:
            return SendOutcome("nothing to send")  # gone, settled, or being sent right now
        now = timezone.now()
        if not delivery.endpoint.active:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.error = "The endpoint was deactivated before delivery."
            delivery.save(update_fields=["status", "error"])
            return SendOutcome("failed")
        if delivery.attempts >= settings.NOTIFY_MAX_ATTEMPTS:  # the limit was lowered since
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.save(update_fields=["status"])
            return SendOutcome("failed")
        if delivery.last_attempt_at is not None:
            due = delivery.last_attempt_at + timedelta(seconds=backoff_s(delivery.attempts))
            if now < due:
                return SendOutcome("not due")
        body, headers = signed_request(delivery, secret=delivery.endpoint.secret, now=now)
        code, error = _post(delivery.endpoint.url, body, headers)
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.response_code = code
        delivery.error = error
        retry_in = None
        if not error:
            delivery.status = WebhookDelivery.Status.DELIVERED
            delivery.delivered_at = timezone.now()
        elif delivery.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
            delivery.status = WebhookDelivery.Status.FAILED
        else:
            retry_in = backoff_s(delivery.attempts)
        delivery.save()
    return SendOutcome(delivery.status if retry_in is None else "will retry", retry_in)
