"""The policy tables change through audited services, in the admin as anywhere else."""

from __future__ import annotations

import pytest

from governance.models import AuditEvent, License, PolicyRule
from governance.services import policy as gov_policy
from portal.errors import Forbidden, PortalError

pytestmark = pytest.mark.django_db


def test_a_license_change_is_audited_with_before_and_after(admin_user):
    mit = License.objects.get(spdx_id="mit")
    gov_policy.license_save(actor=admin_user, license=mit, commercial_use=False)
    event = AuditEvent.objects.get(verb="license.update")
    assert event.actor == admin_user
    assert event.payload["before"]["commercial_use"] is True
    assert event.payload["after"]["commercial_use"] is False
    assert event.payload["changed"] == ["commercial_use"]


def test_only_staff_change_the_policy(sam):
    rule = PolicyRule.objects.first()
    with pytest.raises(Forbidden):
        gov_policy.policy_rule_save(actor=sam, rule=rule, active=False)
    with pytest.raises(Forbidden):
        gov_policy.policy_rule_delete(actor=sam, rule=rule)
    rule.refresh_from_db()
    assert rule.active
    assert not AuditEvent.objects.filter(verb__startswith="policy_rule").exists()


def test_a_rule_naming_an_unknown_role_is_refused(admin_user):
    with pytest.raises(PortalError, match="Unknown review role 'finance'"):
        gov_policy.policy_rule_save(
            actor=admin_user,
            name="Finance looks at everything",
            outcome="review",
            required_roles=["finance"],
            reason="Money.",
        )
    assert not PolicyRule.objects.filter(name="Finance looks at everything").exists()


def test_admin_edits_and_deletes_go_through_the_services(client, admin_user):
    client.force_login(admin_user)
    rule = PolicyRule.objects.filter(outcome="review").first()
    url = f"/admin/governance/policyrule/{rule.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields}
    data.update(
        {
            "reason": "Edited in the admin.",
            "license_categories": "[]",
            "use_types": "[]",
            "sensitivities": "[]",
            "required_roles": '["legal"]',
            "min_risk": "",
            "active": "on",
        }
    )
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(verb="policy_rule.update")
    assert event.actor == admin_user
    assert event.payload["after"]["reason"] == "Edited in the admin."

    response = client.post(
        "/admin/governance/policyrule/",
        {"action": "delete_selected", "_selected_action": [rule.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not PolicyRule.objects.filter(pk=rule.pk).exists()
    assert AuditEvent.objects.filter(verb="policy_rule.delete", target_id=str(rule.pk)).exists()


def test_licenses_cannot_be_deleted_in_the_admin(client, admin_user):
    client.force_login(admin_user)
    mit = License.objects.get(spdx_id="mit")
    assert client.post(f"/admin/governance/license/{mit.pk}/delete/").status_code == 403
    assert License.objects.filter(pk=mit.pk).exists()


def test_review_intervals_change_through_the_audited_service_in_the_admin(client, admin_user):
    from governance.models import ReviewInterval

    interval = ReviewInterval.objects.get(name="High open risk")
    with pytest.raises(PortalError, match="Unknown license category 'gpl'"):
        gov_policy.review_interval_save(
            actor=admin_user, interval=interval, license_categories=["gpl"]
        )
    client.force_login(admin_user)
    url = f"/admin/governance/reviewinterval/{interval.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields}
    data.update({"days": "60", "license_categories": "[]", "min_risk": "3", "active": "on"})
    data["overdue_suspends_approvals"] = "on"
    assert client.post(url, data).status_code == 302
    interval.refresh_from_db()
    assert interval.days == 60
    event = AuditEvent.objects.get(verb="review_interval.update")
    assert event.payload["changed"] == ["days"]
    page = client.get("/admin/governance/reviewinterval/").content.decode()
    assert "Delete selected" not in page
