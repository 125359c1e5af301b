"""In the browser: upload a dataset, pick its columns, probe two models on a real worker."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.builders.catalogue import import_model
from tests.builders.datasets import csv_bytes, spam_rows
from tests.builders.weights import tiny_bert_folder

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_upload_a_dataset_and_probe_two_models(
    live_server, celery_worker, page, sign_in, tmp_path, alice, sam
):
    for seed in (0, 1):
        import_model(tiny_bert_folder(tmp_path / f"b{seed}", seed=seed), f"acme/b{seed}", actor=sam)
    data = tmp_path / "support-tickets.csv"
    data.write_bytes(csv_bytes(spam_rows()))

    sign_in("alice")
    page.get_by_role("link", name="Datasets").click()
    page.get_by_role("link", name="Upload a dataset").click()
    page.get_by_label("File").set_input_files(str(data))
    page.get_by_role("button", name="Upload and preview").click()

    expect(page.get_by_test_id("preview")).to_contain_text("WINNER! You have won")
    expect(page.get_by_label("Name")).to_have_value("support-tickets")
    page.get_by_label("Text column").select_option("message")
    page.get_by_label("Label column").select_option("label")
    page.get_by_label("Sensitivity").select_option("internal")
    page.get_by_role("button", name="Check and save").click()

    expect(page.get_by_role("heading", name="support-tickets")).to_be_visible()
    expect(page.get_by_test_id("rows")).to_have_text("48")
    expect(page.locator("#label-chart")).to_be_visible()

    page.get_by_role("link", name="Probe models on this data").click()
    page.get_by_label("acme/b0 v1 (text)").check()
    page.get_by_label("acme/b1 v1 (text)").check()
    page.get_by_label("Maximum examples").fill("40")
    page.get_by_label("Largest model (parameters)").fill("1M")
    page.get_by_role("button", name="Run probe").click()

    # The page polls the job; the ranking appears without a reload.
    expect(page.get_by_test_id("probe-status")).to_have_text("Succeeded", timeout=120_000)
    # Two random tiny encoders on 40 texts are too close to call, and the page says so.
    expect(page.get_by_test_id("recommendation")).to_contain_text("Ranked first: acme/b")
    expect(page.get_by_test_id("near-ties")).to_contain_text(
        "are within noise of each other on this sample; fine-tune them briefly to decide"
    )
    expect(page.get_by_test_id("near-ties").locator("li")).to_have_count(2)
    expect(page.get_by_test_id("budget-pick")).to_contain_text("Best within your budget: acme/b")
    table = page.get_by_test_id("probe-results")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table).to_contain_text("acme/b0")
    expect(table).to_contain_text("999.1K")  # parameters, measured on the worker
    expect(page.locator("#probe-chart")).to_be_visible()
    size_chart = page.get_by_role("img", name="Linear-probe accuracy against model size")
    expect(size_chart).to_be_visible()
    expect(size_chart.locator(".dot")).to_have_count(2)
    expect(size_chart.locator("line.limit")).to_have_count(1)
    latency_chart = page.get_by_role("img", name="Linear-probe accuracy against CPU latency")
    expect(latency_chart).to_be_visible()

    # The dataset page lists the probe in its history.
    page.get_by_role("link", name="support-tickets v1").click()
    expect(page.get_by_test_id("probe-history")).to_contain_text("acme/b")
