"""Selection studies: a probe's top k fine-tuned alike, compared on validation, one scored on test.

A real probe ranks three tiny BERTs; the study's fine-tunes run in-process
(``job_execute``), and once on a real Celery worker.
"""

from __future__ import annotations

import time

import pytest
from django.core.files.storage import default_storage
from django.db import transaction
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from governance.models import AuditEvent
from jobs.engine import job_execute
from jobs.models import FineTuneRun, Job, ProbeRun, Study
from jobs.services.probes import probe_launch
from jobs.services.studies import study_choose, study_close, study_launch, study_retry_scoring
from portal.errors import Conflict, Forbidden, NotFound, PortalError
from tests.builders.catalogue import base_model
from tests.builders.datasets import ticket_dataset
from tests.builders.governance import approve_reuse
from zoo.models import ModelVersion

pytestmark = pytest.mark.django_db

# The automatic recipe, cut to one epoch without the learning-rate search to stay quick.
QUICK = {"epochs": 1, "lr_search": False, "batch_size": 8, "patience": 0}


@pytest.fixture
def bases(sam, tmp_path):
    """Three tiny BERTs (apache-2.0) published by a steward."""
    return [
        base_model(tmp_path / f"bert-{seed}", f"acme/bert-{seed}", steward=sam, seed=seed)
        for seed in range(3)
    ]


@pytest.fixture
def approved(alice, bases):
    """Alice, an ML engineer, holds an approved reuse request for each base."""
    for base in bases:
        approve_reuse(alice, base)
    return bases


def _probe(actor, bases, data=None) -> ProbeRun:
    data = data or ticket_dataset(actor)
    run = probe_launch(actor=actor, dataset_version=data, versions=bases, max_examples=36)
    assert job_execute(job_id=run.job_id) == "succeeded"
    run.refresh_from_db()
    run.job.refresh_from_db()
    return run


@pytest.fixture
def probe(alice, approved):
    """Alice's finished probe of the three bases on her support tickets."""
    return _probe(alice, approved)


def _bobs_probe(bob, bases) -> ProbeRun:
    """Bob (no role) may probe the published bases on his own data, not fine-tune them."""
    return _probe(bob, bases, data=ticket_dataset(bob, name="bobs"))


def _ranked(probe: ProbeRun) -> list[int]:
    return list(probe.results.order_by("rank").values_list("version_id", flat=True))


def _execute(job_id: int) -> Job:
    assert job_execute(job_id=job_id) in {"succeeded", "failed"}
    return Job.objects.get(pk=job_id)


def _stored(name: str) -> bool:
    return bool(name) and default_storage.exists(name)


def _trained_study(alice, probe, k=2) -> Study:
    study = study_launch(actor=alice, probe=probe, k=k, reason="near tie", config=QUICK)
    for run in study.runs.all():
        job = _execute(run.job_id)
        assert job.status == Job.Status.SUCCEEDED, job.error
    return study


def test_a_study_fine_tunes_the_top_k_alike_and_never_touches_test(alice, probe):
    given_versions = ModelVersion.objects.count()

    study = study_launch(
        actor=alice, probe=probe, k=2, reason="The probe cannot separate them.", config=QUICK
    )

    assert study.status == Study.Status.OPEN
    assert study.k == 2
    assert study.reason == "The probe cannot separate them."
    runs = list(study.runs.order_by("pk"))
    assert [r.base_version_id for r in runs] == _ranked(probe)[:2]
    assert [c["rank"] for c in study.candidates] == [1, 2]
    assert {r.dataset_version_id for r in runs} == {probe.dataset_version_id}
    # One recipe and one split for all: the default strategy, the same seed.
    assert all(r.config == runs[0].config == study.config for r in runs)
    assert all(r.split_params == runs[0].split_params for r in runs)
    assert runs[0].strategy == "full"
    assert all(r.is_deferred and r.job.queue == "gpu" for r in runs)
    event = AuditEvent.objects.get(verb="study.launch")
    assert event.actor == alice
    assert event.payload["runs"] == [r.pk for r in runs]
    assert AuditEvent.objects.filter(verb="finetune.launch").count() == 2

    for run in runs:
        job = _execute(run.job_id)
        assert job.status == Job.Status.SUCCEEDED, job.error
        run.refresh_from_db()
        # Validated, cost recorded, weights kept; the test split was not scored.
        assert run.metrics == {}
        assert run.baseline == {}
        assert run.output_version is None
        assert "Test accuracy" not in job.log
        assert job.result["deferred"] is True
        assert 0 <= run.training["validation"]["accuracy"] <= 1
        assert 0 <= run.training["validation"]["macro_f1"] <= 1
        assert run.training["eval_seconds"] == 0.0
        assert run.training["train_seconds"] > 0
        assert run.emissions["co2_kg"] > 0
        assert [e["epoch"] for e in run.curves["epochs"]] == [1]
        assert _stored(run.kept_weights["name"])
        # Only the kept weights are left of its checkpoints.
        _, names = default_storage.listdir(f"checkpoints/finetune-{run.pk}")
        assert names == ["best-validation.zip"]
    assert ModelVersion.objects.count() == given_versions


def test_choosing_scores_the_one_on_test_once_and_registers_it(
    alice, probe, django_capture_on_commit_callbacks
):
    study = _trained_study(alice, probe)
    first, second = study.runs.order_by("pk")
    discarded = first.kept_weights["name"]

    with django_capture_on_commit_callbacks(execute=True):  # the discarded weights go after commit
        study = study_choose(actor=alice, study=study, run=second, reason="Better macro-F1 on val.")

    assert study.status == Study.Status.SCORING
    assert study.chosen_run == second
    assert study.chosen_by == alice
    assert study.choice_reason == "Better macro-F1 on val."
    assert study.final_job.kind == Job.Kind.STUDY_CHOICE
    first.refresh_from_db()
    assert first.kept_weights == {}
    assert not _stored(discarded)
    event = AuditEvent.objects.get(verb="study.choose")
    assert event.payload["run"] == second.pk
    assert event.payload["discarded"] == [first.pk]

    job = _execute(study.final_job_id)

    assert job.status == Job.Status.SUCCEEDED, job.error
    second.refresh_from_db()
    study.refresh_from_db()
    assert study.status == Study.Status.DECIDED
    assert set(second.metrics) >= {"accuracy", "macro_f1", "per_class", "ece"}
    assert second.baseline["method"].startswith("TF-IDF")
    assert second.metrics["n"] == second.training["n_test"]
    assert second.training["eval_seconds"] > 0
    version = second.output_version
    assert version.parent_id == second.base_version_id
    assert version.kind == ModelVersion.Kind.FINETUNED
    assert version.model.status == "draft"
    assert {"model.safetensors", "README.md"} <= set(
        version.artifacts.values_list("path", flat=True)
    )
    assert job.log.count("Test accuracy") == 1
    assert not _stored(second.kept_weights.get("name", ""))
    assert second.kept_weights == {}
    first.refresh_from_db()
    assert first.output_version is None
    assert first.metrics == {}
    assert AuditEvent.objects.filter(verb="finetune.register", target_id=str(version.pk)).exists()
    assert AuditEvent.objects.filter(verb="study.decide").count() == 1
    # The card says what was compared and why, for whoever reads the model later.
    card = version.card_markdown
    section = card.split("## How the base model was chosen", 1)[1].split("\n## ", 1)[0]
    assert f"Study #{study.pk} fine-tuned the probe's top 2 candidates" in section
    assert "Chosen because: Better macro-F1 on val." in section
    for run in (first, second):
        base = run.base_version
        row = next(
            line for line in section.splitlines() if f"{base.model.repo_id} {base.label}" in line
        )
        assert f"{run.training['validation']['macro_f1']:.3f}" in row
        assert ("(this model's base)" in row) is (run == second)

    # A study chooses once.
    jobs_before = Job.objects.count()
    with pytest.raises(Conflict, match=r"decided already: fine-tune #\d+ was chosen"):
        study_choose(actor=alice, study=study, run=first, reason="Changed my mind.")
    assert Job.objects.count() == jobs_before
    study.refresh_from_db()
    assert study.chosen_run == second


def test_launch_refusals_say_why_and_create_nothing(alice, bob, sam, probe, approved, tmp_path):
    def refused(error, match, **kwargs):
        with pytest.raises(error, match=match):
            study_launch(**{"actor": alice, "probe": probe, "k": 2, "config": QUICK, **kwargs})

    refused(PortalError, r"k must be between 2 and 3", k=1)
    refused(PortalError, r"k must be between 2 and 3", k=4)
    refused(PortalError, r"whole number", k="2")
    refused(NotFound, "No such probe", actor=bob)
    refused(PortalError, r"Unknown setting 'colour'", config={"colour": "red"})
    refused(Forbidden, "Only members of ml-engineers", actor=bob, probe=_bobs_probe(bob, approved))

    # A candidate alice may not fine-tune: named, and the others are not launched either.
    unapproved = base_model(tmp_path / "bert-x", "acme/bert-x", steward=sam, seed=7)
    other = _probe(alice, [*approved, unapproved], data=probe.dataset_version)
    with pytest.raises(PortalError, match=r"acme/bert-x"):
        study_launch(actor=alice, probe=other, k=4, config=QUICK)

    unfinished = probe_launch(
        actor=alice, dataset_version=probe.dataset_version, versions=approved, max_examples=36
    )
    with pytest.raises(PortalError, match=r"has not finished \(queued\)"):
        study_launch(actor=alice, probe=unfinished, k=2)

    assert Study.objects.count() == 0
    assert FineTuneRun.objects.count() == 0
    assert not AuditEvent.objects.filter(verb__in=["study.launch", "finetune.launch"]).exists()


def test_choice_refusals_change_nothing(alice, bob, probe):
    study = study_launch(actor=alice, probe=probe, k=2, config=QUICK)
    first = study.runs.order_by("pk").first()

    # Not trained yet.
    with pytest.raises(PortalError, match=r"has not finished training \(queued\)"):
        study_choose(actor=alice, study=study, run=first, reason="fast")
    _execute(first.job_id)
    first.refresh_from_db()
    with pytest.raises(Forbidden, match="Only the person who launched the study"):
        study_choose(actor=bob, study=study, run=first, reason="mine now")
    with pytest.raises(PortalError, match="Say why you chose this one"):
        study_choose(actor=alice, study=study, run=first, reason="  ")
    stranger = study_launch(actor=alice, probe=probe, k=2, config=QUICK).runs.first()
    with pytest.raises(PortalError, match=rf"not part of study #{study.pk}"):
        study_choose(actor=alice, study=study, run=stranger, reason="wrong study")
    with pytest.raises(Conflict, match=r"still running; choose once every candidate"):
        study_choose(actor=alice, study=study, run=first, reason="the only one done")

    study.refresh_from_db()
    assert study.status == Study.Status.OPEN
    assert study.chosen_run is None
    assert not Job.objects.filter(kind=Job.Kind.STUDY_CHOICE).exists()
    assert not AuditEvent.objects.filter(verb="study.choose").exists()
    assert _stored(first.kept_weights["name"])


def test_a_failed_scoring_job_can_be_queued_again_for_the_same_choice(alice, bob, probe):
    from jobs.engine import job_cancel

    study = _trained_study(alice, probe)
    chosen = study.runs.order_by("pk").first()
    study = study_choose(actor=alice, study=study, run=chosen, reason="best validation")
    with pytest.raises(Conflict, match="not waiting for a failed scoring job"):
        study_retry_scoring(actor=alice, study=study)
    job_cancel(job=study.final_job, actor=alice)

    with pytest.raises(Forbidden, match="Only the person who launched the study"):
        study_retry_scoring(actor=bob, study=study)
    page = _client(alice).get(study.get_absolute_url()).content.decode()
    assert 'data-testid="retry-scoring"' in page
    stranger = APIClient()
    stranger.force_authenticate(bob)
    assert stranger.post(f"/api/studies/{study.pk}/retry/").status_code == 404
    failed_job = study.final_job_id
    api = APIClient()
    api.force_authenticate(alice)
    retried = api.post(f"/api/studies/{study.pk}/retry/")
    assert retried.status_code == 200, retried.content
    study.refresh_from_db()
    assert study.final_job_id != failed_job
    assert study.final_job.params["retry_of"] == failed_job
    assert retried.json()["status"] == "scoring"
    assert api.post(f"/api/studies/{study.pk}/retry/").status_code == 409  # queued, not failed

    assert study.chosen_run == chosen
    assert _execute(study.final_job_id).status == Job.Status.SUCCEEDED
    study.refresh_from_db()
    assert study.status == Study.Status.DECIDED
    assert AuditEvent.objects.filter(verb="study.retry_scoring").count() == 1


def test_a_study_closes_without_a_choice_and_keeps_its_record(
    alice, bob, probe, django_capture_on_commit_callbacks
):
    study = _trained_study(alice, probe)
    kept = [run.kept_weights["name"] for run in study.runs.all()]
    assert all(_stored(name) for name in kept)

    with pytest.raises(Forbidden, match="Only the person who launched the study"):
        study_close(actor=bob, study=study, reason="not mine")
    with pytest.raises(PortalError, match="Say why you close it"):
        study_close(actor=alice, study=study, reason="  ")
    assert Study.objects.get(pk=study.pk).status == Study.Status.OPEN
    assert not AuditEvent.objects.filter(verb="study.close").exists()

    page = _client(alice).post(
        reverse("finetunes:study_close", args=[study.pk]), {"reason": ""}, follow=True
    )
    assert "Say why you close it without a choice" in page.content.decode()
    assert Study.objects.get(pk=study.pk).status == Study.Status.OPEN
    with django_capture_on_commit_callbacks(execute=True):
        response = _client(alice).post(
            reverse("finetunes:study_close", args=[study.pk]),
            {"reason": "Neither beats the TF-IDF baseline on validation."},
        )
    assert response.status_code == 302

    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED
    assert study.closed_by == alice
    assert study.close_reason == "Neither beats the TF-IDF baseline on validation."
    assert study.chosen_run is None
    assert study.final_job is None
    assert not any(_stored(name) for name in kept)
    assert not study.runs.exclude(kept_weights={}).exists()
    assert not study.runs.exclude(output_version=None).exists()
    event = AuditEvent.objects.get(verb="study.close")
    assert event.payload["cancelled"] == []
    runs = {str(pk) for pk in study.runs.values_list("pk", flat=True)}
    assert set(event.payload["validation"]) == runs
    body = _client(alice).get(study.get_absolute_url()).content.decode()
    assert 'data-testid="study-closed"' in body
    assert "Neither beats the TF-IDF baseline" in body
    assert 'data-testid="choose-run"' not in body
    assert 'data-testid="close-study"' not in body

    jobs_before = Job.objects.count()
    with pytest.raises(Conflict, match="only an open study"):
        study_close(actor=alice, study=study, reason="again")
    with pytest.raises(Conflict):
        study_choose(actor=alice, study=study, run=study.runs.first(), reason="after all")
    assert Job.objects.count() == jobs_before


def test_closing_a_study_cancels_the_candidates_still_training(alice, probe):
    study = study_launch(actor=alice, probe=probe, k=2, reason="near tie", config=QUICK)
    api = APIClient()
    api.force_authenticate(alice)
    assert api.post(f"/api/studies/{study.pk}/close/", {}, format="json").status_code == 400

    closed = api.post(
        f"/api/studies/{study.pk}/close/", {"reason": "Wrong dataset version."}, format="json"
    )

    assert closed.status_code == 200, closed.content
    assert closed.json()["status"] == "closed"
    assert closed.json()["closed_by"] == alice.username
    statuses = set(Job.objects.filter(finetune__study=study).values_list("status", flat=True))
    assert statuses == {Job.Status.CANCELLED}
    event = AuditEvent.objects.get(verb="study.close")
    assert sorted(event.payload["cancelled"]) == sorted(study.runs.values_list("pk", flat=True))
    again = api.post(f"/api/studies/{study.pk}/close/", {"reason": "x"}, format="json")
    assert again.status_code == 409


def test_the_sweep_keeps_the_weights_a_study_waits_for(alice, probe):
    from jobs.services.sweep import storage_sweep

    study = _trained_study(alice, probe)
    first, second = study.runs.order_by("pk")

    storage_sweep()

    assert _stored(first.kept_weights["name"])
    assert _stored(second.kept_weights["name"])
    # Chosen and waiting for its test scoring: the chosen run's weights stay, the other's go.
    study_choose(actor=alice, study=study, run=first, reason="best validation")
    storage_sweep()
    assert _stored(first.kept_weights["name"])
    assert not _stored(second.kept_weights["name"])


# --- pages and API ---------------------------------------------------------------------


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_probe_page_offers_the_bake_off_and_the_comparison_page_chooses(alice, bob, probe):
    page = _client(alice).get(probe.get_absolute_url())
    assert page.status_code == 200
    body = page.content.decode()
    assert 'data-testid="study-form"' in body
    assert 'name="k"' in body

    # Candidates within noise of the first: the near-ties list offers the bake-off itself.
    ProbeRun.objects.filter(pk=probe.pk).update(
        confidence=ProbeRun.Confidence.NEAR_TIE, confidence_note="Within noise of each other."
    )
    probe.results.exclude(rank=1).update(within_noise=True)
    body = _client(alice).get(probe.get_absolute_url()).content.decode()
    assert 'id="study-k-near-ties"' in body
    assert 'value="3"' in body  # all three are within noise
    assert _client(bob).get(probe.get_absolute_url()).status_code == 404

    launched = _client(alice).post(
        f"/probes/{probe.pk}/study/", {"k": "2", "reason": "which one truly wins"}
    )
    study = Study.objects.get()
    assert launched.status_code == 302
    assert launched["Location"] == study.get_absolute_url()
    for run in study.runs.all():
        _execute(run.job_id)

    run_page = _client(alice).get(study.runs.first().get_absolute_url()).content.decode()
    assert 'data-testid="finetune-study"' in run_page
    assert "only the one the study chooses is scored on the test split" in run_page

    page = _client(alice).get(study.get_absolute_url())
    assert page.status_code == 200
    body = page.content.decode()
    assert 'data-testid="study-candidates"' in body
    assert 'data-testid="study-prediction"' in body
    assert body.count('data-chart="training-curves"') == 2
    assert body.count('data-testid="choose-run"') == 2
    assert "which one truly wins" in body
    assert "Not scored on test" in body
    assert _client(bob).get(study.get_absolute_url()).status_code == 404

    run = study.runs.order_by("pk").first()
    no_reason = _client(alice).post(f"{study.get_absolute_url()}choose/", {"run": run.pk})
    assert no_reason.status_code == 302
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN
    chose = _client(alice).post(
        f"{study.get_absolute_url()}choose/", {"run": run.pk, "reason": "highest val macro-F1"}
    )
    assert chose.status_code == 302
    study.refresh_from_db()
    assert study.status == Study.Status.SCORING
    _execute(study.final_job_id)
    page = _client(alice).get(study.get_absolute_url())
    body = page.content.decode()
    assert 'data-testid="study-outcome"' in body
    run.refresh_from_db()
    assert run.output_version.model.repo_id in body
    assert 'data-testid="choose-run"' not in body


def test_study_api_create_read_choose_and_refuse(alice, bob, probe):
    api = APIClient()
    api.force_authenticate(alice)
    bad = api.post("/api/studies/", {"probe": probe.pk, "k": 9}, format="json")
    assert bad.status_code == 400
    assert "k must be between 2 and 3" in bad.json()["detail"]

    created = api.post(
        "/api/studies/", {"probe": probe.pk, "k": 2, "reason": "near tie"}, format="json"
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "open"
    assert len(body["runs"]) == 2
    assert api.get("/api/studies/").json()["results"][0]["id"] == body["id"]
    assert api.get(f"/api/studies/{body['id']}/").json()["k"] == 2

    other = APIClient()
    other.force_authenticate(bob)
    assert other.get(f"/api/studies/{body['id']}/").status_code == 404
    assert other.get("/api/studies/").json()["results"] == []

    # The API launches the full automatic recipe; cut to one epoch here to keep the test quick.
    study = Study.objects.get(pk=body["id"])
    study.runs.update(config={**study.config, **QUICK})
    for run in study.runs.all():
        _execute(run.job_id)
    run_id = body["runs"][0]["id"]
    refused = other.post(
        f"/api/studies/{body['id']}/choose/", {"run": run_id, "reason": "x"}, format="json"
    )
    assert refused.status_code == 404
    chose = api.post(
        f"/api/studies/{body['id']}/choose/", {"run": run_id, "reason": "best"}, format="json"
    )
    assert chose.status_code == 200, chose.content
    assert chose.json()["status"] == "scoring"
    assert chose.json()["chosen_run"] == run_id
    again = api.post(
        f"/api/studies/{body['id']}/choose/", {"run": run_id, "reason": "best"}, format="json"
    )
    assert again.status_code == 409


def test_study_page_and_list_endpoint_stay_within_a_query_budget(
    alice, probe, django_assert_max_num_queries
):
    studies = [study_launch(actor=alice, probe=probe, k=k, config=QUICK) for k in (2, 3, 3)]
    client = _client(alice)
    api = APIClient()
    api.force_authenticate(alice)

    with django_assert_max_num_queries(10):
        assert client.get(studies[-1].get_absolute_url()).status_code == 200
    with django_assert_max_num_queries(8):
        assert len(api.get("/api/studies/").json()["results"]) == 3
    body = client.get("/finetunes/").content.decode()
    assert f"study #{studies[0].pk}" in body


@pytest.mark.integration
def test_a_worker_runs_a_study_from_launch_to_registration(celery_worker, alice, sam, tmp_path):
    bases = [
        base_model(tmp_path / f"w-{seed}", f"acme/w-{seed}", steward=sam, seed=seed)
        for seed in range(2)
    ]
    for base in bases:
        approve_reuse(alice, base)
    data = ticket_dataset(alice)
    with transaction.atomic():
        probe = probe_launch(actor=alice, dataset_version=data, versions=bases, max_examples=36)
    _wait(lambda: not Job.objects.get(pk=probe.job_id).is_active)
    probe.refresh_from_db()
    with transaction.atomic():
        study = study_launch(actor=alice, probe=probe, k=2, config=QUICK)
    _wait(lambda: not Job.objects.filter(finetune__study=study, status__in=Job.ACTIVE).exists())
    runs = list(study.runs.select_related("job"))
    assert [r.job.status for r in runs] == ["succeeded", "succeeded"], [r.job.error for r in runs]
    assert all(r.metrics == {} and r.output_version_id is None for r in runs)

    with transaction.atomic():
        study = study_choose(actor=alice, study=study, run=runs[0], reason="first")
    _wait(lambda: Study.objects.get(pk=study.pk).status == Study.Status.DECIDED)
    runs[0].refresh_from_db()
    assert runs[0].output_version is not None
    assert runs[0].metrics["n"] == runs[0].training["n_test"]


def _wait(predicate, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")
