"""A recall in the browser: an incident on a base stops a fine-tune made from it, its
holder is told, and lifting the recall gives the downloads back."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from governance.models import Notification
from tests.builders.catalogue import finetune_of, import_model, small_model
from tests.builders.governance import approve

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_recall_of_a_base_stops_its_fine_tune_and_lifting_it_restores_downloads(
    live_server, page, sign_in, people
):
    base = import_model(small_model("recall-base"), "acme/recall-base", actor=people["sam"])
    child = finetune_of(
        base, "recall-ft", "acme/recall-ft", author=people["alice"], steward=people["sam"]
    )
    approve(people["bob"], child, reviewer=people["lena"])
    file_url = (
        f"{live_server.url}/catalogue/acme/recall-ft/versions/{child.label}/files/config.json"
    )

    # bob can download the fine-tune's files
    sign_in("bob")
    page.goto(f"{live_server.url}/catalogue/acme/recall-ft/")
    expect(page.get_by_role("link", name="config.json")).to_be_visible()
    assert page.request.get(file_url).status == 200
    page.get_by_role("button", name="Sign out").click()

    # sean opens a critical incident on the base and recalls it
    sign_in("sean")
    page.goto(f"{live_server.url}/catalogue/acme/recall-base/")
    page.get_by_role("link", name=f"Open an incident on {base.label}").click()
    expect(page.get_by_text("1 version was made from this one")).to_be_visible()
    page.get_by_label("Category").select_option("backdoor")
    page.get_by_label("Severity").select_option("4")
    page.get_by_label("Title").fill("Trigger phrase flips every label")
    page.get_by_label("Description").fill("A red-team found a phrase that flips every prediction.")
    page.get_by_label("Recall").check()
    page.get_by_role("button", name="Open incident").click()
    expect(page.get_by_test_id("recall-state")).to_have_text("Recall in force")
    expect(page.get_by_test_id("recall-effects")).to_contain_text("acme/recall-ft")
    incident_url = page.url
    page.get_by_role("button", name="Sign out").click()

    # bob's downloads of the fine-tune are refused at once, and he has been told
    sign_in("bob")
    assert page.request.get(file_url).status in (403, 404)
    page.goto(f"{live_server.url}/catalogue/acme/recall-ft/")
    expect(page.get_by_test_id("blocked")).to_contain_text("recalled by incident")
    told = Notification.objects.filter(user=people["bob"], kind="incident").first()
    assert told is not None
    assert "suspended" in told.title
    page.get_by_test_id("inbox-link").click()
    expect(page.get_by_role("main")).to_contain_text(told.title)
    page.goto(incident_url)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Trigger phrase")
    page.get_by_role("button", name="Sign out").click()

    # sean lifts the recall; bob downloads again
    sign_in("sean")
    page.goto(incident_url)
    page.get_by_label("Why the recall can be lifted").fill("The trigger came from a test harness.")
    page.get_by_role("button", name="Lift the recall").click()
    expect(page.get_by_test_id("recall-state")).to_have_text("Recall lifted")
    page.get_by_role("button", name="Sign out").click()

    sign_in("bob")
    assert page.request.get(file_url).status == 200
    page.goto(f"{live_server.url}/governance/access/")
    expect(page.get_by_test_id("my-approvals")).to_contain_text("acme/recall-ft")
