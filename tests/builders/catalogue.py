"""Catalogue versions brought in through the real importer and published, as a steward would."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from tests.builders.files import CARD, make_model
from tests.builders.weights import tiny_bert_folder
from zoo import importers
from zoo.models import CatalogModel
from zoo.services import catalogue as catalogue_services

# Files that exercise folders, LFS-by-extension and plain git blobs.
EXTRA = {
    "tokenizer/vocab.txt": b"[PAD]\n[UNK]\nhello\nworld\n",
    "tokenizer/special/added_tokens.json": b'{"<x>": 5}',
    "notes/changelog.md": "first cut, caf\u00e9 edition\n".encode(),
}


def small_model(name: str, *, extra: dict[str, bytes] | None = None) -> Path:
    """A small model folder under the first import root (where the importer may read)."""
    folder = Path(settings.IMPORT_ROOTS[0]) / name
    return make_model(folder, extra={**EXTRA, **(extra or {})})


def import_model(folder: Path, repo_id: str, *, actor, modality: str = "text"):
    """Import a folder like a steward would and publish the model."""
    version, _ = importers.import_from_folder(folder=folder, repo_id=repo_id, actor=actor)
    model = CatalogModel.objects.get(pk=version.model_id)
    if model.modality != modality:
        catalogue_services.catalog_model_update(model=model, actor=actor, modality=modality)
    if model.status != CatalogModel.Status.AVAILABLE:
        catalogue_services.catalog_model_set_status(
            model=model, status=CatalogModel.Status.AVAILABLE, actor=actor
        )
    version.refresh_from_db()
    return version


def base_model(folder: Path, repo_id: str, *, steward, license: str = "apache-2.0", seed: int = 0):
    """A tiny BERT published by a steward, with the bias notes and limitations a card would list."""
    tiny_bert_folder(folder, seed=seed)
    readme = folder / "README.md"
    readme.write_text(readme.read_text().replace("license: apache-2.0", f"license: {license}"))
    version = import_model(folder, repo_id, actor=steward)
    return catalogue_services.version_update_metadata(
        version=version,
        actor=steward,
        bias_notes="Pretrained on English web text; inherits its social biases.",
        limitations="A tiny random model: for tests only.",
    )


def finetune_of(base, name: str, repo_id: str, *, author, steward, kind: str = "finetuned"):
    """A version made from ``base`` through the fine-tune importer, published by a steward."""
    card = CARD.replace("license: mit", f"license: {base.license.spdx_id}")
    folder = make_model(Path(settings.IMPORT_ROOTS[0]) / name, card=card)
    version, _ = importers.import_finetune_output(
        folder=folder,
        repo_id=repo_id,
        derived=importers.Derived(parent=base, kind=kind, title=repo_id, summary="Made in tests."),
        source_repo="tests",
        actor=author,
    )
    catalogue_services.catalog_model_set_status(
        model=version.model, status=CatalogModel.Status.AVAILABLE, actor=steward
    )
    version.refresh_from_db()
    return version
