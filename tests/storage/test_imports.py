"""An uploaded archive imported by a real worker, with the bucket as the only storage."""

from __future__ import annotations

import hashlib
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from jobs.models import Job
from jobs.services.imports import import_launch
from tests.builders.files import make_model, zip_archive
from tests.storage.conftest import files_under
from zoo.models import ModelVersion

pytestmark = [pytest.mark.integration]


def _finish(job: Job, timeout: float = 120) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if not job.is_active:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job.pk} still {job.status} at {job.stage!r}")


def test_an_archive_import_job_goes_through_the_bucket(
    bucket, celery_worker, sam, tmp_path, settings
):
    folder = make_model(tmp_path / "src" / "router")
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
             if p.is_file()}  # fmt: skip
    archive = zip_archive(tmp_path / "router.zip", files)
    upload = SimpleUploadedFile("router.zip", archive.read_bytes())
    with transaction.atomic():
        job = import_launch(actor=sam, source="archive", repo_id="acme/router", upload=upload)

    job = _finish(job)

    # The uploaded archive waited in the bucket for the worker (the web node's disk is empty).
    assert job.params["archive"].startswith("uploads/imports/")

    assert job.status == Job.Status.SUCCEEDED, job.error
    version = ModelVersion.objects.get(pk=job.result["version_id"])
    stored = {a.path: a for a in version.artifacts.all()}
    assert set(stored) == set(files)
    for path, data in files.items():
        assert bucket.read(stored[path].blob_name) == data
        assert stored[path].sha256 == hashlib.sha256(data).hexdigest()
    keys = bucket.names()
    assert not any(key.startswith(("uploads/imports/", "incoming/")) for key in keys), keys
    assert not settings.MEDIA_ROOT.exists() or files_under(settings.MEDIA_ROOT) == []
