"""Bias release checks: word-association tests of a base text encoder and gaps between slices
of a fine-tune's test split; a failed one opens a bias risk, once, linked to its evidence.

Every check runs for real on a tiny BERT (random weights, all-MiniLM-L6-v2's tokenizer).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from django.db import transaction
from django.test import Client

from governance.models import AuditEvent, RiskEntry
from jobs.engine import job_execute
from jobs.ml.weat import holm
from jobs.models import FineTuneRun, Job
from jobs.services.release_checks import release_check_launch
from portal.errors import Forbidden, NotFound, PortalError
from tests.builders.catalogue import base_model
from tests.builders.datasets import csv_bytes, spam_rows, text_dataset, ticket_rows, upload
from tests.builders.governance import approve_reuse
from tests.builders.release_checks import finetune_here
from tests.builders.release_checks import wait_for_check as _wait
from zoo.models import AssociationTestSet, ReleaseCheck
from zoo.services import datasets as dataset_services
from zoo.services.release_checks import association_test_set_save

SEED = Path(__file__).resolve().parents[2] / "zoo" / "data" / "association_sets.json"
TRAINING = {"epochs": 10, "batch_size": 8, "patience": 0, "lr_search": False, "learning_rate": 1e-3}


def _seeded_sets() -> dict[str, AssociationTestSet]:
    """The migration's seed (a transactional test before this one may have flushed it)."""
    for row in json.loads(SEED.read_text(encoding="utf-8"))["sets"]:
        AssociationTestSet.objects.get_or_create(
            name=row["name"], defaults={k: v for k, v in row.items() if k != "name"}
        )
    return {s.name: s for s in AssociationTestSet.objects.all()}


@pytest.mark.integration
def test_association_tests_of_a_base_encoder_run_on_a_worker_and_open_one_bias_risk(
    celery_worker, transactional_db, sam, bob, tmp_path
):
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    sets = _seeded_sets()
    assert len(sets) == 10
    career = sets["weat-6"]
    assert career.target_x[:3] == ["executive", "management", "professional"]
    assert "Caliskan et al. (2017)" in career.source

    # A steward (not staff) edits a word set; it is audited with what changed.
    association_test_set_save(
        actor=sam, test_set=career, fields={"target_x": [*career.target_x, "boardroom"]}
    )
    edit = AuditEvent.objects.get(verb="association_test_set.update", actor=sam)
    assert edit.payload["changed"] == ["target_x"]
    assert "boardroom" in edit.payload["after"]["target_x"]
    assert "boardroom" not in edit.payload["before"]["target_x"]
    # Someone without the role, and bad word lists, change nothing.
    with pytest.raises(Forbidden):
        association_test_set_save(actor=bob, test_set=career, fields={"active": False})
    with pytest.raises(PortalError, match="target words Y needs at least 2 different words"):
        association_test_set_save(actor=sam, test_set=career, fields={"target_y": ["home"]})
    career.refresh_from_db()
    assert career.active
    assert len(career.target_y) == 8
    assert AuditEvent.objects.filter(verb__startswith="association_test_set.").count() == 1

    # A planted test: targets that are the attribute words themselves. Any encoder puts a
    # word nearest itself, so X leans to A and Y to B: a large effect, by construction.
    planted = association_test_set_save(
        actor=sam,
        test_set=AssociationTestSet(
            name="planted",
            title="Planted: targets equal to their attributes",
            target_x_name="career",
            target_x=list(career.target_x[:8]),
            target_y_name="family",
            target_y=list(career.target_y),
            attribute_a_name="career",
            attribute_a=list(career.target_x[:8]),
            attribute_b_name="family",
            attribute_b=list(career.target_y),
            source="Made up in this test.",
        ),
    )

    began = time.perf_counter()
    with transaction.atomic():
        check = release_check_launch(
            actor=sam,
            version=base,
            kind="association",
            params={"sets": ["weat-6", "weat-7", planted.name], "permutations": 2000},
        )
    check = _wait(check)
    print(f"\nassociation, 3 tests on a tiny BERT: {time.perf_counter() - began:.1f} s end to end")
    assert Job.objects.get(pk=check.job_id).params["run_id"] is None
    assert check.status == ReleaseCheck.Status.FAILED, check.error
    tests = {t["name"]: t for t in check.result["tests"]}
    assert list(tests) == ["weat-6", "weat-7", "planted"]
    plant = tests["planted"]
    assert plant["weat"]["exact"] is True
    assert plant["weat"]["partitions"] == 12870
    assert plant["weat"]["effect_size"] > 1.0
    assert plant["weat"]["p_greater"] < 0.01
    assert plant["seat"]["n_x"] == 8 * len(check.result["templates"])
    # The stored result keeps the words it ran (the steward's edit included).
    assert "boardroom" in tests["weat-6"]["words"]["x"]
    assert tests["weat-6"]["weat"]["n_x"] == 9
    # The p-values are Holm-adjusted over the six tests run (three sets, WEAT and SEAT)...
    family = [(t, v) for t in tests.values() for v in ("weat", "seat")]
    assert [t[v]["p_holm"] for t, v in family] == pytest.approx(
        holm([t[v]["p_two_sided"] for t, v in family])
    )
    assert all(t[v]["p_holm"] >= t[v]["p_two_sided"] for t, v in family)
    assert check.result["correction"] == {"method": "holm", "family": 6}
    # ...and the measure is the largest |d| among the adjusted-significant, naming which.
    significant = [abs(t[v]["effect_size"]) for t, v in family if t[v]["p_holm"] < 0.05]
    assert check.measure == pytest.approx(max(significant))
    assert check.result["measure_from"]["test"] in tests
    assert "Not measured: behaviour on any task" in check.summary
    assert "Holm-adjusted for the 6 tests run together" in check.summary

    # The failure opened one bias risk, by the system, linked to the check.
    risk = RiskEntry.objects.get(version=base)
    assert risk.category == RiskEntry.Category.BIAS
    assert risk.release_check_id == check.pk
    assert risk.status == RiskEntry.Status.OPEN
    assert f"check #{check.pk}" in risk.title
    assert "#release-check-association" in risk.mitigation
    assert risk.severity >= RiskEntry.Level.LOW
    opened = AuditEvent.objects.get(verb="risk.open_from_check")
    assert opened.actor is None
    assert opened.payload["asked_by"] == sam.pk
    assert AuditEvent.objects.filter(verb="risk.create", target_id=str(risk.pk)).exists()

    # Run again: it fails again, and the open entry is not duplicated.
    with transaction.atomic():
        again = release_check_launch(
            actor=sam,
            version=base,
            kind="association",
            params={"sets": [planted.name], "permutations": 500},
        )
    again = _wait(again)
    assert again.status == ReleaseCheck.Status.FAILED
    assert RiskEntry.objects.filter(version=base).count() == 1

    # The card and the page show the tests, the form, and the risk's evidence link.
    base.refresh_from_db()
    assert "### Bias: word-association tests: failed" in base.card_markdown
    assert "| planted | career vs family, career vs family |" in base.card_markdown
    assert "- planted: Made up in this test." in base.card_markdown  # the newest check's
    assert "Caliskan et al. (2017) Science, WEAT 6" in check.result["card_markdown"]
    client = Client()
    client.force_login(sam)
    page = client.get(base.get_absolute_url()).content.decode()
    assert 'data-testid="association-table"' in page
    assert 'data-testid="run-association"' in page
    assert 'data-testid="risk-evidence"' in page
    assert f"word-association tests check #{check.pk}" in page
    assert 'id="release-check-association"' in page
    # A base model has no fine-tune splits: its page offers no split-based checks.
    assert 'data-testid="run-slices"' not in page


def _planted_slice_rows() -> list[dict[str, str]]:
    """Tickets where one region in four has its labels rotated: the model learns the other."""
    rows = ticket_rows(40, seed=1)
    rotate = {"billing": "outage", "outage": "login", "login": "billing"}
    for i, row in enumerate(rows):
        row["region"] = "south" if i % 4 == 0 else "north"
        if row["region"] == "south":
            row["label"] = rotate[row["label"]]
    return rows


def _dataset_with_slices(owner, rows):
    staged = dataset_services.dataset_stage_upload(
        actor=owner, upload=upload("regions.csv", csv_bytes(rows))
    )
    version, _ = dataset_services.dataset_create(
        actor=owner,
        staged=staged,
        name="regions",
        sensitivity="internal",
        text_column="message",
        label_column="label",
        slice_column="region",
    )
    return version


def _finetune(alice, base, data) -> FineTuneRun:
    return finetune_here(alice, base, data, strategy="full", config=TRAINING)


@pytest.mark.django_db
def test_slice_gaps_of_a_fine_tune_find_the_planted_gap_and_open_one_risk(
    alice, bob, sam, tmp_path
):
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    run = _finetune(alice, base, _dataset_with_slices(alice, _planted_slice_rows()))
    version = run.output_version
    _seeded_sets()
    jobs_before = Job.objects.count()

    # Bad settings are refused with a message, and nothing is written.
    cases = [
        ({"kind": "slices", "params": {"min_count": 1}}, "min_count must be a number from 2"),
        ({"kind": "slices", "params": {"positive_class": "login"}}, "is for two classes"),
        ({"kind": "slices", "params": {"colour": "red"}}, "Unknown setting 'colour'"),
        ({"kind": "association", "params": {"sets": ["weat-99"]}}, "No association test named"),
        ({"kind": "association", "params": {"alpha": 0.9}}, "alpha must be a number"),
        ({"kind": "association", "params": {"threshold": 3}}, "threshold must be a number"),
    ]
    for args, message in cases:
        with pytest.raises(PortalError, match=message):
            release_check_launch(actor=alice, version=version, **args)
    with pytest.raises(NotFound):  # bob cannot see alice's draft
        release_check_launch(actor=bob, version=version, kind="slices")
    assert ReleaseCheck.objects.count() == 0
    assert Job.objects.count() == jobs_before
    assert not RiskEntry.objects.exists()

    # Through the page, as its maker would.
    client = Client()
    client.force_login(alice)
    page = client.get(version.get_absolute_url()).content.decode()
    assert 'data-testid="run-slices"' in page
    assert 'data-testid="run-association"' in page
    answer = client.post(
        f"/jobs/release-checks/version/{version.pk}/", {"kind": "slices", "min_count": "3"}
    )
    assert answer.status_code == 302
    check = ReleaseCheck.objects.get(version=version, kind="slices")
    began = time.perf_counter()
    assert job_execute(job_id=check.job_id) == "succeeded", Job.objects.get(pk=check.job_id).error
    print(f"\nslices on a tiny BERT fine-tune: {time.perf_counter() - began:.1f} s")
    check.refresh_from_db()
    result = check.result
    by = {row["slice"]: row for row in result["slices"]}
    assert set(by) == {"north", "south"}
    assert by["north"]["n"] + by["south"]["n"] == run.training["n_test"]
    # The model learned the majority's labels: the rotated region is mostly wrong.
    assert by["north"]["accuracy"] > by["south"]["accuracy"] + 0.2
    gap = result["gaps"]["accuracy"]
    assert (gap["high"], gap["low"]) == ("north", "south")
    assert gap["ci"][0] <= gap["gap"] <= gap["ci"][1]
    for row in by.values():
        assert row["accuracy_ci"][0] <= row["accuracy"] <= row["accuracy_ci"][1]
        assert row["recall_ci"] is not None  # three classes: a bootstrap interval
    assert check.measure == pytest.approx(
        max(g["gap"] for g in result["gaps"].values() if g is not None)
    )
    assert check.status == ReleaseCheck.Status.FAILED
    assert "slice column 'region'" in check.summary
    assert "Not measured" in check.summary

    risk = RiskEntry.objects.get(version=version)
    assert risk.release_check == check
    assert risk.category == RiskEntry.Category.BIAS
    # A gap of 0.2 or more is at least twice the default threshold (0.1): high or critical.
    assert check.measure > 0.2
    assert risk.severity >= RiskEntry.Level.HIGH
    version.refresh_from_db()
    assert "### Bias: gaps between slices: failed" in version.card_markdown
    assert "| region | rows | accuracy |" in version.card_markdown
    page = client.get(version.get_absolute_url()).content.decode()
    assert 'data-testid="slices-table"' in page

    # Once the risk is closed, a new failure opens a new entry.
    RiskEntry.objects.filter(pk=risk.pk).update(status=RiskEntry.Status.CLOSED)
    again = release_check_launch(
        actor=alice, version=version, kind="slices", params={"min_count": 3}
    )
    assert job_execute(job_id=again.job_id) == "succeeded"
    assert RiskEntry.objects.filter(version=version, status="open").get().release_check_id == (
        again.pk
    )


@pytest.mark.django_db
def test_slices_are_refused_on_a_dataset_without_a_slice_column(alice, sam, tmp_path):
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    run = _finetune(alice, base, text_dataset(alice, name="sms", rows=spam_rows(3)))
    with pytest.raises(PortalError, match="has no slice column"):
        release_check_launch(actor=alice, version=run.output_version, kind="slices")
    assert not ReleaseCheck.objects.exists()
    assert not AuditEvent.objects.filter(verb="release_check.launch").exists()


@pytest.mark.django_db
def test_staff_edit_word_sets_in_the_admin_audited(client, admin_user):
    sets = _seeded_sets()
    career = sets["weat-6"]
    client.force_login(admin_user)
    form = {
        "name": career.name,
        "title": career.title,
        "target_x_name": career.target_x_name,
        "target_x": json.dumps(career.target_x),
        "target_y_name": career.target_y_name,
        "target_y": json.dumps(career.target_y),
        "attribute_a_name": career.attribute_a_name,
        "attribute_a": json.dumps(career.attribute_a),
        "attribute_b_name": career.attribute_b_name,
        "attribute_b": json.dumps(career.attribute_b),
        "source": career.source,
    }  # "active" left out: switched off
    answer = client.post(f"/admin/zoo/associationtestset/{career.pk}/change/", form)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    career.refresh_from_db()
    assert career.active is False
    event = AuditEvent.objects.get(verb="association_test_set.update", actor=admin_user)
    assert event.payload["changed"] == ["active"]
    # A word list that is not a list of words is refused in the form; nothing changes.
    refused = client.post(
        f"/admin/zoo/associationtestset/{career.pk}/change/", {**form, "target_x": '"career"'}
    )
    assert refused.status_code == 200
    assert "must be a list of words" in refused.content.decode()
    career.refresh_from_db()
    assert career.target_x[0] == "executive"
    assert AuditEvent.objects.filter(verb="association_test_set.update").count() == 1


@pytest.mark.django_db
def test_stewards_edit_word_sets_on_their_page_audited(client, sam, bob):
    career = _seeded_sets()["weat-6"]
    page = f"/catalogue/association-tests/{career.pk}/"
    client.force_login(bob)
    assert client.get("/catalogue/association-tests/").status_code == 403
    assert client.post(page, {"title": "x"}).status_code == 403

    client.force_login(sam)
    listing = client.get("/catalogue/association-tests/").content.decode()
    assert 'data-testid="association-tests"' in listing
    assert "weat-10" in listing
    form = {
        "title": career.title,
        "target_x": "\n".join(career.target_x),
        "target_y": "home, parents\nchildren",  # commas and lines both separate
        "attribute_a": "\n".join(career.attribute_a),
        "attribute_b": "\n".join(career.attribute_b),
        "source": career.source,
        "active": "on",
    }
    assert client.post(page, form).status_code == 302
    career.refresh_from_db()
    assert career.target_y == ["home", "parents", "children"]
    event = AuditEvent.objects.get(verb="association_test_set.update", actor=sam)
    assert event.payload["changed"] == ["target_y"]

    # A target set of one word: a message on the form, nothing saved.
    bad = client.post(page, {**form, "target_x": "executive"})
    assert bad.status_code == 200
    assert "target words X needs at least 2 different words" in bad.content.decode()
    career.refresh_from_db()
    assert len(career.target_x) == 8
    assert AuditEvent.objects.filter(verb="association_test_set.update").count() == 1
