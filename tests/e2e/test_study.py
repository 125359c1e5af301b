"""In the browser: a probe's top two fine-tuned as a study, one chosen, scored and registered."""

from __future__ import annotations

import time

import pytest
from django.db import transaction
from playwright.sync_api import expect

from jobs.models import Job
from jobs.services.probes import probe_launch
from tests.builders.catalogue import base_model
from tests.builders.datasets import ticket_dataset
from tests.builders.governance import approve_reuse

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_bake_off_from_the_probe_page_to_a_registered_version(
    live_server, celery_worker, page, sign_in, tmp_path, alice, sam
):
    bases = [
        base_model(tmp_path / f"bert-{seed}", f"acme/bert-{seed}", steward=sam, seed=seed)
        for seed in range(2)
    ]
    for base in bases:
        approve_reuse(alice, base)
    with transaction.atomic():
        probe = probe_launch(
            actor=alice, dataset_version=ticket_dataset(alice), versions=bases, max_examples=36
        )
    deadline = time.monotonic() + 120
    while Job.objects.get(pk=probe.job_id).is_active and time.monotonic() < deadline:
        time.sleep(0.2)

    sign_in("alice")
    page.goto(f"{live_server.url}{probe.get_absolute_url()}")
    form = page.get_by_test_id("study-form")
    form.get_by_label("Top").fill("2")
    form.get_by_label("Why").fill("Two encoders, one budget: which transfers better?")
    form.get_by_role("button", name="Fine-tune the top 2").click()

    expect(page.get_by_role("heading", name="Study #")).to_be_visible()
    expect(page.get_by_test_id("study-reason")).to_contain_text("which transfers better")
    expect(page.get_by_test_id("study-candidates")).to_contain_text("acme/bert-0")
    expect(page.get_by_test_id("study-candidates")).to_contain_text("Not scored on test")
    # The page polls until both are trained; then the choice opens.
    choose = page.get_by_test_id("choose-run").first
    expect(choose).to_be_visible(timeout=240_000)
    expect(page.get_by_test_id("study-prediction")).to_contain_text("The probe ranked")
    expect(page.locator("canvas[data-chart='training-curves']")).to_have_count(2)
    page.get_by_test_id("study-choose").locator("textarea").first.fill("Best validation macro-F1.")
    choose.click()

    outcome = page.get_by_test_id("study-outcome")
    expect(outcome).to_contain_text("Best validation macro-F1.")
    page.wait_for_timeout(100)
    # Scored on test once and registered: reload until the job is done.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not page.get_by_test_id("study-version").count():
        time.sleep(1)
        page.reload()
    expect(page.get_by_test_id("study-status")).to_have_text("Decided and registered")
    expect(page.get_by_test_id("study-test")).to_contain_text("Test accuracy")
    page.get_by_test_id("study-version").click()
    expect(page.get_by_role("heading", name="alice/bert-").first).to_be_visible()
