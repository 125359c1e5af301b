"""Sign-in is throttled on the page and at POST /api/auth/token/; API tokens expire and revoke.

The counters live in the real Redis cache (CACHE_URL), as in production.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from rest_framework.test import APIClient

from governance.models import API_TOKEN_PREFIX, AccessToken, AuditEvent
from governance.services.tokens import access_token_create
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

WRONG = "not-the-password"


@pytest.fixture
def api():
    return APIClient()


def _page(client, username, password, address="10.0.0.1"):
    return client.post(
        "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address
    )


def _token(api, username, password, address="10.0.0.1"):
    return api.post(
        "/api/auth/token/", {"username": username, "password": password}, REMOTE_ADDR=address
    )


def test_forty_wrong_passwords_then_the_right_one_is_refused_on_the_page(client, alice):
    answers = [_page(client, "alice", WRONG).status_code for _ in range(40)]
    right = _page(client, "alice", PASSWORD)

    assert answers[:4] == [400] * 4
    assert set(answers[4:]) == {429}
    assert right.status_code == 429
    assert int(right["Retry-After"]) > 0
    assert "Too many failed sign-ins for this account. Try again in 15 minutes." in (
        right.content.decode()
    )
    assert "_auth_user_id" not in client.session
    # One event when the limit is reached, not one per refused attempt.
    events = AuditEvent.objects.filter(verb="auth.throttled")
    assert [(e.payload["limit"], e.payload["username"], e.payload["via"]) for e in events] == [
        ("account", "alice", "page")
    ]


def test_forty_wrong_passwords_then_the_right_one_is_refused_by_the_api(api, alice):
    answers = [_token(api, "alice", WRONG) for _ in range(40)]
    right = _token(api, "alice", PASSWORD)

    assert answers[0].status_code == 400
    assert answers[0].json() == {"detail": "Wrong username or password.", "code": "invalid"}
    assert right.status_code == 429
    assert right.json()["code"] == "throttled"
    assert right.json()["detail"].startswith("Too many failed sign-ins for this account.")
    assert 0 < int(right["Retry-After"]) <= 900
    assert not AccessToken.objects.filter(user=alice).exists()


def test_the_page_and_the_api_share_one_count(client, api, alice):
    for _ in range(3):
        _page(client, "alice", WRONG)
    for _ in range(2):
        _token(api, "alice", WRONG)

    assert _page(client, "alice", PASSWORD).status_code == 429


def test_a_success_clears_the_account_count(client, alice):
    for _ in range(3):
        for _ in range(4):
            assert _page(client, "alice", WRONG).status_code == 400
        assert _page(client, "alice", PASSWORD).status_code == 302
        client.logout()


def test_one_address_guessing_many_accounts_is_stopped(client, settings, alice, bob):
    settings.SIGNIN_MAX_FAILURES_PER_CLIENT = 12
    for n in range(12):
        _page(client, f"user{n}", WRONG, address="10.9.9.9")

    refused = _page(client, "alice", PASSWORD, address="10.9.9.9")
    elsewhere = _page(client, "alice", PASSWORD, address="10.0.0.2")

    assert refused.status_code == 429
    assert "Too many failed sign-ins for your address." in refused.content.decode()
    assert elsewhere.status_code == 302
    assert AuditEvent.objects.filter(verb="auth.throttled", payload__limit="client").count() == 1


def test_the_throttle_lifts_when_its_window_ends(api, settings, alice):
    # The window runs on the cache's clock from the first failure; 5 s leaves a loaded
    # machine room to make the six requests inside it.
    # The first failure is recorded before its response returns, so the window
    # has surely started by the time the first request is back (not before it left).
    settings.SIGNIN_WINDOW_S = 5
    _token(api, "alice", WRONG)
    window_started = time.monotonic()
    for _ in range(4):
        _token(api, "alice", WRONG)
    assert _token(api, "alice", PASSWORD).status_code == 429

    time.sleep(max(0.0, window_started + 5.5 - time.monotonic()))

    assert _token(api, "alice", PASSWORD).status_code == 201


def test_an_api_token_works_lasts_api_token_days_and_is_audited(api, settings, alice):
    settings.API_TOKEN_DAYS = 7
    answer = _token(api, "alice", PASSWORD)

    body = answer.json()
    assert answer.status_code == 201
    assert answer["Cache-Control"] == "no-store"
    assert body["token"].startswith(API_TOKEN_PREFIX)
    token = AccessToken.objects.get(user=alice)
    assert token.scope == AccessToken.Scope.API
    assert abs(token.expires_at - token.created_at - timedelta(days=7)) < timedelta(seconds=5)
    event = AuditEvent.objects.get(verb="token.create")
    assert event.payload["scope"] == "api"
    assert body["token"] not in str(event.payload)

    api.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert api.get("/api/jobs/").status_code == 200
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert api.get("/api/jobs/").status_code == 200


def test_an_expired_api_token_is_refused_with_a_message(api, alice):
    _, plaintext = access_token_create(user=alice, name="ci", days=1, scope=AccessToken.Scope.API)
    api.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")

    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1), tick=False):
        answer = api.get("/api/jobs/")

    assert answer.status_code == 401
    assert answer["WWW-Authenticate"] == "Token"
    assert "unknown, expired or revoked" in answer.json()["detail"]


def test_delete_revokes_the_token_it_was_sent_with(api, alice):
    plaintext = _token(api, "alice", PASSWORD).json()["token"]
    kept = _token(api, "alice", PASSWORD).json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")

    assert api.delete("/api/auth/token/").status_code == 204
    after = api.get("/api/jobs/")

    assert after.status_code == 401
    assert "unknown, expired or revoked" in after.json()["detail"]
    assert AuditEvent.objects.filter(verb="token.revoke").count() == 1
    api.credentials(HTTP_AUTHORIZATION=f"Token {kept}")
    assert api.get("/api/jobs/").status_code == 200


def test_delete_without_a_token_is_refused(api, alice):
    api.force_login(alice)

    answer = api.delete("/api/auth/token/")

    assert answer.status_code in (401, 403)
    assert "Send the API token to revoke" in answer.json()["detail"]


def test_a_download_token_is_refused_by_the_api_and_an_api_token_by_the_hub(api, client, alice):
    _, read = access_token_create(user=alice, name="laptop")
    _, scripted = access_token_create(user=alice, name="ci", scope=AccessToken.Scope.API)

    api.credentials(HTTP_AUTHORIZATION=f"Token {read}")
    on_api = api.get("/api/jobs/")
    on_hub = client.get("/hf/api/whoami-v2", HTTP_AUTHORIZATION=f"Bearer {scripted}")
    fine = client.get("/hf/api/whoami-v2", HTTP_AUTHORIZATION=f"Bearer {read}")

    assert on_api.status_code == 401
    assert "download token" in on_api.json()["detail"]
    assert on_hub.status_code == 401
    assert "this is an API token" in on_hub.json()["error"]
    assert fine.status_code == 200


def test_foreign_tokens_are_refused_by_the_api(api, alice):
    for header in ("Token 0123456789abcdef0123456789abcdef01234567", "Bearer hf_abc", "Token"):
        api.credentials(HTTP_AUTHORIZATION=header)
        answer = api.get("/api/jobs/")
        assert answer.status_code == 401, header
        assert answer.json()["detail"]


def test_the_tokens_page_makes_api_tokens(client, alice):
    client.force_login(alice)

    page = client.post("/account/tokens/", {"name": "nightly", "days": 30, "scope": "api"})

    html = page.content.decode()
    assert page.status_code == 200
    assert "Authorization: Token zoo_api_" in html
    token = AccessToken.objects.get(user=alice)
    assert token.scope == "api"
    assert token.prefix.startswith(API_TOKEN_PREFIX)
    assert "REST API" in client.get("/account/tokens/").content.decode()


def test_behind_a_proxy_the_forwarded_address_is_counted(client, settings, alice):
    settings.SIGNIN_MAX_FAILURES_PER_CLIENT = 3
    settings.TRUSTED_PROXIES = 1
    for n in range(3):
        client.post(
            "/accounts/login/",
            {"username": f"user{n}", "password": WRONG},
            REMOTE_ADDR="10.0.0.254",
            HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.7",
        )

    # A forged left-most entry changes nothing; another client behind the same proxy signs in.
    forged = client.post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.254",
        HTTP_X_FORWARDED_FOR="1.2.3.4, 192.0.2.7",
    )
    other = client.post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.254",
        HTTP_X_FORWARDED_FOR="192.0.2.8",
    )

    assert forged.status_code == 429
    assert other.status_code == 302
