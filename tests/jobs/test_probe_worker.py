"""A real Celery worker runs probes: end to end on tiny models, live progress, cancel."""

from __future__ import annotations

import threading
import time

import pytest
from celery.worker import state as worker_state
from django.db import transaction
from transformers import BertModel

from jobs import engine
from jobs.ml import features
from jobs.models import FeatureSet, Job, ProbeResult, ProbeRun
from jobs.services.probes import probe_launch
from tests.builders.catalogue import import_model
from tests.builders.datasets import keyword_rows, text_dataset
from tests.builders.weights import tiny_bert_folder

pytestmark = [pytest.mark.integration]


def _wait(job: Job, predicate, timeout: float = 120.0) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if predicate(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job.pk} is {job.status} at {job.stage!r} after {timeout}s")


@pytest.fixture
def people(transactional_db, alice, sam):
    """alice and sam, with committed rows: the worker reads through its own connection."""
    return alice, sam


@pytest.fixture
def encoders(people, tmp_path):
    _, sam = people
    return [
        import_model(tiny_bert_folder(tmp_path / f"b{seed}", seed=seed), f"acme/b{seed}", actor=sam)
        for seed in (0, 1)
    ]


def test_a_worker_runs_a_probe_end_to_end(celery_worker, people, encoders, tmp_path):
    alice, _ = people
    dataset = text_dataset(alice)
    with transaction.atomic():
        run = probe_launch(actor=alice, dataset_version=dataset, versions=encoders, max_examples=40)

    job = _wait(run.job, lambda j: not j.is_active)

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 1
    assert job.device == "cpu"
    assert sorted(run.results.values_list("rank", flat=True)) == [1, 2]
    assert FeatureSet.objects.count() == 2
    run.refresh_from_db()
    assert run.recommendation
    # Size and CPU latency measured on the worker, and a verdict on how sure the ranking is.
    numel = sum(p.numel() for p in BertModel.from_pretrained(tmp_path / "b0").parameters())
    for result in run.results.all():
        assert result.parameters == numel  # both encoders share one architecture
        assert result.memory_bytes == 4 * numel
        assert 0 < result.latency_ms < 1000
        assert result.cost_method["device"] == "cpu"
        assert result.cost_method["threads"] >= 1
    assert run.confidence in {ProbeRun.Confidence.CLEAR, ProbeRun.Confidence.NEAR_TIE}
    assert run.confidence_note


@pytest.fixture
def held_extraction(monkeypatch):
    """The real extractor, held after its first progress report until the test lets go."""
    release = threading.Event()
    real = features.extract_text_features

    def held(model_dir, texts, *, progress=None, **kwargs):
        if progress is not None:
            progress(0, len(texts))
        assert release.wait(60), "the test never released the extraction"
        return real(model_dir, texts, progress=progress, **kwargs)

    monkeypatch.setattr(features, "extract_text_features", held)
    return release


def test_progress_is_live_and_a_cancelled_probe_stops(
    celery_worker, people, encoders, held_extraction
):
    alice, _ = people
    dataset = text_dataset(alice)
    with transaction.atomic():
        run = probe_launch(actor=alice, dataset_version=dataset, versions=encoders, max_examples=40)

    job = _wait(run.job, lambda j: "embedded" in j.stage)
    assert job.status == Job.Status.RUNNING
    assert job.stage == "acme/b0 v1: embedded 0 of 40 examples"
    assert run.results.get(position=0).status == ProbeResult.Status.RUNNING

    engine.job_cancel(job=job, actor=alice)
    held_extraction.set()
    deadline = time.monotonic() + 60
    while worker_state.active_requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not worker_state.active_requests

    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    # The cancelled attempt wrote nothing after the cancel: no scores, no second candidate.
    assert not run.results.filter(status=ProbeResult.Status.SUCCEEDED).exists()
    assert run.results.get(position=1).status == ProbeResult.Status.PENDING


def test_a_worker_checks_the_top_candidates_with_a_brief_fine_tune(celery_worker, people, tmp_path):
    """Given two encoders, one of which cannot tell words apart, and a shortlist of two."""
    alice, sam = people
    sharp = import_model(tiny_bert_folder(tmp_path / "sharp", seed=0), "acme/sharp", actor=sam)
    blind = import_model(
        tiny_bert_folder(tmp_path / "blind", seed=0, blind=True), "acme/blind", actor=sam
    )
    dataset = text_dataset(alice, name="pets", rows=keyword_rows(120, seed=2))
    with transaction.atomic():
        run = probe_launch(
            actor=alice,
            dataset_version=dataset,
            versions=[blind, sharp],
            max_examples=120,
            shortlist_k=2,
        )

    job = _wait(run.job, lambda j: not j.is_active, timeout=300)

    assert job.status == Job.Status.SUCCEEDED, job.error
    results = list(run.results.order_by("rank"))
    # Both were fine-tuned briefly on the training rows of a default fine-tune's split
    # (80 % less a tenth for validation) and scored on its validation rows.
    for result in results:
        assert result.brief_error == ""
        assert 0.0 <= result.brief_accuracy <= 1.0
        assert result.brief_rows == 86
        assert result.brief_val_rows == 10
        assert result.brief_epochs == 1
        assert result.brief_cpu_seconds > 0
        assert result.reason.startswith("Brief fine-tune: ")
    # The order among the checked candidates is validation accuracy's, ties to the scores'.
    keys = [(-r.brief_accuracy, -r.brief_macro_f1, r.score_rank) for r in results]
    assert keys == sorted(keys)
    assert sorted(r.score_rank for r in results) == [1, 2]
    run.refresh_from_db()
    assert run.shortlist_note.startswith("The top 2 by scores were each fine-tuned briefly")
    assert run.recommendation.startswith(f"{results[0].version.model.repo_id} ")
    assert any("brief fine-tune" in line for line in job.log.splitlines())
