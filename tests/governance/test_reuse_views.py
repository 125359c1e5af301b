from __future__ import annotations

import pytest

from governance.models import ReuseRequest
from tests.factories import ModelVersionFactory
from tests.governance.test_reuse import _submit

pytestmark = pytest.mark.django_db


def test_request_form_previews_the_policy_and_submits(client, people):
    version = ModelVersionFactory()
    model = version.model
    client.force_login(people["alice"])
    base = f"/catalogue/{model.repo_id}/request/"
    preview = client.get(
        base + "preview/",
        {"version": version.label, "use_type": "commercial", "data_sensitivity": "restricted"},
    ).content.decode()
    assert "will need legal and security and compliance review" in preview

    response = client.post(
        base,
        {
            "version": version.label,
            "intended_use": "Route tickets",
            "use_type": "internal",
            "business_unit": "Support",
            "data_sensitivity": "internal",
            "justification": "Triage",
            "duration_days": 30,
        },
    )
    created = ReuseRequest.objects.get()
    assert response["Location"] == f"/governance/requests/{created.pk}/"
    assert created.required_roles == ["legal"]


def test_a_refused_request_shows_the_reason_and_creates_nothing(client, people):
    from governance.models import License

    version = ModelVersionFactory(license=License.objects.get(spdx_id="cc-by-nc-4.0"))
    client.force_login(people["alice"])
    page = client.post(
        f"/catalogue/{version.model.repo_id}/request/",
        {
            "version": version.label,
            "intended_use": "Sell it",
            "use_type": "commercial",
            "business_unit": "Sales",
            "data_sensitivity": "public",
            "justification": "Money",
            "duration_days": 30,
        },
    )
    assert page.status_code == 200
    assert "forbids commercial use" in page.content.decode()
    assert not ReuseRequest.objects.exists()


def test_requests_are_private_to_requester_and_reviewers(client, people):
    request = _submit(people["alice"], ModelVersionFactory())
    client.force_login(people["bob"])
    assert client.get(f"/governance/requests/{request.pk}/").status_code == 404
    assert client.post(f"/governance/requests/{request.pk}/withdraw/").status_code == 404
    client.force_login(people["lena"])
    page = client.get(f"/governance/requests/{request.pk}/").content.decode()
    assert "Your review" in page
    queue = client.get("/governance/reviews/").content.decode()
    assert f"#{request.pk}" in queue


def test_reviewer_approves_in_the_browser_flow(client, people):
    request = _submit(people["alice"], ModelVersionFactory())
    client.force_login(people["lena"])
    client.post(
        f"/governance/requests/{request.pk}/review/", {"role": "legal", "decision": "approve"}
    )
    request.refresh_from_db()
    assert request.status == "approved"
    client.force_login(people["alice"])
    assert "Approved" in client.get("/governance/requests/").content.decode()


def test_requester_cannot_review_own_request_through_the_page(client, people):
    lena = people["lena"]
    request = _submit(lena, ModelVersionFactory())
    client.force_login(lena)
    response = client.post(
        f"/governance/requests/{request.pk}/review/", {"role": "legal", "decision": "approve"}
    )
    assert response.status_code == 403
    request.refresh_from_db()
    assert request.status == "submitted"


def test_request_pages_have_query_budgets(client, people, django_assert_max_num_queries):
    for _ in range(15):
        _submit(people["alice"], ModelVersionFactory())
    client.force_login(people["alice"])
    with django_assert_max_num_queries(8):
        assert client.get("/governance/requests/").status_code == 200
    client.force_login(people["lena"])
    with django_assert_max_num_queries(8):
        assert client.get("/governance/reviews/").status_code == 200
    with django_assert_max_num_queries(8):
        assert client.get("/governance/audit/").status_code == 200
