"""Signing in with the company's OpenID provider in Chromium: there, its login form, and back."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from tests.oidc_provider.harness import DIRECTORY_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def provider(oidc_provider, settings):
    oidc_provider.configure(settings)
    return oidc_provider


def _sign_in_with_sso(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/catalogue/")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/catalogue/")
    page.get_by_role("link", name="Sign in with Acme SSO").click()
    expect(page.get_by_role("heading", name="Company directory")).to_be_visible()
    page.get_by_label("Directory username").fill(username)
    page.get_by_label("Directory password").fill(DIRECTORY_PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{live_server.url}/catalogue/")


def test_a_new_colleague_signs_in_with_sso_and_loses_a_role_with_their_group(
    live_server, page, provider
):
    provider.set_person("erin", groups=["zoo-stewards", "zoo-legal", "all-staff"])

    _sign_in_with_sso(page, live_server, "erin")

    erin = get_user_model().objects.get(username="erin")
    assert set(erin.groups.values_list("name", flat=True)) == {"stewards", "legal"}
    page.goto(f"{live_server.url}/")
    expect(page.get_by_role("heading", name="Welcome, erin")).to_be_visible()
    roles = page.get_by_role("heading", name="Your roles").locator("xpath=..")
    expect(roles).to_contain_text("stewards")
    expect(roles).to_contain_text("legal")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    provider.set_person("erin", groups=["zoo-legal"])
    # The provider still knows this browser: it sends it straight back, with the new groups.
    page.goto(f"{live_server.url}/catalogue/")
    page.get_by_role("link", name="Sign in with Acme SSO").click()
    page.wait_for_url(f"{live_server.url}/catalogue/")

    assert set(erin.groups.values_list("name", flat=True)) == {"legal"}
    page.goto(f"{live_server.url}/")
    roles = page.get_by_role("heading", name="Your roles").locator("xpath=..")
    expect(roles).to_contain_text("legal")
    expect(roles).not_to_contain_text("stewards")
    assert get_user_model().objects.filter(username__startswith="erin").count() == 1
