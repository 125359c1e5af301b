"""The inconsistency check run on uploaded production inputs (a drift batch) instead of the
test split, on two real tiny-BERT fine-tunes of the same base and dataset.

Given alice's fine-tune and its retrain, a batch of unlabelled production tickets uploaded
for one and a labelled batch for the other, each check names the inputs it used, counts the
changed labels as a direct recomputation does, and shows no production text; a batch of
another model, one that does not exist and a malformed number are refused with a clear
message, through the service, the page and the API, and queue nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from governance.models import AuditEvent
from jobs.engine import job_execute
from jobs.ml.finetune import predict_proba
from jobs.models import Job
from jobs.services.drift import drift_batch_upload
from jobs.services.release_checks import release_check_launch
from portal.errors import PortalError
from tests.builders.catalogue import base_model
from tests.builders.datasets import csv_bytes, ticket_dataset, ticket_rows, upload
from tests.builders.governance import approve_reuse
from tests.jobs.test_release_serving import _retrain
from zoo.models import ReleaseCheck
from zoo.storage import materialize_version


def _proba(version, texts: list[str]) -> np.ndarray:
    return predict_proba(materialize_version(version, settings.MODEL_CACHE_DIR), "text", texts)


@pytest.mark.django_db(transaction=True)
def test_inconsistency_on_a_drift_batch_counts_changes_on_production_inputs(
    alice, bob, sam, tmp_path
):
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    data = ticket_dataset(alice)
    # A barely trained first run and a brisk retrain: they disagree on many inputs.
    first = _retrain(alice, base, data, learning_rate=1e-5)
    second = _retrain(alice, base, data, learning_rate=5e-3)
    version, other = second.output_version, first.output_version
    # Production tickets without labels for this version, and labelled ones for the other.
    unlabelled = [{"message": row["message"]} for row in ticket_rows(10, seed=5)]
    plain = drift_batch_upload(
        actor=alice, version=version, upload=upload("prod.csv", csv_bytes(unlabelled))
    )
    labelled_rows = ticket_rows(9, seed=6)
    labelled = drift_batch_upload(
        actor=alice, version=other, upload=upload("lab.csv", csv_bytes(labelled_rows))
    )
    assert (plain.label_column, labelled.label_column) == ("", "label")

    # Given the unlabelled batch, when both versions run on its inputs...
    check = release_check_launch(
        actor=alice,
        version=version,
        kind="inconsistency",
        params={"other_version": other.pk, "batch": str(plain.pk)},
    )
    assert check.params["batch"] == plain.pk
    assert job_execute(job_id=check.job_id) == "succeeded", Job.objects.get(pk=check.job_id).error
    check.refresh_from_db()
    texts = [row["message"] for row in unlabelled]
    a, b = _proba(other, texts).argmax(1), _proba(version, texts).argmax(1)
    # ...the share of changed labels is counted on those inputs, and the check says so.
    r = check.result
    assert r["inputs"]["source"] == "batch"
    assert r["inputs"]["batch"] == plain.pk
    assert r["n"] == r["inputs"]["n_batch_rows"] == len(texts) == 30
    assert r["n_changed"] == int(np.sum(a != b)) > 0
    assert check.measure == pytest.approx(np.mean(a != b))
    assert r["labelled"] is False
    assert (r["fixed"], r["accuracy_new"]) == (None, None)
    assert len(r["changes"]) == min(20, r["n_changed"])
    for change in r["changes"]:
        assert change["text"] == ""  # production texts are not shown
        assert change["label"] is None
        assert r["classes"][a[change["position"] - 1]] == change["old"]
    print(check.summary)
    assert f"production inputs of drift batch #{plain.pk}" in check.summary
    assert "has no labels" in check.summary
    version.refresh_from_db()
    assert f"production inputs of drift batch #{plain.pk}" in version.card_markdown

    # A labelled batch of the other version's model is allowed, and gives right and wrong.
    check = release_check_launch(
        actor=alice,
        version=version,
        kind="inconsistency",
        params={"other_version": other.pk, "batch": labelled.pk},
    )
    assert job_execute(job_id=check.job_id) == "succeeded", Job.objects.get(pk=check.job_id).error
    check.refresh_from_db()
    texts = [row["message"] for row in labelled_rows]
    classes = list(check.result["classes"])
    y = np.array([classes.index(row["label"]) for row in labelled_rows])
    a, b = _proba(other, texts).argmax(1), _proba(version, texts).argmax(1)
    r = check.result
    assert r["labelled"] is True
    assert r["accuracy_new"] == pytest.approx(np.mean(b == y))
    assert r["accuracy_old"] == pytest.approx(np.mean(a == y))
    assert r["fixed"] == int(np.sum((a != y) & (b == y)))
    assert all(change["label"] in classes for change in r["changes"])
    # The version's page names each changed input by its place in the batch, not its text.
    page = Client()
    page.force_login(alice)
    shown = page.get(f"{version.model.get_absolute_url()}?version={version.label}").content
    assert r["n_changed"] > 0
    first_change = r["changes"][0]
    assert f"input {first_change['position']} of batch #{labelled.pk}" in shown.decode()
    assert texts[first_change["position"] - 1] not in shown.decode()


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_does_not_fit_is_refused_everywhere_and_queues_nothing(alice, sam, tmp_path):
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    data = ticket_dataset(alice)
    first = _retrain(alice, base, data)
    second = _retrain(alice, base, data, learning_rate=5e-3)
    stranger = base_model(tmp_path / "bert2", "acme/other-bert", steward=sam, seed=1)
    approve_reuse(alice, stranger)
    elsewhere = _retrain(alice, stranger, data).output_version
    version, other = second.output_version, first.output_version
    rows = [{"message": row["message"]} for row in ticket_rows(8, seed=2)]
    foreign = drift_batch_upload(
        actor=alice, version=elsewhere, upload=upload("f.csv", csv_bytes(rows))
    )
    before = (ReleaseCheck.objects.count(), Job.objects.count(), AuditEvent.objects.count())

    cases = [
        ({"batch": foreign.pk}, f"holds production inputs of {elsewhere.model.repo_id}"),
        ({"batch": 999999}, "no drift batch #999999 that you can see"),
        ({"batch": "twelve"}, "must be the number of a drift batch"),
        ({"batch": True}, "must be the number of a drift batch"),
        ({"batch": 1.5}, "must be the number of a drift batch"),
    ]
    for extra, message in cases:
        with pytest.raises(PortalError, match=message):
            release_check_launch(
                actor=alice,
                version=version,
                kind="inconsistency",
                params={"other_version": other.pk, **extra},
            )
    # The page says why in a message; the API answers 400 with the reason.
    page = Client()
    page.force_login(alice)
    answer = page.post(
        f"/jobs/release-checks/version/{version.pk}/",
        {"kind": "inconsistency", "other_version": str(other.pk), "batch": str(foreign.pk)},
        follow=True,
    )
    assert answer.status_code == 200
    assert "holds production inputs of" in answer.content.decode()
    api = APIClient()
    api.force_authenticate(alice)
    refused = api.post(
        f"/api/versions/{version.pk}/release-checks/",
        {"kind": "inconsistency", "params": {"other_version": other.pk, "batch": "x"}},
        format="json",
    )
    assert refused.status_code == 400
    assert "must be the number of a drift batch" in refused.json()["detail"]
    assert (ReleaseCheck.objects.count(), Job.objects.count(), AuditEvent.objects.count()) == (
        before
    )
    # A batch of the version itself is accepted through the API.
    own = drift_batch_upload(actor=alice, version=version, upload=upload("o.csv", csv_bytes(rows)))
    accepted = api.post(
        f"/api/versions/{version.pk}/release-checks/",
        {"kind": "inconsistency", "params": {"other_version": other.pk, "batch": own.pk}},
        format="json",
    )
    assert accepted.status_code == 201, accepted.content
    assert ReleaseCheck.objects.get(pk=accepted.json()["id"]).params["batch"] == own.pk
