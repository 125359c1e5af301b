"""The lifecycle pages: incidents, my access, the steward queue, compliance, re-attesting."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.models import AuditEvent, Incident, Rereview, ReuseRequest
from governance.services import incidents as gov_incidents
from governance.services import rereview as gov_rereview
from tests.builders.governance import approve, submit_reuse
from tests.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db


def _incident_url(version):
    model = version.model
    return f"/catalogue/{model.repo_id}/versions/{version.label}/incident/"


def test_a_reviewer_opens_an_incident_with_a_recall_from_the_version_page(client, people):
    base = ModelVersionFactory()
    child = ModelVersionFactory(parent=base, kind="finetuned")
    client.force_login(people["sean"])
    page = client.get(base.get_absolute_url()).content.decode()
    assert _incident_url(base) in page
    form = client.get(_incident_url(base)).content.decode()
    assert "1 version was made from this one" in form
    response = client.post(
        _incident_url(base),
        {
            "category": "backdoor",
            "severity": "3",
            "title": "Trigger phrase",
            "description": "A phrase flips every prediction; seen in a red-team run.",
            "recall": "on",
        },
    )
    incident = Incident.objects.get()
    assert response.status_code == 302
    assert response.url == f"/governance/incidents/{incident.pk}/"
    detail = client.get(response.url).content.decode()
    assert "Recall in force" in detail
    assert child.model.repo_id in detail
    child.refresh_from_db()
    assert child.is_blocked
    # the child's page says why, and a steward is pointed at the incident to lift it
    assert "recalled by incident" in client.get(child.get_absolute_url()).content.decode()
    client.force_login(people["sam"])
    advice = client.get(child.get_absolute_url()).content.decode()
    assert f'href="/governance/incidents/{incident.pk}/">#{incident.pk}</a> recalled it' in advice


def test_bad_incident_form_input_shows_the_message_and_changes_nothing(client, people):
    version = ModelVersionFactory()
    client.force_login(people["sam"])
    response = client.post(
        _incident_url(version),
        {"category": "backdoor", "severity": "3", "title": "x", "description": "too short"},
    )
    assert response.status_code == 200
    assert "at least 20 characters" in response.content.decode()
    assert not Incident.objects.exists()
    response = client.post(_incident_url(version), {"category": "??", "severity": "9"})
    assert response.status_code == 200
    assert not Incident.objects.exists()


def test_people_without_a_handling_role_cannot_open_or_act_on_incidents(client, people):
    version = ModelVersionFactory()
    incident = gov_incidents.incident_open(
        version=version,
        actor=people["sam"],
        category="harmful",
        severity=2,
        title="Toxic completions",
        description="Completions insult users in German.",
    )
    client.force_login(people["bob"])
    assert client.get(_incident_url(version)).status_code == 403
    # bob neither made, owns nor uses the version: the incident does not exist for him
    assert client.get(f"/governance/incidents/{incident.pk}/").status_code == 404
    assert client.post(f"/governance/incidents/{incident.pk}/recall/").status_code == 404
    assert "Toxic completions" not in client.get("/governance/incidents/").content.decode()
    incident.refresh_from_db()
    assert not incident.recall_active


def test_a_holder_sees_the_incident_that_suspended_their_approval(client, people):
    version = ModelVersionFactory()
    approve(people["bob"], version, reviewer=people["lena"])
    incident = gov_incidents.incident_open(
        version=version,
        actor=people["sam"],
        category="personal_data",
        severity=4,
        title="Memorised e-mail addresses",
        description="The model completes real addresses.",
        recall=True,
    )
    client.force_login(people["bob"])
    page = client.get(f"/governance/incidents/{incident.pk}/").content.decode()
    assert "Memorised e-mail addresses" in page
    assert "Lift the recall" not in page
    assert (
        client.post(
            f"/governance/incidents/{incident.pk}/lift/", {"reason": "bob wants it back"}
        ).status_code
        == 403
    )
    incident.refresh_from_db()
    assert incident.recall_active


def test_the_playbook_is_worked_from_the_incident_page(client, people):
    incident = gov_incidents.incident_open(
        version=ModelVersionFactory(),
        actor=people["sam"],
        category="license",
        severity=2,
        title="License misread",
        description="The card says MIT; the repository says GPL.",
    )
    client.force_login(people["lena"])
    url = f"/governance/incidents/{incident.pk}/step/"
    client.post(url, {"step": "contain", "note": "Downloads paused."})
    response = client.post(url, {"step": "close", "note": "Done."}, follow=True)
    assert "Record the other steps before closing" in response.content.decode()
    page = client.get(f"/governance/incidents/{incident.pk}/").content.decode()
    assert "Downloads paused." in page
    assert AuditEvent.objects.filter(verb="incident.step.contain").count() == 1


def test_my_access_shows_each_approval_with_its_countdown_and_each_request_checklist(
    client, people
):
    used = approve(people["alice"], ModelVersionFactory(), reviewer=people["lena"], days=10)
    waiting = submit_reuse(people["alice"], ModelVersionFactory(), sensitivity="confidential")
    client.force_login(people["alice"])
    page = client.get("/governance/access/").content.decode()
    assert used.version.model.repo_id in page
    assert "left)" in page
    assert f"0 of {len(waiting.required_roles)} reviews" in page
    assert "legal waiting" in page


def test_the_steward_queue_lists_drafts_for_stewards_only(client, people):
    draft = ModelVersionFactory(model__status="draft", model__repo_id="acme/draft-one")
    client.force_login(people["bob"])
    assert client.get("/governance/stewards/").status_code == 403
    client.force_login(people["sam"])
    page = client.get("/governance/stewards/").content.decode()
    assert draft.model.repo_id in page


def test_compliance_dashboard_and_its_csv(client, people, django_assert_max_num_queries):
    version = ModelVersionFactory(model__repo_id="acme/overdue")
    ModelVersionFactory(status="blocked", block_reasons=['=HYPERLINK("http://evil")'])
    gov_rereview.rereviews_remind()
    Rereview.objects.filter(version=version).update(due_at=timezone.now() - timedelta(days=3))
    held = approve(people["alice"], ModelVersionFactory(), reviewer=people["lena"], days=5)
    client.force_login(people["bob"])
    assert client.get("/governance/compliance/").status_code == 403
    client.force_login(people["cora"])
    with django_assert_max_num_queries(25):
        page = client.get("/governance/compliance/").content.decode()
    assert 'data-testid="overdue-count">1<' in page
    assert held.version.model.repo_id in page
    response = client.get("/governance/compliance/?format=csv")
    body = b"".join(response.streaming_content).decode()
    assert response["Content-Type"].startswith("text/csv")
    assert "overdue re-review,acme/overdue" in body
    # a cell a spreadsheet would run as a formula is defused
    assert "'=HYPERLINK" in body
    assert "approval expiring" in body
    assert "license mix" in body


def test_the_owner_re_attests_from_the_version_page(client, people):
    version = ModelVersionFactory(model__owner=people["alice"])
    gov_rereview.rereviews_remind()
    Rereview.objects.filter(version=version).update(due_at=timezone.now() - timedelta(days=1))
    client.force_login(people["alice"])
    page = client.get(version.get_absolute_url()).content.decode()
    assert "Re-review overdue" in page
    url = f"/catalogue/{version.model.repo_id}/versions/{version.label}/attest/"
    client.post(url, {"note": "Card, license and risks checked."})
    assert not Rereview.objects.get(version=version).is_overdue()
    client.force_login(people["bob"])
    client.post(url, {"note": "I say it is fine."})
    assert AuditEvent.objects.filter(verb="version.attest").count() == 1


def test_the_dashboard_lists_what_waits_for_the_reviewer(client, people):
    request = submit_reuse(people["alice"], ModelVersionFactory(), sensitivity="public")
    client.force_login(people["lena"])
    page = client.get("/").content.decode()
    assert 'data-testid="review-inbox"' in page
    assert f"#{request.pk}" in page
    client.force_login(people["bob"])
    assert 'data-testid="review-inbox"' not in client.get("/").content.decode()


def test_a_reopened_request_shows_reviewers_what_changed(client, people):
    from governance.models import License
    from zoo.services import catalogue as zoo_catalogue

    held = approve(people["alice"], ModelVersionFactory(), reviewer=people["lena"])
    zoo_catalogue.version_set_license(
        version=held.version, license=License.objects.get(spdx_id="mit"), actor=people["sam"]
    )
    held.refresh_from_db()
    assert held.status == ReuseRequest.Status.SUBMITTED
    client.force_login(people["lena"])
    page = client.get(f"/governance/requests/{held.pk}/").content.decode()
    assert "Back in review" in page
    assert "apache-2.0 to mit" in page
    assert "Back in review" in client.get("/governance/reviews/").content.decode()


def test_the_incident_api_shows_holders_their_incidents_and_refuses_bad_input(people):
    from tests.api import client_for

    version = ModelVersionFactory()
    approve(people["alice"], version, reviewer=people["lena"])
    sean = client_for(people["sean"])
    bad = sean.post(
        "/api/incidents/",
        {"version": version.pk, "category": "backdoor", "severity": 4, "title": "x",
         "description": "short", "recall": True},
        format="json",
    )  # fmt: skip
    assert bad.status_code == 400
    assert "at least 20 characters" in bad.content.decode()
    missing = sean.post(
        "/api/incidents/",
        {"version": 999999, "category": "backdoor", "severity": 4, "title": "x",
         "description": "d" * 30},
        format="json",
    )  # fmt: skip
    assert missing.status_code == 404
    assert not Incident.objects.exists()
    made = sean.post(
        "/api/incidents/",
        {"version": version.pk, "category": "personal_data", "severity": 4,
         "title": "Memorised addresses", "description": "It completes real e-mail addresses.",
         "recall": True},
        format="json",
    ).json()  # fmt: skip
    assert made["recall_active"] is True
    assert [e["version"] for e in made["effects"]] == [version.pk]
    seen = client_for(people["alice"]).get("/api/incidents/").json()["results"]
    assert [i["id"] for i in seen] == [made["id"]]
    assert client_for(people["bob"]).get("/api/incidents/").json()["results"] == []
    assert client_for(people["bob"]).get(f"/api/incidents/{made['id']}/").status_code == 404
    request = client_for(people["alice"]).get("/api/reuse-requests/").json()["results"][0]
    assert request["status"] == "suspended"
