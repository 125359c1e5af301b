"""REST endpoints for transferability probes: launch, follow, cancel."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.api.jobs import RunViewSet
from jobs.models import ProbeResult, ProbeRun
from jobs.selectors import get_probe_for_user, probe_results_of, probe_runs_visible_to
from jobs.services.probes import probe_launch
from portal.errors import NotFound
from zoo.selectors.catalogue import versions_visible_to
from zoo.selectors.datasets import get_dataset_version_for_user


class ProbeResultSerializer(serializers.ModelSerializer):
    repo_id = serializers.CharField(source="version.model.repo_id", read_only=True)
    version_label = serializers.CharField(source="version.label", read_only=True)

    class Meta:
        model = ProbeResult
        fields = [
            "version",
            "repo_id",
            "version_label",
            "status",
            "error",
            "rank",
            "reason",
            "logme",
            "knn_accuracy",
            "linear_probe_accuracy",
            "h_score",
            "mmd",
            "seconds",
            "extraction_seconds",
            "feature_dim",
            "cached",
        ]
        read_only_fields = fields


class ProbeRunSerializer(serializers.ModelSerializer):
    status = serializers.CharField(source="job.status", read_only=True)
    progress = serializers.FloatField(source="job.progress", read_only=True)
    stage = serializers.CharField(source="job.stage", read_only=True)
    error = serializers.CharField(source="job.error", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    results = serializers.SerializerMethodField()

    class Meta:
        model = ProbeRun
        fields = [
            "id",
            "job",
            "status",
            "progress",
            "stage",
            "error",
            "dataset_version",
            "requested_by",
            "max_examples",
            "seed",
            "n_examples",
            "recommendation",
            "results",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(ProbeResultSerializer(many=True))
    def get_results(self, run: ProbeRun) -> list:
        return ProbeResultSerializer(probe_results_of(run), many=True).data


class ProbeInput(serializers.Serializer):
    dataset_version = serializers.IntegerField(help_text="Id of a dataset version you may see.")
    versions = serializers.ListField(
        child=serializers.IntegerField(), min_length=1, help_text="Candidate model version ids."
    )
    max_examples = serializers.IntegerField(min_value=10, default=2000)
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)


class ProbeViewSet(RunViewSet):
    """Transferability probes: which of several models suits a dataset."""

    serializer_class = ProbeRunSerializer

    runs_visible_to = staticmethod(probe_runs_visible_to)
    get_run_for_user = staticmethod(get_probe_for_user)

    @extend_schema(request=ProbeInput, responses={201: ProbeRunSerializer})
    def create(self, request: Request) -> Response:
        data = ProbeInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        dataset_version = get_dataset_version_for_user(request.user, values["dataset_version"])
        found = (
            versions_visible_to(request.user).select_related("model").in_bulk(values["versions"])
        )
        missing = [pk for pk in values["versions"] if pk not in found]
        if missing:
            raise NotFound(f"No model version {missing[0]} that you may see.", field="versions")
        run = probe_launch(
            actor=request.user,
            dataset_version=dataset_version,
            versions=[found[pk] for pk in values["versions"]],
            max_examples=values["max_examples"],
            seed=values["seed"],
        )
        return Response(self.get_serializer(run).data, status=status.HTTP_201_CREATED)
