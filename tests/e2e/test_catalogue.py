from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.factories import (
    ArtifactFactory,
    catalogue_entry,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_user_searches_the_catalogue_and_opens_a_model(live_server, page, sign_in, bob):
    minilm = catalogue_entry(
        "sentence-transformers/all-MiniLM-L6-v2",
        summary="Maps sentences to a 384 dimensional dense vector space.",
        card="## Training\n\nOne billion sentence pairs.\n\n<script>window.pwned = 1</script>",
        bias_notes="Web text biases.",
    )
    ArtifactFactory(version=minilm, path="model.safetensors", size=90_900_000)
    catalogue_entry(
        "google/efficientnet-lite0", summary="Mobile image classifier.", modality="vision"
    )
    catalogue_entry("acme/research-only", summary="Review sentiment.", license="cc-by-nc-4.0")

    sign_in("bob")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Catalogue").click()
    expect(page.get_by_text("3 models")).to_be_visible()

    page.get_by_placeholder("Search names, summaries").fill("sentence pairs")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("1 model", exact=True)).to_be_visible()
    page.get_by_role("link", name="sentence-transformers/all-MiniLM-L6-v2").click()

    expect(
        page.get_by_role("heading", name="sentence-transformers/all-MiniLM-L6-v2")
    ).to_be_visible()
    expect(page.get_by_role("heading", name="Training")).to_be_visible()
    expect(page.locator(".license").first).to_have_text("apache-2.0")
    expect(page.get_by_text("model.safetensors")).to_be_visible()
    expect(page.get_by_text("Web text biases.")).to_be_visible()
    assert page.evaluate("window.pwned") is None  # the card's script never ran

    page.get_by_role("link", name="Catalogue").first.click()
    page.get_by_label("License").select_option("non-commercial")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="acme/research-only")).to_be_visible()
    expect(page.get_by_role("link", name="google/efficientnet-lite0")).to_have_count(0)
