"""Drift of an image model's production inputs: zips of images uploaded through the page and
the API, each compared with a real tiny ViT fine-tune's held-out images on a real worker.

Given alice's fine-tune of a tiny ViT telling red cats from green dogs, a batch drawn the
same way (in class folders: it carries labels) stays stable; a batch of cats only, loose in
one folder, moves the predicted classes into the retrain band and tells her once; archives
that break the upload rules are refused with a clear message and leave nothing behind.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from governance.models import AuditEvent, Notification
from jobs.engine import job_execute
from jobs.models import DriftBatch, FineTuneRun, Job
from jobs.services.drift import drift_batch_upload
from jobs.services.finetunes import finetune_launch
from jobs.services.release_checks import release_check_launch
from portal.errors import PortalError
from tests.builders.catalogue import import_model
from tests.builders.corpus import zip_bytes
from tests.builders.datasets import csv_bytes, image_zip_bytes, upload
from tests.builders.governance import approve_reuse
from tests.builders.release_checks import wait_for_check
from tests.builders.weights import tiny_vit_folder
from zoo.models import ReleaseCheck
from zoo.services import catalogue as catalogue_services
from zoo.services import datasets as dataset_services

# Enough epochs that the tiny ViT tells the two colours apart on every held-out image.
TRAINING = {"epochs": 6, "batch_size": 8, "patience": 0, "lr_search": False, "learning_rate": 2e-3}
PER_CLASS = 36  # 72 images: 30 % of them held out is more than the 20 a reference needs


def _stored_files() -> list[str]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _loose(data: bytes, *, only: str | None = None, folder: str = "batch") -> bytes:
    """The images of a class-folder zip moved into one plain folder (no labels)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    return zip_bytes(
        {
            f"{folder}/{i:03d}.png": source.read(name)
            for i, name in enumerate(sorted(source.namelist()))
            if only is None or name.startswith(f"{only}/")
        }
    )


@pytest.fixture
def tuned(transactional_db, alice, sam, tmp_path):
    """alice's full fine-tune of a tiny ViT on red cats and green dogs, published by sam."""
    vit = import_model(tiny_vit_folder(tmp_path / "vit"), "acme/vit", actor=sam, modality="vision")
    approve_reuse(alice, vit)
    staged = dataset_services.dataset_stage_upload(
        actor=alice,
        upload=upload("pets.zip", image_zip_bytes({"cat": PER_CLASS, "dog": PER_CLASS})),
    )
    pets, _ = dataset_services.dataset_create(
        actor=alice, staged=staged, name="pets", sensitivity="internal"
    )
    launched = finetune_launch(
        actor=alice, base_version=vit, dataset_version=pets, strategy="full", config=TRAINING
    )
    assert job_execute(job_id=launched.job_id) == "succeeded", Job.objects.get(
        pk=launched.job_id
    ).error
    run = FineTuneRun.objects.select_related("output_version__model").get(pk=launched.pk)
    catalogue_services.catalog_model_set_status(
        model=run.output_version.model, status="available", actor=sam
    )
    run.output_version.refresh_from_db()
    return run


@pytest.mark.integration
def test_image_batches_are_compared_with_held_out_images_and_notify_once(
    tuned, celery_worker, alice, bob
):
    # (tuned first: its fine-tune runs here before the suite's worker starts and could take it)
    version = tuned.output_version
    page = Client()
    page.force_login(alice)
    section = page.get(f"/jobs/drift/version/{version.pk}/").content.decode()
    assert 'accept=".zip"' in section
    assert 'name="text_column"' not in section

    # Given new cats and dogs drawn as the training ones were, in class folders, on the page...
    began = time.perf_counter()
    answer = page.post(
        f"/jobs/drift/version/{version.pk}/upload/",
        {"file": upload("monday.zip", image_zip_bytes({"cat": 15, "dog": 15}, seed=7))},
    )
    assert answer.status_code == 302
    like = DriftBatch.objects.get(version=version)
    assert (like.n_rows, like.format, like.text_column) == (30, "zip", "")
    assert like.label_column == DriftBatch.LABEL_FOLDERS  # its folders are the classes
    check = wait_for_check(like.release_check)
    like_seconds = time.perf_counter() - began
    print(
        f"\nlike training: {check.summary}\n({like_seconds:.1f} s end to end, "
        f"{check.seconds:.2f} s in the job)"
    )
    # ...the worker compares them with the fine-tune's held-out images: stable.
    assert check.status == ReleaseCheck.Status.PASSED, check.error
    r = check.result
    assert r["modality"] == "vision"
    assert r["reference_rows"] == "held-out (validation and test) images"
    assert r["n_reference"] == tuned.training["n_val"] + tuned.training["n_test"]
    assert r["n_batch"] == 30
    assert r["band"] == "stable", r
    assert r["mmd"]["permutations"] == 500
    assert "classification head reads" in check.summary
    assert not Notification.objects.filter(event_key__startswith="drift:").exists()

    # When bob, who holds an approval, posts a loose folder of cats only to the API...
    approve_reuse(bob, version)
    api = APIClient()
    api.force_authenticate(bob)
    pets = image_zip_bytes({"cat": 30, "dog": 2}, seed=11)
    began = time.perf_counter()
    posted = api.post(
        f"/api/versions/{version.pk}/drift/",
        {"file": upload("cats.zip", _loose(pets, only="cat"))},
        format="multipart",
    )
    assert posted.status_code == 201, posted.content
    assert posted.json()["label_column"] == ""
    shifted = DriftBatch.objects.get(pk=posted.json()["id"])
    check = wait_for_check(shifted.release_check)
    shifted_seconds = time.perf_counter() - began
    print(
        f"cats only: {check.summary}\n({shifted_seconds:.1f} s end to end, "
        f"{check.seconds:.2f} s in the job)"
    )
    # ...every input is called a cat: the class PSI is in the retrain band, and MMD sees it.
    assert check.status == ReleaseCheck.Status.FAILED, check.error
    assert check.result["class_shares"]["batch"] == [1.0, 0.0]
    assert check.result["band"] == "retrain"
    assert check.result["mmd"]["p_value"] < 0.01
    note = Notification.objects.get(event_key=f"drift:{version.pk}:{shifted.pk}", user=alice)
    assert note.kind == "drift"
    assert f"Batch #{shifted.pk} has no labels" in note.body
    assert "new fine-tune of acme/vit" in note.body

    # The same chart as for text, with both batches; the card names the embedding used.
    section = page.get(f"/jobs/drift/version/{version.pk}/").content.decode()
    assert section.count('data-band="') == 3
    assert section.count("<circle") == 6
    version.refresh_from_db()
    assert "the embeddings the classification head reads" in version.card_markdown
    print(f"image drift check end to end: {like_seconds:.1f} s and {shifted_seconds:.1f} s")


def _traversal() -> bytes:
    return zip_bytes({"batch/a.png": b"x", "../evil.png": b"x"})


@pytest.mark.django_db(transaction=True)
def test_image_batches_that_break_the_rules_are_refused_and_a_labelled_one_serves_inconsistency(
    alice, tuned
):
    version = tuned.output_version
    before = (_stored_files(), Job.objects.count(), AuditEvent.objects.count())
    pets = image_zip_bytes({"cat": 12, "dog": 12})
    broken = zip_bytes({**{f"b/{i}.png": b"\x89PNG not really" for i in range(25)}})
    cases = [
        (upload("a.csv", csv_bytes([{"message": "hello"}] * 25)), "This is an image model"),
        (upload("a.zip", _traversal()), "refused"),
        (upload("a.zip", _loose(image_zip_bytes({"cat": 5, "dog": 5}))), "at least 20"),
        (upload("a.zip", broken), "could not be read"),
        (upload("a.zip", zip_bytes({"notes/readme.txt": b"hi"})), "holds no images"),
        (upload("a.zip", b"PK\x05\x06" + b"\0" * 18), "empty"),
    ]
    for file, message in cases:
        with pytest.raises(PortalError, match=message):
            drift_batch_upload(actor=alice, version=version, upload=file)
    with pytest.raises(PortalError, match="an image batch has none"):
        drift_batch_upload(
            actor=alice, version=version, upload=upload("p.zip", pets), text_column="text"
        )
    api = APIClient()
    api.force_authenticate(alice)
    answer = api.post(
        f"/api/versions/{version.pk}/drift/",
        {"file": upload("a.zip", _traversal())},
        format="multipart",
    )
    assert answer.status_code == 400
    assert "refused" in answer.json()["detail"]
    assert not DriftBatch.objects.exists()
    assert _stored_files() == before[0]
    assert Job.objects.count() == before[1]
    assert AuditEvent.objects.count() == before[2]
    assert not [p for p in Path(settings.MEDIA_ROOT).rglob("*") if "evil" in p.name]

    # Images in folders that are not the model's classes are loose images: no labels.
    batch = drift_batch_upload(
        actor=alice,
        version=version,
        upload=upload("p.zip", image_zip_bytes({"cat": 12, "bird": 12}, seed=3)),
    )
    assert (batch.n_rows, batch.label_column) == (24, "")
    assert batch.release_check.kind == "drift"

    # A labelled image batch is an input set for the inconsistency check against a retrain.
    pets_batch = drift_batch_upload(actor=alice, version=version, upload=upload("p.zip", pets))
    assert pets_batch.label_column == DriftBatch.LABEL_FOLDERS
    retrain = finetune_launch(
        actor=alice,
        base_version=tuned.base_version,
        dataset_version=tuned.dataset_version,
        strategy="head",
        config={**TRAINING, "epochs": 1},
    )
    assert job_execute(job_id=retrain.job_id) == "succeeded"
    other = FineTuneRun.objects.get(pk=retrain.pk).output_version
    check = release_check_launch(
        actor=alice,
        version=version,
        kind="inconsistency",
        params={"other_version": other.pk, "batch": pets_batch.pk},
    )
    assert job_execute(job_id=check.job_id) == "succeeded", Job.objects.get(pk=check.job_id).error
    check.refresh_from_db()
    r = check.result
    assert (r["inputs"]["source"], r["inputs"]["batch"], r["n"]) == ("batch", pets_batch.pk, 24)
    assert r["labelled"] is True
    # The fine-tune tells red cats from green dogs: right on every one of these.
    assert r["accuracy_new"] == 1.0
    assert f"drift batch #{pets_batch.pk}" in check.summary
