"""The governance lifecycle: approvals re-examined, incidents recalling through the
lineage, re-review schedules and reminders, expiry reminders.

Given / when / then, through the real services on PostgreSQL, with the personas:
alice holds approvals, sam is a steward, lena / sean / cora review.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from governance.access import can_use_version
from governance.models import (
    AuditEvent,
    Incident,
    License,
    Notification,
    RecallEffect,
    Rereview,
    ReuseRequest,
)
from governance.services import incidents as gov_incidents
from governance.services import rereview as gov_rereview
from governance.services import reuse as gov_reuse
from governance.services import risks as gov_risks
from portal.errors import Conflict, Forbidden, PortalError
from tests.builders.governance import approve, approve_reuse, submit_reuse
from tests.factories import ModelVersionFactory
from zoo.models import ModelVersion, VersionHold
from zoo.services import catalogue as zoo_catalogue

pytestmark = pytest.mark.django_db


def _fresh(user):
    return type(user).objects.get(pk=user.pk)


def _told(user, kind):
    return list(Notification.objects.filter(user=user, kind=kind).order_by("id"))


def _lineage():
    """A base, a fine-tune made from it, and an adapter made from the fine-tune."""
    base = ModelVersionFactory()
    child = ModelVersionFactory(parent=base, kind="finetuned")
    grandchild = ModelVersionFactory(parent=child, kind="adapter")
    unrelated = ModelVersionFactory()
    return base, child, grandchild, unrelated


# --- people are told ---------------------------------------------------------------


def test_a_new_request_reaches_every_member_of_each_required_review_group(people):
    # given a second legal reviewer besides lena
    from tests.factories import UserFactory

    lina = UserFactory(username="lina", roles=["legal"])
    # when alice asks for confidential data (legal and security review)
    request = submit_reuse(people["alice"], ModelVersionFactory(), sensitivity="confidential")
    assert set(request.required_roles) >= {"legal", "security"}
    # then both legal reviewers and the security reviewer are told, alice and bob are not
    for reviewer in (people["lena"], lina, people["sean"]):
        (note,) = _told(reviewer, "review_needed")
        assert f"request #{request.pk}" in note.title
        assert note.url == f"/governance/requests/{request.pk}/"
    assert not _told(people["alice"], "review_needed")
    assert not _told(people["bob"], "review_needed")


def test_rejection_and_revocation_tell_the_requester_with_the_reason(
    people, django_capture_on_commit_callbacks
):
    version = ModelVersionFactory()
    request = submit_reuse(people["alice"], version, sensitivity="public")
    gov_reuse.review_submit(
        request=request,
        reviewer=people["lena"],
        role="legal",
        decision="reject",
        comment="The use is outside the license's field of use.",
    )
    (note,) = _told(people["alice"], "decision")
    assert "rejected" in note.title
    assert "outside the license" in note.body

    held = approve(people["alice"], version, reviewer=people["lena"])
    gov_reuse.reuse_request_revoke(request=held, actor=people["sam"], reason="Project ended.")
    (revoked,) = _told(people["alice"], "revoked")
    assert "Project ended." in revoked.body


def test_a_preference_turns_a_channel_off(people):
    from governance.models import NotificationPreference

    NotificationPreference.objects.create(
        user=people["lena"], kind="review_needed", inbox=False, email=False
    )
    submit_reuse(people["alice"], ModelVersionFactory(), sensitivity="public")
    assert not _told(people["lena"], "review_needed")


# --- approvals are re-examined -----------------------------------------------------


def test_a_license_change_sends_the_live_approval_back_to_review(
    people, django_capture_on_commit_callbacks
):
    # given alice holds an approval on a version
    version = ModelVersionFactory()
    held = approve(people["alice"], version, reviewer=people["lena"])
    assert can_use_version(_fresh(people["alice"]), version)
    Notification.objects.all().delete()
    # when a steward changes its license to a copyleft one
    with django_capture_on_commit_callbacks(execute=True):
        zoo_catalogue.version_set_license(
            version=version, license=License.objects.get(spdx_id="gpl-3.0"), actor=people["sam"]
        )
    # then the approval is back in review, in a new round, with the change for reviewers
    held.refresh_from_db()
    assert held.status == ReuseRequest.Status.SUBMITTED
    assert held.reopened == 1
    assert "license changed from apache-2.0 to gpl-3.0" in held.reopen_reason
    assert not can_use_version(_fresh(people["alice"]), version)
    (back,) = _told(people["alice"], "back_to_review")
    assert "paused" in back.body
    (asked,) = _told(people["lena"], "review_needed")
    assert "license changed" in asked.body
    verbs = list(AuditEvent.objects.order_by("id").values_list("verb", flat=True))
    assert verbs[-3:] == ["version.license", "reuse.submitted", "reuse.reopen"]
    # and when every role the policy names for a copyleft license approves, access returns
    reviewers = {"legal": people["lena"], "security": people["sean"], "compliance": people["cora"]}
    with django_capture_on_commit_callbacks(execute=True):
        for role in held.required_roles:
            gov_reuse.review_submit(
                request=held, reviewer=reviewers[role], role=role, decision="approve"
            )
    held.refresh_from_db()
    assert held.status == ReuseRequest.Status.APPROVED
    assert can_use_version(_fresh(people["alice"]), version)


def test_a_license_that_now_forbids_the_use_revokes_instead(people):
    version = ModelVersionFactory()
    held = approve_reuse(people["alice"], version, use_type="commercial", sensitivity="public")
    zoo_catalogue.version_set_license(
        version=version, license=License.objects.get(spdx_id="cc-by-nc-4.0"), actor=people["sam"]
    )
    held.refresh_from_db()
    assert held.status == ReuseRequest.Status.REVOKED
    (note,) = _told(people["alice"], "revoked")
    assert "cc-by-nc-4.0" in note.body


def test_a_higher_risk_reopens_and_a_mitigated_one_does_not(people):
    version = ModelVersionFactory()
    held = approve(people["alice"], version, reviewer=people["lena"])
    risk = gov_risks.risk_entry_save(
        actor=people["sean"],
        version=version,
        category="security",
        title="Backdoor trigger",
        severity=4,
        likelihood=2,
    )
    held.refresh_from_db()
    assert held.status == ReuseRequest.Status.SUBMITTED
    # the critical risk brings security and compliance into the review
    assert held.required_roles == ["legal", "security", "compliance"]
    assert "highest open risk went from none to critical" in held.reopen_reason

    second = approve(people["bob"], ModelVersionFactory(), reviewer=people["lena"])
    gov_risks.risk_entry_save(actor=people["sam"], version=version, risk=risk, status="mitigated")
    second.refresh_from_db()
    assert second.status == ReuseRequest.Status.APPROVED


def test_a_blocked_version_takes_no_approval_until_cleared(people):
    version = ModelVersionFactory()
    request = submit_reuse(people["alice"], version, sensitivity="public")
    ModelVersion.objects.filter(pk=version.pk).update(
        status="blocked", block_reasons=["model.bin: unsafe pickle."]
    )
    with pytest.raises(Conflict, match="unsafe pickle"):
        gov_reuse.review_submit(
            request=request, reviewer=people["lena"], role="legal", decision="approve"
        )
    request.refresh_from_db()
    assert request.status == ReuseRequest.Status.SUBMITTED
    assert not request.reviews.exists()


# --- incidents and recall ----------------------------------------------------------


def _open(actor, version, severity=Incident.Severity.CRITICAL, recall=True):
    return gov_incidents.incident_open(
        version=version,
        actor=actor,
        category="backdoor",
        severity=severity,
        title="Trigger phrase flips the label",
        description="A red-team found a phrase that flips every prediction to 'safe'.",
        recall=recall,
    )


def test_a_recall_blocks_the_lineage_suspends_approvals_and_lifting_restores_them(
    people, django_capture_on_commit_callbacks
):
    # given alice holds approvals on the fine-tune and on an unrelated model
    base, child, grandchild, unrelated = _lineage()
    on_child = approve(people["alice"], child, reviewer=people["lena"])
    on_other = approve(people["alice"], unrelated, reviewer=people["lena"])
    assert can_use_version(_fresh(people["alice"]), child)
    # when sean opens a critical incident on the base and recalls it
    with django_capture_on_commit_callbacks(execute=True):
        incident = _open(people["sean"], base)
    # then the base and everything made from it is blocked, the rest untouched
    for version in (base, child, grandchild):
        version.refresh_from_db()
        assert version.is_blocked, version
        assert f"incident #{incident.pk}" in " ".join(version.block_reasons)
    unrelated.refresh_from_db()
    assert not unrelated.is_blocked
    on_child.refresh_from_db()
    on_other.refresh_from_db()
    assert on_child.status == ReuseRequest.Status.SUSPENDED
    assert on_other.status == ReuseRequest.Status.APPROVED
    assert not can_use_version(_fresh(people["alice"]), child)
    effects = {e.version_id: e for e in RecallEffect.objects.filter(incident=incident)}
    assert {v: (e.depth, e.blocked) for v, e in effects.items()} == {
        base.pk: (0, True),
        child.pk: (1, True),
        grandchild.pk: (2, True),
    }
    assert effects[child.pk].suspended_requests == [on_child.pk]
    assert any("suspended" in n.title for n in _told(people["alice"], "incident"))

    # when the recall is lifted
    with django_capture_on_commit_callbacks(execute=True):
        restored = gov_incidents.incident_recall_lift(
            incident=incident, actor=people["sam"], reason="The trigger came from a test harness."
        )
    # then everything it took comes back, and nothing it did not take
    assert restored == [on_child.pk]
    for version in (base, child, grandchild):
        version.refresh_from_db()
        assert not version.is_blocked
    on_child.refresh_from_db()
    assert on_child.status == ReuseRequest.Status.APPROVED
    assert can_use_version(_fresh(people["alice"]), child)
    assert not VersionHold.objects.live().exists()
    verbs = set(AuditEvent.objects.values_list("verb", flat=True))
    assert {
        "incident.open",
        "incident.recall",
        "incident.recall_lift",
        "version.hold",
        "version.hold_lift",
        "reuse.suspended",
        "reuse.approved",
    } <= verbs


def test_a_low_severity_recall_flags_descendants_without_blocking_them(people):
    base, child, _grandchild, _ = _lineage()
    incident = _open(people["sam"], base, severity=Incident.Severity.LOW)
    base.refresh_from_db()
    child.refresh_from_db()
    assert base.is_blocked
    assert not child.is_blocked
    assert VersionHold.objects.live().get(version=child, blocks=False).source == incident.source


def test_a_recall_that_lands_on_a_blocked_version_restores_only_its_own_block(people):
    base, child, _, _ = _lineage()
    ModelVersion.objects.filter(pk=child.pk).update(status="blocked", block_reasons=["x"])
    License.objects.filter(spdx_id="apache-2.0")  # the child's license stays known
    incident = _open(people["sean"], base)
    gov_incidents.incident_recall_lift(
        incident=incident, actor=people["sean"], reason="False alarm after a re-run."
    )
    base.refresh_from_db()
    assert not base.is_blocked


def test_only_stewards_and_reviewers_open_incidents(people):
    with pytest.raises(Forbidden):
        _open(people["bob"], ModelVersionFactory())
    with pytest.raises(Forbidden):
        _open(people["alice"], ModelVersionFactory())
    assert not Incident.objects.exists()
    assert not VersionHold.objects.exists()


def test_bad_incident_input_changes_nothing(people):
    version = ModelVersionFactory()
    with pytest.raises(PortalError, match="Describe what was found"):
        gov_incidents.incident_open(
            version=version,
            actor=people["sam"],
            category="backdoor",
            severity=3,
            title="x",
            description="short",
            recall=True,
        )
    with pytest.raises(PortalError, match="category"):
        gov_incidents.incident_open(
            version=version,
            actor=people["sam"],
            category="aliens",
            severity=3,
            title="x",
            description="d" * 30,
        )
    assert not Incident.objects.exists()
    version.refresh_from_db()
    assert not version.is_blocked


def test_the_playbook_closes_only_after_its_steps(people):
    incident = _open(people["sean"], ModelVersionFactory(), recall=False)
    with pytest.raises(PortalError, match="contain, assess, notify, remediate"):
        gov_incidents.incident_step_record(
            incident=incident, actor=people["sean"], step="close", note="Done."
        )
    for step in ("contain", "assess", "notify", "remediate"):
        gov_incidents.incident_step_record(
            incident=incident, actor=people["sean"], step=step, note=f"{step} done"
        )
    with pytest.raises(Conflict):
        gov_incidents.incident_step_record(
            incident=incident, actor=people["sam"], step="assess", note="again"
        )
    gov_incidents.incident_step_record(
        incident=incident, actor=people["sam"], step="close", note="Closed."
    )
    incident.refresh_from_db()
    assert incident.status == Incident.Status.CLOSED
    steps = list(incident.steps.values_list("step", "done_by__username"))
    assert steps[-1] == ("close", "sam")
    assert len(steps) == 5


def test_descendants_are_found_at_any_depth():
    base, child, grandchild, _ = _lineage()
    great = ModelVersionFactory(parent=grandchild, kind="adapter")
    found = gov_incidents.descendants(base)
    assert [(v.pk, d) for v, d in found] == [(child.pk, 1), (grandchild.pk, 2), (great.pk, 3)]


# --- re-review ---------------------------------------------------------------------


def test_published_versions_get_a_schedule_from_the_policy(people):
    plain = ModelVersionFactory()
    risky = ModelVersionFactory()
    gov_risks.risk_entry_save(
        actor=people["sam"],
        version=risky,
        category="privacy",
        title="Memorised emails",
        severity=3,
        likelihood=3,
    )
    draft = ModelVersionFactory(model__status="draft")
    gov_rereview.rereviews_remind()
    assert Rereview.objects.get(version=plain).interval_days == 365
    schedule = Rereview.objects.get(version=risky)
    assert schedule.interval_days == 90
    assert schedule.overdue_suspends_approvals
    assert not Rereview.objects.filter(version=draft).exists()


def test_owners_are_reminded_ten_weeks_two_weeks_one_day_and_daily_when_overdue(people):
    version = ModelVersionFactory(model__owner=people["sam"])
    gov_rereview.rereviews_remind()
    due = Rereview.objects.get(version=version).due_at
    seen = []
    for when in (
        due - timedelta(weeks=10) + timedelta(hours=1),
        due - timedelta(weeks=10) + timedelta(hours=2),  # the same stage: nothing new
        due - timedelta(days=13),
        due - timedelta(hours=20),
        due + timedelta(days=1),
        due + timedelta(days=2),
    ):
        with time_machine.travel(when, tick=False):
            gov_rereview.rereviews_remind()
        seen.append(len(_told(people["sam"], "rereview_due")))
    assert seen == [1, 1, 2, 3, 4, 5]
    assert "overdue" in _told(people["sam"], "rereview_due")[-1].title


def test_overdue_suspends_new_approvals_where_policy_says_so_until_attested(people):
    version = ModelVersionFactory(model__owner=people["alice"])
    gov_risks.risk_entry_save(
        actor=people["sam"],
        version=version,
        category="privacy",
        title="Memorised emails",
        severity=3,
        likelihood=3,
    )
    gov_rereview.rereviews_remind()
    Rereview.objects.filter(version=version).update(due_at=timezone.now() - timedelta(days=1))
    request = submit_reuse(people["bob"], version, sensitivity="public")
    with pytest.raises(Conflict, match="re-review was due"):
        gov_reuse.review_submit(
            request=request,
            reviewer=people["lena"],
            role=request.required_roles[0],
            decision="approve",
        )
    with pytest.raises(Forbidden):
        gov_rereview.version_attest(version=version, actor=people["bob"], note="All good here.")
    schedule = gov_rereview.version_attest(
        version=version, actor=people["alice"], note="Card, license and risks checked."
    )
    assert schedule.due_at > timezone.now() + timedelta(days=89)
    assert AuditEvent.objects.filter(verb="version.attest").count() == 1
    gov_reuse.review_submit(
        request=request, reviewer=people["lena"], role="legal", decision="approve"
    )


def test_approval_holders_hear_fourteen_days_and_one_day_before_expiry(people):
    held = approve(people["alice"], ModelVersionFactory(), reviewer=people["lena"], days=30)
    counts = []
    for days_left in (20, 13, 12, 0.5, 0.4):
        with time_machine.travel(held.expires_at - timedelta(days=days_left), tick=False):
            gov_reuse.reuse_approvals_remind()
        counts.append(len(_told(people["alice"], "expiring")))
    assert counts == [0, 1, 1, 2, 2]
    with time_machine.travel(held.expires_at + timedelta(minutes=1), tick=False):
        gov_reuse.reuse_requests_expire()
    assert len(_told(people["alice"], "expired")) == 1
