"""REST endpoints for the catalogue: thin viewsets over the same selectors and services."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from governance.models import License
from portal.api import KeysetPagination, PlainRows
from zoo.models import Artifact, CatalogModel, ModelVersion
from zoo.selectors import catalogue as selectors
from zoo.selectors import search
from zoo.services import catalogue as services


class LicenseSerializer(PlainRows, serializers.ModelSerializer):
    """A license as the catalogue cites it (SPDX id, category, what it allows)."""

    class Meta:
        model = License
        fields = ["spdx_id", "name", "category", "commercial_use", "attribution_required", "url"]


class CatalogModelSerializer(PlainRows, serializers.ModelSerializer):
    """A catalogue entry, with its latest version's label and license."""

    license = serializers.CharField(source="license_spdx", read_only=True, allow_null=True)
    license_category = serializers.CharField(read_only=True, allow_null=True)
    latest_version = serializers.CharField(source="latest_label", read_only=True, allow_null=True)

    class Meta:
        model = CatalogModel
        fields = [
            "id",
            "repo_id",
            "title",
            "summary",
            "modality",
            "task",
            "architecture",
            "parameter_count",
            "domain_tags",
            "status",
            "status_reason",
            "license",
            "license_category",
            "latest_version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "repo_id", "parameter_count", "status", "status_reason"]


class CatalogModelEditSerializer(serializers.ModelSerializer):
    domain_tags = serializers.ListField(child=serializers.CharField(max_length=64), max_length=30)

    class Meta:
        model = CatalogModel
        fields = ["title", "summary", "modality", "task", "architecture", "domain_tags"]


class StatusInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=CatalogModel.Status.choices)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")


class CatalogModelFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_q", label="Full-text search")
    license_category = django_filters.ChoiceFilter(
        choices=License.Category.choices, method="filter_license_category"
    )
    commercial_use = django_filters.BooleanFilter(method="filter_commercial")
    domain = django_filters.CharFilter(method="filter_domain", label="Domain tag")

    class Meta:
        model = CatalogModel
        fields = ["modality", "task", "status"]

    def filter_q(self, qs, name, value):
        # Applied by the view after the other filters (see CatalogModelViewSet.filter_queryset).
        return qs

    def filter_license_category(self, qs, name, value):
        return selectors.filter_license_category(qs, value)

    def filter_commercial(self, qs, name, value):
        return selectors.filter_commercial(qs, value)

    def filter_domain(self, qs, name, value):
        return selectors.filter_domain(qs, value)


class CatalogModelViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Catalogue entries. Everyone signed in reads; stewards edit metadata and status.

    The list pages by cursor; with ``q`` it is ranked as the catalogue page is.
    """

    serializer_class = CatalogModelSerializer
    filterset_class = CatalogModelFilter
    pagination_class = KeysetPagination

    def get_queryset(self):
        return selectors.with_latest_license(
            selectors.models_visible_to(self.request.user)
        ).order_by("repo_id")

    def filter_queryset(self, queryset):
        if self.action != "list":
            # One model by id: the list's query-string filters have nothing to narrow, and
            # building their FilterSet costs what the lookup does.
            return queryset
        queryset = super().filter_queryset(queryset)
        matches = selectors.filter_text(queryset, self.request.query_params.get("q", ""))
        if matches is None:
            return queryset
        self.known_count = matches.count
        self.keyset_prefix = selectors.ranked_prefix(self.keyset_order(), matches)
        self.keyset_candidates = matches.candidates
        return matches.qs

    def keyset_order(self) -> tuple[str, ...]:
        ranked = bool(search.normalise(self.request.query_params.get("q", "")))
        return selectors.catalogue_order("", ranked=ranked)

    @extend_schema(request=CatalogModelEditSerializer, responses=CatalogModelSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        model = self.get_object()
        data = CatalogModelEditSerializer(model, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        services.catalog_model_update(model=model, actor=request.user, **data.validated_data)
        return Response(self.get_serializer(self.get_queryset().get(pk=model.pk)).data)

    @extend_schema(request=StatusInput, responses=CatalogModelSerializer)
    @action(detail=True, methods=["post"])
    def status(self, request: Request, pk: str) -> Response:
        model = self.get_object()
        data = StatusInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.catalog_model_set_status(model=model, actor=request.user, **data.validated_data)
        return Response(self.get_serializer(self.get_queryset().get(pk=model.pk)).data)


class ModelVersionSerializer(PlainRows, serializers.ModelSerializer):
    """A pinned version: revision, lineage, license, provenance and status."""

    repo_id = serializers.CharField(source="model.repo_id", read_only=True)
    license = LicenseSerializer(read_only=True)
    parent = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "repo_id",
            "revision",
            "label",
            "parent",
            "kind",
            "license",
            "license_raw",
            "source",
            "source_repo",
            "source_revision",
            "provenance",
            "bias_notes",
            "limitations",
            "card_metadata",
            "metrics",
            "total_size",
            "file_count",
            "status",
            "block_reasons",
            "created_at",
        ]
        read_only_fields = fields


class LicenseInput(serializers.Serializer):
    license = serializers.SlugRelatedField(slug_field="spdx_id", queryset=License.objects.all())


class ModelVersionFilter(django_filters.FilterSet):
    repo_id = django_filters.CharFilter(field_name="model__repo_id")
    license = django_filters.CharFilter(field_name="license__spdx_id")

    class Meta:
        model = ModelVersion
        fields = ["kind", "status", "revision", "parent"]


# What a version row reads: its own columns but the card, and its model's repo id.
VERSION_ROW_COLUMNS = (
    *(f for f in ModelVersionSerializer.Meta.fields if f != "repo_id"),
    "model__repo_id",
    *(f"license__{f}" for f in LicenseSerializer.Meta.fields),
)


class ModelVersionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Pinned versions, newest first, paged by cursor. Their files never change; stewards may
    set the license."""

    serializer_class = ModelVersionSerializer
    filterset_class = ModelVersionFilter
    pagination_class = KeysetPagination

    def keyset_order(self) -> tuple[str, ...]:
        return ("-created_at", "-id")

    def get_queryset(self):
        qs = (
            selectors.versions_visible_to(self.request.user)
            .select_related("model", "license")
            .order_by("-created_at", "-id")
        )
        if self.action in ("list", "retrieve"):
            # A row shows its model's repo id only: no card or search text is read for it.
            qs = qs.only(*VERSION_ROW_COLUMNS)
        return qs

    @extend_schema(request=LicenseInput, responses=ModelVersionSerializer)
    @action(detail=True, methods=["post"])
    def license(self, request: Request, pk: str) -> Response:
        version = self.get_object()
        data = LicenseInput(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.version_set_license(
            version=version, license=data.validated_data["license"], actor=request.user
        )
        return Response(self.get_serializer(self.get_queryset().get(pk=version.pk)).data)


class ArtifactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Artifact
        fields = [
            "id",
            "version",
            "path",
            "size",
            "sha256",
            "git_sha1",
            "format",
            "scan_status",
            "scan_findings",
        ]
        read_only_fields = fields


class ArtifactFilter(django_filters.FilterSet):
    class Meta:
        model = Artifact
        fields = ["version", "format", "scan_status", "sha256"]


class ArtifactViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Files of the versions you can see, with their hashes and scan results."""

    serializer_class = ArtifactSerializer
    filterset_class = ArtifactFilter

    def get_queryset(self):
        return selectors.artifacts_visible_to(self.request.user).order_by("version_id", "path")
