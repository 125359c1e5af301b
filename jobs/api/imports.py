"""REST endpoint for catalogue imports (stewards)."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.api.jobs import JobSerializer
from jobs.forms import ImportForm
from jobs.services.imports import import_launch


class ImportInput(serializers.Serializer):
    source = serializers.ChoiceField(choices=["hub", "folder", "archive"])
    repo_id = serializers.CharField(required=False, allow_blank=True, max_length=193, default="")
    hub_repo_id = serializers.CharField(
        required=False, allow_blank=True, max_length=193, default=""
    )
    revision = serializers.CharField(
        required=False, allow_blank=True, max_length=100, default="main"
    )
    folder = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")
    archive = serializers.FileField(required=False, allow_null=True, default=None)

    def validate(self, attrs):
        form = ImportForm(
            data={k: v for k, v in attrs.items() if k != "archive"},
            files={"archive": attrs["archive"]} if attrs.get("archive") else None,
        )
        if not form.is_valid():
            raise serializers.ValidationError(
                {k: [str(e) for e in v] for k, v in form.errors.items()}
            )
        return {**attrs, "repo_id": form.cleaned_data["repo_id"]}


class ImportViewSet(viewsets.GenericViewSet):
    """Queue a catalogue import (stewards): from the Hub, a server folder or an archive."""

    serializer_class = ImportInput

    @extend_schema(request=ImportInput, responses={201: JobSerializer})
    def create(self, request: Request) -> Response:
        data = ImportInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        with transaction.atomic():
            job = import_launch(
                actor=request.user,
                source=values["source"],
                repo_id=values["repo_id"],
                hub_repo_id=values["hub_repo_id"],
                revision=values["revision"],
                folder=values["folder"],
                upload=values["archive"],
            )
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)
