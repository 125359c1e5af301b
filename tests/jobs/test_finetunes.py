"""Fine-tunes: launch checks, the handler run in-process on a tiny real BERT, pages and API.

The handler runs eagerly here (``job_execute`` in the test's own process); a
real worker, and a worker killed mid-run, are in test_finetune_worker.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test import Client
from django.utils import timezone
from huggingface_hub import ModelCard
from rest_framework.test import APIClient

from governance.access import can_use_version
from governance.models import AuditEvent
from jobs.engine import JobCancelled, JobContext, job_claim, job_execute, job_requeue_stale
from jobs.ml.evaluate import energy_estimate
from jobs.models import FineTuneRun, Job
from jobs.services import finetunes as finetune_services
from jobs.services.finetunes import finetune_launch
from portal.errors import Forbidden, PortalError
from tests.builders.catalogue import base_model
from tests.builders.datasets import image_zip_bytes, ticket_dataset, upload
from tests.builders.governance import approve_reuse
from tests.factories import UserFactory
from zoo.models import CatalogModel, ModelVersion
from zoo.selectors.catalogue import versions_visible_to
from zoo.services import datasets as dataset_services

pytestmark = pytest.mark.django_db

FAST = {"epochs": 2, "batch_size": 8, "patience": 0}


@pytest.fixture
def base(sam, tmp_path):
    """A tiny BERT (apache-2.0) published by a steward."""
    return base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)


@pytest.fixture
def approved(alice, base):
    """Alice, an ML engineer, holds an approved reuse request for the base."""
    approve_reuse(alice, base)
    return base


def _run(run: FineTuneRun) -> FineTuneRun:
    assert job_execute(job_id=run.job_id) in {"succeeded", "failed"}
    run = FineTuneRun.objects.select_related("job", "output_version__model").get(pk=run.pk)
    return run


def _stored_text(artifact) -> str:
    with default_storage.open(artifact.blob_name, "rb") as handle:
        return handle.read().decode("utf-8")


def test_a_head_only_fine_tune_becomes_a_child_version_with_a_model_card(alice, bob, sam, approved):
    data = ticket_dataset(alice)
    run = finetune_launch(
        actor=alice, base_version=approved, dataset_version=data, strategy="head", config=FAST
    )
    assert run.job.queue == "gpu"
    assert run.config["learning_rate"] == 1e-3  # the head-only default

    run = _run(run)

    job = run.job
    assert job.status == Job.Status.SUCCEEDED, job.error
    version = run.output_version
    assert version.kind == ModelVersion.Kind.FINETUNED
    assert version.parent == approved
    assert version.license == approved.license
    assert version.source == ModelVersion.Source.FINETUNE
    assert version.created_by == alice
    assert version.status == ModelVersion.Status.AVAILABLE, version.block_reasons
    assert version.model.repo_id == f"alice/tiny-bert-ft-tickets-{run.pk}"
    assert version.model.owner == alice
    assert version.model.status == CatalogModel.Status.DRAFT
    assert version.bias_notes == approved.bias_notes

    # Every file is recorded with its hash; the weights are safetensors.
    files = {a.path: a for a in version.artifacts.all()}
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json"} <= set(files)
    assert files["model.safetensors"].format == "safetensors"
    assert not any(a.format == "pickle" for a in files.values())
    with default_storage.open(files["model.safetensors"].blob_name, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == files["model.safetensors"].sha256

    # The card parses with huggingface_hub and carries the stored test results.
    card = ModelCard(_stored_text(files["README.md"]))
    assert card.data.license == "apache-2.0"
    assert card.data.base_model == "acme/tiny-bert"
    assert card.data.base_model_relation == "finetune"
    assert card.data.pipeline_tag == "text-classification"
    assert card.data.datasets == [f"sha256:{data.sha256}"]
    # The estimate is the stated formula over the run's own training (the learning-rate
    # search's discarded rates included) and evaluation time.
    assert run.training["search_seconds"] > 0
    assert [t["learning_rate"] for t in run.training["lr_search"]] == [5e-4, 1e-3, 2e-3]
    assert run.training["learning_rate"] in (5e-4, 1e-3, 2e-3)
    expected = energy_estimate(
        seconds=run.training["train_seconds"]
        + run.training["search_seconds"]
        + run.training["eval_seconds"],
        device="cpu",
    )
    assert run.emissions["co2_kg"] == pytest.approx(expected["co2_kg"])
    assert run.emissions["co2_kg"] > 0
    assert card.data.co2_eq_emissions["emissions"] == round(run.emissions["co2_kg"] * 1000, 3)
    assert card.data.co2_eq_emissions["hardware_used"] == "CPU"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == pytest.approx(run.metrics["accuracy"], abs=1e-6)
    assert results["f1"] == pytest.approx(run.metrics["macro_f1"], abs=1e-6)
    assert "inherits the limitations and biases" in card.text
    assert approved.bias_notes in card.text
    assert version.metrics  # the model-index, as the catalogue stores it for any card

    # Evaluation, baseline, slices, cost.
    assert set(run.metrics) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "ece"}
    assert set(run.metrics["per_class"]) == {"billing", "login", "outage"}
    assert set(run.metrics["slices"]) <= {"north", "south"}
    assert run.baseline["method"].startswith("TF-IDF")
    assert 0 <= run.baseline["accuracy"] <= 1
    # The head-only probe on the base's frozen features, scored on the same test rows.
    frozen = run.baseline["frozen_head"]
    assert frozen["method"] == "logistic regression on the base model's frozen features"
    assert 0 <= frozen["accuracy"] <= 1
    assert 0 <= frozen["macro_f1"] <= 1
    assert "vs a linear head on the frozen base features" in job.log
    assert f"macro-F1 {frozen['macro_f1']:.4f} on this test split" in card.text
    assert run.training["n_test"] == run.metrics["n"] == 6
    assert run.training["epochs_run"] == 2
    assert run.emissions["gpu_hours"] == 0.0  # a CPU worker
    assert run.emissions["energy_kwh"] > 0

    # Curves as they arrived: loss points and one validation report per epoch.
    assert run.curves["steps"]
    assert [e["epoch"] for e in run.curves["epochs"]] == [1, 2]  # the chosen rate's only
    # The step curve is the kept run's alone: the discarded rates drew none.
    steps = [point[0] for point in run.curves["steps"]]
    assert steps == sorted(set(steps))
    assert run.last_checkpoint["epoch"] == 2
    assert not default_storage.exists(run.last_checkpoint["name"])  # removed once registered

    # In review: its author (and stewards) may use it; nobody else yet.
    carol = UserFactory(username="carol", roles=["ml-engineers"])
    assert can_use_version(alice, version, "zoo.finetune_version")
    assert can_use_version(sam, version, "zoo.download_files")
    assert not can_use_version(bob, version, "zoo.download_files")
    assert not can_use_version(carol, version, "zoo.finetune_version")
    assert versions_visible_to(alice).filter(pk=version.pk).exists()
    assert not versions_visible_to(bob).filter(pk=version.pk).exists()
    verbs = set(AuditEvent.objects.values_list("verb", flat=True))
    assert {"finetune.launch", "finetune.register", "version.import"} <= verbs
    assert "epoch 2/2: train loss" in job.log
    assert "Trained 2 of 2 epochs" in job.log
    assert "chosen on the validation split after one epoch at each of 0.0005" in job.log
    assert "(test macro-F1)" in job.log  # the verdict against the baseline, in words


def test_lora_on_a_non_commercial_base_gives_a_non_commercial_adapter(alice, sam, tmp_path):
    base = base_model(tmp_path / "nc", "acme/nc-bert", steward=sam, license="cc-by-nc-4.0")
    approve_reuse(alice, base)
    data = ticket_dataset(alice)
    run = finetune_launch(
        actor=alice,
        base_version=base,
        dataset_version=data,
        strategy="lora",
        config={**FAST, "epochs": 1},
    )
    assert run.config["lora_target_modules"] == ["query", "value"]  # BERT's default

    run = _run(run)

    assert run.job.status == Job.Status.SUCCEEDED, run.job.error
    version = run.output_version
    assert version.kind == ModelVersion.Kind.ADAPTER
    assert version.parent == base
    assert version.license.spdx_id == "cc-by-nc-4.0"
    assert version.license.commercial_use is False
    files = {a.path: a for a in version.artifacts.all()}
    assert set(files) == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    adapter = json.loads(_stored_text(files["adapter_config.json"]))
    assert adapter["base_model_name_or_path"] == "acme/nc-bert"
    assert adapter["revision"] == base.revision
    card = ModelCard(_stored_text(files["README.md"]))
    assert card.data.license == "cc-by-nc-4.0"
    assert card.data.base_model_relation == "adapter"
    assert {r.metric_type for r in card.data.eval_results} == {"accuracy", "f1"}
    # An adapter is not a model to fine-tune further; its base is.
    with pytest.raises(PortalError, match=r"is a LoRA adapter, not a model.*acme/nc-bert"):
        finetune_launch(actor=alice, base_version=version, dataset_version=data, strategy="head")


def test_a_second_attempt_after_registration_returns_the_same_version(alice, approved):
    data = ticket_dataset(alice)
    run = _run(
        finetune_launch(
            actor=alice,
            base_version=approved,
            dataset_version=data,
            strategy="head",
            config={**FAST, "epochs": 1},
        )
    )
    first = run.output_version
    # As if the worker died after registering but before reporting success.
    Job.objects.filter(pk=run.job_id).update(
        status=Job.Status.RUNNING, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert job_execute(job_id=run.job_id) == "succeeded"

    run.refresh_from_db()
    run.job.refresh_from_db()
    assert run.job.attempts == 2
    assert run.output_version == first
    assert ModelVersion.objects.filter(parent=approved).count() == 1
    assert "Already registered" in run.job.log


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not_engineer", "Only members of ml-engineers"),
        ("not_approved", "not approved for you"),
        ("confidential_uncovered", "needs an approved reuse request of yours"),
        ("restricted_uncovered", "restricted data"),
        ("wrong_modality", "holds image classification data"),
        ("blocked", "is blocked"),
        ("no_derivatives", "allows no derivatives"),
        ("bad_learning_rate", "learning_rate must be in"),
        ("bad_epochs", "epochs must be between 1 and 100"),
        ("unknown_setting", "Unknown setting"),
        ("time_without_column", "has no time column"),
        ("test_file_labels", "labels the training data lacks"),
        ("split_share", "test share must be between"),
        ("foreign_dataset", "No such dataset"),
    ],
)
def test_launch_refusals_say_why_and_create_nothing(
    case, message, alice, bob, sam, approved, tmp_path
):
    from tests.builders.datasets import spam_rows, text_dataset

    actor, base = alice, approved
    data = ticket_dataset(alice)
    kwargs = {"strategy": "head", "config": dict(FAST)}
    if case == "not_engineer":
        actor = bob
    elif case == "not_approved":
        base = base_model(tmp_path / "other", "acme/other", steward=sam, seed=1)
    elif case == "confidential_uncovered":
        data = ticket_dataset(alice, name="secret", sensitivity="confidential")
    elif case == "restricted_uncovered":
        approve_reuse(alice, approved, sensitivity="confidential")
        data = ticket_dataset(alice, name="secret", sensitivity="restricted")
    elif case == "wrong_modality":
        staged = dataset_services.dataset_stage_upload(
            actor=alice, upload=upload("pets.zip", image_zip_bytes({"cat": 6, "dog": 6}))
        )
        data, _ = dataset_services.dataset_create(
            actor=alice, staged=staged, name="pets", sensitivity="internal"
        )
    elif case == "blocked":
        ModelVersion.objects.filter(pk=base.pk).update(
            status="blocked", block_reasons=["model.bin: unsafe pickle (os.system)."]
        )
        base.refresh_from_db()
    elif case == "no_derivatives":
        base = base_model(
            tmp_path / "nd", "acme/nd", steward=sam, license="cc-by-nc-nd-4.0", seed=2
        )
        approve_reuse(alice, base)
    elif case == "bad_learning_rate":
        kwargs["config"]["learning_rate"] = 5.0
    elif case == "bad_epochs":
        kwargs["config"]["epochs"] = 0
    elif case == "unknown_setting":
        kwargs["config"]["momentum"] = 0.9
    elif case == "time_without_column":
        data = text_dataset(alice, name="sms")
        kwargs["split"] = "time"
    elif case == "test_file_labels":
        kwargs.update(split="test_file", test_dataset_version=text_dataset(alice, rows=spam_rows()))
    elif case == "split_share":
        kwargs["test_fraction"] = 0.9
    elif case == "foreign_dataset":
        data = ticket_dataset(bob, name="bobs")
    jobs_before = Job.objects.count()

    with pytest.raises(PortalError, match=message):
        finetune_launch(actor=actor, base_version=base, dataset_version=data, **kwargs)

    assert Job.objects.count() == jobs_before
    assert not FineTuneRun.objects.exists()


def test_confidential_data_needs_an_approval_that_covers_it(alice, approved):
    secret = ticket_dataset(alice, name="secret", sensitivity="confidential")
    approve_reuse(alice, approved, sensitivity="restricted")  # covers confidential too

    run = finetune_launch(
        actor=alice, base_version=approved, dataset_version=secret, strategy="head", config=FAST
    )

    assert run.job.status == Job.Status.QUEUED


def test_the_version_creator_and_stewards_need_no_request(alice, sam, tmp_path):
    own = base_model(tmp_path / "own", "acme/own", steward=sam)
    ModelVersion.objects.filter(pk=own.pk).update(created_by=alice)
    own.refresh_from_db()
    data = ticket_dataset(alice)

    run = finetune_launch(
        actor=alice, base_version=own, dataset_version=data, strategy="full", config=FAST
    )
    assert run.config["learning_rate"] == 1e-4

    # A steward who also fine-tunes needs no request for a version someone else made;
    # an ml-engineer without an approval is refused the same version.
    stella = UserFactory(username="stella", roles=["stewards", "ml-engineers"])
    other = base_model(tmp_path / "other", "acme/other", steward=sam)
    stella_data = ticket_dataset(stella)
    by_steward = finetune_launch(
        actor=stella, base_version=other, dataset_version=stella_data, strategy="head", config=FAST
    )
    assert by_steward.requested_by == stella
    with pytest.raises(Forbidden, match="not approved for you"):
        finetune_launch(
            actor=alice, base_version=other, dataset_version=data, strategy="head", config=FAST
        )
    assert FineTuneRun.objects.count() == 2


def test_splits_by_time_and_by_a_separate_test_file(alice, approved):
    data = ticket_dataset(alice)
    by_time = _run(
        finetune_launch(
            actor=alice,
            base_version=approved,
            dataset_version=data,
            strategy="head",
            config={**FAST, "epochs": 1},
            split="time",
        )
    )
    assert by_time.job.status == Job.Status.SUCCEEDED, by_time.job.error

    test_file = ticket_dataset(alice, name="tickets-later", n_per_class=4, seed=7)
    separate = _run(
        finetune_launch(
            actor=alice,
            base_version=approved,
            dataset_version=data,
            strategy="head",
            config={**FAST, "epochs": 1},
            split="test_file",
            test_dataset_version=test_file,
        )
    )
    assert separate.job.status == Job.Status.SUCCEEDED, separate.job.error
    assert separate.metrics["n"] == 12
    assert separate.training["n_train"] + separate.training["n_val"] == 36


def test_a_stale_attempt_cannot_write(alice, approved):
    data = ticket_dataset(alice)
    run = finetune_launch(
        actor=alice, base_version=approved, dataset_version=data, strategy="head", config=FAST
    )
    first = job_claim(job_id=run.job_id, worker="w1", device="cpu")
    Job.objects.filter(pk=run.job_id).update(lease_expires_at=timezone.now() - timedelta(1))
    second = job_claim(job_id=run.job_id, worker="w2", device="cpu")
    assert (first, second) == (1, 2)
    stale = JobContext(job_id=run.job_id, attempt=first, params={}, requested_by_id=alice.pk)

    with pytest.raises(JobCancelled):
        finetune_services.finetune_curves_append(ctx=stale, run_id=run.pk, steps=[[1, 0.5]])
    with pytest.raises(JobCancelled):
        finetune_services.finetune_checkpoint_record(
            ctx=stale, run_id=run.pk, checkpoint={"name": "x", "epoch": 1}
        )
    with pytest.raises(JobCancelled):
        finetune_services.finetune_run_update(ctx=stale, run_id=run.pk, metrics={"accuracy": 1.0})
    with pytest.raises(JobCancelled):
        finetune_services.finetune_output_register(
            ctx=stale, run_id=run.pk, folder=None, title="t", summary="s"
        )

    run.refresh_from_db()
    assert run.curves == {}
    assert run.last_checkpoint == {}
    assert run.metrics == {}
    assert run.output_version is None


def test_jobs_whose_worker_stopped_reporting_go_back_to_the_queue(alice):
    from tests.factories import JobFactory

    past = timezone.now() - timedelta(minutes=1)
    stale = JobFactory(status="running", attempts=1, lease_expires_at=past, requested_by=alice)
    spent = JobFactory(status="running", attempts=3, lease_expires_at=past, requested_by=alice)
    live = JobFactory(
        status="running",
        attempts=1,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
        requested_by=alice,
    )

    assert job_requeue_stale() == [stale.pk]

    stale.refresh_from_db()
    spent.refresh_from_db()
    live.refresh_from_db()
    assert stale.status == Job.Status.QUEUED
    assert "Requeued" in stale.log
    assert spent.status == Job.Status.FAILED
    assert live.status == Job.Status.RUNNING
    assert AuditEvent.objects.filter(verb="job.requeue", target_id=str(stale.pk)).exists()
    # The requeued job is claimed as a new attempt.
    assert job_claim(job_id=stale.pk, worker="w2", device="cpu") == 2


def test_beat_runs_the_stale_job_recovery_at_the_configured_interval(settings):
    from jobs.models import PeriodicTaskRun
    from jobs.tasks import requeue_stale_jobs
    from portal.celery import app

    entry = app.conf.beat_schedule["requeue-stale-jobs"]
    assert entry == {"task": requeue_stale_jobs.name, "schedule": settings.REQUEUE_EVERY_S}
    assert requeue_stale_jobs() == {"requeued": []}
    run = PeriodicTaskRun.objects.get(name=requeue_stale_jobs.name)
    assert (run.runs, run.last_ok, run.last_result) == (1, True, {"requeued": []})


@pytest.mark.django_db(transaction=True)
def test_a_retried_attempt_resumes_from_the_last_checkpoint(alice, sam, tmp_path):
    """Attempt 1 loses its lease after a checkpoint; attempt 2 resumes from it, in-process."""
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    data = ticket_dataset(alice, n_per_class=50)
    run = finetune_launch(
        actor=alice,
        base_version=base,
        dataset_version=data,
        strategy="full",
        config={"epochs": 4, "batch_size": 4, "patience": 0},
    )
    outcome = {}

    def first_attempt() -> None:
        try:
            outcome["first"] = job_execute(job_id=run.job_id)
        finally:
            connection.close()  # the thread's own connection

    first = threading.Thread(target=first_attempt)
    first.start()
    deadline = time.monotonic() + 120
    while not FineTuneRun.objects.get(pk=run.pk).last_checkpoint and time.monotonic() < deadline:
        time.sleep(0.02)
    # The lease runs out (as if the worker hung) and the recovery task requeues the job.
    Job.objects.filter(pk=run.job_id).update(lease_expires_at=timezone.now() - timedelta(1))
    assert job_requeue_stale() == [run.job_id]
    first.join(120)
    assert outcome["first"] == "stale"
    resumed_from = FineTuneRun.objects.get(pk=run.pk).last_checkpoint["epoch"]
    assert 1 <= resumed_from < 4

    assert job_execute(job_id=run.job_id) == "succeeded"

    run = FineTuneRun.objects.select_related("job").get(pk=run.pk)
    assert run.job.attempts == 2
    assert f"Resuming from the checkpoint of epoch {resumed_from}" in run.job.log
    assert [e["epoch"] for e in run.curves["epochs"]] == [1, 2, 3, 4]
    assert run.training["resumed_from_epoch"] == resumed_from
    assert ModelVersion.objects.filter(parent=base).count() == 1


# --- pages and API --------------------------------------------------------------


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_form_prefills_defaults_and_launches(alice, approved):
    data = ticket_dataset(alice)
    client = _client(alice)
    page = client.get(f"/finetunes/new/?version={approved.pk}&dataset_version={data.pk}")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'<option value="{approved.pk}" selected>' in html
    assert f'<option value="{data.pk}" selected>' in html
    assert "Peak learning rate after warm-up" in html  # each field explains itself
    # The form opens on the measured recipe: full, the rate chosen on validation.
    assert re.search(r'<input type="radio" name="strategy" value="full"[^>]*checked', html)
    assert re.search(r'<input type="checkbox" name="lr_search"[^>]*checked', html)
    assert 'value="0.0001"' in html  # the centre of the search
    lora = client.get(f"/finetunes/new/?version={approved.pk}&strategy=lora").content.decode()
    assert 'value="query, value"' in lora
    assert 'value="0.001"' in lora

    form = {
        "base_version": approved.pk,
        "dataset_version": data.pk,
        "strategy": "head",
        "unfreeze_layers": 2,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.1,
        "lora_target_modules": "",
        "learning_rate": 0.001,
        "layer_decay": 1.0,
        "warmup_ratio": 0.1,
        "schedule": "linear",
        "epochs": 1,
        "batch_size": 8,
        "grad_accum": 1,
        "weight_decay": 0.01,
        "label_smoothing": 0.0,
        "max_length": 64,
        "patience": 0,
        "seed": 42,
        "split": "stratified",
        "test_fraction": 0.2,
        "val_fraction": 0.1,
    }
    refused = client.post("/finetunes/new/", {**form, "learning_rate": 3})
    assert refused.status_code == 200
    assert "Ensure this value is less than or equal to 1.0" in refused.content.decode()
    assert not FineTuneRun.objects.exists()

    response = client.post("/finetunes/new/", form)
    run = FineTuneRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/finetunes/{run.pk}/"
    assert run.config["epochs"] == 1
    assert run.config["max_length"] == 64
    assert run.config["lora_target_modules"] is None
    run = _run(run)
    assert run.job.status == Job.Status.SUCCEEDED, run.job.error

    page = client.get(f"/finetunes/{run.pk}/").content.decode()
    assert "finetune-chart-data" in page
    assert "Test results" in page
    assert "TF-IDF (word 1-2 grams) + logistic regression" in page
    assert "Linear head on the frozen base</th>" in page
    assert 'data-testid="frozen-verdict"' in page
    assert "in review" in page
    partial = client.get(f"/finetunes/{run.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in partial
    assert "hx-trigger" not in partial  # finished: the page stops polling
    assert f"#{run.pk}" in client.get("/finetunes/").content.decode()
    new = run.output_version
    model_page = client.get(f"/catalogue/{new.model.repo_id}/").content.decode()
    assert "In review." in model_page


def test_pages_refuse_others(alice, bob, approved):
    data = ticket_dataset(alice)
    run = finetune_launch(
        actor=alice, base_version=approved, dataset_version=data, strategy="head", config=FAST
    )
    assert _client(bob).get("/finetunes/new/").status_code == 403
    assert AuditEvent.objects.filter(verb="access.refused", actor=bob).exists()
    assert _client(bob).get(f"/finetunes/{run.pk}/").status_code == 404
    assert _client(bob).post(f"/finetunes/{run.pk}/cancel/").status_code == 404
    assert f"#{run.pk}" not in _client(bob).get("/finetunes/").content.decode()

    assert _client(alice).post(f"/finetunes/{run.pk}/cancel/").status_code == 302
    run.job.refresh_from_db()
    assert run.job.status == Job.Status.CANCELLED


def test_fine_tune_links_appear_only_for_who_may_fine_tune(alice, bob, approved):
    from jobs.services.probes import probe_launch

    assert (
        "/finetunes/new/?version="
        in _client(alice).get("/catalogue/acme/tiny-bert/").content.decode()
    )
    assert (
        "/finetunes/new/?version="
        not in _client(bob).get("/catalogue/acme/tiny-bert/").content.decode()
    )
    data = ticket_dataset(alice)
    probe = probe_launch(actor=alice, dataset_version=data, versions=[approved], max_examples=30)
    assert job_execute(job_id=probe.job_id) == "succeeded"
    page = _client(alice).get(f"/probes/{probe.pk}/").content.decode()
    assert f"/finetunes/new/?version={approved.pk}&amp;dataset_version={data.pk}" in page


def test_finetune_api_launch_read_refuse_and_cancel(alice, bob, approved):
    data = ticket_dataset(alice)
    api = APIClient()
    api.force_authenticate(alice)
    created = api.post(
        "/api/finetunes/",
        {
            "base_version": approved.pk,
            "dataset_version": data.pk,
            "strategy": "lora",
            "epochs": 1,
            "lora_r": 4,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "queued"
    assert body["config"]["lora_r"] == 4
    assert body["config"]["learning_rate"] == 1e-3  # the LoRA default
    assert body["base_repo_id"] == "acme/tiny-bert"
    assert api.get("/api/finetunes/").json()["results"][0]["id"] == body["id"]

    bad = api.post(
        "/api/finetunes/",
        {
            "base_version": approved.pk,
            "dataset_version": data.pk,
            "strategy": "head",
            "learning_rate": 7,
        },
        format="json",
    )
    assert bad.status_code == 400
    assert "learning_rate" in bad.json()["detail"]

    other = APIClient()
    other.force_authenticate(bob)
    assert other.get(f"/api/finetunes/{body['id']}/").status_code == 404
    hidden = other.post(
        "/api/finetunes/",
        {"base_version": approved.pk, "dataset_version": data.pk, "strategy": "head"},
        format="json",
    )
    assert hidden.status_code == 404  # bob may not even see alice's dataset
    refused = other.post(
        "/api/finetunes/",
        {
            "base_version": approved.pk,
            "dataset_version": ticket_dataset(bob, name="bobs").pk,
            "strategy": "head",
        },
        format="json",
    )
    assert refused.status_code == 403
    assert refused.json()["detail"] == "Only members of ml-engineers may launch fine-tunes."
    assert AuditEvent.objects.filter(verb="access.refused", actor=bob).exists()
    assert FineTuneRun.objects.count() == 1

    cancelled = api.post(f"/api/finetunes/{body['id']}/cancel/")
    assert cancelled.json()["status"] == "cancelled"
    assert job_execute(job_id=body["job"]) == "skipped"


def test_list_page_and_endpoint_stay_within_a_query_budget(
    alice, approved, django_assert_max_num_queries
):
    data = ticket_dataset(alice)
    for _ in range(4):
        finetune_launch(
            actor=alice, base_version=approved, dataset_version=data, strategy="head", config=FAST
        )
    client = _client(alice)
    api = APIClient()
    api.force_authenticate(alice)

    with django_assert_max_num_queries(10):
        assert client.get("/finetunes/").status_code == 200
    with django_assert_max_num_queries(8):
        assert len(api.get("/api/finetunes/").json()["results"]) == 4


def test_an_image_dataset_is_fine_tuned_on_a_vision_backbone(alice, sam, tmp_path):
    from tests.builders.catalogue import import_model
    from tests.builders.weights import tiny_vit_folder

    vit = import_model(tiny_vit_folder(tmp_path / "vit"), "acme/vit", actor=sam, modality="vision")
    approve_reuse(alice, vit)
    staged = dataset_services.dataset_stage_upload(
        actor=alice, upload=upload("pets.zip", image_zip_bytes({"cat": 10, "dog": 10}))
    )
    pets, _ = dataset_services.dataset_create(
        actor=alice, staged=staged, name="pets", sensitivity="internal"
    )

    run = _run(
        finetune_launch(
            actor=alice, base_version=vit, dataset_version=pets, strategy="head", config=FAST
        )
    )

    assert run.job.status == Job.Status.SUCCEEDED, run.job.error
    assert run.baseline["method"] == "logistic regression on downscaled pixels"
    assert run.metrics["n"] == 4
    files = {a.path: a for a in run.output_version.artifacts.all()}
    card = ModelCard(_stored_text(files["README.md"]))
    assert card.data.pipeline_tag == "image-classification"
    assert run.output_version.model.modality == "vision"


def test_data_that_cannot_be_split_as_asked_fails_the_job_with_the_reason(alice, approved):
    from tests.builders.datasets import csv_bytes

    rows = [
        {"message": f"early {label} message {i}", "label": label, "created": f"2024-01-{i + 1:02d}"}
        for label in ("billing", "login")
        for i in range(10)
    ] + [
        {
            "message": f"late outage message {i}",
            "label": "outage",
            "created": f"2025-06-{i + 1:02d}",
        }
        for i in range(3)
    ]
    staged = dataset_services.dataset_stage_upload(
        actor=alice, upload=upload("late.csv", csv_bytes(rows))
    )
    late, _ = dataset_services.dataset_create(
        actor=alice,
        staged=staged,
        name="late",
        sensitivity="internal",
        text_column="message",
        label_column="label",
        time_column="created",
    )

    run = _run(
        finetune_launch(
            actor=alice,
            base_version=approved,
            dataset_version=late,
            strategy="head",
            config=FAST,
            split="time",
        )
    )

    assert run.job.status == Job.Status.FAILED
    assert run.job.error.startswith("The data cannot be split as asked: 1 class(es) occur only")
    assert "'outage'" in run.job.error
    assert run.output_version is None
