"""Each import path, and each refusal, with nothing half-written on failure.

Hub imports use the real huggingface_hub client against a local stand-in for
the Hub (tests/hf_server.py). Malicious pickles are crafted here and never loaded.
"""

from __future__ import annotations

import pickle

import pytest
from django.core.files.storage import default_storage

from governance.models import License
from tests.builders import corpus
from tests.builders.files import Evil, folder_bytes, make_model, tar_archive, zip_archive
from tests.hf_server import FakeHub
from zoo import importers
from zoo.importers import ImportRefused
from zoo.models import Artifact, CatalogModel, ModelVersion
from zoo.storage import blob_name

pytestmark = pytest.mark.django_db


def _nothing_written():
    assert not CatalogModel.objects.exists()
    assert not ModelVersion.objects.exists()
    assert not Artifact.objects.exists()


# --- folder -------------------------------------------------------------------


def test_folder_import_hashes_every_file_and_maps_the_card(sam, tmp_path):
    folder = make_model(tmp_path / "imports" / "router")

    version, created = importers.import_from_folder(folder=folder, repo_id="acme/router", actor=sam)

    assert created
    assert version.label == "v1"
    assert version.license.spdx_id == "mit"
    assert version.status == ModelVersion.Status.AVAILABLE
    assert version.kind == ModelVersion.Kind.FINETUNED  # the card names a base model
    assert version.provenance["datasets"] == ["acme/tickets"]
    assert version.provenance["base_model"] == ["acme/base"]
    assert "Routes support tickets" in version.card_markdown
    model = version.model
    assert (model.task, model.modality, model.architecture) == (
        "text-classification",
        "text",
        "BertModel",
    )
    assert model.parameter_count == 15
    assert model.domain_tags == ["support", "tickets"]
    assert model.status == CatalogModel.Status.DRAFT
    files = {a.path: a for a in version.artifacts.all()}
    assert set(files) == {"model.safetensors", "config.json", "README.md"}
    data = (folder / "model.safetensors").read_bytes()
    import hashlib

    st = files["model.safetensors"]
    assert st.sha256 == hashlib.sha256(data).hexdigest()
    assert st.size == len(data)
    assert st.scan_status == "clean"
    assert st.blob_name == blob_name(st.sha256)
    with default_storage.open(st.blob_name, "rb") as stored:
        assert stored.read() == data
    assert files["config.json"].scan_status == "not_applicable"


def test_same_files_again_return_the_existing_version(sam, tmp_path):
    folder = make_model(tmp_path / "imports" / "router")
    first, _ = importers.import_from_folder(folder=folder, repo_id="acme/router", actor=sam)

    again, created = importers.import_from_folder(folder=folder, repo_id="acme/router", actor=sam)

    assert not created
    assert again.pk == first.pk
    assert ModelVersion.objects.count() == 1


def test_a_changed_file_makes_a_second_version_sharing_unchanged_blobs(sam, tmp_path):
    folder = make_model(tmp_path / "imports" / "router")
    first, _ = importers.import_from_folder(folder=folder, repo_id="acme/router", actor=sam)
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 64}')

    second, created = importers.import_from_folder(folder=folder, repo_id="acme/router", actor=sam)

    assert created
    assert second.label == "v2"
    assert second.revision != first.revision
    shared = {a.sha256 for a in first.artifacts.all()} & {a.sha256 for a in second.artifacts.all()}
    assert len(shared) == 2


def test_a_malicious_pickle_blocks_the_version_with_findings(sam, tmp_path):
    folder = make_model(
        tmp_path / "imports" / "evil", extra={"pytorch_model.bin": pickle.dumps(Evil())}
    )

    version, _ = importers.import_from_folder(folder=folder, repo_id="acme/evil", actor=sam)

    assert version.status == ModelVersion.Status.BLOCKED
    evil = version.artifacts.get(path="pytorch_model.bin")
    assert evil.scan_status == "dangerous"
    assert any(f.get("name") == "system" for f in evil.scan_findings)
    assert any("pytorch_model.bin: unsafe pickle" in r for r in version.block_reasons)


def test_missing_or_unknown_license_blocks_until_a_steward_sets_one(sam, tmp_path):
    no_card = make_model(tmp_path / "imports" / "a", card=None)
    odd = make_model(tmp_path / "imports" / "b", card="---\nlicense: wtfpl-9\n---\nHi")

    bare, _ = importers.import_from_folder(folder=no_card, repo_id="acme/a", actor=sam)
    strange, _ = importers.import_from_folder(folder=odd, repo_id="acme/b", actor=sam)

    assert bare.is_blocked
    assert bare.block_reasons == ["No usable license is stated; a steward must set the license."]
    assert strange.is_blocked
    assert "'wtfpl-9' is not one the portal knows" in strange.block_reasons[0]
    assert strange.license == License.objects.get(spdx_id="unknown")
    assert strange.license_raw == "wtfpl-9"


def test_malformed_card_yaml_refuses_the_import_and_writes_nothing(sam, tmp_path):
    folder = make_model(tmp_path / "imports" / "bad", card="---\nlicense: [oops\n---\nbody")

    with pytest.raises(ImportRefused, match="YAML header is malformed"):
        importers.import_from_folder(folder=folder, repo_id="acme/bad", actor=sam)
    _nothing_written()


def test_a_symlink_in_the_folder_is_refused(sam, tmp_path):
    folder = make_model(tmp_path / "imports" / "link")
    (folder / "secrets").symlink_to("/etc/passwd")

    with pytest.raises(ImportRefused, match="secrets"):
        importers.import_from_folder(folder=folder, repo_id="acme/link", actor=sam)
    _nothing_written()


def test_a_bad_catalogue_id_is_refused(sam, tmp_path):
    folder = make_model(tmp_path / "imports" / "x")
    with pytest.raises(Exception, match="namespace/name"):
        importers.import_from_folder(folder=folder, repo_id="../../etc", actor=sam)
    _nothing_written()


# --- archives -----------------------------------------------------------------


@pytest.mark.parametrize("builder", [zip_archive, tar_archive], ids=["zip", "tar.gz"])
def test_archive_import_with_a_top_folder(sam, tmp_path, builder):
    files = folder_bytes(make_model(tmp_path / "src"))
    archive = builder(tmp_path / "upload", {f"router/{k}": v for k, v in files.items()})

    version, created = importers.import_from_archive(
        archive=archive, repo_id="acme/router", original_name="router.zip", actor=sam
    )

    assert created
    assert {a.path for a in version.artifacts.all()} == set(files)
    assert version.source == ModelVersion.Source.ARCHIVE
    assert version.source_repo == "router.zip"


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"../escape.txt": b"x"}, "escape"),
        ({"/etc/cron.d/evil": b"x"}, "absolute"),
    ],
)
def test_archive_traversal_is_refused_before_extraction(sam, tmp_path, members, message):
    archive = zip_archive(tmp_path / "upload.zip", {"README.md": b"hi", **members})

    with pytest.raises(ImportRefused, match=message):
        importers.import_from_archive(archive=archive, repo_id="acme/x", actor=sam)
    _nothing_written()
    assert not (tmp_path / "escape.txt").exists()


def test_archive_bomb_is_refused(sam, tmp_path, settings):
    settings.IMPORT_MAX_RATIO = 50
    archive = zip_archive(tmp_path / "bomb.zip", {"zeros.bin": bytes(20 * 2**20)})

    with pytest.raises(ImportRefused, match="expands more than 50 times"):
        importers.import_from_archive(archive=archive, repo_id="acme/bomb", actor=sam)
    _nothing_written()


def test_something_that_is_not_an_archive_is_refused(sam, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ImportRefused, match=r"\.zip or \.tar\.gz"):
        importers.import_from_archive(archive=path, repo_id="acme/x", actor=sam)


# --- Hugging Face Hub -----------------------------------------------------------


@pytest.fixture
def hub():
    with FakeHub() as running:
        yield running
    assert not running.errors


def test_hub_import_pins_the_commit_and_verifies_files(sam, tmp_path, hub):
    commit = hub.add_repo("acme/router", make_model(tmp_path / "repo"), tags={"v1.0": "main"})

    version, created = importers.import_from_hub(
        hub_repo_id="acme/router", revision="v1.0", endpoint=hub.endpoint, actor=sam
    )

    assert created
    assert version.revision == commit
    assert version.source == ModelVersion.Source.HUB
    assert version.source_revision == "v1.0"
    assert version.source_repo == f"{hub.endpoint}/acme/router"
    assert version.license.spdx_id == "mit"
    assert {a.path for a in version.artifacts.all()} == {
        "model.safetensors",
        "config.json",
        "README.md",
    }


def test_hub_reimport_of_the_same_commit_downloads_nothing(sam, tmp_path, hub):
    hub.add_repo("acme/router", make_model(tmp_path / "repo"))
    first, _ = importers.import_from_hub(
        hub_repo_id="acme/router", endpoint=hub.endpoint, actor=sam
    )
    hub.requests.clear()

    again, created = importers.import_from_hub(
        hub_repo_id="acme/router", endpoint=hub.endpoint, actor=sam
    )

    assert (again.pk, created) == (first.pk, False)
    assert not [r for r in hub.requests if "/resolve/" in r[1]]


@pytest.mark.parametrize(
    ("repo", "revision", "message"),
    [
        ("acme/nothing", "main", "There is no model acme/nothing"),
        ("acme/router", "no-such-branch", "has no revision 'no-such-branch'"),
    ],
)
def test_hub_unknown_repo_or_revision(sam, tmp_path, hub, repo, revision, message):
    hub.add_repo("acme/router", make_model(tmp_path / "repo"))
    with pytest.raises(ImportRefused, match=message):
        importers.import_from_hub(
            hub_repo_id=repo, revision=revision, endpoint=hub.endpoint, actor=sam
        )
    _nothing_written()


def test_hub_file_that_changes_during_import_is_refused(sam, tmp_path, hub):
    folder = make_model(tmp_path / "repo")
    hub.add_repo("acme/router", folder)
    original = (folder / "model.safetensors").read_bytes()
    tampered = original[:-4] + b"\xff\xff\xff\xff"
    hub.mutate_on_download("acme/router", "model.safetensors", tampered)

    with pytest.raises(ImportRefused, match="does not match what the source promised"):
        importers.import_from_hub(hub_repo_id="acme/router", endpoint=hub.endpoint, actor=sam)
    _nothing_written()


def test_hub_unreachable_is_a_clear_refusal(sam):
    with pytest.raises(ImportRefused, match=r"could not be reached: .*Connection refused"):
        importers.import_from_hub(
            hub_repo_id="acme/router", endpoint="http://127.0.0.1:1", actor=sam
        )


# --- every path judges files by their bytes ----------------------------------


def _disguised(tmp_path) -> dict[str, bytes]:
    marker = tmp_path / "pwned"
    return {f"disguised/{name}": build(marker) for name, build in corpus.DISGUISES.items()}


def _import_through(path: str, sam, tmp_path, hub, files: dict[str, bytes]) -> ModelVersion:
    source = make_model(tmp_path / "src", extra=files)
    if path == "folder":
        version, _ = importers.import_from_folder(folder=source, repo_id="acme/x", actor=sam)
    elif path == "archive":
        archive = tar_archive(tmp_path / "upload", folder_bytes(source))
        version, _ = importers.import_from_archive(
            archive=archive, repo_id="acme/x", original_name="x.tar.gz", actor=sam
        )
    else:
        hub.add_repo("acme/x", source)
        version, _ = importers.import_from_hub(
            hub_repo_id="acme/x", revision="main", endpoint=hub.endpoint, actor=sam
        )
    assert not (tmp_path / "pwned").exists(), "an import executed a pickle"
    return version


@pytest.mark.parametrize("path", ["folder", "archive", "hub"])
def test_the_disguised_corpus_is_blocked_through_every_import_path(sam, tmp_path, hub, path):
    files = _disguised(tmp_path)

    version = _import_through(path, sam, tmp_path, hub, files)

    assert version.status == ModelVersion.Status.BLOCKED
    judged = {a.path: a for a in version.artifacts.filter(path__startswith="disguised/")}
    assert set(judged) == set(files)
    assert {p: a.scan_status for p, a in judged.items()} == dict.fromkeys(files, "dangerous")
    assert all(a.detected for a in judged.values())
    assert len([r for r in version.block_reasons if r.startswith("disguised/")]) == len(files)


@pytest.mark.parametrize("path", ["folder", "archive", "hub"])
def test_ordinary_files_pass_through_every_import_path(sam, tmp_path, hub, path):
    files = {f"extra/{name}": build() for name, (build, _, _) in corpus.BENIGN.items()}

    version = _import_through(path, sam, tmp_path, hub, files)

    assert version.status == ModelVersion.Status.AVAILABLE, version.block_reasons
    statuses = {a.path: a.scan_status for a in version.artifacts.filter(path__startswith="extra/")}
    expected = {f"extra/{name}": status for name, (_, status, _) in corpus.BENIGN.items()}
    assert statuses == expected
