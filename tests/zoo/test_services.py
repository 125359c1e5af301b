from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from governance.models import License
from portal.errors import Conflict, PortalError
from tests.factories import (
    PUBLISHABLE_CARD,
    ArtifactFactory,
    CatalogModelFactory,
    ModelVersionFactory,
)
from zoo.models import CatalogModel, ModelVersion
from zoo.selectors.catalogue import CatalogueQuery, search_catalogue
from zoo.services import catalogue as catalogue_services

pytestmark = pytest.mark.django_db


def test_setting_a_known_license_unblocks_a_version_blocked_only_for_its_license(sam):
    version = ModelVersionFactory(license=License.objects.get(spdx_id="unknown"))
    version.block_reasons = catalogue_services.version_block_reasons(version)
    version.status = ModelVersion.Status.BLOCKED
    version.save()

    version = catalogue_services.version_set_license(
        version=version, license=License.objects.get(spdx_id="mit"), actor=sam
    )

    assert version.status == ModelVersion.Status.AVAILABLE
    assert version.block_reasons == []


def test_an_unsafe_file_keeps_the_version_blocked_whatever_the_license(sam):
    version = ModelVersionFactory(license=License.objects.get(spdx_id="unknown"))
    ArtifactFactory(
        version=version,
        path="pytorch_model.bin",
        format="pickle",
        scan_status="dangerous",
        scan_findings=[{"module": "os", "name": "system", "safety": "dangerous"}],
    )

    version = catalogue_services.version_set_license(
        version=version, license=License.objects.get(spdx_id="mit"), actor=sam
    )

    assert version.status == ModelVersion.Status.BLOCKED
    assert version.block_reasons == ["pytorch_model.bin: unsafe pickle (os.system)."]


def test_versions_and_artifacts_are_immutable():
    artifact = ArtifactFactory()
    version = ModelVersion.objects.get(pk=artifact.version_id)
    version.revision = "f" * 40
    with pytest.raises(ValidationError, match="immutable"):
        version.save()
    artifact.size = 1
    with pytest.raises(ValidationError, match="immutable"):
        artifact.save()
    version.refresh_from_db()
    version.bias_notes = "Under-represents non-English text."
    version.save()  # metadata stays editable


def test_status_changes_need_reasons_and_follow_allowed_moves(sam):
    version = ModelVersionFactory(
        model=CatalogModelFactory(status="draft"), card_markdown=PUBLISHABLE_CARD
    )
    model = version.model

    with pytest.raises(PortalError, match="reason is required"):
        catalogue_services.catalog_model_set_status(model=model, status="blocked", actor=sam)
    model = catalogue_services.catalog_model_set_status(model=model, status="available", actor=sam)
    assert model.status == "available"
    model = catalogue_services.catalog_model_set_status(
        model=model, status="deprecated", reason="Superseded by v2", actor=sam
    )
    assert (model.status, model.status_reason) == ("deprecated", "Superseded by v2")
    with pytest.raises(Conflict):
        catalogue_services.catalog_model_set_status(
            model=model, status="deprecated", reason="x", actor=sam
        )
    with pytest.raises(PortalError, match="not a status a steward can set"):
        catalogue_services.catalog_model_set_status(model=model, status="draft", actor=sam)


def test_publishing_needs_an_unblocked_version(sam):
    model = CatalogModelFactory(status="draft")
    ModelVersionFactory(model=model, status="blocked", block_reasons=["x"])
    with pytest.raises(PortalError, match="blocked"):
        catalogue_services.catalog_model_set_status(model=model, status="available", actor=sam)
    assert CatalogModel.objects.get(pk=model.pk).status == "draft"


def test_metadata_edit_refreshes_what_search_matches(sam):
    model = ModelVersionFactory().model
    catalogue_services.catalog_model_update(
        model=model, actor=sam, summary="Detects invoices", domain_tags=["finance"]
    )
    for words in ("invoice", "finance", "detects invoices finance"):
        found = search_catalogue(sam, CatalogueQuery(q=words)).qs
        assert list(found) == [model], words
    with pytest.raises(PortalError, match="cannot be edited"):
        catalogue_services.catalog_model_update(model=model, actor=sam, repo_id="x/y")
