"""Reuse requests and their reviews: every transition is one function here.

Transitions are conditional updates on the request's status (two reviewers
approving at the same moment make one transition), each writes its audit
event in the same transaction, and object permissions and e-mails follow
after commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from governance.audit import audit_record
from governance.models import (
    ACCESS_TOKEN_DEFAULT_DAYS,
    ACCESS_TOKEN_MAX_DAYS,
    ACCESS_TOKEN_PREFIX,
    ACCESS_TOKEN_SHOWN_CHARS,
    AccessToken,
    PolicyRule,
    ReuseRequest,
    Review,
    RiskEntry,
    access_token_digest,
    review_round,
)
from governance.roles import REVIEW_ROLES, user_roles
from portal.errors import Conflict, Forbidden, PortalError
from zoo.models import ModelVersion

# What an approved request lets its requester do with the version.
GRANTED_PERMISSIONS = ("zoo.view_modelversion", "zoo.download_files", "zoo.finetune_version")


@dataclass
class PolicyOutcome:
    """What the policy says of a request before it is made."""

    refused: bool
    roles: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def explanation(self) -> str:
        if self.refused:
            return "Refused: " + " ".join(self.reasons)
        return f"Needs {' and '.join(self.roles)} review. " + " ".join(self.reasons)


def policy_evaluate(*, version: ModelVersion, use_type: str, sensitivity: str) -> PolicyOutcome:
    if version.is_blocked:
        return PolicyOutcome(
            True, reasons=["This version is blocked: " + " ".join(version.block_reasons)]
        )
    if version.model.status in ("blocked", "deprecated"):
        return PolicyOutcome(
            True, reasons=[f"The model is {version.model.status}: {version.model.status_reason}"]
        )
    category = version.license.category
    risk = highest_open_risk(version)
    refusals, roles, reasons = [], [], []
    for rule in PolicyRule.objects.filter(active=True):
        if not rule.matches(
            license_category=category, use_type=use_type, sensitivity=sensitivity, risk=risk
        ):
            continue
        if rule.outcome == PolicyRule.Outcome.REFUSE:
            refusals.append(rule.reason)
        else:
            roles.extend(r for r in rule.required_roles if r in REVIEW_ROLES and r not in roles)
            reasons.append(rule.reason)
    if refusals:
        return PolicyOutcome(True, reasons=refusals)
    if not roles:
        roles, reasons = ["legal"], ["Every reuse needs at least a legal review."]
    ordered = [r for r in REVIEW_ROLES if r in roles]
    return PolicyOutcome(False, roles=ordered, reasons=reasons)


def highest_open_risk(version: ModelVersion) -> int:
    """The severity (1-4) of the version's worst open risk; 0 when none is open."""
    return (
        version.risks.filter(status=RiskEntry.Status.OPEN)
        .order_by("-severity")
        .values_list("severity", flat=True)
        .first()
        or 0
    )


def risk_entry_save(
    *, actor, version: ModelVersion, risk: RiskEntry | None = None, **fields
) -> RiskEntry:
    """Record or update a risk; stewards and reviewers keep the register."""
    from governance.selectors import can_edit_risks

    if not can_edit_risks(actor):
        raise Forbidden("Only stewards and reviewers edit the risk register.")
    with transaction.atomic():
        creating = risk is None
        risk = risk or RiskEntry(version=version)
        before = {} if creating else {k: getattr(risk, k) for k in fields}
        for name, value in fields.items():
            setattr(risk, name, value)
        risk.full_clean()
        risk.save()
        audit_record(
            actor=actor,
            verb="risk.create" if creating else "risk.update",
            target=risk,
            payload={"version": version.pk, "before": before, "after": fields},
        )
    return risk


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
    return review_round(request.reviews.values_list("decision", flat=True))


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
                transaction.on_commit(lambda: _grant(locked.pk))
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
    from zoo.selectors import is_steward

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
        transaction.on_commit(lambda: _ungrant(request.pk))
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
            transaction.on_commit(lambda pk=pk: _ungrant(pk))
            expired += 1
    return expired


def _grant(request_id: int) -> None:
    request = ReuseRequest.objects.select_related("requester", "version").get(pk=request_id)
    for perm in GRANTED_PERMISSIONS:
        assign_perm(perm, request.requester, request.version)


def _ungrant(request_id: int) -> None:
    request = ReuseRequest.objects.select_related("requester", "version").get(pk=request_id)
    still_approved = ReuseRequest.objects.filter(
        requester=request.requester,
        version=request.version,
        status=ReuseRequest.Status.APPROVED,
    ).exists()
    if still_approved:  # another live approval covers the same version
        return
    for perm in GRANTED_PERMISSIONS:
        remove_perm(perm, request.requester, request.version)


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


# --- personal access tokens ------------------------------------------------------

# More than this many live tokens per person is a sign of tokens being made and forgotten.
ACCESS_TOKEN_MAX_LIVE = 50


def access_token_create(*, user, name: str, days: int = ACCESS_TOKEN_DEFAULT_DAYS):
    """Issue a read-only token; returns (row, plaintext). The plaintext exists only here."""
    import secrets

    name = (name or "").strip()
    if not user.is_authenticated or not user.is_active:
        raise Forbidden("Only active, signed-in users get access tokens.")
    if not name:
        raise PortalError("Give the token a name, e.g. the machine it is for.", field="name")
    if len(name) > 100:
        raise PortalError("A token name has at most 100 characters.", field="name")
    if isinstance(days, bool) or not isinstance(days, int) or not 0 < days <= ACCESS_TOKEN_MAX_DAYS:
        raise PortalError(
            f"A token lasts between 1 and {ACCESS_TOKEN_MAX_DAYS} days.", field="days"
        )
    secret = secrets.token_urlsafe(32)
    plaintext = ACCESS_TOKEN_PREFIX + secret
    now = timezone.now()
    with transaction.atomic():
        live = AccessToken.objects.filter(
            user=user, revoked_at__isnull=True, expires_at__gt=now
        ).count()
        if live >= ACCESS_TOKEN_MAX_LIVE:
            raise PortalError(
                f"You already have {live} live tokens; revoke the ones you no longer use."
            )
        token = AccessToken.objects.create(
            user=user,
            name=name,
            prefix=ACCESS_TOKEN_PREFIX + secret[:ACCESS_TOKEN_SHOWN_CHARS],
            digest=access_token_digest(plaintext),
            scope=AccessToken.Scope.READ,
            expires_at=now + timedelta(days=days),
        )
        # Name, display prefix and dates only: never the secret or its digest.
        audit_record(
            actor=user,
            verb="token.create",
            target=token,
            payload={
                "name": name,
                "prefix": token.prefix,
                "scope": token.scope,
                "expires_at": token.expires_at.isoformat(),
            },
        )
    return token, plaintext


def access_token_revoke(*, token: AccessToken, actor) -> AccessToken:
    """Revoke a token at once; its owner or staff may."""
    if not actor.is_authenticated or (actor.pk != token.user_id and not actor.is_staff):
        raise Forbidden("Only the token's owner or an administrator may revoke it.")
    with transaction.atomic():
        now = timezone.now()
        moved = AccessToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=now
        )
        if not moved:
            raise Conflict("This token is already revoked.")
        audit_record(
            actor=actor,
            verb="token.revoke",
            target=token,
            payload={"name": token.name, "prefix": token.prefix, "owner": token.user_id},
        )
    token.refresh_from_db()
    return token
