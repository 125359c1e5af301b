"""REST endpoints for selection studies: launch from a probe, follow, choose the one to register."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.models import FineTuneRun, Study
from jobs.selectors import get_probe_for_user, get_study_for_user, studies_visible_to
from jobs.services.studies import (
    MAX_REASON,
    study_choose,
    study_close,
    study_launch,
    study_retry_scoring,
)
from portal.api import object_id
from portal.errors import NotFound


class StudyRunSerializer(serializers.ModelSerializer):
    """One candidate's fine-tune: validation, cost, and the test result once chosen."""

    status = serializers.CharField(source="job.status", read_only=True)
    base_repo_id = serializers.CharField(source="base_version.model.repo_id", read_only=True)
    validation = serializers.JSONField(source="training.validation", read_only=True, default=None)

    class Meta:
        model = FineTuneRun
        fields = [
            "id",
            "job",
            "status",
            "base_version",
            "base_repo_id",
            "validation",
            "training",
            "emissions",
            "metrics",
            "baseline",
            "output_version",
        ]
        read_only_fields = fields


class StudySerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    chosen_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    closed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    runs = StudyRunSerializer(many=True, read_only=True)
    output_version = serializers.IntegerField(
        source="chosen_run.output_version_id", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Study
        fields = [
            "id",
            "probe",
            "requested_by",
            "k",
            "candidates",
            "reason",
            "config",
            "split_params",
            "status",
            "runs",
            "chosen_run",
            "chosen_by",
            "choice_reason",
            "chosen_at",
            "final_job",
            "output_version",
            "closed_by",
            "close_reason",
            "closed_at",
            "created_at",
        ]
        read_only_fields = fields


class StudyInput(serializers.Serializer):
    probe = serializers.IntegerField(help_text="Id of a finished probe of yours.")
    # The range depends on the probe: the launch service checks it, with its message.
    k = serializers.IntegerField(help_text="How many of the probe's top candidates (2 or more).")
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=MAX_REASON
    )


class StudyChoiceInput(serializers.Serializer):
    run = serializers.IntegerField(help_text="Id of one of the study's fine-tunes.")
    reason = serializers.CharField(max_length=MAX_REASON, help_text="Why this one.")


class StudyCloseInput(serializers.Serializer):
    reason = serializers.CharField(max_length=MAX_REASON, help_text="Why no candidate is chosen.")


class StudyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Selection studies: a probe's top k fine-tuned alike, one chosen and registered."""

    serializer_class = StudySerializer

    def get_queryset(self):
        return (
            studies_visible_to(self.request.user)
            .prefetch_related("runs__job", "runs__base_version__model")
            .order_by("-created_at", "-id")
        )

    def get_object(self) -> Study:
        return get_study_for_user(self.request.user, object_id(self.kwargs["pk"]))

    def _fresh(self, study: Study) -> Response:
        return Response(self.get_serializer(self.get_queryset().get(pk=study.pk)).data)

    @extend_schema(request=StudyInput, responses={201: StudySerializer})
    def create(self, request: Request) -> Response:
        data = StudyInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        probe = get_probe_for_user(request.user, values["probe"])
        study = study_launch(
            actor=request.user, probe=probe, k=values["k"], reason=values["reason"]
        )
        response = self._fresh(study)
        response.status_code = status.HTTP_201_CREATED
        return response

    @extend_schema(request=StudyChoiceInput, responses=StudySerializer)
    @action(detail=True, methods=["post"])
    def choose(self, request: Request, pk: str) -> Response:
        study = self.get_object()
        data = StudyChoiceInput(data=request.data)
        data.is_valid(raise_exception=True)
        run = study.runs.filter(pk=data.validated_data["run"]).first()
        if run is None:
            raise NotFound(f"That fine-tune is not part of study #{study.pk}.", field="run")
        study = study_choose(
            actor=request.user, study=study, run=run, reason=data.validated_data["reason"]
        )
        return self._fresh(study)

    @extend_schema(request=None, responses=StudySerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """Queue the chosen fine-tune's test scoring again after its job failed or was cancelled."""
        study = study_retry_scoring(actor=request.user, study=self.get_object())
        return self._fresh(study)

    @extend_schema(request=StudyCloseInput, responses=StudySerializer)
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str) -> Response:
        """Close an open study without choosing; candidates still training are cancelled."""
        study = self.get_object()
        data = StudyCloseInput(data=request.data)
        data.is_valid(raise_exception=True)
        study = study_close(actor=request.user, study=study, reason=data.validated_data["reason"])
        return self._fresh(study)
