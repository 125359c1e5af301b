"""Reuse requests and their reviews: every transition is one function here.

Transitions are conditional updates on the request's status (two reviewers
approving at the same moment make one transition), each writes its audit
event in the same transaction, and object permissions and e-mails follow
after commit.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from governance.audit import audit_record
from governance.models import ReuseRequest, Review, review_round
from governance.roles import is_steward, user_roles
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
    return request


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
        transaction.on_commit(lambda: _notify(locked.pk))
    return locked


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


def _notify(request_id: int) -> None:
    request = ReuseRequest.objects.select_related("requester", "version__model").get(pk=request_id)
    if not request.requester.email:
        return
    send_mail(
        subject=f"Reuse request #{request.pk}: {request.get_status_display()}",
        message=(
            f"Your request to reuse {request.version.model.repo_id} {request.version.label} "
            f"is now {request.get_status_display().lower()}."
            + (f" It expires on {request.expires_at:%Y-%m-%d}." if request.expires_at else "")
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[request.requester.email],
        fail_silently=True,
    )
