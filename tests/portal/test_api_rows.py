"""Plain API rows (``portal.api.PlainRows``) say exactly what DRF's own serializer path says."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework import serializers

from portal.api import PlainRows
from tests.factories import ModelVersionFactory, catalogue_entry
from zoo.api.catalogue import CatalogModelSerializer, ModelVersionSerializer
from zoo.models import CatalogModel, ModelVersion
from zoo.selectors.catalogue import with_latest_license

pytestmark = pytest.mark.django_db


def _drf(serializer_class, instance):
    """What the serializer would say without the plain path."""
    return super(PlainRows, serializer_class(instance)).to_representation(instance)


@pytest.fixture
def rows():
    base = catalogue_entry("acme/base", summary="A base.", domain_tags=["legal", "ocr"])
    child = ModelVersionFactory(
        model=base.model,
        parent=base,
        metrics={"accuracy": 0.91},
        provenance={"datasets": ["d1"]},
        block_reasons=["unknown license"],
        status="blocked",
        total_size=123,
    )
    bare = catalogue_entry("acme/bare", parameter_count=None, task="", summary="")
    return base, child, bare


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_model_and_version_rows_match_drf(rows, zone):
    with timezone.override(zone):
        models = with_latest_license(CatalogModel.objects.all()).order_by("repo_id")
        assert len(models) == 2
        for model in models:
            plain = CatalogModelSerializer(model).data
            assert plain == _drf(CatalogModelSerializer, model)
            assert plain["latest_version"]
        versions = ModelVersion.objects.select_related("model", "license").order_by("id")
        assert len(versions) == 3
        for version in versions:
            plain = ModelVersionSerializer(version).data
            assert plain == _drf(ModelVersionSerializer, version)
            assert isinstance(plain["license"], dict)
            assert plain["repo_id"] == version.model.repo_id
        child = ModelVersionSerializer(rows[1]).data
        assert child["parent"] == rows[0].pk
        assert child["created_at"].endswith("Z" if zone == "UTC" else "+01:00")


def test_a_row_without_the_list_annotations_falls_back_to_drf(rows):
    model = CatalogModel.objects.get(repo_id="acme/bare")  # no license_spdx annotation
    assert CatalogModelSerializer(model).data == _drf(CatalogModelSerializer, model)


def test_a_serializer_the_plan_cannot_serve_uses_drf_throughout(rows):
    class WithMethod(PlainRows, serializers.ModelSerializer):
        shout = serializers.SerializerMethodField()

        class Meta:
            model = CatalogModel
            fields = ["id", "repo_id", "shout"]

        def get_shout(self, obj):
            return obj.repo_id.upper()

    model = CatalogModel.objects.get(repo_id="acme/base")
    assert WithMethod._plain_plan() is None
    assert WithMethod(model).data == {"id": model.pk, "repo_id": "acme/base", "shout": "ACME/BASE"}
    assert CatalogModelSerializer._plain_plan() is not None
