"""REST endpoints for datasets: list, read, and upload a file as a dataset or a new version."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from governance.models import Sensitivity
from portal.api import object_id
from portal.errors import PortalError
from zoo.models import Dataset, DatasetVersion
from zoo.selectors import datasets as selectors
from zoo.services import datasets as services


class DatasetVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "label",
            "sha256",
            "size",
            "format",
            "original_name",
            "text_column",
            "label_column",
            "slice_column",
            "time_column",
            "n_rows",
            "label_counts",
            "warnings",
            "created_at",
        ]
        read_only_fields = fields


class DatasetSerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    versions = DatasetVersionSerializer(many=True, read_only=True)

    class Meta:
        model = Dataset
        fields = [
            "id",
            "owner",
            "name",
            "description",
            "modality",
            "sensitivity",
            "versions",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class DatasetUploadInput(serializers.Serializer):
    file = serializers.FileField()
    dataset = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="Add a version to this dataset."
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    description = serializers.CharField(
        required=False, allow_blank=True, max_length=2000, default=""
    )
    sensitivity = serializers.ChoiceField(choices=Sensitivity.choices)
    text_column = serializers.CharField(required=False, allow_blank=True, default="")
    label_column = serializers.CharField(required=False, allow_blank=True, default="")
    slice_column = serializers.CharField(required=False, allow_blank=True, default="")
    time_column = serializers.CharField(required=False, allow_blank=True, default="")


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your datasets and those shared with you; upload a file as a new dataset or version."""

    serializer_class = DatasetSerializer
    filterset_fields = ["modality", "sensitivity"]

    def get_queryset(self):
        return (
            selectors.datasets_visible_to(self.request.user)
            .prefetch_related("versions")
            .order_by("-updated_at", "-id")
        )

    def get_object(self) -> Dataset:
        return selectors.get_dataset_for_user(self.request.user, object_id(self.kwargs["pk"]))

    @extend_schema(request=DatasetUploadInput, responses={201: DatasetSerializer})
    def create(self, request: Request) -> Response:
        data = DatasetUploadInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        dataset = None
        if values["dataset"] is not None:
            dataset = selectors.get_dataset_for_user(request.user, values["dataset"])
        elif not values["name"].strip():
            raise PortalError("Name the new dataset, or give the dataset to add to.", field="name")
        version, created = services.dataset_upload(
            actor=request.user,
            upload=values["file"],
            dataset=dataset,
            **{k: values[k] for k in ("name", "description", "sensitivity")},
            **{
                k: values[k] for k in ("text_column", "label_column", "slice_column", "time_column")
            },
        )
        body = self.get_serializer(self.get_queryset().get(pk=version.dataset_id)).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
