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
from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from governance.models import (
    Notification,
    NotificationKind,
    NotificationPreference,
    WebhookDelivery,
    WebhookEndpoint,
)
from governance.roles import REVIEW_ROLES, STEWARDS

logger = logging.getLogger(__name__)

EMAIL_TASK = "governance.send_notification_email"
WEBHOOK_TASK = "governance.deliver_webhook"


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


def enqueue(task: str, pk: int, *, countdown: int | None = None) -> None:
    """Send a delivery task; a broker that is down loses nothing (beat sends it again)."""
    from portal.celery import app

    try:
        app.send_task(task, args=[pk], countdown=countdown)
    except Exception:  # kombu raises many types; the row stays pending
        logger.warning("could not enqueue %s for %s; beat will resend it", task, pk, exc_info=True)


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


def reviewers():
    return role_members(*REVIEW_ROLES)


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
