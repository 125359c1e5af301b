"""Notifications: the inbox and its pages, preferences, and e-mail through a real SMTP server.

The e-mail tests run a real aiosmtpd server on loopback and, where the behaviour
lives in the task, a real Celery worker; bob and alice are the people told.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from governance.models import AuditEvent, Notification, NotificationPreference, WebhookDelivery
from governance.services import notify
from governance.services.webhooks import webhook_endpoint_create, webhook_secret_new
from jobs.models import PeriodicTaskRun
from portal.celery import app as celery_app
from portal.errors import Forbidden, NotFound
from tests.builders.mail import smtp_server
from tests.builders.processes import broker_at, free_port
from tests.builders.webhooks import webhook_receiver

DECISION = "decision"


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    settings.NOTIFY_BACKOFF_S = 1
    settings.NOTIFY_MAX_ATTEMPTS = 4
    settings.PORTAL_URL = "https://zoo.example.com"


def _tell(users, *, key="req-1:approved", kind=DECISION, title="Request #1 approved", **extra):
    """notify() inside a transaction of its own, as an action calls it; after commit it sends."""
    with transaction.atomic():
        return notify.notify(
            kind=kind,
            users=users,
            title=title,
            event_key=key,
            body=extra.pop("body", "Legal and security approved it."),
            url=extra.pop("url", "/governance/requests/1/"),
            **extra,
        )


def _wait(predicate, timeout: float = 30, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not hold within {timeout}s")


def _endpoint(actor, receiver, secret):
    """An endpoint at ``receiver``, signing with the secret the receiver checks."""
    endpoint, _ = webhook_endpoint_create(actor=actor, name="SIEM", url=receiver.url)
    endpoint.secret = secret
    endpoint.save(update_fields=["secret"])
    return endpoint


def _prefer(user, kind=DECISION, *, inbox=True, email=True):
    NotificationPreference.objects.create(user=user, kind=kind, inbox=inbox, email=email)


# --- e-mail, through a real worker and a real SMTP server ------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_notification_is_emailed_by_the_worker_with_its_link(settings, celery_worker, bob):
    with smtp_server(settings) as server:
        (created,) = _tell([bob])
        (message,) = server.wait_for(1)
        row = _wait(
            lambda: Notification.objects.filter(pk=created.pk, emailed_at__isnull=False).first(),
            what="emailed_at set",
        )
    assert message["Subject"] == "Request #1 approved"
    assert message["X-Envelope-To"] == bob.email
    text = message.get_content()
    assert "Legal and security approved it." in text
    assert "https://zoo.example.com/governance/requests/1/" in text
    assert "https://zoo.example.com/notifications/settings/" in text
    assert (row.email_attempts, row.email_error) == (1, "")


@pytest.mark.django_db(transaction=True)
def test_a_refused_email_is_retried_after_its_backoff_and_then_sent(settings, celery_worker, bob):
    with smtp_server(settings, fail_first=1) as server:
        began = time.monotonic()
        (created,) = _tell([bob])
        server.wait_for(1)
        took = time.monotonic() - began
        row = _wait(
            lambda: Notification.objects.filter(pk=created.pk, emailed_at__isnull=False).first(),
            what="emailed_at set",
        )
    assert server.data_commands == 2  # one refused, one accepted
    assert len(server.messages) == 1
    assert took >= settings.NOTIFY_BACKOFF_S  # the retry waited for its backoff
    assert (row.email_attempts, row.email_error) == (2, "")


def test_smtp_failures_are_recorded_and_retried_with_doubling_backoff_until_the_limit(
    settings, bob
):
    (created,) = _tell([bob])
    with smtp_server(settings, fail_first=99) as server:
        outcomes = [notify.notification_email_send(notification_id=created.pk) for _ in range(5)]
    assert [o.retry_in for o in outcomes] == [1, 2, 4, None, None]
    assert [o.status for o in outcomes][-2:] == ["failed", "given up"]
    created.refresh_from_db()
    assert created.email_attempts == 4  # the fifth call did not try
    assert "451" in created.email_error
    assert created.emailed_at is None
    assert server.data_commands == 4
    assert server.messages == []


def test_an_unreachable_smtp_server_is_recorded_as_an_error(settings, bob):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    (created,) = _tell([bob])
    outcome = notify.notification_email_send(notification_id=created.pk)
    created.refresh_from_db()
    assert outcome.retry_in == 1
    assert created.email_attempts == 1
    assert "ConnectionRefusedError" in created.email_error


def test_a_vanished_or_sent_notification_is_not_sent(settings, bob):
    (created,) = _tell([bob])
    with smtp_server(settings) as server:
        assert notify.notification_email_send(notification_id=created.pk).status == "sent"
        assert notify.notification_email_send(notification_id=created.pk).status == (
            "nothing to send"
        )
        assert notify.notification_email_send(notification_id=10**9).status == "nothing to send"
    assert len(server.messages) == 1


def test_a_person_without_an_address_gets_no_email_and_no_retries(settings, bob):
    bob.email = ""
    bob.save()
    (created,) = _tell([bob])
    with smtp_server(settings) as server:
        outcome = notify.notification_email_send(notification_id=created.pk)
    created.refresh_from_db()
    assert (outcome.status, outcome.retry_in) == ("no address", None)
    assert "no e-mail address" in created.email_error
    assert server.data_commands == 0


# --- preferences and dedupe ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_preferences_decide_the_channels(settings, celery_worker, alice, bob, sam):
    _prefer(alice, email=False)  # inbox only
    _prefer(bob, inbox=False)  # e-mail only
    _prefer(sam, inbox=False, email=False)  # nothing
    with smtp_server(settings) as server:
        created = _tell([alice, bob, sam])
        (message,) = server.wait_for(1)
        time.sleep(1)  # room for a wrong second e-mail to arrive
    assert message["X-Envelope-To"] == bob.email
    assert len(server.messages) == 1
    rows = {n.user_id: n for n in created}
    assert set(rows) == {alice.pk, bob.pk}  # sam's choice leaves no row at all
    assert (rows[alice.pk].in_inbox, rows[alice.pk].email_wanted) == (True, False)
    assert (rows[bob.pk].in_inbox, rows[bob.pk].email_wanted) == (False, True)
    assert [n.pk for n in notify_inbox(bob)] == []
    assert [n.pk for n in notify_inbox(alice)] == [rows[alice.pk].pk]


def notify_inbox(user):
    from governance.selectors import inbox_of

    return list(inbox_of(user))


@pytest.mark.django_db(transaction=True)
def test_the_same_event_reported_twice_reaches_each_person_and_endpoint_once(
    settings, celery_worker, bob, admin_user
):
    secret = webhook_secret_new()
    with smtp_server(settings) as server, webhook_receiver(secret) as receiver:
        _endpoint(admin_user, receiver, secret)
        first = _tell([bob], key="req-7:approved")
        again = _tell([bob, bob.pk], key="req-7:approved")
        server.wait_for(1)
        receiver.wait_for(1)
        time.sleep(1)
    assert len(first) == 1
    assert again == []
    assert Notification.objects.filter(user=bob).count() == 1
    assert len(server.messages) == 1
    assert WebhookDelivery.objects.count() == 1
    assert len(receiver.received) == 1


def test_inactive_people_and_unknown_kinds_are_not_notified(bob, alice):
    bob.is_active = False
    bob.save()
    assert [n.user_id for n in _tell([bob, alice, None])] == [alice.pk]
    with pytest.raises(ValueError, match="unknown notification kind"):
        _tell([alice], kind="gossip")


# --- the broker down: nothing lost ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_nothing_is_lost_the_resend_task_sends_it(
    settings, celery_worker, bob, admin_user
):
    settings.NOTIFY_RESEND_AFTER_S = 1
    secret = webhook_secret_new()
    with smtp_server(settings) as server, webhook_receiver(secret) as receiver:
        _endpoint(admin_user, receiver, secret)
        with broker_at(f"redis://127.0.0.1:{free_port()}/0", settings):
            (created,) = _tell([bob])  # the after-commit enqueues fail; the rows stay
        delivery = WebhookDelivery.objects.get()
        time.sleep(1.5)  # older than NOTIFY_RESEND_AFTER_S; and a wrong send would have come
        assert server.messages == []
        assert receiver.received == []
        assert (delivery.status, delivery.attempts) == ("pending", 0)
        celery_app.send_task("governance.resend_notifications")
        (message,) = server.wait_for(1)
        (request,) = receiver.wait_for(1)
        _wait(
            lambda: WebhookDelivery.objects.filter(pk=delivery.pk, status="delivered").exists(),
            what="the delivery delivered",
        )
    created.refresh_from_db()
    assert created.emailed_at is not None
    assert message["Subject"] == "Request #1 approved"
    assert request.verified
    run = PeriodicTaskRun.objects.get(name="governance.resend_notifications")
    assert run.last_ok
    assert run.runs == 1


def test_the_resend_leaves_what_only_waits_for_its_backoff(settings, bob, admin_user):
    settings.NOTIFY_RESEND_AFTER_S = 60
    (created,) = _tell([bob])
    now = timezone.now()
    # Two failed tries: the third is due 1 + 2 = 3 s after creation, lost 60 s after that.
    Notification.objects.filter(pk=created.pk).update(
        email_attempts=2, created_at=now - timedelta(seconds=62)
    )
    assert notify.notifications_resend(now=now)["emails"] == 0
    assert notify.notifications_resend(now=now + timedelta(seconds=2))["emails"] == 1
    Notification.objects.filter(pk=created.pk).update(email_attempts=4)  # exhausted
    assert notify.notifications_resend(now=now + timedelta(days=1))["emails"] == 0


# --- the inbox pages ---------------------------------------------------------------------


def test_the_inbox_lists_marks_read_and_counts_unread_in_the_nav(client, bob, alice):
    mine = [_tell([bob], key=f"e{i}", title=f"Event {i}")[0] for i in range(3)]
    (theirs,) = _tell([alice], key="other", title="Alice's own")
    client.force_login(bob)
    page = client.get("/notifications/").content.decode()
    assert "Inbox (3)" in page
    assert "Event 0" in page
    assert "Event 2" in page
    assert "Alice's own" not in page

    response = client.post(f"/notifications/{mine[0].pk}/read/", {"next": "/notifications/"})
    assert response.status_code == 302
    assert response["Location"] == "/notifications/"
    assert Notification.objects.get(pk=mine[0].pk).read_at is not None
    assert "Inbox (2)" in client.get("/notifications/").content.decode()

    refused = client.post(f"/notifications/{theirs.pk}/read/")
    assert refused.status_code == 404
    assert Notification.objects.get(pk=theirs.pk).read_at is None

    client.post("/notifications/read-all/")
    assert not Notification.objects.filter(user=bob, read_at__isnull=True).exists()
    page = client.get("/notifications/").content.decode()
    assert "Inbox (" not in page
    assert 'data-testid="inbox-link"' in page
    assert Notification.objects.get(pk=theirs.pk).read_at is None


def test_the_inbox_is_paginated_and_can_show_unread_only(client, bob):
    for i in range(30):
        _tell([bob], key=f"e{i:02}", title=f"Event {i:02}")
    notify.notification_mark_read(
        user=bob, notification_id=Notification.objects.get(event_key="e29").pk
    )
    client.force_login(bob)
    first = client.get("/notifications/").content.decode()
    assert "Event 29" in first
    assert "Event 05" in first
    assert "Event 04" not in first
    assert "Page 1 of 2" in first
    second = client.get("/notifications/?page=2").content.decode()
    assert "Event 04" in second
    assert "Event 00" in second
    assert "Event 05" not in second
    unread = client.get("/notifications/?unread=1").content.decode()
    assert "Event 29" not in unread
    assert "Event 28" in unread


def test_the_inbox_page_has_a_query_budget(client, bob, django_assert_max_num_queries):
    for i in range(25):
        _tell([bob], key=f"e{i}")
    client.force_login(bob)
    client.get("/notifications/")
    with django_assert_max_num_queries(7):
        assert client.get("/notifications/").status_code == 200


def test_the_inbox_needs_a_signed_in_person(client):
    response = client.get("/notifications/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_mark_read_services_touch_only_ones_own(bob, alice):
    (theirs,) = _tell([alice])
    with pytest.raises(NotFound):
        notify.notification_mark_read(user=bob, notification_id=theirs.pk)
    assert notify.notifications_mark_all_read(user=bob) == 0
    theirs.refresh_from_db()
    assert theirs.read_at is None


# --- the settings page -------------------------------------------------------------------


def test_the_settings_page_saves_choices_and_audits_them(client, bob):
    client.force_login(bob)
    page = client.get("/notifications/settings/").content.decode()
    assert 'name="decision__email"' in page
    assert "checked" in page
    data = {f"{k}__{c}": "on" for k in notify.NotificationKind.values for c in ("inbox", "email")}
    del data["decision__email"]
    del data["incident__inbox"]
    response = client.post("/notifications/settings/", data)
    assert response.status_code == 302
    assert notify.channels_for([bob.pk], "decision") == {bob.pk: (True, False)}
    assert notify.channels_for([bob.pk], "incident") == {bob.pk: (False, True)}
    assert NotificationPreference.objects.filter(user=bob).count() == 2  # only what changed
    event = AuditEvent.objects.get(verb="notification.preferences")
    assert event.actor_id == bob.pk
    assert event.payload == {
        "changed": {
            "decision": {"inbox": True, "email": False},
            "incident": {"inbox": False, "email": True},
        }
    }
    # The page shows what was saved; saving it unchanged writes no event.
    assert 'name="decision__email"' in client.get("/notifications/settings/").content.decode()
    client.post("/notifications/settings/", data)
    assert AuditEvent.objects.filter(verb="notification.preferences").count() == 1


def test_nobody_changes_anothers_preferences(bob, alice):
    events = AuditEvent.objects.count()
    with pytest.raises(Forbidden):
        notify.notification_preferences_save(
            user=alice, actor=bob, choices={"decision": (False, False)}
        )
    assert not NotificationPreference.objects.exists()
    assert AuditEvent.objects.count() == events
