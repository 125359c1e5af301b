"""Release checks: launched as jobs on a real Celery worker, stored with the version, shown on
its page and in its card, and required by policy before publishing or a use type.

Every check runs for real on a tiny BERT fine-tuned here for one epoch.
"""

from __future__ import annotations

import time

import pytest
from django.db import transaction
from django.test import Client

from governance.models import AuditEvent
from governance.services.policy import policy_evaluate
from jobs.engine import job_execute
from jobs.ml.leakage import normalise_text
from jobs.models import FineTuneRun, Job
from jobs.services.finetunes import finetune_launch
from jobs.services.release_checks import release_check_launch
from portal.errors import Forbidden, NotFound, PortalError
from tests.builders.catalogue import base_model
from tests.builders.datasets import spam_rows, text_dataset, ticket_dataset
from tests.builders.governance import approve_reuse
from tests.builders.release_checks import finetune_here
from tests.builders.release_checks import wait_for_check as _wait
from tests.factories import UserFactory
from zoo.models import CatalogModel, ReleaseCheck, ReleaseCheckRule
from zoo.services import catalogue as catalogue_services
from zoo.services.release_checks import release_check_rule_save

ONE_EPOCH = {"epochs": 1, "batch_size": 8, "patience": 0, "lr_search": False}


def _planted_rows() -> list[dict[str, str]]:
    """SMS spam and ham, half of them repeated SHOUTED!!! (a duplicate once normalised)."""
    rows = spam_rows(4)
    planted = [
        {**row, "message": row["message"].upper().replace("#", "") + " !!!"} for row in rows[::2]
    ]
    return rows + planted


def _finetune(alice, base, data) -> FineTuneRun:
    return finetune_here(alice, base, data, strategy="head", config=ONE_EPOCH)


@pytest.fixture
def people(transactional_db, alice, sam, admin_user):
    return alice, sam, admin_user


@pytest.fixture
def spam_finetune(people, tmp_path):
    """alice's one-epoch head-only fine-tune of a tiny BERT on SMS spam with planted twins."""
    alice, sam, _ = people
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    data = text_dataset(alice, name="sms", rows=_planted_rows())
    return _finetune(alice, base, data)


@pytest.mark.integration
def test_checks_run_on_a_worker_show_on_the_page_and_card_and_gate_publishing(
    celery_worker, people, spam_finetune
):
    alice, sam, admin = people
    version = spam_finetune.output_version
    model = version.model
    release_check_rule_save(
        actor=admin,
        rule=ReleaseCheckRule(kind="calibration", threshold=1.0, reason="Reviewers read it."),
    )
    release_check_rule_save(actor=admin, rule=ReleaseCheckRule(kind="leakage", threshold=1.0))
    assert AuditEvent.objects.filter(verb="release_check_rule.create").count() == 2

    # Given required checks that have not run, publishing is refused, naming them.
    with pytest.raises(PortalError, match=r"calibration and decision threshold \(not run\)") as err:
        catalogue_services.catalog_model_set_status(model=model, status="available", actor=sam)
    assert "train/test leakage (not run)" in err.value.message
    model.refresh_from_db()
    assert model.status == CatalogModel.Status.DRAFT
    steward = Client()
    steward.force_login(sam)
    page = steward.get(version.get_absolute_url()).content.decode()
    assert 'data-testid="release-checks-unpassed"' in page
    assert "calibration and decision threshold (not run)" in page

    # When alice (who made the fine-tune) runs both checks on a real worker...
    began = time.perf_counter()
    with transaction.atomic():
        calibration = release_check_launch(
            actor=alice,
            version=version,
            kind="calibration",
            params={"target": "recall", "target_value": 0.95, "positive_class": "spam"},
        )
    calibration = _wait(calibration)
    calibration_seconds = time.perf_counter() - began
    began = time.perf_counter()
    with transaction.atomic():
        leakage = release_check_launch(actor=alice, version=version, kind="leakage")
    leakage = _wait(leakage)
    leakage_seconds = time.perf_counter() - began
    began = time.perf_counter()
    with transaction.atomic():
        forgetting = release_check_launch(actor=alice, version=version, kind="forgetting")
    forgetting = _wait(forgetting)
    forgetting_seconds = time.perf_counter() - began
    print(
        f"\ncalibration {calibration_seconds:.1f} s, leakage {leakage_seconds:.1f} s, "
        f"forgetting {forgetting_seconds:.1f} s end to end"
    )

    # ...a head-only fine-tune left the encoder as it was: CKA 1 at every layer.
    assert forgetting.status == ReleaseCheck.Status.PASSED, forgetting.error
    layers = forgetting.result["layers"]
    assert len(layers) == 3  # embeddings and the tiny BERT's two layers
    assert all(row["cka"] == pytest.approx(1.0, abs=1e-6) for row in layers)
    assert forgetting.result["knn_agreement"] == pytest.approx(1.0)
    assert forgetting.result["n"] == 300

    # ...the calibration is stored with its temperature, ECE before/after and threshold.
    assert calibration.status == ReleaseCheck.Status.PASSED, calibration.error
    result = calibration.result
    assert result["n_val"] == spam_finetune.training["n_val"]
    assert result["n_test"] == spam_finetune.training["n_test"]
    assert result["temperature"] > 0
    assert calibration.measure == pytest.approx(result["test_after"]["ece"])
    assert result["test_before"]["ece"] == pytest.approx(spam_finetune.metrics["ece"], abs=1e-6)
    decision = result["decision"]
    assert decision["positive_class"] == "spam"
    assert 0 <= decision["threshold"] <= 1
    assert decision["validation"]["reached"]
    assert decision["validation"]["recall"] >= 0.95
    assert "validation rows" in calibration.summary
    assert "Not measured" in calibration.summary

    # ...the leakage check finds the planted twins and re-scores without them.
    assert leakage.status == ReleaseCheck.Status.PASSED, leakage.error  # threshold 1.0
    found = leakage.result
    assert found["n_exact"] >= 1
    exact = [ex for ex in found["examples"] if ex["how"] == "exact"]
    assert exact
    assert all(normalise_text(ex["test_text"]) == normalise_text(ex["train_text"]) for ex in exact)
    assert found["all"]["n"] == spam_finetune.training["n_test"]
    if found["clean"]:
        assert found["clean"]["n"] == found["n_test"] - found["n_duplicates"]
    assert leakage.measure == pytest.approx(found["n_duplicates"] / found["n_test"])

    print(calibration.summary, leakage.summary, sep="\n")

    # The card holds a Release checks section, as a new card revision by the system.
    version.refresh_from_db()
    assert "## Release checks" in version.card_markdown
    assert "TEMPERATURE = " in version.card_markdown
    assert "THRESHOLD = " in version.card_markdown
    assert "### Train/test leakage: passed" in version.card_markdown
    assert "| layer 2 | 1.0000 |" in version.card_markdown
    assert version.card_markdown.count("## Release checks") == 1
    revisions = list(version.card_revisions.order_by("number"))
    assert [r.number for r in revisions] == [1, 2, 3, 4]
    assert revisions[-1].author is None
    assert "without the" in version.card_markdown or not found["clean"]
    print(version.card_markdown.split("## Release checks", 1)[1])

    # The version page shows both to its maker, texts of the duplicates included.
    client = Client()
    client.force_login(alice)
    page = client.get(version.get_absolute_url()).content.decode()
    assert 'data-testid="release-checks"' in page
    assert 'data-testid="release-check-calibration"' in page
    assert 'data-testid="release-check-leakage"' in page
    assert "Duplicated rows" in page
    assert f"job #{calibration.job_id}" in page
    assert 'data-testid="cka-chart"' in page

    page = steward.get(version.get_absolute_url()).content.decode()
    assert 'data-testid="release-checks-unpassed"' not in page

    # Then publishing goes ahead, and a stricter rule judges the stored result again.
    catalogue_services.catalog_model_set_status(model=model, status="available", actor=sam)
    model.refresh_from_db()
    assert model.status == CatalogModel.Status.AVAILABLE
    verbs = list(AuditEvent.objects.values_list("verb", flat=True))
    assert verbs.count("release_check.launch") == 3
    assert verbs.count("release_check.finish") == 3


@pytest.mark.django_db
def test_a_use_type_rule_refuses_reuse_until_its_check_has_passed(alice, sam, admin_user, tmp_path):
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    run = _finetune(alice, base, ticket_dataset(alice))
    version = run.output_version
    release_check_rule_save(
        actor=admin_user, rule=ReleaseCheckRule(kind="leakage", use_types=["commercial"])
    )
    refused = policy_evaluate(version=version, use_type="commercial", sensitivity="internal")
    assert refused.refused
    assert "Release checks required for commercial use" in refused.explanation
    assert "train/test leakage (not run)" in refused.explanation
    # Research is not covered by the rule.
    assert not policy_evaluate(version=version, use_type="research", sensitivity="internal").refused

    check = release_check_launch(
        actor=alice, version=version, kind="leakage", params={"threshold": 1.0}
    )
    assert job_execute(job_id=check.job_id) == "succeeded"
    check.refresh_from_db()
    assert check.status == ReleaseCheck.Status.PASSED
    # The rule's own threshold (the default, 0: no duplicate at all) judges the stored result.
    outcome = policy_evaluate(version=version, use_type="commercial", sensitivity="internal")
    assert outcome.refused == (check.measure > 0)


@pytest.mark.django_db
def test_who_may_run_checks_and_bad_settings_change_nothing(alice, bob, sam, tmp_path):
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    run = _finetune(alice, base, ticket_dataset(alice))
    version = run.output_version
    carol = UserFactory(username="carol", roles=["ml-engineers"])
    jobs_before = Job.objects.count()

    # Someone who cannot see the draft is told it does not exist.
    with pytest.raises(NotFound):
        release_check_launch(actor=carol, version=version, kind="calibration")
    # Published, bob sees it but may not run its checks.
    catalogue_services.catalog_model_set_status(model=version.model, status="available", actor=sam)
    with pytest.raises(Forbidden, match="Only stewards, the person who made this fine-tune"):
        release_check_launch(actor=bob, version=version, kind="calibration")
    cases = [
        ({"kind": "fairness"}, "Unknown release check"),
        ({"kind": "calibration", "params": {"target": "recall"}}, "is for two classes"),
        ({"kind": "calibration", "params": {"colour": 1}}, "Unknown setting 'colour'"),
        ({"kind": "leakage", "params": {"cosine_threshold": 2}}, "cosine_threshold must be"),
        ({"kind": "leakage", "params": {"threshold": "x"}}, "threshold must be a number"),
    ]
    for args, message in cases:
        with pytest.raises(PortalError, match=message):
            release_check_launch(actor=alice, version=version, **args)
    with pytest.raises(PortalError, match="was not made by a fine-tune in the portal"):
        release_check_launch(actor=sam, version=base, kind="leakage")
    with pytest.raises(Forbidden):
        release_check_rule_save(actor=alice, rule=ReleaseCheckRule(kind="leakage"))
    with pytest.raises(PortalError, match="Unknown use type 'space'"):
        release_check_rule_save(
            actor=UserFactory(username="root2", is_staff=True),
            rule=ReleaseCheckRule(kind="leakage", use_types=["space"]),
        )
    assert ReleaseCheck.objects.count() == 0
    assert ReleaseCheckRule.objects.count() == 0
    assert Job.objects.count() == jobs_before
    assert not AuditEvent.objects.filter(verb="release_check.launch").exists()

    # A steward may; the page offers the forms to stewards and not to bob.
    check = release_check_launch(actor=sam, version=version, kind="calibration")
    assert check.requested_by == sam
    assert check.threshold == ReleaseCheck.DEFAULT_THRESHOLDS["calibration"]
    with pytest.raises(PortalError, match="already queued or running"):
        release_check_launch(actor=alice, version=version, kind="calibration")
    # A job that gave up without writing back does not hold the check forever.
    Job.objects.filter(pk=check.job_id).update(status=Job.Status.FAILED)
    again = release_check_launch(actor=alice, version=version, kind="calibration")
    check.refresh_from_db()
    assert check.status == ReleaseCheck.Status.ERROR
    assert "ended without a result" in check.error
    assert again.status == ReleaseCheck.Status.QUEUED
    client = Client()
    client.force_login(bob)
    assert (
        'data-testid="run-calibration"'
        not in client.get(version.get_absolute_url()).content.decode()
    )
    client.force_login(sam)
    assert (
        'data-testid="run-calibration"' in client.get(version.get_absolute_url()).content.decode()
    )


@pytest.mark.django_db
def test_a_failed_check_keeps_publishing_refused_and_one_that_cannot_run_counts_for_nothing(
    alice, bob, sam, admin_user, tmp_path
):
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    version = _finetune(alice, base, text_dataset(alice, name="sms", rows=_planted_rows()))
    version = version.output_version
    release_check_rule_save(actor=admin_user, rule=ReleaseCheckRule(kind="leakage"))

    # Launched from the page by its maker; the planted twins fail the default (no duplicate).
    client = Client()
    client.force_login(alice)
    answer = client.post(f"/jobs/release-checks/version/{version.pk}/", {"kind": "leakage"})
    assert answer.status_code == 302
    assert answer["Location"].endswith("#release-checks")
    check = ReleaseCheck.objects.get(version=version)
    assert job_execute(job_id=check.job_id) == "succeeded"
    check.refresh_from_db()
    assert check.status == ReleaseCheck.Status.FAILED
    assert check.passed is False
    assert check.measure > 0
    with pytest.raises(PortalError, match=r"train/test leakage \(share of test rows .* needs at"):
        catalogue_services.catalog_model_set_status(
            model=version.model, status="available", actor=sam
        )
    version.refresh_from_db()
    assert "### Train/test leakage: failed" in version.card_markdown
    card_before = version.card_markdown

    # A check whose version is blocked by then cannot run: recorded so, the card unchanged.
    calibration = release_check_launch(actor=alice, version=version, kind="calibration")
    type(version).objects.filter(pk=version.pk).update(
        status="blocked", block_reasons=["Recalled in a test."]
    )
    assert job_execute(job_id=calibration.job_id) == "failed"
    calibration.refresh_from_db()
    assert calibration.status == ReleaseCheck.Status.ERROR
    assert "blocked" in calibration.error
    assert not calibration.passes(1.0)
    version.refresh_from_db()
    assert version.card_markdown == card_before
    assert "blocked" in Job.objects.get(pk=calibration.job_id).error

    # Someone who may see the version but not run its checks is refused, and it is audited.
    type(version).objects.filter(pk=version.pk).update(status="available", block_reasons=[])
    type(version.model).objects.filter(pk=version.model_id).update(status="available")
    client.force_login(bob)
    refused = client.post(f"/jobs/release-checks/version/{version.pk}/", {"kind": "leakage"})
    assert refused.status_code == 403
    assert AuditEvent.objects.filter(verb="access.refused", actor=bob).exists()
    assert ReleaseCheck.objects.filter(version=version).count() == 2
    # Bad input through the page: a message, nothing queued.
    client.force_login(alice)
    bad = client.post(
        f"/jobs/release-checks/version/{version.pk}/",
        {"kind": "leakage", "cosine_threshold": "lots"},
        follow=True,
    )
    assert "cosine_threshold must be a number" in bad.content.decode()
    assert ReleaseCheck.objects.filter(version=version).count() == 2


@pytest.mark.django_db
def test_forgetting_sees_the_layers_a_partial_fine_tune_moved(alice, sam, tmp_path):
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    run = finetune_launch(
        actor=alice,
        base_version=base,
        dataset_version=ticket_dataset(alice),
        strategy="partial",
        config={**ONE_EPOCH, "unfreeze_layers": 1, "learning_rate": 5e-3},
    )
    assert job_execute(job_id=run.job_id) == "succeeded"
    version = FineTuneRun.objects.get(pk=run.pk).output_version
    check = release_check_launch(
        actor=alice, version=version, kind="forgetting", params={"threshold": 0.999999}
    )
    assert job_execute(job_id=check.job_id) == "succeeded"
    check.refresh_from_db()
    cka = [row["cka"] for row in check.result["layers"]]
    # The embeddings and the first layer were frozen; the last layer was trained.
    assert cka[0] == pytest.approx(1.0, abs=1e-6)
    assert cka[1] == pytest.approx(1.0, abs=1e-6)
    assert cka[2] < 0.999999
    assert check.measure == pytest.approx(min(cka))
    assert check.result["min_layer"] == 2
    assert check.status == ReleaseCheck.Status.FAILED
    assert "lowest" in check.summary
    # Three classes: calibrated without a decision threshold.
    calibration = release_check_launch(actor=alice, version=version, kind="calibration")
    assert job_execute(job_id=calibration.job_id) == "succeeded"
    calibration.refresh_from_db()
    assert calibration.result["classes"] == ["billing", "login", "outage"]
    assert "decision" not in calibration.result
    assert calibration.result["test_after"]["accuracy"] == pytest.approx(
        calibration.result["test_before"]["accuracy"]
    )


@pytest.mark.django_db
def test_staff_edit_the_rules_in_the_admin_audited(client, admin_user):
    client.force_login(admin_user)
    answer = client.post(
        "/admin/zoo/releasecheckrule/add/",
        {
            "kind": "calibration",
            "use_types": '["commercial"]',
            "threshold": "0.05",
            "reason": "Customer-facing scores must be calibrated.",
            "active": "on",
        },
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    rule = ReleaseCheckRule.objects.get()
    assert rule.use_types == ["commercial"]
    assert rule.limit == 0.05
    created = AuditEvent.objects.get(verb="release_check_rule.create", actor=admin_user)
    assert created.payload["after"]["threshold"] == 0.05

    client.post(f"/admin/zoo/releasecheckrule/{rule.pk}/delete/", {"post": "yes"})
    assert not ReleaseCheckRule.objects.exists()
    deleted = AuditEvent.objects.get(verb="release_check_rule.delete")
    assert deleted.payload["before"]["kind"] == "calibration"
    assert client.get("/admin/zoo/releasecheck/add/").status_code == 403


def _pets_with_resized_copies() -> bytes:
    """Cats and dogs (noise over a colour per class), with every other image also shrunk."""
    import io
    import zipfile

    from PIL import Image

    from tests.builders.datasets import image_zip_bytes

    source = zipfile.ZipFile(io.BytesIO(image_zip_bytes({"cat": 10, "dog": 10})))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for i, name in enumerate(sorted(source.namelist())):
            data = source.read(name)
            zf.writestr(name, data)
            if i % 2 == 0:
                small = io.BytesIO()
                Image.open(io.BytesIO(data)).resize((32, 32)).save(small, format="PNG")
                zf.writestr(name.replace(".png", "-small.png"), small.getvalue())
    return out.getvalue()


@pytest.mark.django_db
def test_images_are_checked_by_perceptual_hash_and_a_head_only_fine_tune_forgets_nothing(
    alice, sam, tmp_path
):
    from tests.builders.catalogue import import_model
    from tests.builders.datasets import upload
    from tests.builders.weights import tiny_vit_folder
    from zoo.services import datasets as dataset_services

    vit = import_model(tiny_vit_folder(tmp_path / "vit"), "acme/vit", actor=sam, modality="vision")
    approve_reuse(alice, vit)
    staged = dataset_services.dataset_stage_upload(
        actor=alice, upload=upload("pets.zip", _pets_with_resized_copies())
    )
    pets, _ = dataset_services.dataset_create(
        actor=alice, staged=staged, name="pets", sensitivity="internal"
    )
    version = _finetune(alice, vit, pets).output_version

    leakage = release_check_launch(actor=alice, version=version, kind="leakage")
    assert job_execute(job_id=leakage.job_id) == "succeeded"
    leakage.refresh_from_db()
    assert "dHash" in leakage.result["method"]
    assert leakage.result["n_duplicates"] >= 1
    assert all(ex["how"] == "dhash" for ex in leakage.result["examples"])
    assert all(ex["distance"] <= 4 for ex in leakage.result["examples"])
    calibration = release_check_launch(actor=alice, version=version, kind="calibration")
    assert job_execute(job_id=calibration.job_id) == "succeeded"
    calibration.refresh_from_db()
    assert calibration.result["temperature"] > 0
    # Only the head was trained: every layer of the backbone, and every kNN label, as before.
    forgetting = release_check_launch(actor=alice, version=version, kind="forgetting")
    assert job_execute(job_id=forgetting.job_id) == "succeeded"
    forgetting.refresh_from_db()
    assert forgetting.status == ReleaseCheck.Status.PASSED, forgetting.error
    assert [row["name"] for row in forgetting.result["layers"]] == [
        "embeddings",
        "layer 1",
        "layer 2",
    ]
    assert forgetting.measure == pytest.approx(1.0, abs=1e-6)
    assert forgetting.result["labelled"]["label_agreement"] == 1.0
    assert "Passed: every layer keeps a CKA of at least 0.5" in forgetting.summary


def _vision_finetune(alice, sam, tmp_path, **config) -> FineTuneRun:
    """alice's one-epoch fine-tune of a tiny random ViT on colour-coded cats and dogs."""
    from tests.builders.catalogue import import_model
    from tests.builders.datasets import upload
    from tests.builders.weights import tiny_vit_folder
    from zoo.services import datasets as dataset_services

    vit = import_model(tiny_vit_folder(tmp_path / "vit"), "acme/vit", actor=sam, modality="vision")
    approve_reuse(alice, vit)
    staged = dataset_services.dataset_stage_upload(
        actor=alice, upload=upload("pets.zip", _pets_with_resized_copies())
    )
    pets, _ = dataset_services.dataset_create(
        actor=alice, staged=staged, name="pets", sensitivity="internal"
    )
    return finetune_here(alice, vit, pets, strategy="full", config={**ONE_EPOCH, **config})


@pytest.mark.integration
def test_forgetting_of_an_image_fine_tune_on_a_worker_compares_layers_and_the_digits_knn(
    celery_worker, alice, sam, tmp_path
):
    # Given a full fine-tune of a tiny ViT at a high learning rate (its backbone moves)...
    run = _vision_finetune(alice, sam, tmp_path, learning_rate=5e-2)
    version = run.output_version

    # ...when alice runs the forgetting check on a real worker, strict enough to fail...
    began = time.perf_counter()
    with transaction.atomic():
        check = release_check_launch(
            actor=alice, version=version, kind="forgetting", params={"threshold": 0.999999, "k": 5}
        )
    check = _wait(check)
    print(f"\nimage forgetting {time.perf_counter() - began:.1f} s end to end")

    # ...then each layer of the backbone is compared on the 256 reference crops...
    assert check.status == ReleaseCheck.Status.FAILED, check.error
    result = check.result
    assert [row["name"] for row in result["layers"]] == ["embeddings", "layer 1", "layer 2"]
    assert result["n"] == 256
    assert check.measure == pytest.approx(min(row["cka"] for row in result["layers"]))
    assert check.measure < 0.999999
    assert result["min_layer_name"] in {"embeddings", "layer 1", "layer 2"}
    # ...and the digits' kNN labels before and after are counted on 500 balanced digits.
    knn = result["labelled"]
    assert (knn["n"], knn["k"]) == (500, 5)
    assert 0.0 <= knn["label_agreement"] <= 1.0
    assert 0.0 < knn["accuracy_before"] <= 1.0
    assert "handwritten digits" in check.summary
    assert "moved further than the threshold 0.999999 allows" in check.summary
    assert "Not measured" in check.summary
    print(check.summary)

    # The card and the page show the per-layer CKA and the kNN labels.
    version.refresh_from_db()
    assert "| layer 2 |" in version.card_markdown
    assert "| same kNN label as the base | 1.000 |" in version.card_markdown
    client = Client()
    client.force_login(alice)
    page = client.get(version.get_absolute_url()).content.decode()
    assert 'data-testid="cka-chart"' in page
    assert 'data-testid="knn-labels"' in page
    assert 'data-testid="run-forgetting"' in page
