"""Reuse requests and their reviews: every transition is one function here.

Transitions are conditional updates on the request's status (two reviewers
approving at the same moment make one transition), each writes its audit
event in the same transaction, and object permissions and e-mails follow
after commit.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from governance.audit import audit_record
from governance.models import NotificationKind, Rereview, ReuseRequest, Review, review_round
from governance.roles import is_steward, user_roles
from governance.services import notify as notices
from governance.services.policy import policy_evaluate
from portal.errors import Conflict, Forbidden, NotFound, PortalError
from zoo.models import ModelVersion
from zoo.selectors.catalogue import versions_visible_to

# What an approved request lets its requester do with the version.
GRANTED_PERMISSIONS = ("zoo.view_modelversion", "zoo.download_files", "zoo.finetune_version")


def reuse_request_submit(
    *,
    requester,
    version: ModelVersion,
    intended_use: str,
    use_type: str,
    business_unit: str,
    data_sensitivity: str,
    justification: str,
    duration_days: int,
) -> ReuseRequest:
    if not versions_visible_to(requester).filter(pk=version.pk).exists():
        raise NotFound("No such model version.", field="version")
    outcome = policy_evaluate(version=version, use_type=use_type, sensitivity=data_sensitivity)
    if outcome.refused:
        raise PortalError(outcome.explanation)
    with transaction.atomic():
        request = ReuseRequest.objects.create(
            requester=requester,
            version=version,
            intended_use=intended_use,
            use_type=use_type,
            business_unit=business_unit,
            data_sensitivity=data_sensitivity,
            justification=justification,
            duration_days=duration_days,
            required_roles=outcome.roles,
            policy_explanation=outcome.explanation,
        )
        audit_record(
            actor=requester,
            verb="reuse.submit",
            target=request,
            payload={"version": version.pk, "use_type": use_type, "roles": outcome.roles},
        )
        _ask_reviewers(request)
    return request


def _ask_reviewers(request: ReuseRequest, roles: list[str] | None = None) -> None:
    """Tell every member of each review group the request waits for (never its requester)."""
    roles = roles or request.required_roles
    current = _round(request)
    version = request.version
    for role in roles:
        members = notices.role_members(role).exclude(pk=request.requester_id)
        notices.notify(
            kind=NotificationKind.REVIEW_NEEDED,
            users=members,
            title=f"{role.capitalize()} review needed: request #{request.pk} for "
            f"{version.model.repo_id} {version.label}",
            body=(request.reopen_reason if request.reopened else "")
            or f"{request.requester} asks to reuse it for {request.get_use_type_display()} use: "
            f"{request.intended_use[:300]}",
            url=request_url(request),
            event_key=f"reuse:{request.pk}:round:{current}:{role}",
            data={"request": request.pk, "role": role, "version": version.pk},
        )


def request_url(request: ReuseRequest) -> str:
    return reverse("governance:request", kwargs={"pk": request.pk})


def _round(request: ReuseRequest) -> int:
    return review_round(request.reviews.values_list("decision", flat=True), request.reopened)


def review_submit(
    *, request: ReuseRequest, reviewer, role: str, decision: str, comment: str = ""
) -> ReuseRequest:
    """Record one reviewer's decision in one role; approve when every required role has."""
    comment = comment.strip()
    if role not in request.required_roles:
        raise PortalError(f"This request does not need {role} review.")
    if role not in user_roles(reviewer):
        raise Forbidden(f"You do not hold the {role} role.")
    if reviewer.pk == request.requester_id:
        raise Forbidden("Nobody reviews their own request.")
    if decision == Review.Decision.REJECT and not comment:
        raise PortalError("Give the reason for rejecting.", field="comment")
    if decision not in Review.Decision.values:
        raise PortalError("Choose approve, reject or request changes.")
    if decision == Review.Decision.APPROVE:
        _refuse_approval_of_held(request.version)
    with transaction.atomic():
        locked = ReuseRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status != ReuseRequest.Status.SUBMITTED:
            raise Conflict(
                f"This request is {locked.get_status_display().lower()}; it takes no reviews."
            )
        other_role = locked.reviews.filter(reviewer=reviewer).exclude(role=role).first()
        if other_role:
            raise Forbidden(f"You already reviewed this request as {other_role.role}.")
        current = _round(locked)
        try:
            with transaction.atomic():
                Review.objects.create(
                    request=locked,
                    requester_id=locked.requester_id,
                    reviewer=reviewer,
                    role=role,
                    decision=decision,
                    comment=comment,
                    round=current,
                )
        except IntegrityError:
            raise Conflict(f"The {role} review of this request is already in.") from None
        audit_record(
            actor=reviewer,
            verb=f"reuse.review.{decision}",
            target=locked,
            payload={"role": role, "comment": comment, "round": current},
        )
        now = timezone.now()
        if decision == Review.Decision.REJECT:
            _move(locked, ReuseRequest.Status.REJECTED, reviewer, decided_at=now)
        elif decision == Review.Decision.CHANGES:
            _move(locked, ReuseRequest.Status.CHANGES_REQUESTED, reviewer)
        else:
            approved = set(
                locked.reviews.filter(round=current, decision=Review.Decision.APPROVE).values_list(
                    "role", flat=True
                )
            )
            if approved >= set(locked.required_roles):
                expires = now + timedelta(days=locked.duration_days)
                _move(
                    locked,
                    ReuseRequest.Status.APPROVED,
                    reviewer,
                    decided_at=now,
                    expires_at=expires,
                )
                transaction.on_commit(lambda: sync_permissions_for_request(locked.pk))
        locked.refresh_from_db()
        if locked.status != ReuseRequest.Status.SUBMITTED:
            _tell_requester(locked)
    return locked


def _refuse_approval_of_held(version: ModelVersion) -> None:
    """A blocked version, or one whose re-review is overdue where policy says so, takes
    no new approvals: the reviewer sees why."""
    version.refresh_from_db(fields=["status", "block_reasons"])
    if version.is_blocked:
        raise Conflict(
            "This version is blocked, so it cannot be approved now: "
            + " ".join(version.block_reasons)
        )
    rereview = Rereview.objects.filter(version=version).first()
    if rereview and rereview.overdue_suspends_approvals and rereview.is_overdue():
        raise Conflict(
            f"This version's re-review was due on {rereview.due_at:%Y-%m-%d}; policy suspends "
            "new approvals until its owner re-attests it."
        )


_TELL = {
    ReuseRequest.Status.APPROVED: (NotificationKind.DECISION, "approved"),
    ReuseRequest.Status.REJECTED: (NotificationKind.DECISION, "rejected"),
    ReuseRequest.Status.CHANGES_REQUESTED: (NotificationKind.CHANGES_REQUESTED, "sent back"),
    ReuseRequest.Status.REVOKED: (NotificationKind.REVOKED, "revoked"),
    ReuseRequest.Status.EXPIRED: (NotificationKind.EXPIRED, "expired"),
    ReuseRequest.Status.SUSPENDED: (NotificationKind.INCIDENT, "suspended"),
    ReuseRequest.Status.SUBMITTED: (NotificationKind.BACK_TO_REVIEW, "back in review"),
}


def _tell_requester(request: ReuseRequest, detail: str = "") -> None:
    """The requester hears of every move of their request that they did not make."""
    kind, word = _TELL[request.status]
    version = request.version
    last = request.reviews.order_by("created_at", "id").last()
    comment = (
        last.comment
        if last
        and request.status in (ReuseRequest.Status.REJECTED, ReuseRequest.Status.CHANGES_REQUESTED)
        else ""
    )
    body = " ".join(
        part
        for part in (
            detail,
            f"Reviewer's comment: {comment}" if comment else "",
            f"It expires on {request.expires_at:%Y-%m-%d}."
            if request.status == ReuseRequest.Status.APPROVED and request.expires_at
            else "",
        )
        if part
    )
    notices.notify(
        kind=kind,
        users=[request.requester_id],
        title=f"Request #{request.pk} for {version.model.repo_id} {version.label}: {word}",
        body=body,
        url=request_url(request),
        # Each move happens once; the time tells two suspensions of one request apart.
        event_key=f"reuse:{request.pk}:{request.status}:{timezone.now().timestamp()}",
        data={"request": request.pk, "status": request.status, "version": version.pk},
    )


def _move(request: ReuseRequest, to: str, actor, **changes) -> None:
    before = request.status
    moved = ReuseRequest.objects.filter(pk=request.pk, status=before).update(status=to, **changes)
    if not moved:
        raise Conflict("Someone else changed this request first; reload it.")
    audit_record(
        actor=actor,
        verb=f"reuse.{to}",
        target=request,
        payload={"before": {"status": before}, "after": {"status": to}},
    )


def reuse_request_resubmit(*, request: ReuseRequest, requester, justification: str) -> ReuseRequest:
    if requester.pk != request.requester_id:
        raise Forbidden("Only the requester may resubmit.")
    with transaction.atomic():
        ReuseRequest.objects.filter(pk=request.pk).update(justification=justification.strip())
        request.refresh_from_db()
        if request.status != ReuseRequest.Status.CHANGES_REQUESTED:
            raise Conflict("Only a request with changes requested can be resubmitted.")
        _move(request, ReuseRequest.Status.SUBMITTED, requester)
        request.refresh_from_db()
        _ask_reviewers(request)
    return request


def reuse_request_withdraw(*, request: ReuseRequest, requester) -> ReuseRequest:
    if requester.pk != request.requester_id:
        raise Forbidden("Only the requester may withdraw a request.")
    with transaction.atomic():
        if request.status not in ReuseRequest.OPEN:
            raise Conflict("Only an open request can be withdrawn.")
        _move(request, ReuseRequest.Status.WITHDRAWN, requester, decided_at=timezone.now())
    request.refresh_from_db()
    return request


def reuse_request_revoke(*, request: ReuseRequest, actor, reason: str) -> ReuseRequest:
    if not (is_steward(actor) or actor.is_staff):
        raise Forbidden("Only stewards and administrators revoke approvals.")
    if not reason.strip():
        raise PortalError("Say why the approval is revoked.", field="reason")
    with transaction.atomic():
        request.refresh_from_db()
        if request.status != ReuseRequest.Status.APPROVED:
            raise Conflict("Only an approved request can be revoked.")
        _move(request, ReuseRequest.Status.REVOKED, actor, decided_at=timezone.now())
        audit_record(
            actor=actor, verb="reuse.revoke.reason", target=request, payload={"reason": reason}
        )
        transaction.on_commit(lambda: sync_permissions_for_request(request.pk))
        request.refresh_from_db()
        _tell_requester(request, f"Reason: {reason.strip()}")
    return request


def reuse_requests_expire(*, now=None) -> int:
    """Expire approvals past their date and take the permissions back (Celery beat)."""
    now = now or timezone.now()
    due = list(
        ReuseRequest.objects.filter(status=ReuseRequest.Status.APPROVED, expires_at__lte=now)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    expired = 0
    for pk in due:
        with transaction.atomic():
            request = ReuseRequest.objects.select_for_update().get(pk=pk)
            if request.status != ReuseRequest.Status.APPROVED:
                continue
            _move(request, ReuseRequest.Status.EXPIRED, None)
            transaction.on_commit(lambda pk=pk: sync_permissions_for_request(pk))
            request.refresh_from_db()
            _tell_requester(request, "Request reuse again if you still need it.")
            expired += 1
    return expired


def sync_permissions_for_request(request_id: int) -> None:
    """Make the requester's object permissions on the version match their live approvals."""
    request = ReuseRequest.objects.only("requester_id", "version_id").get(pk=request_id)
    sync_permissions(user_id=request.requester_id, version_id=request.version_id)


def sync_permissions(*, user_id: int, version_id: int) -> bool:
    """Grant or remove the approval's permissions so they equal what the approvals say now.

    Called after every approval, revocation and expiry commits. The permissions
    are derived, not toggled: whatever order the callbacks of an approval and a
    racing revocation run in, the last one to run reads the final state. The
    changes for one (user, version) are serialised by a transaction-level
    advisory lock (on PostgreSQL), so two of them never interleave. Returns
    whether the user now holds the permissions.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)",
                    [_PERMISSION_LOCK, _pair(user_id, version_id)],
                )
        live = (
            ReuseRequest.objects.filter(
                requester_id=user_id, version_id=version_id, status=ReuseRequest.Status.APPROVED
            )
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
            .exists()
        )
        user = get_user_model().objects.get(pk=user_id)
        version = ModelVersion.objects.get(pk=version_id)
        for perm in GRANTED_PERMISSIONS:
            if live:
                assign_perm(perm, user, version)
            else:
                remove_perm(perm, user, version)
    return live


_PERMISSION_LOCK = 720_033  # arbitrary, fixed, an int4: "reuse permissions"


def _pair(user_id: int, version_id: int) -> int:
    """One 32-bit key per (user, version) for the advisory lock's second argument."""
    return int.from_bytes(
        hashlib.blake2b(f"{user_id}:{version_id}".encode(), digest_size=4).digest(),
        "big",
        signed=True,
    )


def _live_approvals_on(version_ids) -> list[int]:
    return list(
        ReuseRequest.objects.filter(
            version_id__in=list(version_ids), status=ReuseRequest.Status.APPROVED
        )
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def approvals_reopen(*, version: ModelVersion, actor, change: str) -> list[int]:
    """Send every live approval on ``version`` back to review because ``change`` happened.

    Runs inside the transaction of the change. The policy is asked again which
    roles review it now (a stricter license or a higher risk may add some); if
    it now refuses the use outright, the approval is revoked with the policy's
    reason instead. Access is withdrawn while the request is in review; the
    holder and the reviewers are told, and the reviewers see ``change``.
    """
    reopened = []
    for pk in _live_approvals_on([version.pk]):
        request = ReuseRequest.objects.select_for_update().get(pk=pk)
        if request.status != ReuseRequest.Status.APPROVED:
            continue
        outcome = policy_evaluate(
            version=request.version,
            use_type=request.use_type,
            sensitivity=request.data_sensitivity,
            blocked_refuses=False,
        )
        if outcome.refused:
            _move(request, ReuseRequest.Status.REVOKED, actor, decided_at=timezone.now())
            audit_record(
                actor=actor,
                verb="reuse.revoke.reason",
                target=request,
                payload={"reason": f"{change} {outcome.explanation}"},
            )
            request.refresh_from_db()
            _tell_requester(request, f"{change} {outcome.explanation}")
        else:
            roles = outcome.roles
            ReuseRequest.objects.filter(pk=pk).update(
                required_roles=roles,
                reopened=request.reopened + 1,
                reopen_reason=change,
                policy_explanation=outcome.explanation,
            )
            request.refresh_from_db()
            _move(request, ReuseRequest.Status.SUBMITTED, actor)
            audit_record(
                actor=actor,
                verb="reuse.reopen",
                target=request,
                payload={"change": change, "roles": roles, "round": _round(request)},
            )
            request.refresh_from_db()
            _tell_requester(
                request, f"{change} Your access is paused until the reviewers approve it again."
            )
            _ask_reviewers(request)
        transaction.on_commit(lambda pk=pk: sync_permissions_for_request(pk))
        reopened.append(pk)
    return reopened


def approvals_suspend(*, version_ids, actor, reason: str) -> dict[int, list[int]]:
    """Suspend the live approvals on these versions (a recall); {version id: request ids}."""
    suspended: dict[int, list[int]] = {}
    for pk in _live_approvals_on(version_ids):
        request = ReuseRequest.objects.select_for_update().get(pk=pk)
        if request.status != ReuseRequest.Status.APPROVED:
            continue
        _move(request, ReuseRequest.Status.SUSPENDED, actor)
        audit_record(
            actor=actor, verb="reuse.suspend.reason", target=request, payload={"reason": reason}
        )
        request.refresh_from_db()
        _tell_requester(request, reason)
        transaction.on_commit(lambda pk=pk: sync_permissions_for_request(pk))
        suspended.setdefault(request.version_id, []).append(pk)
    return suspended


def approvals_restore(*, request_ids, actor, reason: str) -> list[int]:
    """Give suspended approvals back (a recall lifted); those past their expiry expire."""
    restored = []
    now = timezone.now()
    for pk in sorted(request_ids):
        request = ReuseRequest.objects.select_for_update().filter(pk=pk).first()
        if request is None or request.status != ReuseRequest.Status.SUSPENDED:
            continue
        live = request.expires_at is None or request.expires_at > now
        _move(request, ReuseRequest.Status.APPROVED if live else ReuseRequest.Status.EXPIRED, actor)
        request.refresh_from_db()
        _tell_requester(request, reason)
        transaction.on_commit(lambda pk=pk: sync_permissions_for_request(pk))
        if live:
            restored.append(pk)
    return restored


# Reminders before an approval expires: (key, how long before).
EXPIRY_REMINDERS = (("14d", timedelta(days=14)), ("1d", timedelta(days=1)))


def reuse_approvals_remind(*, now=None) -> int:
    """Tell holders their approval expires in 14 days and in 1 day (Celery beat), once each."""
    now = now or timezone.now()
    sent = 0
    for key, before in EXPIRY_REMINDERS:
        due = ReuseRequest.objects.filter(
            status=ReuseRequest.Status.APPROVED, expires_at__gt=now, expires_at__lte=now + before
        )
        # Filtered here rather than with a JSON lookup, which SQLite (the embedded mode) lacks.
        for pk, done in due.order_by("pk").values_list("pk", "reminders_sent"):
            if key in (done or []):
                continue
            with transaction.atomic():
                request = ReuseRequest.objects.select_for_update().get(pk=pk)
                if key in request.reminders_sent or request.status != "approved":
                    continue
                # The later reminder makes the earlier one pointless: mark both sent.
                request.reminders_sent = sorted(
                    {*request.reminders_sent, key, *(k for k, b in EXPIRY_REMINDERS if b > before)}
                )
                request.save(update_fields=["reminders_sent", "updated_at"])
                version = request.version
                left = request.expires_at - now
                notices.notify(
                    kind=NotificationKind.EXPIRING,
                    users=[request.requester_id],
                    title=f"Your approval for {version.model.repo_id} {version.label} expires "
                    f"on {request.expires_at:%Y-%m-%d}",
                    body=f"About {max(1, round(left / timedelta(days=1)))} day(s) left. "
                    "Request reuse again before then if you still need it.",
                    url=request_url(request),
                    event_key=f"reuse:{pk}:expiring:{key}:{request.expires_at.isoformat()}",
                    data={"request": pk, "expires_at": request.expires_at.isoformat()},
                )
                sent += 1
    return sent
