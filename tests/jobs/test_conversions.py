"""Converting a version's torch checkpoints to safetensors: a new version whose parent is the
original, loaded with weights_only in a child process; hostile checkpoints are refused.

The handler runs eagerly (``job_execute`` in the test's process); the child
process it starts is real.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from django.test import Client
from safetensors.torch import load_file

from jobs.engine import job_execute
from jobs.models import Job
from jobs.services.conversions import conversion_launch
from portal.errors import Forbidden, PortalError
from tests.builders.catalogue import import_model
from tests.builders.files import Evil
from tests.builders.weights import tiny_bert_folder
from zoo import importers
from zoo.models import ModelVersion
from zoo.storage import materialize_version

pytestmark = pytest.mark.django_db


def _pickled_bert(folder: Path) -> Path:
    """A tiny BERT as transformers wrote checkpoints before safetensors: pytorch_model.bin."""
    tiny_bert_folder(folder)
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    return folder


def _run(job: Job) -> Job:
    job_execute(job_id=job.pk)
    job.refresh_from_db()
    return job


def test_a_checkpoint_becomes_a_safetensors_version_whose_parent_is_the_original(
    sam, tmp_path, settings
):
    original = import_model(_pickled_bert(tmp_path / "bert"), "acme/old-bert", actor=sam)
    assert original.artifacts.filter(path="pytorch_model.bin", format="pickle").exists()

    job = _run(conversion_launch(actor=sam, version=original))

    assert job.status == Job.Status.SUCCEEDED, job.error
    converted = ModelVersion.objects.get(pk=job.result["version_id"])
    assert converted.model_id == original.model_id
    assert converted.parent_id == original.pk
    assert converted.source == ModelVersion.Source.CONVERSION
    assert converted.license_id == original.license_id
    assert converted.provenance["converted_from"] == {
        "version": original.pk,
        "label": original.label,
        "revision": original.revision,
        "files": {"pytorch_model.bin": "model.safetensors"},
    }
    paths = set(converted.artifacts.values_list("path", flat=True))
    assert "model.safetensors" in paths
    assert "pytorch_model.bin" not in paths
    assert paths - {"model.safetensors"} == set(
        original.artifacts.exclude(path="pytorch_model.bin").values_list("path", flat=True)
    )
    assert converted.artifacts.get(path="model.safetensors").scan_status == "clean"
    folder = materialize_version(converted, settings.MODEL_CACHE_DIR)
    before = torch.load(tmp_path / "bert" / "pytorch_model.bin", weights_only=True)
    after = load_file(folder / "model.safetensors")
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert "pytorch_model.bin → model.safetensors" in job.log

    # Converting again gives the same version back, not a second one.
    again = _run(conversion_launch(actor=sam, version=original))
    assert again.result["version_id"] == converted.pk
    assert again.result["created"] is False


def test_a_checkpoint_carrying_code_is_refused_and_never_run(sam, tmp_path):
    marker = tmp_path / "pwned"
    folder = tiny_bert_folder(tmp_path / "bert")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Evil(f"touch {marker}"), protocol=2))
    version, _ = importers.import_from_folder(folder=folder, repo_id="acme/evil", actor=sam)
    assert version.is_blocked

    job = _run(conversion_launch(actor=sam, version=version))

    assert job.status == Job.Status.FAILED
    assert "pytorch_model.bin could not be loaded as weights only" in job.error
    assert "weights_only` set to `False`" not in job.error
    assert not marker.exists()
    assert ModelVersion.objects.filter(model=version.model).count() == 1


def _version_with(sam, tmp_path, name: str, files: dict[str, bytes]) -> ModelVersion:
    folder = tiny_bert_folder(tmp_path / name)
    for path, data in files.items():
        (folder / path).write_bytes(data)
    version, _ = importers.import_from_folder(folder=folder, repo_id=f"acme/{name}", actor=sam)
    return version


def test_conversions_are_refused_with_a_reason_and_create_nothing(sam, bob, tmp_path):
    checkpoint = tmp_path / "w.pt"
    torch.save({"w": torch.ones(2)}, checkpoint)
    plain = _version_with(sam, tmp_path, "plain", {})
    both = _version_with(sam, tmp_path, "both", {"pytorch_model.bin": checkpoint.read_bytes()})
    sklearn = _version_with(sam, tmp_path, "sk", {"clf.pkl": pickle.dumps({"a": 1})})
    torch_file = _version_with(sam, tmp_path, "pt", {"extra.pt": checkpoint.read_bytes()})

    with pytest.raises(Forbidden, match="Only stewards"):
        conversion_launch(actor=bob, version=torch_file)
    with pytest.raises(PortalError, match="no torch checkpoints"):
        conversion_launch(actor=sam, version=plain)
    with pytest.raises(PortalError, match=r"would become model\.safetensors, which v1 already has"):
        conversion_launch(actor=sam, version=both)
    with pytest.raises(PortalError, match=r"clf\.pkl is a pickle but not a torch checkpoint"):
        conversion_launch(actor=sam, version=sklearn)
    assert not Job.objects.filter(kind=Job.Kind.CONVERT).exists()


def test_the_version_page_offers_stewards_the_conversion(sam, bob, tmp_path):
    version = import_model(_pickled_bert(tmp_path / "bert"), "acme/old-bert", actor=sam)
    page = f"/catalogue/acme/old-bert/?version={version.label}"
    steward, user = Client(), Client()
    steward.force_login(sam)
    user.force_login(bob)

    assert "Convert to safetensors" in steward.get(page).content.decode()
    assert "Convert to safetensors" not in user.get(page).content.decode()
    refused = user.post(f"/catalogue/import/convert/{version.pk}/", follow=True)
    assert "Only stewards may convert" in refused.content.decode()
    launched = steward.post(f"/catalogue/import/convert/{version.pk}/")
    job = Job.objects.get(kind=Job.Kind.CONVERT)
    assert launched.status_code == 302
    assert launched["Location"] == f"/jobs/{job.pk}/"
    assert job.params == {
        "version_id": version.pk,
        "files": {"pytorch_model.bin": "model.safetensors"},
    }
