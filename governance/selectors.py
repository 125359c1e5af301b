"""Read queries for governance pages and the API."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

from django.core.cache import cache
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from governance.models import (
    AccessToken,
    AuditEvent,
    Notification,
    NotificationKind,
    NotificationPreference,
    ReuseRequest,
    WebhookDelivery,
    WebhookEndpoint,
    access_token_digest,
    review_round,
)
from governance.roles import REVIEW_ROLES, is_reviewer, is_steward, user_roles
from portal.errors import Forbidden, NotFound
from portal.text import and_list


def can_read_audit(user) -> bool:
    """Staff, stewards and reviewers read the audit log; it names people and their actions."""
    if not user.is_authenticated:
        return False
    return user.is_staff or is_steward(user) or is_reviewer(user)


def can_edit_risks(user) -> bool:
    """Stewards, reviewers and staff keep the risk register."""
    return can_read_audit(user)


def audit_events(
    *,
    actor: str = "",
    verb: str = "",
    target_type: str = "",
    target_id: str = "",
    since: date | None = None,
    until: date | None = None,
) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.order_by("-id")
    if actor:
        qs = qs.filter(actor_name=actor)
    if verb:
        qs = qs.filter(verb=verb)
    if target_type:
        qs = qs.filter(target_type=target_type)
    if target_id:
        qs = qs.filter(target_id=target_id)
    if since:
        qs = qs.filter(created_at__date__gte=since)
    if until:
        qs = qs.filter(created_at__date__lte=until)
    return qs


# One snapshot_download is a GET per file within seconds: read as one row.
DOWNLOAD_BURST = timedelta(minutes=2)


def audit_rows(events) -> list[dict]:
    """A page of events (newest first) as rows, with each run of one person's downloads
    of one version folded into a single row listing its files. Only the display folds:
    every download stays its own event in the chain and in the CSV export."""
    rows: list[dict] = []
    for event in events:
        last = rows[-1] if rows else None
        if (
            event.verb == "hub.download"
            and last is not None
            and last["event"].verb == "hub.download"
            and last["event"].actor_name == event.actor_name
            and last["event"].target_id == event.target_id
            and last["first"].created_at - event.created_at <= DOWNLOAD_BURST
        ):
            last["files"].append(event.payload.get("path", "?"))
            last["first"] = event
            continue
        rows.append(
            {
                "event": event,
                "first": event,
                "files": [event.payload.get("path", "?")] if event.verb == "hub.download" else [],
            }
        )
    return rows


AUDIT_CHOICES_FOR_S = 300


def audit_choices() -> dict[str, list[str]]:
    """The verbs and target types the log holds, for the filter's menus.

    Two DISTINCT scans of a table that only grows: computed at most every five
    minutes, not on every page view (a verb first seen since then is a filter
    the menu offers a little later).
    """

    def scan() -> str:
        return json.dumps(
            {
                "verb": sorted(AuditEvent.objects.values_list("verb", flat=True).distinct()),
                "target_type": sorted(
                    AuditEvent.objects.exclude(target_type="")
                    .values_list("target_type", flat=True)
                    .distinct()
                ),
            }
        )

    # JSON text, so the cache holds no pickle.
    return json.loads(cache.get_or_set("audit:choices", scan, AUDIT_CHOICES_FOR_S))


def requests_visible_to(user) -> QuerySet[ReuseRequest]:
    """Requesters see their own; reviewers, stewards and staff see every request."""
    qs = ReuseRequest.objects.select_related("requester", "version__model", "version__license")
    if not user.is_authenticated:
        return qs.none()
    if user.is_staff or is_steward(user) or is_reviewer(user):
        return qs
    return qs.filter(requester=user)


def get_request_for_user(user, pk: int) -> ReuseRequest:
    request = requests_visible_to(user).filter(pk=pk).first()
    if request is None:
        raise NotFound("No such request.")
    return request


def review_queue(user) -> list[tuple[ReuseRequest, list[str]]]:
    """Open requests waiting for a role this user holds, with the roles they can fill."""
    roles = user_roles(user) & set(REVIEW_ROLES)
    if not roles:
        return []
    waiting = (
        requests_visible_to(user)
        .filter(status=ReuseRequest.Status.SUBMITTED)
        .exclude(requester=user)
        .prefetch_related("reviews", "version__risks")
        .order_by("created_at")
    )
    queue = []
    for request in waiting:
        current = review_round((r.decision for r in request.reviews.all()), request.reopened)
        done = {r.role for r in request.reviews.all() if r.round == current}
        mine = {r.role for r in request.reviews.all() if r.reviewer_id == user.pk}
        open_roles = [r for r in request.required_roles if r in roles and r not in done]
        if mine:
            open_roles = [r for r in open_roles if r in mine]
        if open_roles:
            queue.append((request, open_roles))
    return queue


# A portal token: the fixed prefix, then token_urlsafe(32) (43 characters).
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,100}")
_LAST_USED_EVERY = timedelta(minutes=1)


def user_for_token(raw: str | None, scope: str = AccessToken.Scope.READ):
    """The active user a live portal token of ``scope`` belongs to, or None.

    Each scope has its own prefix, so a read token sent to the API (or an API
    token sent to the hub), and anything without the portal's prefix (an
    ``hf_…`` token from a user's saved Hugging Face login, say) is refused
    before any lookup; no refusal here logs or records the value.
    ``last_used_at`` is written at most once a minute per token, with a
    conditional update so concurrent requests write once.
    """
    prefix = AccessToken.Scope(scope).prefix
    if not raw or not raw.startswith(prefix):
        return None
    if not _TOKEN_SHAPE.fullmatch(raw[len(prefix) :]):
        return None
    token = (
        AccessToken.objects.select_related("user")
        .filter(digest=access_token_digest(raw), scope=scope)
        .first()
    )
    now = timezone.now()
    if token is None or not token.is_live(now) or not token.user.is_active:
        return None
    stale = now - _LAST_USED_EVERY
    if token.last_used_at is None or token.last_used_at < stale:
        AccessToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale)
        ).update(last_used_at=now)
    return token.user


def access_token_for(raw: str) -> AccessToken:
    """The token row of a plaintext the caller has just authenticated with."""
    token = AccessToken.objects.filter(digest=access_token_digest(raw)).first()
    if token is None:
        raise NotFound("No such token.")
    return token


def access_tokens_of(user) -> QuerySet:
    """A user's tokens, newest first, for the token page."""
    return AccessToken.objects.filter(user=user).order_by("-created_at", "-id")


def review_checklist(reuse: ReuseRequest) -> list[dict]:
    """Each required role with its decision in the current round (None while it waits)."""
    reviews = list(reuse.reviews.select_related("reviewer").order_by("created_at", "id"))
    current = review_round((r.decision for r in reviews), reuse.reopened)
    latest = {r.role: r for r in reviews if r.round == current}
    return [{"role": role, "review": latest.get(role)} for role in (reuse.required_roles or [])]


def request_state(reuse: ReuseRequest, checklist: list[dict] | None = None) -> str:
    """Where a request stands, as a phrase: "waiting for security and compliance review".

    Pass the ``review_checklist`` already made for the page to spare its query.
    """
    status = reuse.status
    if status == ReuseRequest.Status.SUBMITTED:
        if checklist is None:
            checklist = review_checklist(reuse)
        waiting = [c["role"] for c in checklist if c["review"] is None]
        done = len(reuse.required_roles or []) - len(waiting)
        if not waiting:
            return "in review"
        return f"waiting for {and_list(waiting)} review" + (
            f" ({done} of {len(reuse.required_roles)} approved)" if done else ""
        )
    if status == ReuseRequest.Status.CHANGES_REQUESTED:
        return "back with the requester for changes"
    if status == ReuseRequest.Status.APPROVED and reuse.expires_at:
        return f"approved until {reuse.expires_at:%Y-%m-%d}"
    return reuse.get_status_display().lower()


# --- notifications and webhooks ------------------------------------------------------


def inbox_of(user, *, unread_only: bool = False) -> QuerySet[Notification]:
    """What ``user``'s inbox shows, newest first (rows kept only to be e-mailed are not)."""
    qs = Notification.objects.filter(user_id=user.pk, in_inbox=True).order_by("-created_at", "-id")
    return qs.filter(read_at__isnull=True) if unread_only else qs


def unread_count(user) -> int:
    """The number on the nav's inbox link: one COUNT over the unread index."""
    if not getattr(user, "is_authenticated", False):
        return 0
    return inbox_of(user, unread_only=True).count()


def notification_channels(user) -> list[tuple[str, str, bool, bool]]:
    """(kind, label, inbox, email) for every kind, as ``user`` chose (absent: both on)."""
    chosen = {
        p.kind: (p.inbox, p.email) for p in NotificationPreference.objects.filter(user_id=user.pk)
    }
    return [
        (kind, label, *chosen.get(kind, (True, True))) for kind, label in NotificationKind.choices
    ]


def _require_staff(user) -> None:
    if not getattr(user, "is_authenticated", False) or not user.is_staff:
        raise Forbidden("Webhook endpoints are for staff.")


def webhook_endpoints_for(user) -> QuerySet[WebhookEndpoint]:
    """Every endpoint with its delivery counts; staff only."""
    _require_staff(user)
    return WebhookEndpoint.objects.select_related("created_by").annotate(
        delivered=Count("deliveries", filter=Q(deliveries__status="delivered")),
        pending=Count("deliveries", filter=Q(deliveries__status="pending")),
        failed=Count("deliveries", filter=Q(deliveries__status="failed")),
    )


def get_webhook_endpoint_for_user(user, pk: int) -> WebhookEndpoint:
    endpoint = webhook_endpoints_for(user).filter(pk=pk).first()
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


def webhook_deliveries(endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    """An endpoint's delivery log, newest first."""
    return WebhookDelivery.objects.filter(endpoint_id=endpoint.pk).order_by("-created_at", "-id")
