"""Approvals and access tokens made through the real governance services."""

from __future__ import annotations

from django.test import TestCase

from governance.models import ReuseRequest
from governance.services import reuse as gov_reuse
from governance.services import tokens as gov_tokens
from tests.factories import UserFactory

REVIEWERS = {"legal": "lena", "security": "sean", "compliance": "cora"}


def submit_reuse(
    requester,
    version,
    *,
    sensitivity: str = "internal",
    use_type: str = "research",
    days: int = 30,
) -> ReuseRequest:
    """A reuse request submitted through the real service, before any review."""
    return gov_reuse.reuse_request_submit(
        requester=requester,
        version=version,
        intended_use="Fine-tune a classifier for support tickets.",
        use_type=use_type,
        business_unit="Support",
        data_sensitivity=sensitivity,
        justification="The probe ranked this model first.",
        duration_days=days,
    )


def approve_reuse(
    requester,
    version,
    *,
    sensitivity: str = "internal",
    use_type: str = "research",
    days: int = 30,
    reviewers: dict | None = None,
) -> ReuseRequest:
    """A reuse request approved by every role the policy asks for, by real reviewers.

    ``reviewers`` maps a role to its reviewer (the personas by default). The
    permissions are granted after commit, as in production; inside a test's
    transaction the callbacks are run here.
    """
    with TestCase.captureOnCommitCallbacks(execute=True):
        request = submit_reuse(
            requester, version, sensitivity=sensitivity, use_type=use_type, days=days
        )
        for role in request.required_roles:
            reviewer = (reviewers or {}).get(role) or UserFactory(
                username=REVIEWERS[role], roles=[role]
            )
            request = gov_reuse.review_submit(
                request=request, reviewer=reviewer, role=role, decision="approve"
            )
    assert request.status == ReuseRequest.Status.APPROVED
    return request


def approve(requester, version, *, reviewer, days: int = 30) -> ReuseRequest:
    """A research request on public data (only legal review needed), approved by ``reviewer``."""
    request = approve_reuse(
        requester, version, sensitivity="public", days=days, reviewers={"legal": reviewer}
    )
    assert request.required_roles == ["legal"], request.required_roles
    return request


def token_for(user, *, days: int = 30, name: str = "tests") -> str:
    return gov_tokens.access_token_create(user=user, name=name, days=days)[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
