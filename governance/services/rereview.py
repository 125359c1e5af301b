"""Re-review: every published version's owner re-attests its card, license and risks.

How often is policy data (``ReviewInterval`` rows: by license category and the
version's highest open risk; the shortest matching interval applies). Beat
creates the schedule of each newly published version, reminds the owner ten
weeks, two weeks and one day before the due date and daily once it is overdue,
and a license or risk change that shortens the interval brings the date forward.
Where the policy says so, an overdue version takes no new approvals
(``reuse.review_submit`` asks ``Rereview.is_overdue``).
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from governance.audit import audit_record
from governance.models import NotificationKind, Rereview, ReviewInterval
from governance.roles import is_steward
from governance.services import notify as notices
from governance.services.policy import highest_open_risk
from portal.errors import Forbidden, PortalError
from zoo.models import CatalogModel, ModelVersion

# Reminders before the due date: (key, how long before); then one a day while overdue.
REMINDERS = (("10w", timedelta(weeks=10)), ("2w", timedelta(weeks=2)), ("1d", timedelta(days=1)))
PUBLISHED = (CatalogModel.Status.AVAILABLE, CatalogModel.Status.DEPRECATED)
DEFAULT_DAYS = 365


def rereview_interval(version: ModelVersion) -> tuple[int, bool]:
    """(days, overdue suspends approvals) for a version, from the policy's matching rows."""
    category = version.license.category
    risk = highest_open_risk(version)
    matching = [
        row
        for row in ReviewInterval.objects.filter(active=True)
        if row.matches(license_category=category, risk=risk)
    ]
    if not matching:
        return DEFAULT_DAYS, False
    return min(r.days for r in matching), any(r.overdue_suspends_approvals for r in matching)


def _base(version: ModelVersion, rereview: Rereview | None):
    return (rereview and rereview.last_attested_at) or version.created_at


def rereview_refresh(*, version: ModelVersion) -> Rereview | None:
    """Create or re-derive a published version's schedule (the caller's transaction).

    A new interval moves the due date to base + interval when that is sooner;
    a longer interval waits for the next attestation to take effect.
    """
    if version.model.status not in PUBLISHED:
        return None
    days, suspends = rereview_interval(version)
    rereview = Rereview.objects.select_for_update().filter(version=version).first()
    due = _base(version, rereview) + timedelta(days=days)
    if rereview is None:
        return Rereview.objects.create(
            version=version, due_at=due, interval_days=days, overdue_suspends_approvals=suspends
        )
    rereview.due_at = min(rereview.due_at, due)
    rereview.interval_days = days
    rereview.overdue_suspends_approvals = suspends
    rereview.save(update_fields=["due_at", "interval_days", "overdue_suspends_approvals"])
    return rereview


def may_attest(user, version: ModelVersion) -> bool:
    """The model's owner re-attests; stewards may too (an owner who left, say)."""
    return bool(user.is_authenticated and (version.model.owner_id == user.pk or is_steward(user)))


@transaction.atomic
def version_attest(*, version: ModelVersion, actor, note: str) -> Rereview:
    """The owner says the card, license and risks still hold; the next date is set."""
    if not may_attest(actor, version):
        raise Forbidden("Only the model's owner or a steward re-attests a version.")
    note = (note or "").strip()
    if len(note) < 10:
        raise PortalError(
            "Say what you checked (at least 10 characters): card, license, risks.", field="note"
        )
    if version.model.status not in PUBLISHED:
        raise PortalError("Only published versions are re-reviewed.")
    now = timezone.now()
    rereview = rereview_refresh(version=version)
    days = rereview.interval_days
    before = rereview.due_at
    rereview.due_at = now + timedelta(days=days)
    rereview.last_attested_at = now
    rereview.last_attested_by = actor
    rereview.last_note = note
    rereview.save()
    audit_record(
        actor=actor,
        verb="version.attest",
        target=version,
        payload={
            "note": note,
            "before": {"due_at": before.isoformat()},
            "after": {"due_at": rereview.due_at.isoformat()},
            "interval_days": days,
        },
    )
    return rereview


def _schedule_new() -> int:
    """Schedules for published versions that have none yet."""
    missing = (
        ModelVersion.objects.filter(model__status__in=PUBLISHED, rereview__isnull=True)
        .select_related("model", "license")
        .order_by("pk")
    )
    made = 0
    for version in missing.iterator(chunk_size=500):
        with transaction.atomic():
            if rereview_refresh(version=version):
                made += 1
    return made


def _stage(rereview: Rereview, now) -> str | None:
    left = rereview.due_at - now
    if left <= timedelta(0):
        return f"overdue:{now:%Y-%m-%d}"
    for key, before in reversed(REMINDERS):
        if left <= before:
            return key
    return None


def rereviews_remind(*, now=None) -> dict:
    """Schedule newly published versions and remind owners of what is due (Celery beat)."""
    now = now or timezone.now()
    made = _schedule_new()
    sent = 0
    due = (
        Rereview.objects.filter(
            due_at__lte=now + REMINDERS[0][1], version__model__status__in=PUBLISHED
        )
        .select_related("version__model")
        .order_by("due_at", "pk")
    )
    for rereview in due.iterator(chunk_size=500):
        stage = _stage(rereview, now)
        if stage is None:
            continue
        version = rereview.version
        owners = [version.model.owner_id] if version.model.owner_id else notices.stewards()
        overdue = stage.startswith("overdue")
        with transaction.atomic():
            sent += len(
                notices.notify(
                    kind=NotificationKind.REREVIEW_DUE,
                    users=owners,
                    title=(
                        f"Re-review of {version.model.repo_id} {version.label} is overdue"
                        if overdue
                        else f"Re-review of {version.model.repo_id} {version.label} due on "
                        f"{rereview.due_at:%Y-%m-%d}"
                    ),
                    body="Check that its card, license and risks still hold, then re-attest it"
                    " on its page."
                    + (
                        " Until then it takes no new approvals."
                        if overdue and rereview.overdue_suspends_approvals
                        else ""
                    ),
                    url=version.get_absolute_url(),
                    event_key=f"rereview:{version.pk}:{rereview.due_at:%Y%m%d}:{stage}",
                    data={"version": version.pk, "due_at": rereview.due_at.isoformat()},
                )
            )
    return {"scheduled": made, "reminded": sent}
