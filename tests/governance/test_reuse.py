"""Reuse requests: policy, multi-role review, separation of duties, expiry, revocation."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone

from governance.models import AuditEvent, License, Notification, ReuseRequest, Review
from governance.services import policy as gov_policy
from governance.services import reuse as gov_reuse
from portal.errors import Conflict, Forbidden, PortalError
from tests.factories import ModelVersionFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def personas(people):
    """The personas, plus one person holding two review roles."""
    return {**people, "multi": UserFactory(username="multi", roles=["legal", "security"])}


def _version(license="apache-2.0"):
    return ModelVersionFactory(license=License.objects.get(spdx_id=license))


def _submit(requester, version, *, use_type="internal", sensitivity="internal", days=30):
    return gov_reuse.reuse_request_submit(
        requester=requester,
        version=version,
        intended_use="Route tickets",
        use_type=use_type,
        business_unit="Support",
        data_sensitivity=sensitivity,
        justification="Cuts triage time",
        duration_days=days,
    )


@pytest.mark.parametrize(
    ("license", "use_type", "sensitivity", "expected"),
    [
        ("apache-2.0", "research", "public", ["legal"]),
        ("apache-2.0", "commercial", "internal", ["legal", "security"]),
        ("apache-2.0", "internal", "restricted", ["legal", "security", "compliance"]),
        ("llama3", "internal", "internal", ["legal", "compliance"]),
    ],
)
def test_policy_names_the_roles(license, use_type, sensitivity, expected):
    outcome = gov_policy.policy_evaluate(
        version=_version(license), use_type=use_type, sensitivity=sensitivity
    )
    assert not outcome.refused
    assert outcome.roles == expected


@pytest.mark.parametrize(
    ("license", "use_type", "message"),
    [
        ("cc-by-nc-4.0", "commercial", "forbids commercial use"),
        ("unknown", "internal", "license is unknown"),
    ],
)
def test_policy_refuses_outright_and_nothing_is_created(personas, license, use_type, message):
    version = _version(license)
    with pytest.raises(PortalError, match=message):
        _submit(personas["alice"], version, use_type=use_type)
    assert not ReuseRequest.objects.exists()


def test_blocked_versions_are_refused(personas):
    version = _version()
    version.status, version.block_reasons = "blocked", ["x.bin: unsafe pickle (os.system)."]
    version.save()
    with pytest.raises(PortalError, match="blocked"):
        _submit(personas["alice"], version)


def test_every_required_role_must_approve_then_permissions_are_granted(
    personas, django_capture_on_commit_callbacks
):
    alice = personas["alice"]
    version = _version()
    request = _submit(alice, version, use_type="commercial")
    assert request.required_roles == ["legal", "security"]

    with django_capture_on_commit_callbacks(execute=True):
        request = gov_reuse.review_submit(
            request=request, reviewer=personas["lena"], role="legal", decision="approve"
        )
    assert request.status == "submitted"
    assert not alice.has_perm("zoo.download_files", version)

    with django_capture_on_commit_callbacks(execute=True):
        request = gov_reuse.review_submit(
            request=request, reviewer=personas["sean"], role="security", decision="approve"
        )
    assert request.status == "approved"
    assert request.expires_at > timezone.now() + timedelta(days=29)
    alice = type(alice).objects.get(pk=alice.pk)  # fresh permission cache
    assert alice.has_perm("zoo.download_files", version)
    assert alice.has_perm("zoo.finetune_version", version)
    assert not personas["bob"].has_perm("zoo.download_files", version)
    told = Notification.objects.get(user=alice, kind="decision")
    assert "approved" in told.title
    assert told.email_wanted
    assert told.in_inbox
    assert told.url == f"/governance/requests/{request.pk}/"
    verbs = list(AuditEvent.objects.order_by("id").values_list("verb", flat=True))
    assert verbs == [
        "reuse.submit",
        "reuse.review.approve",
        "reuse.review.approve",
        "reuse.approved",
    ]


def test_separation_of_duties(personas):
    lena, multi = personas["lena"], personas["multi"]
    request = _submit(lena, _version(), use_type="commercial")
    with pytest.raises(Forbidden, match="own request"):
        gov_reuse.review_submit(request=request, reviewer=lena, role="legal", decision="approve")
    with pytest.raises(Forbidden, match="do not hold"):
        gov_reuse.review_submit(
            request=request, reviewer=personas["bob"], role="legal", decision="approve"
        )
    gov_reuse.review_submit(request=request, reviewer=multi, role="legal", decision="approve")
    with pytest.raises(Forbidden, match="already reviewed this request as legal"):
        gov_reuse.review_submit(
            request=request, reviewer=multi, role="security", decision="approve"
        )
    assert Review.objects.count() == 1


def test_the_database_refuses_self_review(personas):
    from django.db import IntegrityError

    alice = personas["alice"]
    request = _submit(alice, _version())
    with pytest.raises(IntegrityError), transaction.atomic():
        Review.objects.create(
            request=request, requester=alice, reviewer=alice, role="legal", decision="approve"
        )


def test_reject_needs_a_reason_and_ends_the_request(personas):
    request = _submit(personas["alice"], _version())
    with pytest.raises(PortalError, match="reason for rejecting"):
        gov_reuse.review_submit(
            request=request, reviewer=personas["lena"], role="legal", decision="reject"
        )
    request = gov_reuse.review_submit(
        request=request, reviewer=personas["lena"], role="legal", decision="reject", comment="No."
    )
    assert request.status == "rejected"
    with pytest.raises(Conflict):
        gov_reuse.review_submit(
            request=request, reviewer=personas["multi"], role="legal", decision="approve"
        )


def test_changes_requested_then_resubmitted_starts_a_new_round(personas):
    alice, lena = personas["alice"], personas["lena"]
    request = _submit(alice, _version())
    request = gov_reuse.review_submit(
        request=request, reviewer=lena, role="legal", decision="changes", comment="Say which data"
    )
    assert request.status == "changes_requested"
    request = gov_reuse.reuse_request_resubmit(
        request=request, requester=alice, justification="Only ticket subjects"
    )
    assert request.status == "submitted"
    request = gov_reuse.review_submit(
        request=request, reviewer=lena, role="legal", decision="approve"
    )
    assert request.status == "approved"
    assert list(request.reviews.values_list("round", flat=True)) == [1, 2]


def test_withdraw_is_for_the_requester(personas):
    request = _submit(personas["alice"], _version())
    with pytest.raises(Forbidden):
        gov_reuse.reuse_request_withdraw(request=request, requester=personas["bob"])
    assert (
        gov_reuse.reuse_request_withdraw(request=request, requester=personas["alice"]).status
        == "withdrawn"
    )


def _approved(personas, days=30):
    request = _submit(personas["alice"], _version(), days=days)
    return gov_reuse.review_submit(
        request=request, reviewer=personas["lena"], role="legal", decision="approve"
    )


def test_expiry_takes_the_permissions_away(personas, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        request = _approved(personas, days=10)
    alice = personas["alice"]
    assert type(alice).objects.get(pk=alice.pk).has_perm("zoo.download_files", request.version)

    with time_machine.travel(timezone.now() + timedelta(days=9), tick=False):
        assert gov_reuse.reuse_requests_expire() == 0
    with (
        time_machine.travel(timezone.now() + timedelta(days=11), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert gov_reuse.reuse_requests_expire() == 1

    request.refresh_from_db()
    assert request.status == "expired"
    assert not type(alice).objects.get(pk=alice.pk).has_perm("zoo.download_files", request.version)
    assert AuditEvent.objects.filter(verb="reuse.expired", actor_name="system").exists()


def test_revocation_by_a_steward_takes_the_permissions_away(
    personas, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        request = _approved(personas)
    with pytest.raises(Forbidden):
        gov_reuse.reuse_request_revoke(request=request, actor=personas["bob"], reason="x")
    with pytest.raises(PortalError, match="Say why"):
        gov_reuse.reuse_request_revoke(request=request, actor=personas["sam"], reason=" ")
    with django_capture_on_commit_callbacks(execute=True):
        gov_reuse.reuse_request_revoke(
            request=request, actor=personas["sam"], reason="License changed"
        )
    alice = personas["alice"]
    assert not type(alice).objects.get(pk=alice.pk).has_perm("zoo.download_files", request.version)


@pytest.mark.django_db(transaction=True)
def test_concurrent_approvals_make_one_transition(personas):
    request = _submit(personas["alice"], _version(), use_type="commercial")
    barrier = threading.Barrier(2)
    results = []

    def approve(user, role):
        try:
            barrier.wait()
            results.append(
                gov_reuse.review_submit(
                    request=request, reviewer=user, role=role, decision="approve"
                ).status
            )
        except Exception as exc:
            results.append(type(exc).__name__)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=approve, args=(personas["lena"], "legal")),
        threading.Thread(target=approve, args=(personas["sean"], "security")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    request.refresh_from_db()
    assert request.status == "approved"
    assert AuditEvent.objects.filter(verb="reuse.approved").count() == 1
    assert sorted(results) == ["approved", "submitted"]


def test_use_gate_and_approved_for_me_filter(personas, client, django_capture_on_commit_callbacks):
    from governance.access import can_use_version

    alice, bob = personas["alice"], personas["bob"]
    own = ModelVersionFactory(created_by=bob, kind="finetuned")
    assert can_use_version(bob, own)  # its creator, before any review
    assert not can_use_version(alice, own)
    assert can_use_version(personas["sam"], own)
    with django_capture_on_commit_callbacks(execute=True):
        request = _approved(personas)
    fresh = type(alice).objects.get(pk=alice.pk)
    assert can_use_version(fresh, request.version)
    client.force_login(alice)
    page = client.get("/catalogue/", {"approved": "on"}).content.decode()
    assert request.version.model.repo_id in page
    assert own.model.repo_id not in page
