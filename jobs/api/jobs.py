"""REST endpoints for jobs: the list, one job, cancel, and the staff's worker check."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.engine import job_cancel
from jobs.models import Job
from jobs.selectors import get_job_for_user, jobs_visible_to
from jobs.services.checks import MAX_HOLD_S, QUEUES, worker_check_launch
from portal.api import object_id


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
    queue = serializers.ChoiceField(choices=QUEUES, default="default")
    hold_s = serializers.IntegerField(
        default=0,
        min_value=0,
        max_value=MAX_HOLD_S,
        help_text="Keep the worker on the job this long: a failover drill.",
    )
    require_gpu = serializers.BooleanField(default=False)


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Jobs you asked for (staff: all jobs). Start jobs through the action that owns them."""

    serializer_class = JobSerializer
    filterset_class = JobFilter

    def get_queryset(self):
        return jobs_visible_to(self.request.user)

    def get_object(self) -> Job:
        return get_job_for_user(self.request.user, object_id(self.kwargs["pk"]))

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        job = job_cancel(job=self.get_object(), actor=request.user)
        return Response(JobSerializer(job).data)

    @extend_schema(request=WorkerCheckInput, responses={201: JobSerializer})
    @action(detail=False, methods=["post"], url_path="worker-check")
    def worker_check(self, request: Request) -> Response:
        data = WorkerCheckInput(data=request.data)
        data.is_valid(raise_exception=True)
        job = worker_check_launch(actor=request.user, **data.validated_data)
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs that live in a job (probes, fine-tunes): list, read, cancel.

    A subclass names the selectors that say which runs a user sees.
    """

    runs_visible_to = staticmethod(lambda user: None)
    get_run_for_user = staticmethod(lambda user, pk: None)

    def get_queryset(self):
        return self.runs_visible_to(self.request.user).order_by("-created_at", "-id")

    def get_object(self):
        return self.get_run_for_user(self.request.user, object_id(self.kwargs["pk"]))

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        job_cancel(job=self.get_object().job, actor=request.user)
        return Response(self.get_serializer(self.get_object()).data)
