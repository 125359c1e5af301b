"""In the browser: launch a fine-tune from the model page and watch it finish on a real worker."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.builders.catalogue import base_model
from tests.builders.datasets import ticket_dataset
from tests.builders.governance import approve_reuse

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_launch_a_fine_tune_from_the_model_page_and_watch_it_finish(
    live_server, celery_worker, page, sign_in, tmp_path, alice, sam
):
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)  # legal approves through the real review services
    data = ticket_dataset(alice, n_per_class=20)

    sign_in("alice")
    page.goto(f"{live_server.url}/catalogue/acme/tiny-bert/")
    page.get_by_role("link", name="Fine-tune", exact=True).click()

    expect(page.get_by_role("heading", name="Fine-tune a model on your data")).to_be_visible()
    expect(page.get_by_label("Base model")).to_have_value(str(base.pk))
    page.get_by_label("Dataset", exact=True).select_option(str(data.pk))
    page.get_by_label("LoRA adapter").check()
    expect(page.get_by_test_id("lora-fields")).to_be_visible()
    expect(page.get_by_label("LoRA target modules")).to_have_value("query, value")
    page.get_by_label("Head only (frozen backbone)").check()
    expect(page.get_by_test_id("lora-fields")).to_be_hidden()
    # The head-only default rate.
    expect(page.get_by_label("Learning rate", exact=True)).to_have_value("0.001")
    page.get_by_label("Epochs").fill("1")
    page.get_by_label("Batch size").fill("8")
    page.get_by_role("button", name="Launch fine-tune").click()

    # The page polls the job and draws the curves as they arrive.
    expect(page.get_by_role("heading", name="Fine-tune #")).to_be_visible()
    expect(page.get_by_test_id("finetune-status")).to_have_text("Succeeded", timeout=180_000)
    expect(page.locator("#finetune-chart")).to_be_visible()
    metrics = page.get_by_test_id("finetune-metrics")
    expect(metrics).to_contain_text("Accuracy")
    expect(metrics).to_contain_text("TF-IDF (word 1-2 grams) + logistic regression")
    expect(page.get_by_test_id("frozen-verdict")).to_contain_text("frozen base features")
    expect(page.get_by_test_id("per-class")).to_contain_text("billing")
    expect(page.get_by_test_id("finetune-cost")).to_contain_text("kg CO₂e")
    output = page.get_by_test_id("finetune-output")
    expect(output.get_by_test_id("in-review")).to_be_visible()
    output.get_by_role("link", name="alice/tiny-bert-ft-tickets-").click()

    expect(page.get_by_role("heading", name="alice/tiny-bert-ft-tickets-").first).to_be_visible()
    expect(page.get_by_test_id("in-review")).to_contain_text("In review.")
