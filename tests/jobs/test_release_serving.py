"""The serving (ONNX) and inconsistency release checks, on tiny BERTs fine-tuned here.

The serving check runs on a real Celery worker, registers its checked ONNX
files as a new version through the importer (hashed, scanned, audited), and
also checks a base model, queued from the fine-tune form. The inconsistency
check compares a fine-tune with its retrain; its counts are recomputed here.
"""

from __future__ import annotations

import numpy as np
import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient

from governance.models import AuditEvent
from jobs.engine import job_execute
from jobs.ml.finetune import predict_proba
from jobs.models import FineTuneRun, Job
from jobs.services.finetunes import finetune_launch
from jobs.services.release_checks import release_check_launch
from jobs.workers.finetunes import split_of
from portal.errors import Forbidden, PortalError
from tests.builders.catalogue import base_model
from tests.builders.datasets import spam_rows, text_dataset, ticket_dataset
from tests.builders.governance import approve_reuse
from tests.builders.release_checks import finetune_here
from tests.builders.release_checks import wait_for_check as _wait
from tests.jobs.test_release_checks import ONE_EPOCH, _finetune
from zoo.models import Artifact, ModelVersion, ReleaseCheck
from zoo.storage import materialize_version


def _retrain(alice, base, data, **config) -> FineTuneRun:
    return finetune_here(alice, base, data, strategy="full", config={**ONE_EPOCH, **config})


@pytest.mark.integration
def test_serving_check_on_a_worker_registers_the_checked_onnx_as_a_new_version(
    celery_worker, alice, sam, tmp_path
):
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    run = _finetune(alice, base, text_dataset(alice, name="sms", rows=spam_rows(4)))
    version = run.output_version
    files_before = sorted(version.artifacts.values_list("path", flat=True))

    with transaction.atomic():
        check = release_check_launch(
            actor=alice, version=version, kind="serving", params={"register": True, "calls": 10}
        )
    check = _wait(check)

    assert check.status == ReleaseCheck.Status.PASSED, check.error
    result = check.result
    ort = result["compared"]["onnxruntime"]
    assert check.measure == ort["max_abs_prob_diff"]
    assert ort["max_abs_prob_diff"] < 1e-4
    assert ort["label_agreement"] == 1.0
    assert result["n"] == run.training["n_test"]
    assert result["sizes"]["onnxruntime_int8"] < result["sizes"]["onnxruntime"]
    # The test accuracy PyTorch scores here is the one the fine-tune recorded.
    assert result["compared"]["pytorch"]["accuracy"] == pytest.approx(
        run.metrics["accuracy"], abs=1e-9
    )
    assert result["latency"]["onnxruntime"]["batch_32"]["calls"] == 3
    assert "Not measured" in check.summary
    assert "int8" in check.summary
    print(check.summary)

    # The checked files became a new version of the same model, through the importer.
    registered = result["registered"]
    made = ModelVersion.objects.get(pk=registered["version_id"])
    assert made.model_id == version.model_id
    assert made.parent_id == version.pk
    assert made.source == ModelVersion.Source.CONVERSION
    assert made.provenance["converted_from"]["version"] == version.pk
    onnx_files = {a.path: a for a in made.artifacts.all() if a.path.endswith(".onnx")}
    assert sorted(onnx_files) == ["model.int8.onnx", "model.onnx"]
    assert {a.format for a in onnx_files.values()} == {Artifact.Format.ONNX}
    assert all(len(a.sha256) == 64 for a in onnx_files.values())
    assert not made.is_blocked
    assert sorted(a.path for a in made.artifacts.all() if not a.path.endswith(".onnx")) == (
        files_before
    )
    assert AuditEvent.objects.filter(verb="version.import", target_id=str(made.pk)).count() == 1
    # The new version is no base and has no fine-tune of its own: not checked again as a base.
    with pytest.raises(PortalError, match="neither a base model nor made by a fine-tune"):
        release_check_launch(actor=sam, version=made, kind="serving")
    # The stored model.onnx is the checked one: ONNX Runtime on it gives the fine-tune's labels.
    import onnxruntime as ort_runtime

    from jobs.ml import serving

    folder = materialize_version(made, settings.MODEL_CACHE_DIR)
    session = ort_runtime.InferenceSession(str(folder / "model.onnx"))
    texts = ["WINNER! claim your free prize now", "see you at lunch tomorrow"]
    exported = serving.export_classifier(folder, "text", texts, tmp_path / "again.onnx")
    batch = exported.make_batch(np.arange(2))
    stored = serving.softmax(session.run(None, batch)[0])
    assert np.max(np.abs(stored - predict_proba(folder, "text", texts))) < 1e-4

    # Card and page.
    version.refresh_from_db()
    assert "### Serving compatibility (ONNX): passed" in version.card_markdown
    assert "| ONNX Runtime (int8 dynamic) |" in version.card_markdown
    client = Client()
    client.force_login(alice)
    page = client.get(version.get_absolute_url()).content.decode()
    assert 'data-testid="release-check-serving"' in page
    assert 'data-testid="serving-registered"' in page
    assert 'data-testid="run-serving"' in page
    assert 'data-testid="run-inconsistency"' in page


@pytest.mark.django_db
def test_the_base_is_checked_from_the_fine_tune_form_and_base_settings_are_refused(
    alice, bob, sam, tmp_path
):
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    data = ticket_dataset(alice)
    client = Client()
    client.force_login(alice)
    page = client.get(f"/finetunes/new/?version={base.pk}").content.decode()
    assert "Check the base exports to ONNX first" in page
    # The base's page offers the serving check to alice, who may fine-tune it, not to bob.
    page = client.get(base.get_absolute_url()).content.decode()
    assert 'data-testid="run-serving"' in page
    assert 'name="register"' not in page  # a base's export is checked, not stored
    assert 'data-testid="run-inconsistency"' not in page
    onlooker = Client()
    onlooker.force_login(bob)
    assert 'data-testid="run-serving"' not in onlooker.get(base.get_absolute_url()).content.decode()

    answer = client.post(
        "/finetunes/new/",
        {
            "base_version": base.pk,
            "dataset_version": data.pk,
            "strategy": "head",
            "split": "stratified",
            "test_fraction": 0.2,
            "val_fraction": 0.1,
            "check_base_serving": "on",
            **{k: v for k, v in ONE_EPOCH.items() if k != "lr_search"},
        },
        follow=True,
    )
    assert answer.status_code == 200, answer.content.decode()[:2000]
    assert "serving check runs as job" in answer.content.decode()
    check = ReleaseCheck.objects.get(version=base, kind="serving")
    assert check.requested_by == alice
    assert Job.objects.get(pk=check.job_id).params["run_id"] is None
    assert FineTuneRun.objects.filter(base_version=base).count() == 1

    assert job_execute(job_id=check.job_id) == "succeeded"
    check.refresh_from_db()
    assert check.status == ReleaseCheck.Status.PASSED, check.error
    assert check.result["base"] is True
    assert check.result["n"] == 300  # the probes' reference sentences
    assert check.measure == check.result["max_abs_hidden_diff"] < 1e-4
    assert "no classification head" in check.summary
    base.refresh_from_db()
    assert "### Serving compatibility (ONNX): passed" in base.card_markdown

    # A second fine-tune with the box ticked while one check is queued reuses it.
    again = release_check_launch(actor=sam, version=base, kind="serving")
    run = finetune_launch(
        actor=alice,
        base_version=base,
        dataset_version=data,
        strategy="head",
        config=ONE_EPOCH,
        check_base_serving=True,
    )
    assert run.base_serving_check.pk == again.pk
    # The API takes the same flag (and reuses the queued check too).
    api = APIClient()
    api.force_authenticate(alice)
    created = api.post(
        "/api/finetunes/",
        {
            "base_version": base.pk,
            "dataset_version": data.pk,
            "strategy": "head",
            "epochs": 1,
            "check_base_serving": True,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert ReleaseCheck.objects.filter(version=base, kind="serving").count() == 2

    # Base settings that make no sense are refused, writing nothing.
    checks_before, jobs_before = ReleaseCheck.objects.count(), Job.objects.count()
    with pytest.raises(PortalError, match="offered for fine-tunes"):
        release_check_launch(actor=sam, version=base, kind="serving", params={"register": True})
    with pytest.raises(PortalError, match="calls must be a number from 5 to 500"):
        release_check_launch(actor=sam, version=base, kind="serving", params={"calls": 1})
    with pytest.raises(PortalError, match="was not made by a fine-tune"):
        release_check_launch(
            actor=sam, version=base, kind="inconsistency", params={"other_version": "v1"}
        )
    # bob may not fine-tune the base, so he may not check it either.
    with pytest.raises(Forbidden):
        release_check_launch(actor=bob, version=base, kind="serving")
    assert ReleaseCheck.objects.count() == checks_before
    assert Job.objects.count() == jobs_before


@pytest.mark.django_db
def test_inconsistency_between_a_fine_tune_and_its_retrain_is_counted_on_its_test_rows(
    alice, sam, tmp_path
):
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    data = ticket_dataset(alice)
    first = _retrain(alice, base, data, learning_rate=1e-3)
    second = _retrain(alice, base, data, learning_rate=5e-3)
    version, other = second.output_version, first.output_version

    check = release_check_launch(
        actor=alice, version=version, kind="inconsistency", params={"other_version": other.pk}
    )
    assert check.params == {
        "other_version": other.pk,
        "other_label": f"{other.model.repo_id} {other.label}",
    }
    assert job_execute(job_id=check.job_id) == "succeeded"
    check.refresh_from_db()

    # Recompute directly: the second run's own test split, both versions' probabilities.
    split = split_of(second, tmp_path / "split")
    texts, y = list(split.test[0]), split.test[1]
    mine = predict_proba(materialize_version(version, settings.MODEL_CACHE_DIR), "text", texts)
    theirs = predict_proba(materialize_version(other, settings.MODEL_CACHE_DIR), "text", texts)
    a, b = theirs.argmax(1), mine.argmax(1)
    result = check.result
    assert result["n"] == len(texts) == second.training["n_test"]
    assert result["n_changed"] == int(np.sum(a != b))
    assert check.measure == pytest.approx(np.mean(a != b))
    assert result["accuracy_new"] == pytest.approx(np.mean(b == y))
    assert result["accuracy_old"] == pytest.approx(np.mean(a == y))
    assert result["accuracy_new"] == pytest.approx(second.metrics["accuracy"])
    assert np.array(result["confusion"]).sum() == len(texts)
    assert len(result["changes"]) == min(20, result["n_changed"])
    for change in result["changes"]:
        assert change["text"] == texts[change["index"]]
        assert change["old"] != change["new"]
    assert "production inputs" in check.summary
    print(check.summary, result["confusion"], sep="\n")
    assert check.passed == (check.measure <= check.threshold)
    version.refresh_from_db()
    assert "### Inconsistency with another version:" in version.card_markdown

    # Against itself, another model, another set of classes, or nothing: refused, nothing written.
    stranger = base_model(tmp_path / "bert2", "acme/other-bert", steward=sam, seed=1)
    approve_reuse(alice, stranger)
    elsewhere = _retrain(alice, stranger, data).output_version
    spam = _retrain(alice, base, text_dataset(alice, name="sms", rows=spam_rows(4)))
    checks_before, jobs_before = ReleaseCheck.objects.count(), Job.objects.count()
    events_before = AuditEvent.objects.count()
    cases = [
        ({}, "Choose the other version"),
        ({"other_version": version.pk}, "this version itself"),
        ({"other_version": version.label}, "this version itself"),
        ({"other_version": 999999}, "No version '999999'"),
        ({"other_version": "v9"}, "No version 'v9'"),
        ({"other_version": elsewhere.pk}, "is another model"),
        ({"other_version": spam.output_version.pk}, "is another model"),
        ({"other_version": other.pk, "colour": 1}, "Unknown setting 'colour'"),
    ]
    for params, message in cases:
        with pytest.raises(PortalError, match=message):
            release_check_launch(actor=alice, version=version, kind="inconsistency", params=params)
    # A retrain on the same dataset whose labels differ cannot be compared: other classes.
    FineTuneRun.objects.filter(pk=first.pk).update(
        training={**first.training, "classes": ["a", "b", "c"]}
    )
    with pytest.raises(PortalError, match="predicts other classes"):
        release_check_launch(
            actor=alice, version=version, kind="inconsistency", params={"other_version": other.pk}
        )
    assert ReleaseCheck.objects.count() == checks_before
    assert Job.objects.count() == jobs_before
    assert AuditEvent.objects.count() == events_before

    # Through the page: a clear message, nothing queued.
    client = Client()
    client.force_login(alice)
    bad = client.post(
        f"/jobs/release-checks/version/{version.pk}/",
        {"kind": "inconsistency", "other_version": str(elsewhere.pk)},
        follow=True,
    )
    assert "is another model" in bad.content.decode()
    bad = client.post(
        f"/jobs/release-checks/version/{version.pk}/",
        {"kind": "serving", "calls": "many"},
        follow=True,
    )
    assert "calls must be a number" in bad.content.decode()
    assert ReleaseCheck.objects.count() == checks_before


@pytest.mark.integration
def test_a_base_image_backbone_is_checked_on_a_worker_with_int8_beside_fp32(
    celery_worker, alice, bob, sam, tmp_path
):
    from tests.builders.catalogue import import_model
    from tests.builders.weights import tiny_vit_folder

    # Given a tiny ViT base that alice may fine-tune (and so check)...
    vit = import_model(tiny_vit_folder(tmp_path / "vit"), "acme/vit", actor=sam, modality="vision")
    approve_reuse(alice, vit)
    client = Client()
    client.force_login(alice)
    assert 'data-testid="run-serving"' in client.get(vit.get_absolute_url()).content.decode()

    # ...when she runs its serving check on a real worker...
    with transaction.atomic():
        check = release_check_launch(actor=alice, version=vit, kind="serving", params={"calls": 5})
    check = _wait(check)

    # ...then the backbone's pooled features agree on the probes' 64 reference crops.
    assert check.status == ReleaseCheck.Status.PASSED, check.error
    result = check.result
    assert result["base"] is True
    assert result["modality"] == "vision"
    assert result["n"] == 64
    assert result["dim"] == 32
    assert check.measure == result["max_abs_hidden_diff"] < 1e-4
    assert result["sizes"]["onnxruntime_int8"] < result["sizes"]["onnxruntime"]
    for runtime in ("pytorch", "onnxruntime", "onnxruntime_int8"):
        assert result["latency"][runtime]["batch_1"]["calls"] == 5
        assert result["latency"][runtime]["batch_32"]["batch"] == 32
    assert "int8 dynamic quantisation" in check.summary
    assert "reference crops" in check.summary
    assert "Not measured" in check.summary
    print(check.summary)
    vit.refresh_from_db()
    assert "### Serving compatibility (ONNX): passed" in vit.card_markdown
    assert "| ONNX Runtime (int8 dynamic) |" in vit.card_markdown
    # bob may not fine-tune the base, so he may not check it either.
    with pytest.raises(Forbidden):
        release_check_launch(actor=bob, version=vit, kind="serving")


def test_an_int8_copy_whose_features_turn_away_is_called_unfit_to_serve():
    from jobs.workers.release_checks import _int8_words

    # EfficientNet-Lite0's int8 copy measured 0.49 (bench/release_checks_vision.py).
    assert "too far to serve as it is" in _int8_words(0.49)
    assert _int8_words(0.9997) == ""
