"""Reuse-request API, and who may do what to whose request (no IDOR)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from governance.models import AuditEvent, ReuseRequest
from tests.factories import CatalogModelFactory, ModelVersionFactory
from tests.governance.test_reuse import _submit

pytestmark = pytest.mark.django_db


def _as(user):
    api = APIClient()
    if user is not None:
        api.force_authenticate(user)
    return api


def test_submit_preview_review_and_queue(people):
    version = ModelVersionFactory()
    alice = _as(people["alice"])
    preview = alice.get(
        "/api/reuse-requests/policy-preview/",
        {"version": version.pk, "use_type": "commercial", "data_sensitivity": "internal"},
    ).json()
    assert preview["roles"] == ["legal", "security"]
    body = {
        "version": version.pk,
        "intended_use": "Route tickets",
        "use_type": "commercial",
        "business_unit": "Support",
        "data_sensitivity": "internal",
        "justification": "Triage",
        "duration_days": 30,
    }
    created = alice.post("/api/reuse-requests/", body, format="json")
    assert created.status_code == 201
    pk = created.json()["id"]
    queue = _as(people["lena"]).get("/api/reuse-requests/queue/").json()
    assert [r["id"] for r in queue["results"]] == [pk]
    assert queue["count"] == 1
    _as(people["lena"]).post(
        f"/api/reuse-requests/{pk}/review/", {"role": "legal", "decision": "approve"}
    )
    done = _as(people["sean"]).post(
        f"/api/reuse-requests/{pk}/review/", {"role": "security", "decision": "approve"}
    )
    assert done.json()["status"] == "approved"
    assert [r["role"] for r in done.json()["reviews"]] == ["legal", "security"]


def test_refused_submission_is_a_clear_400(people):
    from governance.models import License

    version = ModelVersionFactory(license=License.objects.get(spdx_id="cc-by-nc-4.0"))
    response = _as(people["alice"]).post(
        "/api/reuse-requests/",
        {
            "version": version.pk,
            "intended_use": "x",
            "use_type": "commercial",
            "business_unit": "x",
            "data_sensitivity": "public",
            "justification": "x",
        },
        format="json",
    )
    assert response.status_code == 400
    assert "forbids commercial use" in response.json()["detail"]
    assert not ReuseRequest.objects.exists()


def test_requests_on_hidden_versions_are_not_found(people):
    draft = ModelVersionFactory(model=CatalogModelFactory(status="draft"))
    response = _as(people["alice"]).get(
        "/api/reuse-requests/policy-preview/",
        {"version": draft.pk, "use_type": "research", "data_sensitivity": "public"},
    )
    assert response.status_code == 404


# persona -> expected status per endpoint, on a request alice made
MATRIX = {
    # endpoint: (method, data, {persona: status})
    "detail": ("get", None, {None: 401, "bob": 404, "alice": 200, "lena": 200, "sam": 200}),
    "withdraw": ("post", {}, {None: 401, "bob": 404, "lena": 403, "sam": 403}),
    "review": (
        "post",
        {"role": "legal", "decision": "approve"},
        {None: 401, "bob": 404, "alice": 403, "sean": 403, "sam": 403},
    ),
    "revoke": ("post", {"reason": "x"}, {None: 401, "bob": 404, "alice": 403, "lena": 403}),
}


@pytest.mark.parametrize("endpoint", sorted(MATRIX))
def test_authorization_matrix(people, endpoint):
    request = _submit(people["alice"], ModelVersionFactory())
    method, data, expected = MATRIX[endpoint]
    url = f"/api/reuse-requests/{request.pk}/" + ("" if endpoint == "detail" else f"{endpoint}/")
    for persona, status in expected.items():
        user = people[persona] if persona else None
        response = getattr(_as(user), method)(url, data, format="json")
        assert response.status_code == status, (endpoint, persona, response.content)
        refusals = AuditEvent.objects.filter(verb="access.refused", actor=user, payload__path=url)
        # Each 403 leaves its own trace, naming who was refused where.
        assert refusals.exists() == (status == 403), (endpoint, persona)
    request.refresh_from_db()
    assert request.status == "submitted"  # nothing any refused persona did changed it


def test_list_shows_requesters_only_their_own(people):
    mine = _submit(people["alice"], ModelVersionFactory())
    _submit(people["bob"], ModelVersionFactory())
    ids = [r["id"] for r in _as(people["alice"]).get("/api/reuse-requests/").json()["results"]]
    assert ids == [mine.pk]
    assert len(_as(people["lena"]).get("/api/reuse-requests/").json()["results"]) == 2
