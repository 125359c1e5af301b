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


# --- the lifecycle: my access, incidents, queues, compliance -------------------------


def may_handle_incidents(user) -> bool:
    """Stewards, reviewers and staff open incidents, recall and work the playbook: the
    same people who keep the risk register."""
    return can_edit_risks(user)


def incidents_visible_to(user) -> QuerySet:
    """Handlers see every incident; anyone else those touching a version they made, own
    or asked to reuse (what their notifications link to)."""
    from governance.models import Incident, RecallEffect

    qs = Incident.objects.select_related("version__model", "opened_by")
    if not user.is_authenticated:
        return qs.none()
    if may_handle_incidents(user):
        return qs
    from zoo.models import ModelVersion

    mine = ModelVersion.objects.filter(
        Q(created_by=user) | Q(model__owner=user) | Q(reuse_requests__requester=user)
    ).values("pk")
    touched = RecallEffect.objects.filter(version__in=mine).values("incident_id")
    return qs.filter(Q(pk__in=touched) | Q(version__in=mine))


def get_incident_for_user(user, pk: int):
    incident = incidents_visible_to(user).filter(pk=pk).first()
    if incident is None:
        raise NotFound("No such incident.")
    return incident


def days_left(when, now=None) -> int | None:
    """Whole days until ``when`` (negative once past), for countdowns."""
    if when is None:
        return None
    return (when - (now or timezone.now())).days


def my_access(user) -> dict:
    """What a person may use and why, and where each of their requests stands."""
    now = timezone.now()
    mine = (
        ReuseRequest.objects.filter(requester=user)
        .select_related("version__model", "version__license", "version__rereview")
        .prefetch_related("reviews__reviewer")
        .order_by("-updated_at", "-id")
    )
    live, other = [], []
    for request in mine:
        checklist = review_checklist(request)
        row = {
            "request": request,
            "checklist": checklist,
            "state": request_state(request, checklist),
            "progress": review_progress(request, checklist),
            "days_left": days_left(request.expires_at, now),
            "overdue": _overdue(request.version, now),
        }
        usable = request.status == ReuseRequest.Status.APPROVED and (
            request.expires_at is None or request.expires_at > now
        )
        (live if usable else other).append(row)
    return {"live": live, "requests": other}


def _overdue(version, now) -> bool:
    rereview = getattr(version, "rereview", None)
    return bool(rereview and rereview.is_overdue(now))


def review_progress(reuse: ReuseRequest, checklist: list[dict]) -> str:
    """ "2 of 3 reviews" while a request is in review; its status otherwise."""
    if reuse.status != ReuseRequest.Status.SUBMITTED:
        return reuse.get_status_display()
    done = sum(1 for c in checklist if c["review"] is not None)
    return f"{done} of {len(checklist)} reviews"


def overdue_version_ids(version_ids) -> set[int]:
    """Which of these versions are past their re-review date."""
    from governance.models import Rereview

    return set(
        Rereview.objects.filter(
            version_id__in=list(version_ids), due_at__lte=timezone.now()
        ).values_list("version_id", flat=True)
    )


def overdue_model_ids(model_ids) -> set[int]:
    """Which of these catalogue models have a version past its re-review date (one query,
    for the rows of a catalogue page)."""
    from governance.models import Rereview

    return set(
        Rereview.objects.filter(
            version__model_id__in=list(model_ids), due_at__lte=timezone.now()
        ).values_list("version__model_id", flat=True)
    )


def steward_queue() -> dict:
    """What waits for a steward: drafts to publish, live waivers, open incidents."""
    from governance.models import Incident
    from zoo.models import CatalogModel, ModelVersion, ScanWaiver

    drafts = (
        ModelVersion.objects.filter(model__status=CatalogModel.Status.DRAFT)
        .select_related("model", "parent__model", "created_by")
        .order_by("-created_at", "-id")[:100]
    )
    return {
        "drafts": drafts,
        "waivers": ScanWaiver.objects.live()
        .select_related("granted_by")
        .order_by("expires_at")[:100],
        "incidents": Incident.objects.filter(status=Incident.Status.OPEN)
        .select_related("version__model")
        .order_by("-severity", "opened_at")[:100],
    }


def may_see_compliance(user) -> bool:
    return bool(user.is_authenticated and (user.is_staff or is_reviewer(user)))


def compliance_summary(*, now=None, soon_days: int = 14, limit: int = 200) -> dict:
    """The compliance dashboard: what is overdue, expiring, blocked, risky or open."""
    from django.db.models import Count

    from governance.models import Incident, License, Rereview, RiskEntry
    from zoo.models import Artifact, CatalogModel, ModelVersion

    now = now or timezone.now()
    published = (CatalogModel.Status.AVAILABLE, CatalogModel.Status.DEPRECATED)
    overdue = (
        Rereview.objects.filter(due_at__lte=now, version__model__status__in=published)
        .select_related("version__model", "version__model__owner")
        .order_by("due_at")
    )
    expiring = (
        ReuseRequest.objects.filter(
            status=ReuseRequest.Status.APPROVED,
            expires_at__gt=now,
            expires_at__lte=now + timedelta(days=soon_days),
        )
        .select_related("requester", "version__model")
        .order_by("expires_at")
    )
    blocked = (
        ModelVersion.objects.filter(status=ModelVersion.Status.BLOCKED)
        .select_related("model")
        .order_by("model__repo_id", "label")
    )
    unscannable = ModelVersion.objects.filter(
        artifacts__scan_status=Artifact.Scan.UNSCANNABLE
    ).distinct()
    high_risks = (
        RiskEntry.objects.filter(status=RiskEntry.Status.OPEN, severity__gte=3)
        .select_related("version__model")
        .order_by("-severity", "id")
    )
    incidents = (
        Incident.objects.filter(status=Incident.Status.OPEN)
        .select_related("version__model")
        .order_by("-severity", "opened_at")
    )
    license_mix = dict(
        ModelVersion.objects.filter(model__status__in=published)
        .values_list("license__category")
        .annotate(n=Count("id"))
        .order_by()
    )
    labels = dict(License.Category.choices)
    return {
        "overdue": list(overdue[:limit]),
        "overdue_count": overdue.count(),
        "expiring": list(expiring[:limit]),
        "expiring_count": expiring.count(),
        "blocked": list(blocked[:limit]),
        "blocked_count": blocked.count(),
        "unscannable_count": unscannable.count(),
        "high_risks": list(high_risks[:limit]),
        "high_risk_count": high_risks.count(),
        "incidents": list(incidents[:limit]),
        "incident_count": incidents.count(),
        "license_mix": [
            {"category": key, "label": labels.get(key, key), "count": license_mix.get(key, 0)}
            for key in License.Category.values
        ],
        "soon_days": soon_days,
    }


def compliance_rows(summary: dict):
    """The dashboard as CSV rows: one line per item, the section first."""
    yield ["section", "model", "version", "detail", "date"]
    for r in summary["overdue"]:
        yield [
            "overdue re-review",
            r.version.model.repo_id,
            r.version.label,
            f"owner {r.version.model.owner or 'none'}",
            r.due_at.date().isoformat(),
        ]
    for q in summary["expiring"]:
        yield [
            "approval expiring",
            q.version.model.repo_id,
            q.version.label,
            f"request #{q.pk} by {q.requester}",
            q.expires_at.date().isoformat(),
        ]
    for v in summary["blocked"]:
        yield ["blocked", v.model.repo_id, v.label, " ".join(v.block_reasons), ""]
    for risk in summary["high_risks"]:
        yield [
            "open high risk",
            risk.version.model.repo_id,
            risk.version.label,
            f"{risk.get_severity_display()}: {risk.title}",
            "",
        ]
    for i in summary["incidents"]:
        yield [
            "open incident",
            i.version.model.repo_id,
            i.version.label,
            f"#{i.pk} {i.get_severity_display()}: {i.title}",
            i.opened_at.date().isoformat(),
        ]
    for row in summary["license_mix"]:
        yield ["license mix", "", "", row["label"], str(row["count"])]


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
