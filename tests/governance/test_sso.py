"""Single sign-on through a real OpenID provider (django-oauth-toolkit, in a subprocess).

The happy paths go through the provider's own login form and token endpoint;
the refusals hand the callback ID tokens crafted here (signed by the provider's
key, or by one it never published), since a well-behaved provider would not
issue them. Every refusal leaves no session and says why.
"""

from __future__ import annotations

import html
import json
import time
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from governance.backends import SsoBackend
from governance.models import AccessToken, AuditEvent, SsoIdentity
from governance.services.tokens import access_token_create
from tests.factories import PASSWORD, UserFactory
from tests.oidc_provider.harness import CLIENT_ID, new_rsa_pem, start_provider, stop_provider

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture
def provider(oidc_provider, settings):
    oidc_provider.configure(settings)
    oidc_provider.set_person("dana", groups=["zoo-ml", "zoo-stewards", "unmapped-group"])
    return oidc_provider


def _start(client) -> tuple[str, dict]:
    answer = client.get("/oidc/authenticate/")
    assert answer.status_code == 302
    location = answer["Location"]
    return location, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _sso_sign_in(client, provider, username: str):
    authorize_url, _ = _start(client)
    back = urlsplit(provider.authorize(authorize_url, username))
    assert back.path == "/oidc/callback/"
    return client.get(f"{back.path}?{back.query}")


def _roles(user) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def _refused(answer, client, message: str) -> None:
    assert answer.status_code == 302
    assert answer["Location"] == "/accounts/login/"
    assert "_auth_user_id" not in client.session
    page = html.unescape(client.get("/accounts/login/").content.decode())
    assert message in page


def test_first_sign_in_creates_the_user_with_the_mapped_roles(client, provider):
    answer = _sso_sign_in(client, provider, "dana")

    assert answer.status_code == 302
    assert answer["Location"] == "/"
    dana = User.objects.get(username="dana")
    assert client.session["_auth_user_id"] == str(dana.pk)
    assert _roles(dana) == {"ml-engineers", "stewards"}
    assert dana.email == "dana@example.com"
    assert not dana.has_usable_password()
    identity = SsoIdentity.objects.get(user=dana)
    assert identity.issuer == provider.issuer
    assert sorted(identity.roles) == ["ml-engineers", "stewards"]
    event = AuditEvent.objects.get(verb="auth.sso_signin")
    assert event.actor_id == dana.pk
    assert event.payload["created"] is True
    assert event.payload["roles_added"] == ["ml-engineers", "stewards"]
    assert event.payload["roles_removed"] == []


def test_the_request_carries_pkce_state_and_nonce(client, provider):
    _, params = _start(client)

    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) >= 43
    assert params["state"] in client.session["oidc_states"]
    assert params["nonce"] == client.session["oidc_states"][params["state"]]["nonce"]
    assert params["client_id"] == CLIENT_ID


def test_leaving_a_directory_group_removes_the_role_at_the_next_sign_in(client, provider):
    _sso_sign_in(client, provider, "dana")
    dana = User.objects.get(username="dana")
    # A role given locally by an administrator is not the directory's to take.
    dana.groups.add(Group.objects.get(name="legal"))
    client.logout()

    provider.set_person("dana", groups=["zoo-ml", "zoo-admins"])
    answer = _sso_sign_in(client, provider, "dana")

    assert answer["Location"] == "/"
    dana.refresh_from_db()
    assert _roles(dana) == {"ml-engineers", "legal"}
    assert dana.is_staff
    assert not dana.is_superuser
    event = AuditEvent.objects.filter(verb="auth.sso_signin").order_by("-id").first()
    assert event.payload["created"] is False
    assert event.payload["roles_added"] == ["staff"]
    assert event.payload["roles_removed"] == ["stewards"]
    assert event.payload["roles_local"] == ["legal"]
    assert User.objects.filter(username__startswith="dana").count() == 1

    client.logout()
    provider.set_person("dana", groups=[])
    _sso_sign_in(client, provider, "dana")
    dana.refresh_from_db()
    assert _roles(dana) == {"legal"}
    assert not dana.is_staff


def test_a_session_goes_back_to_the_provider_and_follows_the_directory(client, provider):
    with requests.Session() as browser:
        authorize_url, _ = _start(client)
        back = urlsplit(provider.authorize(authorize_url, "dana", browser))
        client.get(f"{back.path}?{back.query}")
        provider.set_person("dana", groups=["zoo-ml"])
        assert client.get("/catalogue/").status_code == 200

        session = client.session
        session["oidc_id_token_expiration"] = 0  # the renewal interval has passed
        session.save()
        # htmx fragments and the API are left alone; the next page goes to the provider.
        assert client.get("/catalogue/", headers={"HX-Request": "true"}).status_code == 200
        assert client.get("/api/models/").status_code == 200
        answer = client.get("/catalogue/")
        assert answer.status_code == 302
        params = parse_qs(urlsplit(answer["Location"]).query)
        assert answer["Location"].startswith(provider.discovery["authorization_endpoint"])
        assert params["prompt"] == ["none"]
        assert params["code_challenge_method"] == ["S256"]

        back = urlsplit(provider.authorize(answer["Location"], "dana", browser))
        assert back.path == "/oidc/callback/"
        again = client.get(f"{back.path}?{back.query}")

    assert again["Location"] == "/catalogue/"
    dana = User.objects.get(username="dana")
    assert client.session["_auth_user_id"] == str(dana.pk)
    assert _roles(dana) == {"ml-engineers"}
    assert client.get("/catalogue/").status_code == 200


def test_a_password_session_is_never_sent_to_the_provider(client, provider, alice):
    client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    session = client.session
    session["oidc_id_token_expiration"] = 0
    session.save()

    assert client.get("/catalogue/").status_code == 200


def test_a_local_account_with_the_same_name_is_not_taken_over(client, provider):
    local = UserFactory(username="dana", roles=["legal"])

    _sso_sign_in(client, provider, "dana")

    sso_user = User.objects.get(sso_identity__isnull=False)
    assert sso_user.username == "dana-2"
    assert client.session["_auth_user_id"] == str(sso_user.pk)
    assert _roles(local) == {"legal"}


def test_a_switched_off_account_is_refused(client, provider):
    _sso_sign_in(client, provider, "dana")
    User.objects.filter(username="dana").update(is_active=False)
    client.logout()

    answer = _sso_sign_in(client, provider, "dana")

    _refused(answer, client, "Your portal account is switched off")


def test_api_and_hub_tokens_work_for_an_sso_user(client, provider):
    _sso_sign_in(client, provider, "dana")

    page = client.post("/account/tokens/", {"name": "laptop", "days": 7, "scope": "api"})
    assert page.status_code == 200
    api_token = AccessToken.objects.get(user__username="dana", scope="api")
    plaintext = page.context["plaintext"]
    client.logout()
    me = client.get("/api/models/", headers={"Authorization": f"Token {plaintext}"})
    assert me.status_code == 200
    assert api_token.user.username == "dana"

    dana = User.objects.get(username="dana")
    _, read = access_token_create(user=dana, name="hub", scope=AccessToken.Scope.READ)
    whoami = client.get("/hf/api/whoami-v2", headers={"Authorization": f"Bearer {read}"})
    assert whoami.status_code == 200
    assert whoami.json()["name"] == "dana"


def test_a_tampered_state_is_refused(client, provider):
    authorize_url, _ = _start(client)
    back = urlsplit(provider.authorize(authorize_url, "dana"))
    query = parse_qs(back.query)

    answer = client.get("/oidc/callback/", {"code": query["code"][0], "state": "forged"})

    _refused(answer, client, "does not belong to a sign-in started in this browser")
    assert not User.objects.filter(username="dana").exists()


def test_an_answer_for_another_browser_is_refused(client, provider):
    authorize_url, _ = _start(client)
    back = urlsplit(provider.authorize(authorize_url, "dana"))
    other = Client()

    answer = other.get(f"{back.path}?{back.query}")

    _refused(answer, other, "does not belong to a sign-in started in this browser")
    assert not User.objects.filter(username="dana").exists()


def test_a_replayed_answer_is_refused(client, provider):
    authorize_url, _ = _start(client)
    back = urlsplit(provider.authorize(authorize_url, "dana"))
    assert client.get(f"{back.path}?{back.query}")["Location"] == "/"
    client.logout()

    answer = client.get(f"{back.path}?{back.query}")

    _refused(answer, client, "does not belong to a sign-in started in this browser")


def test_a_provider_error_is_shown_without_its_text(client, provider):
    _, params = _start(client)

    answer = client.get(
        "/oidc/callback/",
        {
            "error": "access_denied",
            "error_description": "<b>call 555</b>",
            "state": params["state"],
        },
    )

    _refused(answer, client, "The sign-in provider did not sign you in (access_denied).")
    assert "call 555" not in client.get("/accounts/login/").content.decode()


# --- crafted ID tokens: the callback gets them instead of the provider's ----------


def _claims(provider, issued_nonce: str, **changes) -> dict:
    now = int(time.time())
    claims = {
        "iss": provider.issuer,
        "aud": CLIENT_ID,
        "sub": "crafted-1",
        "iat": now,
        "exp": now + 300,
        "nonce": issued_nonce,
        "preferred_username": "mallory",
        "groups": ["zoo-stewards"],
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _callback_with(client, monkeypatch, token_for):
    """Start a sign-in, then answer the code exchange with ``token_for(nonce)``."""
    _, params = _start(client)
    monkeypatch.setattr(
        SsoBackend,
        "get_token",
        lambda self, payload: {"id_token": token_for(params["nonce"]), "access_token": "x"},
    )
    return client.get("/oidc/callback/", {"code": "any", "state": params["state"]})


def _signed(provider, claims: dict, *, pem: str | None = None, kid: str | None = None) -> str:
    return jwt.encode(
        claims, pem or provider.signing_pem, algorithm="RS256", headers={"kid": kid or provider.kid}
    )


def test_a_well_formed_crafted_token_signs_in(client, provider, monkeypatch):
    """The control for the refusals below: the same path with nothing wrong succeeds."""
    answer = _callback_with(client, monkeypatch, lambda n: _signed(provider, _claims(provider, n)))

    assert answer["Location"] == "/"
    assert _roles(User.objects.get(username="mallory")) == {"stewards"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"aud": "another-app"}, "The ID token was issued for another application"),
        ({"aud": [CLIENT_ID, "another-app"]}, "The ID token was issued for another application"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "has expired"),
        ({"iss": "https://evil.example"}, "another issuer than this portal trusts"),
        ({"nonce": "not-this-one"}, "its nonce does not match"),
        ({"exp": None}, "lacks the 'exp' claim"),
    ],
    ids=["wrong-audience", "extra-audience", "expired", "wrong-issuer", "wrong-nonce", "no-exp"],
)
def test_a_token_with_wrong_claims_is_refused(client, provider, monkeypatch, changes, message):
    answer = _callback_with(
        client, monkeypatch, lambda n: _signed(provider, _claims(provider, n, **changes))
    )

    _refused(answer, client, message)
    assert not User.objects.filter(username="mallory").exists()
    assert not AuditEvent.objects.filter(verb="auth.sso_signin").exists()


def test_a_malformed_group_claim_is_refused_saying_so(client, provider, monkeypatch):
    answer = _callback_with(
        client,
        monkeypatch,
        lambda n: _signed(provider, _claims(provider, n, groups={"zoo-stewards": True})),
    )

    _refused(answer, client, "The provider's 'groups' claim is not a list of group names")
    assert not User.objects.filter(username="mallory").exists()


def test_a_single_group_sent_as_a_string_counts(client, provider, monkeypatch):
    answer = _callback_with(
        client,
        monkeypatch,
        lambda n: _signed(provider, _claims(provider, n, groups="zoo-legal")),
    )

    assert answer["Location"] == "/"
    assert _roles(User.objects.get(username="mallory")) == {"legal"}


def test_a_token_signed_by_another_key_is_refused(client, provider, monkeypatch):
    other = new_rsa_pem()
    answer = _callback_with(
        client, monkeypatch, lambda n: _signed(provider, _claims(provider, n), pem=other)
    )

    _refused(answer, client, "The ID token's signature does not verify.")
    assert not User.objects.filter(username="mallory").exists()


def test_a_token_with_a_tampered_payload_is_refused(client, provider, monkeypatch):
    def tampered(nonce):
        head, _, sig = _signed(provider, _claims(provider, nonce)).split(".")
        claims = _claims(provider, nonce, groups=["zoo-admins"])
        body = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
        return f"{head}.{body}.{sig}"

    answer = _callback_with(client, monkeypatch, tampered)

    _refused(answer, client, "signature does not verify")


def test_a_token_under_an_unpublished_key_id_is_refused(client, provider, monkeypatch):
    answer = _callback_with(
        client,
        monkeypatch,
        lambda n: _signed(provider, _claims(provider, n), pem=new_rsa_pem(), kid="unknown"),
    )

    _refused(answer, client, "signed with a key the sign-in provider does not publish")


def test_an_unsigned_token_is_refused(client, provider, monkeypatch):
    answer = _callback_with(
        client,
        monkeypatch,
        lambda n: jwt.encode(_claims(provider, n), None, algorithm="none", headers={"kid": "x"}),
    )

    _refused(answer, client, "signed with a key the sign-in provider does not publish")


# --- the sign-in page and passwords ------------------------------------------------


def test_without_sso_the_page_has_no_button_and_the_routes_answer_404(client):
    page = client.get("/accounts/login/").content.decode()

    assert "Sign in with" not in page
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/").status_code == 404


def test_the_page_offers_the_company_button(client, provider):
    page = client.get("/accounts/login/?next=/catalogue/").content.decode()

    assert 'href="/oidc/authenticate/?next=/catalogue/"' in page
    assert "Sign in with Acme SSO" in page
    assert 'name="password"' in page


@pytest.fixture
def passwords_off(provider, settings):
    settings.LOCAL_SIGNIN_ENABLED = False
    return provider


def test_passwords_switched_off_refuse_the_page_and_the_api(client, passwords_off, alice):
    off = "Password sign-in is switched off here"

    page = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    api = client.post("/api/auth/token/", {"username": "alice", "password": PASSWORD})
    wrong = client.post("/api/auth/token/", {"username": "alice", "password": "nope"})

    assert off in page.content.decode()
    assert "_auth_user_id" not in client.session
    assert api.status_code == 403
    assert off in api.json()["detail"]
    # The same answer for a wrong password: the refusal says nothing about it.
    assert wrong.status_code == 403
    assert wrong.json() == api.json()
    assert not AccessToken.objects.filter(user=alice).exists()
    admin = client.post("/admin/login/", {"username": "alice", "password": PASSWORD})
    assert "_auth_user_id" not in client.session
    assert admin.status_code == 200


def test_break_glass_superusers_keep_their_password(client, passwords_off, admin_user):
    page = client.get("/accounts/login/").content.decode()
    assert "Break-glass administrator sign-in" in page

    answer = client.post(
        "/accounts/login/", {"username": admin_user.username, "password": PASSWORD}
    )
    api = client.post("/api/auth/token/", {"username": admin_user.username, "password": PASSWORD})

    assert answer.status_code == 302
    assert client.session["_auth_user_id"] == str(admin_user.pk)
    assert api.status_code == 201


def _start_and_stop(folder) -> None:
    process, _ = start_provider(folder, ["http://testserver/oidc/callback/"])
    stop_provider(process)  # it started after all: leave no server behind


def test_a_provider_that_cannot_start_fails_the_tests(tmp_path):
    (tmp_path / "signing-key.pem").write_text("not a key")

    with pytest.raises(pytest.fail.Exception, match="did not start"):
        _start_and_stop(tmp_path)
