"""REST endpoint of drift monitoring: a fine-tuned version's batches of production inputs.

``GET /api/versions/<id>/drift/`` lists the batches with their results;
``POST`` (multipart: ``file``, optional ``text_column``) uploads one and queues
its drift check, as the version page's form does: a CSV, TSV or JSONL table for a
text model, a zip of images for an image model.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.models import DriftBatch
from jobs.selectors import drift_batches_of
from jobs.services.drift import drift_batch_upload
from portal.api import object_id
from portal.errors import NotFound
from zoo.selectors.catalogue import versions_visible_to


class DriftBatchSerializer(serializers.ModelSerializer):
    """One batch, its check's state and the figures it found (empty until it has run)."""

    uploaded_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    check = serializers.IntegerField(source="release_check_id", read_only=True, allow_null=True)
    job = serializers.IntegerField(
        source="release_check.job_id", read_only=True, allow_null=True, default=None
    )
    status = serializers.CharField(source="release_check.status", read_only=True, default=None)
    passed = serializers.BooleanField(
        source="release_check.passed", read_only=True, allow_null=True, default=None
    )
    psi_class = serializers.SerializerMethodField()
    psi_confidence = serializers.SerializerMethodField()
    mmd_p_value = serializers.SerializerMethodField()
    band = serializers.SerializerMethodField()
    summary = serializers.CharField(source="release_check.summary", read_only=True, default="")
    error = serializers.CharField(source="release_check.error", read_only=True, default="")

    class Meta:
        model = DriftBatch
        fields = [
            "id",
            "version",
            "uploaded_by",
            "n_rows",
            "text_column",
            "label_column",
            "original_name",
            "format",
            "sha256",
            "size",
            "created_at",
            "check",
            "job",
            "status",
            "passed",
            "psi_class",
            "psi_confidence",
            "mmd_p_value",
            "band",
            "summary",
            "error",
        ]
        read_only_fields = fields

    def _result(self, batch: DriftBatch) -> dict:
        check = batch.release_check
        return (check.result or {}) if check is not None else {}

    def get_psi_class(self, batch: DriftBatch) -> float | None:
        return self._result(batch).get("psi_class")

    def get_psi_confidence(self, batch: DriftBatch) -> float | None:
        return self._result(batch).get("psi_confidence")

    def get_mmd_p_value(self, batch: DriftBatch) -> float | None:
        return (self._result(batch).get("mmd") or {}).get("p_value")

    def get_band(self, batch: DriftBatch) -> str | None:
        """'stable', 'watch' or 'retrain' (from the class PSI); null until the check has run."""
        return self._result(batch).get("band")


class DriftUploadInput(serializers.Serializer):
    file = serializers.FileField(
        help_text="Production inputs: CSV, TSV or JSONL (text models) or a zip of images "
        "(image models)."
    )
    text_column = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=200,
        help_text="Empty: the training data's text column, or the file's only column. Not for "
        "image batches.",
    )


class VersionDriftView(APIView):
    """A fine-tuned version's batches of production inputs; upload one to compare it."""

    parser_classes = [MultiPartParser, FormParser]
    serializer_class = DriftBatchSerializer

    def _version(self, request: Request, pk):
        version = versions_visible_to(request.user).filter(pk=object_id(pk)).first()
        if version is None:
            raise NotFound("No such model version.")
        return version

    @extend_schema(responses=DriftBatchSerializer(many=True))
    def get(self, request: Request, pk: str) -> Response:
        version = self._version(request, pk)
        batches = drift_batches_of(request.user, version.pk)
        return Response(DriftBatchSerializer(batches, many=True).data)

    @extend_schema(request=DriftUploadInput, responses={201: DriftBatchSerializer})
    def post(self, request: Request, pk: str) -> Response:
        version = self._version(request, pk)
        data = DriftUploadInput(data=request.data)
        data.is_valid(raise_exception=True)
        batch = drift_batch_upload(
            actor=request.user,
            version=version,
            upload=data.validated_data["file"],
            text_column=data.validated_data["text_column"],
        )
        fresh = DriftBatch.objects.select_related("release_check", "uploaded_by").get(pk=batch.pk)
        return Response(DriftBatchSerializer(fresh).data, status=status.HTTP_201_CREATED)
