"""One way to tell people something, three channels: the inbox, e-mail and webhooks.

``notify`` is called inside the transaction of the action it reports: the inbox
rows commit (or roll back) with the action, and the e-mails and webhook
deliveries it creates are sent by Celery tasks after commit, retried with
backoff. Each person's preferences say, per kind of event, whether it goes to
their inbox and to their e-mail; staff register webhook endpoints per kind.
An event is named by an ``event_key``: the same event reported twice (a beat
run retried) reaches each person and endpoint once.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import get_connection, send_mail
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from governance.audit import audit_record
from governance.models import (
    Notification,
    NotificationKind,
    NotificationPreference,
    WebhookDelivery,
    WebhookEndpoint,
)
from governance.roles import STEWARDS
from portal.errors import Forbidden, NotFound, PortalError

logger = logging.getLogger(__name__)

EMAIL_TASK = "governance.send_notification_email"
WEBHOOK_TASK = "governance.deliver_webhook"
# How many rows one resend run sends again, oldest first; the next run takes the rest.
RESEND_BATCH = 500
# An SMTP server that accepts the connection and then stalls must not hold a worker.
EMAIL_TIMEOUT_S = 30


def channels_for(user_ids: Iterable[int], kind: str) -> dict[int, tuple[bool, bool]]:
    """(inbox, email) per user for one kind of event; both on unless the user said otherwise."""
    ids = list(user_ids)
    chosen = {
        p.user_id: (p.inbox, p.email)
        for p in NotificationPreference.objects.filter(user_id__in=ids, kind=kind)
    }
    return {pk: chosen.get(pk, (True, True)) for pk in ids}


def notify(
    *,
    kind: str,
    users: Iterable,
    title: str,
    event_key: str,
    body: str = "",
    url: str = "",
    data: dict | None = None,
) -> list[Notification]:
    """Tell ``users`` (people, or their ids) about one event; what landed in whose inbox.

    ``data`` is what webhook endpoints receive besides the kind, title and link.
    """
    if kind not in NotificationKind.values:
        raise ValueError(f"unknown notification kind {kind!r}")
    ids = sorted({getattr(u, "pk", u) for u in users if u is not None})
    active = set(
        get_user_model().objects.filter(pk__in=ids, is_active=True).values_list("pk", flat=True)
    )
    now = timezone.now()
    created = []
    for pk, (inbox, email) in channels_for([i for i in ids if i in active], kind).items():
        if not (inbox or email):
            continue
        notification, made = Notification.objects.get_or_create(
            user_id=pk,
            event_key=event_key,
            defaults={
                "kind": kind,
                "title": title[:300],
                "body": body,
                "url": url,
                "created_at": now,
                "in_inbox": inbox,
                "email_wanted": email,
            },
        )
        if made:
            created.append(notification)
            if email:
                transaction.on_commit(lambda pk=notification.pk: enqueue(EMAIL_TASK, pk))
    _webhooks(kind=kind, title=title, url=url, event_key=event_key, data=data or {}, now=now)
    return created


def _webhooks(*, kind: str, title: str, url: str, event_key: str, data: dict, now) -> None:
    for endpoint in WebhookEndpoint.objects.filter(active=True):
        if not endpoint.wants(kind):
            continue
        message_id = "msg_" + hashlib.sha256(f"{endpoint.pk}:{event_key}".encode()).hexdigest()[:32]
        delivery, made = WebhookDelivery.objects.get_or_create(
            message_id=message_id,
            defaults={
                "endpoint": endpoint,
                "kind": kind,
                "created_at": now,
                "payload": {
                    "type": f"zoo.{kind}",
                    "timestamp": now.isoformat(),
                    "data": {"title": title, "url": absolute(url), **data},
                },
            },
        )
        if made:
            transaction.on_commit(lambda pk=delivery.pk: enqueue(WEBHOOK_TASK, pk))


def absolute(url: str) -> str:
    """A portal path as a full link for e-mails and webhooks."""
    return f"{settings.PORTAL_URL}{url}" if url.startswith("/") else url


def enqueue(task: str, pk: int, *, countdown: int | None = None) -> bool:
    """Send a delivery task; a broker that is down loses nothing (beat sends it again).

    Whether the broker took the message.
    """
    from portal.celery import app

    try:
        app.send_task(task, args=[pk], countdown=countdown)
    except Exception:  # kombu raises many types; the row stays pending
        logger.warning("could not enqueue %s for %s; beat will resend it", task, pk, exc_info=True)
        return False
    return True


def role_members(*roles: str):
    """Active members of the named roles' groups."""
    return get_user_model().objects.filter(groups__name__in=roles, is_active=True).distinct()


def stewards():
    """Stewards, superusers included (they may do what stewards do)."""
    return (
        get_user_model()
        .objects.filter(Q(groups__name=STEWARDS) | Q(is_superuser=True), is_active=True)
        .distinct()
    )


def awaiting_publication(*, version, made_by: str) -> list[Notification]:
    """Tell the stewards a new draft (an import, a fine-tune's output) waits for them."""
    return notify(
        kind=NotificationKind.AWAITING_PUBLICATION,
        users=stewards(),
        title=f"{version.model.repo_id} {version.label} waits to be published",
        body=f"{made_by}. Review its card, license, files and risks, then publish it or say why"
        " not.",
        url=version.get_absolute_url(),
        event_key=f"publish:{version.pk}",
        data={"version": version.pk, "model": version.model.repo_id},
    )


# --- sending: e-mail, the retries' schedule, and resending what the broker lost ------


@dataclass(frozen=True)
class SendOutcome:
    """What one delivery attempt came to; ``retry_in`` (seconds) when it should be tried again."""

    status: str
    retry_in: int | None = None


def backoff_s(attempts: int) -> int:
    """The wait before the next try after ``attempts`` failed ones: doubling from the base."""
    return settings.NOTIFY_BACKOFF_S * 2 ** max(attempts - 1, 0)


def _next_try(attempts: int) -> int | None:
    return backoff_s(attempts) if attempts < settings.NOTIFY_MAX_ATTEMPTS else None


def email_text(notification: Notification) -> str:
    """The e-mail's body: the text, the link, and where to turn such e-mails off."""
    parts = [notification.body.strip()] if notification.body.strip() else []
    if notification.url:
        parts.append(absolute(notification.url))
    parts.append(
        "You receive this because of your notification settings: "
        + absolute(reverse("notifications:settings"))
    )
    return "\n\n".join(parts)


def notification_email_send(*, notification_id: int) -> SendOutcome:
    """Try once to e-mail one notification; the row records the outcome.

    The row stays locked while the SMTP server is talked to, so a copy of the
    task (resent by beat while the first was still running) skips it instead
    of sending the e-mail twice.
    """
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("user")
            .filter(pk=notification_id, email_wanted=True, emailed_at__isnull=True)
            .first()
        )
        if notification is None:
            return SendOutcome("nothing to send")  # gone, sent, or being sent right now
        if notification.email_attempts >= settings.NOTIFY_MAX_ATTEMPTS:
            return SendOutcome("given up")
        user = notification.user
        if not user.is_active or not user.email:
            # Not an SMTP failure: no retry. Beat sends it once the person has an address.
            notification.email_error = "The account is inactive or has no e-mail address."
            notification.save(update_fields=["email_error"])
            return SendOutcome("no address")
        try:
            send_mail(
                subject=" ".join(notification.title.split()),  # no header injection
                message=email_text(notification),
                from_email=None,
                recipient_list=[user.email],
                connection=get_connection(timeout=EMAIL_TIMEOUT_S),
            )
        except (smtplib.SMTPException, OSError) as exc:
            notification.email_attempts += 1
            notification.email_error = f"{type(exc).__name__}: {exc}"[:2000]
            notification.save(update_fields=["email_attempts", "email_error"])
            retry_in = _next_try(notification.email_attempts)
            return SendOutcome("failed" if retry_in is None else "will retry", retry_in)
        notification.email_attempts += 1
        notification.emailed_at = timezone.now()
        notification.email_error = ""
        notification.save(update_fields=["email_attempts", "emailed_at", "email_error"])
    return SendOutcome("sent")


def _overdue(attempts_field: str, since_field: str, *, now: datetime, first_wait) -> Q:
    """Rows whose next try should have happened more than NOTIFY_RESEND_AFTER_S ago.

    ``first_wait(n)`` is how long after ``since_field`` the try after ``n`` failed ones
    is due; one condition per attempt count keeps the query a plain indexed filter.
    """
    grace = settings.NOTIFY_RESEND_AFTER_S
    lost = Q()
    for n in range(settings.NOTIFY_MAX_ATTEMPTS):
        due = now - timedelta(seconds=grace + first_wait(n))
        lost |= Q(**{attempts_field: n, f"{since_field}__lt": due})
    return lost


def notifications_resend(*, now: datetime | None = None) -> dict[str, int]:
    """Send again the e-mails and webhook deliveries whose task is overdue (a message the
    broker lost, a worker killed mid-send); what is only waiting for its backoff is left."""
    now = now or timezone.now()
    # A notification keeps no time of its last try: its tries are due at created_at plus
    # the backoffs so far (B * (2**n - 1) after n failures).
    emails = (
        Notification.objects.filter(
            email_wanted=True,
            emailed_at__isnull=True,
            email_attempts__lt=settings.NOTIFY_MAX_ATTEMPTS,
            user__is_active=True,
        )
        .exclude(user__email="")
        .filter(
            _overdue(
                "email_attempts",
                "created_at",
                now=now,
                first_wait=lambda n: settings.NOTIFY_BACKOFF_S * (2**n - 1),
            )
        )
        .order_by("created_at", "id")
        .values_list("pk", flat=True)[:RESEND_BATCH]
    )
    pending = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.PENDING,
        endpoint__active=True,
        attempts__lt=settings.NOTIFY_MAX_ATTEMPTS,
    )
    never_tried = Q(
        attempts=0, created_at__lt=now - timedelta(seconds=settings.NOTIFY_RESEND_AFTER_S)
    )
    # (A delivery never tried has no last_attempt_at, so this matches only retries.)
    retry_lost = _overdue("attempts", "last_attempt_at", now=now, first_wait=backoff_s)
    deliveries = (
        pending.filter(never_tried | retry_lost)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)[:RESEND_BATCH]
    )
    sent = {"emails": 0, "webhooks": 0}
    for key, task, ids in (("emails", EMAIL_TASK, emails), ("webhooks", WEBHOOK_TASK, deliveries)):
        for pk in ids:
            if not enqueue(task, pk):
                return sent  # the broker is down: the next run tries again
            sent[key] += 1
    return sent


# --- the inbox and the preferences ---------------------------------------------------


def notification_mark_read(*, user, notification_id: int) -> bool:
    """Mark one of ``user``'s notifications read; whether it was unread."""
    mine = Notification.objects.filter(pk=notification_id, user_id=user.pk, in_inbox=True)
    if not user.is_authenticated or not mine.exists():
        raise NotFound("No such notification.")
    return bool(mine.filter(read_at__isnull=True).update(read_at=timezone.now()))


def notifications_mark_all_read(*, user) -> int:
    """Mark every unread notification in ``user``'s inbox read; how many were."""
    if not user.is_authenticated:
        raise Forbidden("Sign in to read your notifications.")
    return Notification.objects.filter(user_id=user.pk, in_inbox=True, read_at__isnull=True).update(
        read_at=timezone.now()
    )


def notification_preferences_save(
    *, user, actor, choices: dict[str, tuple[bool, bool]]
) -> dict[str, dict[str, bool]]:
    """Set ``user``'s (inbox, email) per kind; only the person themself may. What changed."""
    if not actor.is_authenticated or actor.pk != user.pk:
        raise Forbidden("Only the person themself may change their notification settings.")
    unknown = sorted(set(choices) - set(NotificationKind.values))
    if unknown:
        raise PortalError(f"Unknown kind of notification: {', '.join(unknown)}.")
    changed: dict[str, dict[str, bool]] = {}
    with transaction.atomic():
        chosen = NotificationPreference.objects.filter(user_id=user.pk)
        current = {p.kind: (p.inbox, p.email) for p in chosen}
        for kind, (inbox, email) in sorted(choices.items()):
            if current.get(kind, (True, True)) == (bool(inbox), bool(email)):
                continue
            NotificationPreference.objects.update_or_create(
                user_id=user.pk, kind=kind, defaults={"inbox": bool(inbox), "email": bool(email)}
            )
            changed[kind] = {"inbox": bool(inbox), "email": bool(email)}
        if changed:
            audit_record(
                actor=actor,
                verb="notification.preferences",
                target=user,
                payload={"changed": changed},
            )
    return changed
