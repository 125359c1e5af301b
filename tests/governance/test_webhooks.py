"""Webhook endpoints: staff-only services and pages, and signed deliveries to a real receiver.

The receiver (tests/builders/webhooks.py) is an HTTP server on loopback that checks
each request's Standard Webhooks signature with its own copy of the secret, as
the receiving system would; the retries run in a real Celery worker.
"""

from __future__ import annotations

import base64
import time
from datetime import timedelta

import pytest
from django.db import transaction

from governance.models import AuditEvent, WebhookDelivery, WebhookEndpoint
from governance.services import notify, webhooks
from portal.errors import Conflict, Forbidden, PortalError
from tests.builders.processes import free_port
from tests.builders.webhooks import webhook_receiver


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    settings.NOTIFY_BACKOFF_S = 1
    settings.NOTIFY_MAX_ATTEMPTS = 3
    settings.WEBHOOK_TIMEOUT_S = 1
    settings.PORTAL_URL = "https://zoo.example.com"


def _endpoint(actor, url, *, secret=None, kinds=()):
    endpoint, made = webhooks.webhook_endpoint_create(
        actor=actor, name="SIEM", url=url, kinds=kinds
    )
    if secret is not None:  # the receiver was started first, with a secret of its own
        endpoint.secret = secret
        endpoint.save(update_fields=["secret"])
    return endpoint, secret or made


def _event(kind="incident", key="incident-3:opened", users=()):
    """One event reported; the delivery it made (None when no endpoint took it)."""
    last = WebhookDelivery.objects.order_by("-id").values_list("pk", flat=True).first() or 0
    with transaction.atomic():
        notify.notify(
            kind=kind,
            users=users,
            title="Incident #3 on acme/encoder",
            event_key=key,
            url="/incidents/3/",
            data={"incident": 3, "severity": "high"},
        )
    return WebhookDelivery.objects.filter(pk__gt=last).first()


def _settled(delivery, timeout: float = 30) -> WebhookDelivery:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivery.refresh_from_db()
        if delivery.status != WebhookDelivery.Status.PENDING:
            return delivery
        time.sleep(0.05)
    raise AssertionError(f"still pending after {timeout}s: {delivery.attempts} attempts")


# --- the services ----------------------------------------------------------------------


def test_staff_register_an_endpoint_and_get_its_secret_once(admin_user):
    endpoint, secret = webhooks.webhook_endpoint_create(
        actor=admin_user, name=" SIEM ", url="https://hooks.example.com/zoo", kinds=["incident"]
    )
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert endpoint.secret == secret
    assert endpoint.name == "SIEM"
    assert endpoint.kinds == ["incident"]
    other = webhooks.webhook_endpoint_create(actor=admin_user, name="B", url="http://h.example")
    assert other[1] != secret
    event = AuditEvent.objects.get(verb="webhook.create", target_id=str(endpoint.pk))
    assert event.actor_id == admin_user.pk
    assert event.payload == {
        "name": "SIEM",
        "url": "https://hooks.example.com/zoo",
        "kinds": ["incident"],
    }
    assert secret.removeprefix("whsec_") not in str(event.payload)


@pytest.mark.parametrize(
    "url",
    ["ftp://hooks.example.com/x", "javascript:alert(1)", "hooks.example.com/x", "", "http://"],
)
def test_only_http_and_https_urls_are_accepted(admin_user, url):
    with pytest.raises(PortalError, match="http:// or https://") as refused:
        webhooks.webhook_endpoint_create(actor=admin_user, name="SIEM", url=url)
    assert refused.value.field == "url"
    assert not WebhookEndpoint.objects.exists()


def test_unknown_kinds_are_refused(admin_user):
    with pytest.raises(PortalError, match="Unknown kind"):
        webhooks.webhook_endpoint_create(
            actor=admin_user, name="SIEM", url="https://h.example", kinds=["gossip"]
        )


def test_staff_update_and_deactivate_an_endpoint_audited(admin_user):
    endpoint, secret = _endpoint(admin_user, "https://old.example.com/hook")
    WebhookDelivery.objects.create(
        endpoint=endpoint,
        message_id="msg_1",
        kind="incident",
        payload={},
        created_at=endpoint.created_at,
    )
    webhooks.webhook_endpoint_update(
        actor=admin_user, endpoint=endpoint, url="https://new.example.com/hook"
    )
    endpoint.refresh_from_db()
    assert endpoint.url == "https://new.example.com/hook"
    assert endpoint.secret == secret
    update = AuditEvent.objects.get(verb="webhook.update")
    assert update.payload == {
        "before": {"url": "https://old.example.com/hook"},
        "after": {"url": "https://new.example.com/hook"},
    }
    webhooks.webhook_endpoint_deactivate(actor=admin_user, endpoint=endpoint)
    endpoint.refresh_from_db()
    assert not endpoint.active
    dropped = WebhookDelivery.objects.get(message_id="msg_1")
    assert dropped.status == "failed"
    assert "deactivated" in dropped.error
    assert AuditEvent.objects.get(verb="webhook.deactivate").payload["pending_dropped"] == 1
    with pytest.raises(Conflict):
        webhooks.webhook_endpoint_deactivate(actor=admin_user, endpoint=endpoint)
    assert _event() is None  # an inactive endpoint is sent nothing


@pytest.mark.parametrize("who", ["bob", "sam", "lena"])
@pytest.mark.parametrize("action", ["create", "update", "deactivate"])
def test_non_staff_are_refused_by_the_services(people, who, action):
    endpoint, _ = _endpoint(people["admin"], "https://hooks.example.com/zoo")
    events = AuditEvent.objects.count()
    calls = {
        "create": lambda u: webhooks.webhook_endpoint_create(
            actor=u, name="Mine", url="https://evil.example.com"
        ),
        "update": lambda u: webhooks.webhook_endpoint_update(
            actor=u, endpoint=endpoint, url="https://evil.example.com"
        ),
        "deactivate": lambda u: webhooks.webhook_endpoint_deactivate(actor=u, endpoint=endpoint),
    }
    with pytest.raises(Forbidden):
        calls[action](people[who])
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.active) == ("https://hooks.example.com/zoo", True)
    assert WebhookEndpoint.objects.count() == 1
    assert AuditEvent.objects.count() == events


def test_an_endpoint_gets_only_the_kinds_it_asked_for(admin_user):
    _endpoint(admin_user, "https://h.example", kinds=["incident"])
    assert _event(kind="decision", key="decision-1") is None
    delivery = _event(kind="incident", key="incident-1")
    assert delivery.payload["type"] == "zoo.incident"
    assert delivery.payload["data"] == {
        "title": "Incident #3 on acme/encoder",
        "url": "https://zoo.example.com/incidents/3/",
        "incident": 3,
        "severity": "high",
    }


# --- delivering, to a real receiver ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_refused_delivery_is_retried_and_then_delivered_signed(celery_worker, admin_user):
    secret = webhooks.webhook_secret_new()
    with webhook_receiver(secret, statuses=[500, 200]) as receiver:
        _endpoint(admin_user, receiver.url, secret=secret)
        delivery = _settled(_event())
    first, second = receiver.received
    assert (first.answered, second.answered) == (500, 200)
    assert first.verified
    assert second.verified
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.message_id
    assert int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) >= 1
    assert second.payload == delivery.payload
    assert second.payload["data"]["url"] == "https://zoo.example.com/incidents/3/"
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 2, 200)
    assert delivery.delivered_at is not None
    assert delivery.error == ""


@pytest.mark.django_db(transaction=True)
def test_a_receiver_that_cannot_verify_the_signature_ends_failed(celery_worker, admin_user):
    with webhook_receiver(webhooks.webhook_secret_new()) as receiver:
        _endpoint(admin_user, receiver.url)  # signs with a secret the receiver does not hold
        delivery = _settled(_event())
    assert len(receiver.received) == 3  # NOTIFY_MAX_ATTEMPTS
    assert not any(r.verified for r in receiver.received)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 3, 401)
    assert delivery.error.startswith("HTTP 401")


def test_a_tampered_body_does_not_verify(admin_user):
    secret = webhooks.webhook_secret_new()
    endpoint, _ = _endpoint(admin_user, "https://h.example", secret=secret)
    delivery = _event()
    body, headers = webhooks.signed_request(
        delivery, secret=endpoint.secret, now=delivery.created_at
    )
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    assert Webhook(secret).verify(body, headers) == delivery.payload
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"high", b"low!"), headers)


def test_a_redirect_is_not_followed(admin_user):
    secret = webhooks.webhook_secret_new()
    with webhook_receiver(secret, statuses=[307], location="/elsewhere") as receiver:
        _endpoint(admin_user, receiver.url, secret=secret)
        outcome = webhooks.webhook_delivery_attempt(delivery_id=_event().pk)
        time.sleep(0.2)
    assert [r.path for r in receiver.received] == ["/hook"]
    delivery = WebhookDelivery.objects.get()
    assert (outcome.retry_in, delivery.response_code) == (1, 307)
    assert "redirect to /elsewhere not followed" in delivery.error


def test_an_unreachable_or_slow_receiver_is_an_error_and_the_retries_wait(admin_user):
    _endpoint(admin_user, f"http://127.0.0.1:{free_port()}/hook")
    delivery = _event()
    outcome = webhooks.webhook_delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert outcome.retry_in == 1
    assert delivery.response_code is None
    assert delivery.error.startswith("ConnectError")
    # Called again before its backoff has passed (a resent copy, early): no attempt.
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk).status == "not due"
    delivery.refresh_from_db()
    assert delivery.attempts == 1

    secret = webhooks.webhook_secret_new()
    with webhook_receiver(secret, delay_s=2) as receiver:
        WebhookEndpoint.objects.update(url=receiver.url, secret=secret)
        time.sleep(1)
        outcome = webhooks.webhook_delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert outcome.retry_in == 2
    assert delivery.attempts == 2
    assert "Timeout" in delivery.error


# --- the pages -------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["bob", "sam", "cora"])
def test_non_staff_are_refused_the_webhook_pages(client, people, who):
    endpoint, _ = _endpoint(people["admin"], "https://hooks.example.com/zoo")
    client.force_login(people[who])
    assert client.get("/notifications/webhooks/").status_code == 403
    assert client.get(f"/notifications/webhooks/{endpoint.pk}/").status_code == 403
    assert client.get("/notifications/webhooks/999999/").status_code == 403  # ids leak nothing
    posted = client.post(
        "/notifications/webhooks/", {"name": "Mine", "url": "https://evil.example.com"}
    )
    assert posted.status_code == 403
    assert client.post(f"/notifications/webhooks/{endpoint.pk}/deactivate/").status_code == 403
    assert WebhookEndpoint.objects.count() == 1
    assert WebhookEndpoint.objects.get().active
    refused = AuditEvent.objects.filter(verb="access.refused", actor=people[who])
    assert refused.count() == 5
    assert "Webhook" not in client.get("/notifications/").content.decode().split("<main")[1]


def test_staff_register_an_endpoint_on_the_page_and_see_the_secret_once(client, admin_user):
    client.force_login(admin_user)
    bad = client.post("/notifications/webhooks/", {"name": "SIEM", "url": "ftp://h.example"})
    assert bad.status_code == 400
    assert "http:// or https://" in bad.content.decode()
    response = client.post(
        "/notifications/webhooks/",
        {"name": "SIEM", "url": "https://hooks.example.com/zoo", "kinds": ["incident", "revoked"]},
    )
    endpoint = WebhookEndpoint.objects.get()
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert endpoint.secret in response.content.decode()
    assert endpoint.kinds == ["incident", "revoked"]
    listing = client.get("/notifications/webhooks/").content.decode()
    assert "SIEM" in listing
    assert endpoint.secret not in listing
    assert (
        endpoint.secret
        not in client.get(f"/notifications/webhooks/{endpoint.pk}/").content.decode()
    )


def test_the_delivery_log_shows_attempts_codes_and_errors(
    client, admin_user, django_assert_max_num_queries
):
    secret = webhooks.webhook_secret_new()
    with webhook_receiver(secret, statuses=[503]) as receiver:
        endpoint, _ = _endpoint(admin_user, receiver.url, secret=secret)
        delivery = _event()
        webhooks.webhook_delivery_attempt(delivery_id=delivery.pk)
        # Its backoff has passed: the second try goes out.
        earlier = delivery.created_at - timedelta(seconds=10)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(last_attempt_at=earlier)
        webhooks.webhook_delivery_attempt(delivery_id=delivery.pk)
        assert len(receiver.received) == 2
    for i in range(20):
        _event(key=f"incident-{i}")
    client.force_login(admin_user)
    client.get(f"/notifications/webhooks/{endpoint.pk}/")
    with django_assert_max_num_queries(8):
        page = client.get(f"/notifications/webhooks/{endpoint.pk}/").content.decode()
    row = page.split(f'data-delivery="{delivery.pk}"')[1].split("</tr>")[0]
    assert '<td class="attempts">2</td>' in row
    assert '<td class="response-code">503</td>' in row
    assert "HTTP 503" in row
    assert "An incident touches a model" in row
    assert "0 delivered, 21 pending, 0 failed" in page

    response = client.post(f"/notifications/webhooks/{endpoint.pk}/deactivate/")
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert not endpoint.active
    assert AuditEvent.objects.filter(verb="webhook.deactivate", actor=admin_user).count() == 1
