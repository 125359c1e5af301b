from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.factories import ModelVersionFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_request_approved_by_legal_and_security_in_the_browser(
    live_server, page, sign_in, alice, lena, sean
):
    version = ModelVersionFactory()
    repo = version.model.repo_id

    sign_in("alice")
    page.goto(f"{live_server.url}/catalogue/{repo}/")
    page.get_by_role("link", name="Request reuse").click()
    page.get_by_label("Intended use").fill("Route support tickets")
    page.get_by_label("Use type").select_option("commercial")
    page.get_by_label("Business unit").fill("Support")
    page.get_by_label("Data sensitivity").select_option("internal")
    expect(page.get_by_test_id("policy")).to_contain_text("legal and security review")
    page.get_by_label("Justification").fill("Cuts triage time in half")
    page.get_by_role("button", name="Submit request").click()
    expect(page.get_by_test_id("request-status")).to_have_text("0 of 2 reviews")
    request_url = page.url
    page.get_by_role("button", name="Sign out").click()

    for reviewer, role in (("lena", "legal"), ("sean", "security")):
        sign_in(reviewer)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Reviews").click()
        page.get_by_role("link", name=f"{repo}").first.click()
        page.get_by_label("Role").select_option(role)
        page.get_by_label("Decision").select_option("approve")
        page.get_by_role("button", name="Submit review").click()
        expect(
            page.get_by_text(f"{role} {reviewer}: Approve".replace(f"{role} ", ""))
        ).to_be_visible()
        if role == "legal":
            expect(page.get_by_test_id("request-status")).to_have_text("1 of 2 reviews")
        page.get_by_role("button", name="Sign out").click()

    sign_in("alice")
    page.goto(request_url)
    expect(page.get_by_test_id("request-status")).to_have_text("Approved")
