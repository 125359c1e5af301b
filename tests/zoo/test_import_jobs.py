"""Imports launched from the form and the API run as jobs on a real worker."""

from __future__ import annotations

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from rest_framework.test import APIClient

from jobs.models import Job
from jobs.services.imports import import_launch
from portal.errors import PortalError
from tests.builders.files import folder_bytes, make_model, zip_archive
from zoo.models import CatalogModel, ModelVersion


def _finish(job: Job, timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if not job.is_active:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job.pk} still {job.status}")


@pytest.mark.integration
def test_a_folder_import_runs_on_the_worker(celery_worker, sam, settings, tmp_path):
    folder = make_model(tmp_path / "imports" / "router")
    with transaction.atomic():
        job = import_launch(actor=sam, source="folder", repo_id="acme/router", folder=str(folder))

    job = _finish(job)

    assert job.status == Job.Status.SUCCEEDED, job.error
    version = ModelVersion.objects.get(pk=job.result["version_id"])
    assert version.model.repo_id == "acme/router"
    assert job.result["created"] is True
    assert "Imported acme/router v1" in job.log


@pytest.mark.integration
def test_a_refused_archive_fails_the_job_with_its_reason(celery_worker, sam, tmp_path):
    archive = zip_archive(tmp_path / "bad.zip", {"../../etc/x": b"x"})
    upload = SimpleUploadedFile("bad.zip", archive.read_bytes())
    with transaction.atomic():
        job = import_launch(actor=sam, source="archive", repo_id="acme/bad", upload=upload)

    job = _finish(job)

    assert job.status == Job.Status.FAILED
    assert job.error.startswith("archive member ../../etc/x")
    assert not CatalogModel.objects.exists()


@pytest.mark.django_db
def test_folders_outside_the_import_roots_are_refused(sam, tmp_path):
    outside = make_model(tmp_path / "elsewhere")
    for folder in [
        str(outside),
        "/etc",
        "relative/path",
        str(tmp_path / "imports" / ".." / "elsewhere"),
    ]:
        with pytest.raises(PortalError):
            import_launch(actor=sam, source="folder", repo_id="acme/x", folder=folder)
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_import_form_is_for_stewards_and_validates(client, bob, sam, tmp_path):
    client.force_login(bob)
    assert client.get("/catalogue/import/").status_code == 403
    client.force_login(sam)
    assert client.get("/catalogue/import/").status_code == 200

    missing = client.post("/catalogue/import/", {"source": "hub", "hub_repo_id": ""})
    assert "Name the Hub repository" in missing.content.decode()
    outside = client.post(
        "/catalogue/import/", {"source": "folder", "folder": "/etc", "repo_id": "acme/x"}
    )
    assert "Imports are allowed only from folders under" in outside.content.decode()
    assert not Job.objects.exists()

    files = folder_bytes(make_model(tmp_path / "src"))
    archive = zip_archive(tmp_path / "m.zip", files)
    response = client.post(
        "/catalogue/import/",
        {
            "source": "archive",
            "repo_id": "acme/router",
            "archive": SimpleUploadedFile("m.zip", archive.read_bytes()),
        },
    )
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/"
    assert job.kind == Job.Kind.IMPORT
    assert job.params["original_name"] == "m.zip"


@pytest.mark.django_db
def test_import_api(sam, bob, tmp_path):
    api = APIClient()
    api.force_authenticate(bob)
    assert api.post("/api/imports/", {"source": "hub", "hub_repo_id": "a/b"}).status_code == 403
    api.force_authenticate(sam)
    bad = api.post("/api/imports/", {"source": "hub", "hub_repo_id": "not a repo"})
    assert bad.status_code == 400
    assert bad.json()["field"] == "hub_repo_id"
    ok = api.post(
        "/api/imports/", {"source": "hub", "hub_repo_id": "acme/router", "revision": "v1"}
    )
    assert ok.status_code == 201
    job = Job.objects.get()
    assert job.params == {
        "source": "hub",
        "repo_id": "acme/router",
        "hub_repo_id": "acme/router",
        "revision": "v1",
    }
