from __future__ import annotations

import django_filters
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.models import Job
from jobs.selectors import can_cancel, get_job_for_user, jobs_visible_to
from jobs.services import import_launch, job_cancel, job_create
from portal.errors import Forbidden
from zoo.selectors import is_steward


class JobSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "requested_by",
            "queue",
            "params",
            "result",
            "attempts",
            "progress",
            "stage",
            "error",
            "worker",
            "device",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class JobFilter(django_filters.FilterSet):
    class Meta:
        model = Job
        fields = ["status", "kind", "queue"]


class WorkerCheckInput(serializers.Serializer):
    queue = serializers.ChoiceField(choices=["default", "gpu"], default="default")
    require_gpu = serializers.BooleanField(default=False)


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Jobs you asked for (staff: all jobs). Start jobs through the action that owns them."""

    serializer_class = JobSerializer
    filterset_class = JobFilter

    def get_queryset(self):
        return jobs_visible_to(self.request.user)

    def get_object(self) -> Job:
        return get_job_for_user(self.request.user, int(self.kwargs["pk"]))

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        job = self.get_object()
        if not can_cancel(request.user, job) and job.is_active:
            raise Forbidden("Only the person who started a job, or staff, may cancel it.")
        job = job_cancel(job=job, actor=request.user)
        return Response(JobSerializer(job).data)

    @extend_schema(request=WorkerCheckInput, responses={201: JobSerializer})
    @action(
        detail=False, methods=["post"], url_path="worker-check", permission_classes=[IsAdminUser]
    )
    def worker_check(self, request: Request) -> Response:
        data = WorkerCheckInput(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            job = job_create(
                kind=Job.Kind.WORKER_CHECK,
                requested_by=request.user,
                params={"require_gpu": data.validated_data["require_gpu"]},
                queue=data.validated_data["queue"],
            )
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


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
        from jobs.forms import ImportForm

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
        if not is_steward(request.user):
            raise Forbidden("Only stewards may import models.")
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
