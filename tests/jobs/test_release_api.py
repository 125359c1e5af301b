"""The release-check API: verdicts read by whoever sees the version, checks launched by those
who may run them, through the same service as the version page (a real tiny fine-tune)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from governance.models import AuditEvent
from jobs.engine import job_execute
from jobs.models import FineTuneRun, Job
from jobs.services.finetunes import finetune_launch
from tests.builders.catalogue import base_model
from tests.builders.datasets import spam_rows, text_dataset
from tests.builders.governance import approve_reuse
from zoo.models import ReleaseCheck
from zoo.services import catalogue as catalogue_services

ONE_EPOCH = {"epochs": 1, "batch_size": 8, "patience": 0, "lr_search": False}


def _api(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


@pytest.fixture
def tuned(alice, sam, tmp_path) -> FineTuneRun:
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    run = finetune_launch(
        actor=alice,
        base_version=base,
        dataset_version=text_dataset(alice, name="sms", rows=spam_rows(4)),
        strategy="head",
        config=ONE_EPOCH,
    )
    assert job_execute(job_id=run.job_id) == "succeeded", Job.objects.get(pk=run.job_id).error
    return FineTuneRun.objects.select_related("output_version__model").get(pk=run.pk)


def test_launch_read_and_refuse_release_checks_through_the_api(alice, bob, sam, tuned):
    version = tuned.output_version
    url = f"/api/versions/{version.pk}/release-checks/"
    # A draft fine-tune: bob does not see it at all.
    assert _api(bob).get(url).status_code == 404

    bad = [
        ({"kind": "nonsense"}, 400),
        ({"kind": "calibration", "params": {"colour": "red"}}, 400),
        ({"kind": "calibration", "params": {"target": "recall", "target_value": 7}}, 400),
        ({"kind": "inconsistency", "params": {"other_version": "v99"}}, 400),
    ]
    for body, code in bad:
        answer = _api(alice).post(url, body, format="json")
        assert answer.status_code == code, (body, answer.content)
        assert answer.json()["detail"]
    assert not ReleaseCheck.objects.exists()

    launched = _api(alice).post(
        url,
        {"kind": "calibration", "params": {"target": "recall", "target_value": 0.9}},
        format="json",
    )
    assert launched.status_code == 201, launched.content
    body = launched.json()
    assert body["kind"] == "calibration"
    assert body["status"] == "queued"
    assert body["params"]["target_value"] == 0.9
    assert body["requested_by"] == "alice"
    check = ReleaseCheck.objects.get(pk=body["id"])
    assert check.job_id == body["job"]
    again = _api(alice).post(url, {"kind": "calibration"}, format="json")
    assert again.status_code == 409  # one running check per kind

    assert job_execute(job_id=check.job_id) == "succeeded"
    check.refresh_from_db()
    assert check.status in (ReleaseCheck.Status.PASSED, ReleaseCheck.Status.FAILED)

    mine = _api(alice).get(url).json()
    assert [row["id"] for row in mine] == [check.pk]
    assert mine[0]["measure"] == pytest.approx(check.measure)
    assert mine[0]["passed"] == check.passed
    assert mine[0]["result"]["temperature"] == pytest.approx(check.result["temperature"])
    assert "card_markdown" not in mine[0]["result"]
    assert mine[0]["measure_name"].startswith("ECE")

    # Published, bob sees the verdicts but not the figures, and may not launch one.
    catalogue_services.catalog_model_set_status(model=version.model, status="available", actor=sam)
    theirs = _api(bob).get(url).json()
    assert theirs[0]["summary"] == check.summary
    assert theirs[0]["result"] is None
    launches = AuditEvent.objects.filter(verb="release_check.launch").count()
    assert launches == 1
    refused = _api(bob).post(url, {"kind": "leakage"}, format="json")
    assert refused.status_code == 403
    assert ReleaseCheck.objects.count() == 1
    assert AuditEvent.objects.filter(verb="release_check.launch").count() == launches
    assert APIClient().get(url).status_code in (401, 403)
