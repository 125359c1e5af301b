"""What dead processes leave is swept; what something still uses is never touched."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from governance.models import AuditEvent
from jobs.models import FineTuneRun, Job
from jobs.services.sweep import storage_sweep
from tests.builders.datasets import csv_bytes, spam_rows, upload
from tests.factories import ArtifactFactory, JobFactory
from zoo.services import datasets as dataset_services
from zoo.storage import STAGED_UPLOADS, blob_name

pytestmark = pytest.mark.django_db

DAY = 24 * 3600


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (then, then))


def _stored(name: str, data: bytes = b"x", *, age_s: float = 0) -> str:
    saved = default_storage.save(name, ContentFile(data))
    if age_s:
        _age(Path(default_storage.path(saved)), age_s)
    return saved


def _folder(path: Path, *, age_s: float = 0) -> Path:
    path.mkdir(parents=True)
    (path / "file.bin").write_bytes(b"left behind")
    if age_s:
        _age(path, age_s)
    return path


def test_the_sweep_removes_leftovers_and_keeps_what_is_in_use(settings):
    work = Path(settings.WORK_DIR)
    running = JobFactory(status=Job.Status.RUNNING, attempts=2)
    finished = JobFactory(status=Job.Status.SUCCEEDED, attempts=1)
    current = _folder(work / f"job-{running.pk}-a2-abc")
    earlier_attempt = _folder(work / f"job-{running.pk}-a1-def")
    of_a_finished_job = _folder(work / f"job-{finished.pk}-a1-ghi")
    stray_old = _folder(work / "tmpold", age_s=settings.SWEEP_GRACE_S + 60)
    stray_new = _folder(work / "tmpnew")
    staging_old = _folder(Path(settings.IMPORT_STAGING_DIR) / "import-old", age_s=DAY * 2)
    staging_new = _folder(Path(settings.IMPORT_STAGING_DIR) / "import-new")
    half_built = _folder(Path(settings.MODEL_CACHE_DIR) / ".abc123-x", age_s=DAY * 2)
    built = _folder(Path(settings.MODEL_CACHE_DIR) / ("a" * 40), age_s=DAY * 2)

    used = ArtifactFactory(blob_name=_stored(blob_name("1" * 64), age_s=DAY * 3))
    orphan_old = _stored(blob_name("2" * 64), age_s=DAY * 3)
    orphan_new = _stored(blob_name("3" * 64))
    staged_old = _stored(f"{STAGED_UPLOADS}/abandoned", age_s=DAY * 2)
    staged_new = _stored(f"{STAGED_UPLOADS}/just-uploaded")

    report = storage_sweep()

    assert current.exists()
    assert not earlier_attempt.exists()
    assert not of_a_finished_job.exists()
    assert not stray_old.exists()
    assert stray_new.exists()
    assert not staging_old.exists()
    assert staging_new.exists()
    assert not half_built.exists()
    assert built.exists()
    assert default_storage.exists(used.blob_name)
    assert not default_storage.exists(orphan_old)
    assert default_storage.exists(orphan_new)
    assert not default_storage.exists(staged_old)
    assert default_storage.exists(staged_new)
    assert report["counts"] == {
        "workspaces": 3,
        "staging": 1,
        "half_built_models": 1,
        "staged_uploads": 1,
        "unreferenced_blobs": 1,
    }
    assert report["bytes_freed"] > 0
    event = AuditEvent.objects.get(verb="storage.sweep")
    assert event.payload["counts"] == report["counts"]
    # Nothing left to do: a second sweep removes nothing and writes no event.
    assert storage_sweep()["counts"] == {}
    assert AuditEvent.objects.filter(verb="storage.sweep").count() == 1


def test_a_dry_run_says_what_it_would_remove_and_removes_nothing(settings):
    stray = _folder(Path(settings.WORK_DIR) / "job-999999-a1-xyz")
    report = storage_sweep(dry_run=True)
    assert report["counts"] == {"workspaces": 1}
    assert stray.exists()
    assert not AuditEvent.objects.filter(verb="storage.sweep").exists()


def test_checkpoints_go_once_their_run_is_over():
    live_job = JobFactory(kind=Job.Kind.FINETUNE, status=Job.Status.RUNNING)
    done_job = JobFactory(kind=Job.Kind.FINETUNE, status=Job.Status.FAILED)
    live = _fake_run(live_job)
    done = _fake_run(done_job)
    kept = _stored(f"checkpoints/finetune-{live.pk}/attempt1-epoch1.zip")
    gone = _stored(f"checkpoints/finetune-{done.pk}/attempt1-epoch2.zip")
    orphan = _stored("checkpoints/finetune-424242/attempt3-epoch1.zip")
    report = storage_sweep()
    assert default_storage.exists(kept)
    assert not default_storage.exists(gone)
    assert not default_storage.exists(orphan)
    assert report["counts"] == {"checkpoints": 2}


def _fake_run(job) -> FineTuneRun:
    """A run row for the sweep's question "is its job still going?" (no training needed)."""
    from tests.factories import ModelVersionFactory
    from zoo.models import Dataset, DatasetVersion

    owner = job.requested_by
    dataset = Dataset.objects.create(
        owner=owner, name=f"d{job.pk}", modality="text", sensitivity="internal"
    )
    data = DatasetVersion.objects.create(
        dataset=dataset,
        label="v1",
        sha256="f" * 64,
        size=1,
        format="csv",
        blob_name="x",
        n_rows=4,
        label_counts={"a": 2, "b": 2},
    )
    return FineTuneRun.objects.create(
        job=job,
        base_version=ModelVersionFactory(),
        dataset_version=data,
        requested_by=owner,
        strategy="head",
        config={},
        split="stratified",
    )


@pytest.mark.parametrize(
    "data",
    [
        b"text,label\n\xff\xfe not UTF-8 \x80,a\n",  # refused at the preview
        b"text,label\nonly one row,a\nand another,a\n",  # refused once the columns are chosen
    ],
)
def test_a_refused_api_upload_leaves_nothing_in_storage(alice, data):
    from portal.errors import PortalError

    with pytest.raises(PortalError):
        dataset_services.dataset_upload(
            actor=alice,
            upload=upload("bad.csv", data),
            name="bad",
            sensitivity="internal",
            text_column="text",
            label_column="label",
        )
    assert list(_all_stored("uploads")) == []
    assert list(_all_stored("blobs")) == []


def test_a_confirmed_upload_keeps_its_blob_and_drops_its_staged_copy(
    alice, django_capture_on_commit_callbacks
):
    staged = dataset_services.dataset_stage_upload(
        actor=alice, upload=upload("sms.csv", csv_bytes(spam_rows()))
    )
    assert default_storage.exists(staged.staged_name)
    with django_capture_on_commit_callbacks(execute=True):
        version, created = dataset_services.dataset_create(
            actor=alice,
            staged=staged,
            name="sms",
            sensitivity="internal",
            text_column="message",
            label_column="label",
        )
    assert created
    assert version.blob_name == blob_name(staged.sha256)
    assert default_storage.exists(version.blob_name)
    assert not default_storage.exists(staged.staged_name)
    assert list(_all_stored("uploads")) == []


def _all_stored(prefix: str):
    try:
        folders, files = default_storage.listdir(prefix)
    except FileNotFoundError:
        return
    yield from (f"{prefix}/{f}" for f in files)
    for folder in folders:
        yield from _all_stored(f"{prefix}/{folder}")


def test_an_uploaded_archive_whose_import_never_ran_is_swept_later():
    waiting = JobFactory(kind=Job.Kind.IMPORT, status=Job.Status.QUEUED)
    kept = _stored("uploads/imports/aaaa", age_s=3600)
    Job.objects.filter(pk=waiting.pk).update(params={"archive": kept})
    gone = _stored("uploads/imports/bbbb", age_s=3600)
    fresh = _stored("uploads/imports/cccc")
    storage_sweep(now=timezone.now() + timedelta(seconds=1))
    assert default_storage.exists(kept)
    assert not default_storage.exists(gone)
    assert default_storage.exists(fresh)
