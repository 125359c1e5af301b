"""Drift monitoring: batches of production inputs uploaded through the page and the API, each
compared with a real tiny fine-tune's training rows by a drift check on a real worker.

Given alice's one-epoch fine-tune of a tiny BERT on SMS spam, a batch written like its
training messages stays in the stable band, a batch of texts unlike anything it was
trained on crosses the retrain band and tells its owners once, and every refusal
(a user who may not use the version, a base model, a bad file) leaves nothing behind.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient

from governance.models import AuditEvent, Notification, WebhookDelivery
from governance.services.notify import email_text, notification_preferences_save
from governance.services.webhooks import webhook_endpoint_create, webhook_secret_new
from jobs.engine import job_execute
from jobs.models import DriftBatch, FineTuneRun, Job
from jobs.services.drift import drift_batch_upload
from jobs.services.finetunes import finetune_launch
from jobs.services.sweep import storage_sweep
from portal.errors import Forbidden, NotFound, PortalError
from tests.builders.catalogue import base_model
from tests.builders.datasets import csv_bytes, jsonl_bytes, spam_rows, text_dataset, upload
from tests.builders.governance import approve_reuse
from tests.builders.release_checks import finetune_here
from tests.builders.release_checks import wait_for_check as _wait
from tests.builders.webhooks import webhook_receiver
from tests.builders.weights import HAM, SPAM
from tests.factories import UserFactory
from zoo.models import ReleaseCheck, ReleaseCheckRule
from zoo.services import catalogue as catalogue_services
from zoo.services import datasets as dataset_services
from zoo.services.release_checks import release_check_rule_save

# Enough epochs at a brisk rate that the tiny BERT tells spam from ham (mixed predictions on
# its training rows), so that a batch of one kind of odd text moves the predicted classes.
TRAINING = {"epochs": 8, "batch_size": 8, "patience": 0, "lr_search": False, "learning_rate": 3e-3}


def _stored_files() -> list[str]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _like_training(n: int = 4, offset: int = 10) -> list[dict[str, str]]:
    """New messages written as the training ones are: the same kinds, other numbers."""
    rows = []
    for i in range(offset, offset + n):
        rows += [{"message": f"{t} #{i}"} for t in SPAM]
        rows += [{"message": f"{t} ({i})"} for t in HAM]
    return rows


def _unlike_training(n: int = 40) -> list[dict[str, str]]:
    """Long strings of digits and symbols: nothing an SMS corpus of words looks like."""
    return [
        {"message": " ".join(f"{(i * 7919 + j * 104729) % 99991:05d}" for j in range(12))}
        for i in range(n)
    ]


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _finetune(alice, base, data) -> FineTuneRun:
    return finetune_here(alice, base, data, strategy="full", config=TRAINING)


@pytest.fixture
def tuned(transactional_db, alice, sam, tmp_path):
    """alice's fine-tune of a tiny BERT on SMS spam, published by sam."""
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    run = _finetune(alice, base, text_dataset(alice, name="sms", rows=spam_rows(8)))
    catalogue_services.catalog_model_set_status(
        model=run.output_version.model, status="available", actor=sam
    )
    run.output_version.refresh_from_db()
    return run


@pytest.mark.integration
def test_batches_through_the_page_and_the_api_are_judged_charted_and_notify_once(
    tuned, celery_worker, alice, bob, sam, admin_user
):
    # (tuned first: its fine-tune runs here before the suite's worker starts and could take it)
    version = tuned.output_version
    release_check_rule_save(
        actor=admin_user, rule=ReleaseCheckRule(kind="drift", reason="Watch production inputs.")
    )
    page = Client()
    page.force_login(alice)

    # Given a batch like the training data, uploaded through the version page by its maker...
    began = time.perf_counter()
    answer = page.post(
        f"/jobs/drift/version/{version.pk}/upload/",
        {"file": upload("monday.csv", csv_bytes(_like_training()))},
    )
    assert answer.status_code == 302
    assert answer["Location"].endswith("#drift")
    stable = DriftBatch.objects.get(version=version)
    assert stable.n_rows == 48
    assert stable.text_column == "message"  # the training data's own text column
    check = _wait(stable.release_check)
    stable_seconds = time.perf_counter() - began
    # ...its check ran on the worker and stays in the stable band.
    assert check.status == ReleaseCheck.Status.PASSED, check.error
    assert check.params == {"batch": stable.pk}
    r = check.result
    print(
        f"\nlike training: {check.summary}\n({stable_seconds:.1f} s end to end, "
        f"{check.seconds:.2f} s in the job)"
    )
    held_out = tuned.training["n_val"] + tuned.training["n_test"]
    assert r["n_reference"] == min(held_out, 2000)
    assert r["reference_rows"].startswith("held-out")
    # 28 reference rows and 48 batch rows in 10 bins: PSI's chance level is about 0.51.
    assert r["psi_chance"]["confidence"] == pytest.approx(9 * (1 / 28 + 1 / 48))
    assert r["n_batch"] == 48
    assert check.measure == pytest.approx(r["psi_class"])
    assert r["band"] == "stable"
    assert r["psi_class"] < 0.1
    assert r["mmd"]["permutations"] == 500
    assert "Not measured" in check.summary
    assert Notification.objects.filter(event_key__startswith="drift:").count() == 0

    # alice hears nothing of incidents, and wants drift in her inbox but not by e-mail; a
    # newer version of her dataset has come in since the fine-tune.
    notification_preferences_save(
        user=alice, actor=alice, choices={"incident": (False, False), "drift": (True, False)}
    )
    staged = dataset_services.dataset_stage_upload(
        actor=alice, upload=upload("sms2.csv", csv_bytes(spam_rows(9)))
    )
    newer, _ = dataset_services.dataset_create(
        actor=alice,
        staged=staged,
        dataset=tuned.dataset_version.dataset,
        sensitivity="internal",
        text_column="message",
        label_column="label",
    )

    # When bob, who holds an approved reuse request, posts very different texts to the API...
    approve_reuse(bob, version)
    api = APIClient()
    api.force_authenticate(bob)
    secret = webhook_secret_new()
    with webhook_receiver(secret) as receiver:
        # (one endpoint takes drift events, another only incidents)
        for kinds in (["drift"], ["incident"]):
            endpoint, _ = webhook_endpoint_create(
                actor=admin_user, name=kinds[0], url=receiver.url, kinds=kinds
            )
            endpoint.secret = secret
            endpoint.save(update_fields=["secret"])
        began = time.perf_counter()
        posted = api.post(
            f"/api/versions/{version.pk}/drift/",
            {"file": upload("odd.jsonl", jsonl_bytes(_unlike_training()))},
            format="multipart",
        )
        assert posted.status_code == 201, posted.content
        body = posted.json()
        assert body["n_rows"] == 40
        assert body["status"] == "queued"
        shifted = DriftBatch.objects.get(pk=body["id"])
        check = _wait(shifted.release_check)
        (hook,) = receiver.wait_for(1)
    assert hook.verified
    assert hook.payload["type"] == "zoo.drift"
    assert hook.payload["data"]["batch"] == shifted.pk
    assert hook.payload["data"]["band"] == "retrain"
    assert WebhookDelivery.objects.filter(kind="drift").count() == 1
    shifted_seconds = time.perf_counter() - began
    print(
        f"unlike training: {check.summary}\n({shifted_seconds:.1f} s end to end, "
        f"{check.seconds:.2f} s in the job)"
    )
    # ...the predicted classes move into the retrain band, and the check fails.
    assert check.status == ReleaseCheck.Status.FAILED, check.error
    assert check.result["band"] == "retrain"
    assert check.measure >= 0.25
    assert check.result["mmd"]["p_value"] < 0.01
    # The owners are told once, as a drift (not an incident) and as each chose: the link is the
    # drift page, and the text suggests a fine-tune of the same base on the newer data.
    told = Notification.objects.filter(event_key=f"drift:{version.pk}:{shifted.pk}")
    assert set(told.values_list("user__username", flat=True)) >= {"alice"}
    note = told.get(user=alice)
    assert note.kind == "drift"
    assert (note.in_inbox, note.email_wanted) == (True, False)
    assert note.url == f"{version.get_absolute_url()}#drift"
    assert "retrain band" in note.title
    assert "new fine-tune of acme/tiny-bert" in note.body
    assert f"has a newer version than the {tuned.dataset_version.label}" in note.body
    assert f"Batch #{shifted.pk} has no labels" in note.body
    assert "a retrain needs labelled data" in note.body
    link = (
        f"/finetunes/new/?version={tuned.base_version_id}&strategy=full&dataset_version={newer.pk}"
    )
    mail = email_text(note)
    assert f"{settings.PORTAL_URL}{note.url}" in mail
    assert f"{settings.PORTAL_URL}{link}" in mail
    inbox = page.get("/notifications/").content.decode()
    assert "Production inputs of a model you made or own drifted" in inbox
    assert "Production inputs of a model you made or own drifted" in (
        page.get("/notifications/settings/").content.decode()
    )
    form = page.get(link).content.decode()
    assert f'<option value="{tuned.base_version_id}" selected' in form
    assert f'<option value="{newer.pk}" selected' in form

    # A second batch while it stays above the band tells nobody again.
    again = api.post(
        f"/api/versions/{version.pk}/drift/",
        {"file": upload("odd2.csv", csv_bytes(_unlike_training(30)))},
        format="multipart",
    )
    assert again.status_code == 201, again.content
    _wait(DriftBatch.objects.get(pk=again.json()["id"]).release_check)
    assert Notification.objects.filter(event_key__startswith="drift:").count() == told.count()

    # The API lists every batch with its figures; the page draws them over time with the bands.
    listed = api.get(f"/api/versions/{version.pk}/drift/").json()
    assert [row["band"] for row in listed] == ["stable", "retrain", "retrain"]
    assert listed[1]["psi_class"] == pytest.approx(check.result["psi_class"])
    section = page.get(f"/jobs/drift/version/{version.pk}/").content.decode()
    assert 'data-testid="drift-chart"' in section
    assert section.count('data-band="') == 3
    for key in ("psi-class", "psi-confidence", "mmd-p"):
        assert f'data-testid="drift-series-{key}"' in section
    assert section.count("<circle") == 9
    assert 'data-testid="drift-upload"' in section
    assert "00011" not in section  # the uploaded texts are never shown
    # The newest batch is in the retrain band: the section offers the same filled-in form.
    assert 'data-testid="drift-retrain"' in section
    assert link.replace("&", "&amp;") in section
    bob_section = signed_in(bob).get(f"/jobs/drift/version/{version.pk}/").content.decode()
    assert 'data-testid="drift-retrain"' not in bob_section  # bob may not launch fine-tunes
    detail = page.get(version.get_absolute_url()).content.decode()
    assert f'hx-get="/jobs/drift/version/{version.pk}/"' in detail
    assert 'data-testid="release-check-drift"' in detail

    # The card holds the newest batch's figures; the policy reads the newest verdict.
    version.refresh_from_db()
    assert "### Drift of production inputs: failed" in version.card_markdown
    assert f"Batch #{again.json()['id']}" in version.card_markdown
    assert "| PSI, predicted classes |" in version.card_markdown
    uploads = AuditEvent.objects.filter(verb="drift_batch.upload")
    assert uploads.count() == 3
    assert set(uploads.values_list("actor__username", flat=True)) == {"alice", "bob"}
    # The stored batches are named by their rows: a storage sweep keeps them.
    storage_sweep(now=None)
    for batch in DriftBatch.objects.all():
        assert batch.blob_name in _stored_files()
    print(f"drift check end to end: {stable_seconds:.1f} s and {shifted_seconds:.1f} s")


@pytest.mark.django_db(transaction=True)
def test_refusals_write_nothing_and_leave_no_file(
    alice, bob, sam, tmp_path, django_assert_max_num_queries
):
    base = base_model(tmp_path / "bert", "acme/tiny-bert", steward=sam)
    approve_reuse(alice, base)
    run = finetune_launch(
        actor=alice,
        base_version=base,
        dataset_version=text_dataset(alice, name="sms", rows=spam_rows(8)),
        strategy="head",
        config={"epochs": 1, "batch_size": 8, "patience": 0, "lr_search": False},
    )
    assert job_execute(job_id=run.job_id) == "succeeded"
    version = FineTuneRun.objects.get(pk=run.pk).output_version
    carol = UserFactory(username="carol", roles=["ml-engineers"])
    before = (_stored_files(), Job.objects.count(), AuditEvent.objects.count())
    good = csv_bytes(_like_training())

    # Someone who cannot see the draft is told it does not exist; published, bob may see it
    # but holds no approval, so he may not upload (page, API and service alike).
    with pytest.raises(NotFound):
        drift_batch_upload(actor=carol, version=version, upload=upload("a.csv", good))
    catalogue_services.catalog_model_set_status(model=version.model, status="available", actor=sam)
    before = (_stored_files(), Job.objects.count(), AuditEvent.objects.count())
    with pytest.raises(Forbidden, match="Only people who may use this version"):
        drift_batch_upload(actor=bob, version=version, upload=upload("a.csv", good))
    api = APIClient()
    api.force_authenticate(bob)
    refused = api.post(
        f"/api/versions/{version.pk}/drift/", {"file": upload("a.csv", good)}, format="multipart"
    )
    assert refused.status_code == 403
    assert "may use this version" in refused.json()["detail"]
    assert api.get(f"/api/versions/{version.pk}/drift/").status_code == 200
    page = Client()
    page.force_login(bob)
    assert (
        page.post(
            f"/jobs/drift/version/{version.pk}/upload/", {"file": upload("a.csv", good)}
        ).status_code
        == 403
    )
    section = page.get(f"/jobs/drift/version/{version.pk}/").content.decode()
    assert 'data-testid="drift-upload"' not in section
    refusals = AuditEvent.objects.filter(verb="access.refused").count()
    assert refusals >= 2
    # A base model has no training data the portal knows.
    with pytest.raises(PortalError, match="was not made by a fine-tune in the portal"):
        drift_batch_upload(actor=sam, version=base, upload=upload("a.csv", good))
    assert (
        api.post(
            "/api/versions/abc/drift/", {"file": upload("a.csv", good)}, format="multipart"
        ).status_code
        == 404
    )

    # Bad files, from the maker herself: a clear message each, nothing kept.
    cases = [
        (upload("a.zip", b"PK\x03\x04rest"), "This is a text model"),
        (upload("a.csv", b""), "empty"),
        (upload("a.csv", b"message\n" + "caf\xe9\n".encode("latin-1")), "UTF-8"),
        (upload("a.csv", csv_bytes(_like_training(1))), "at least 20"),
        (
            upload("a.csv", csv_bytes([{"message": "x" * 20_001, "other": "1"}] * 20)),
            "limited to 20,000",
        ),
        (upload("a.csv", csv_bytes([{"a": "x", "b": "y"}] * 25)), "Name the column"),
    ]
    for file, message in cases:
        with pytest.raises(PortalError, match=message):
            drift_batch_upload(actor=alice, version=version, upload=file)
    with pytest.raises(PortalError, match="has no column 'text'"):
        drift_batch_upload(
            actor=alice, version=version, upload=upload("a.csv", good), text_column="text"
        )
    client = Client()
    client.force_login(alice)
    shown = client.post(
        f"/jobs/drift/version/{version.pk}/upload/",
        {"file": upload("a.csv", csv_bytes(_like_training(1)))},
        follow=True,
    )
    assert "at least 20" in shown.content.decode()
    bad_api = APIClient()
    bad_api.force_authenticate(alice)
    answer = bad_api.post(
        f"/api/versions/{version.pk}/drift/", {"file": upload("a.csv", b"")}, format="multipart"
    )
    assert answer.status_code == 400
    assert "empty" in answer.json()["detail"]
    assert bad_api.post(f"/api/versions/{version.pk}/drift/", {}).status_code == 400

    assert DriftBatch.objects.count() == 0
    assert not ReleaseCheck.objects.filter(kind="drift").exists()
    assert _stored_files() == before[0]
    assert Job.objects.count() == before[1]
    assert (
        AuditEvent.objects.count() - before[2]
        == AuditEvent.objects.filter(verb="access.refused").count()
    )
    # A drift check is launched by an upload, never by hand without a batch.
    from jobs.services.release_checks import release_check_launch

    with pytest.raises(PortalError, match="upload the batch"):
        release_check_launch(actor=alice, version=version, kind="drift")
    with pytest.raises(PortalError, match="no drift batch #999"):
        release_check_launch(actor=alice, version=version, kind="drift", params={"batch": 999})

    # A good file is kept once under its hash, with its row, its check and its job.
    with transaction.atomic():
        batch = drift_batch_upload(actor=alice, version=version, upload=upload("b.csv", good))
    assert batch.blob_name in _stored_files()
    assert not [f for f in _stored_files() if f.startswith("uploads/staged")]
    assert batch.release_check.kind == "drift"
    assert Job.objects.get(pk=batch.release_check.job_id).params["check_id"] == (
        batch.release_check.pk
    )
    assert batch.label_column == ""  # production texts without labels
    # A batch with the training data's label column, holding the trained classes, carries
    # labels; one whose column holds other values does not.
    labelled = drift_batch_upload(
        actor=alice, version=version, upload=upload("l.csv", csv_bytes(spam_rows(4)))
    )
    assert labelled.label_column == "label"
    odd = [{**row, "label": "maybe"} for row in spam_rows(4)]
    assert (
        drift_batch_upload(
            actor=alice, version=version, upload=upload("o.csv", csv_bytes(odd))
        ).label_column
        == ""
    )
    # Two batches in a row each get their own check (the first need not finish first).
    second = drift_batch_upload(
        actor=alice, version=version, upload=upload("c.csv", csv_bytes(_like_training(3)))
    )
    assert second.release_check.pk != batch.release_check.pk
    # The list and the page section cost the same few queries however many batches there are.
    with django_assert_max_num_queries(6):
        listed = bad_api.get(f"/api/versions/{version.pk}/drift/").json()
    ids = [row["id"] for row in listed]
    assert (ids[0], ids[-1]) == (batch.pk, second.pk)
    assert [row["label_column"] for row in listed] == ["", "label", "", ""]
    assert all(row["status"] == "queued" for row in listed)
