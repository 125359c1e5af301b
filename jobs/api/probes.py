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
            "parameters",
            "memory_bytes",
            "latency_ms",
            "cost_method",
            "gap_low",
            "gap_high",
            "top_holds",
            "knn_gap_low",
            "knn_gap_high",
            "within_noise",
            "budget_misses",
            "score_rank",
            "brief_accuracy",
            "brief_macro_f1",
            "brief_rows",
            "brief_val_rows",
            "brief_epochs",
            "brief_cpu_seconds",
            "brief_seconds",
            "brief_error",
        ]
        read_only_fields = fields


class ProbeRunSerializer(serializers.ModelSerializer):
    status = serializers.CharField(source="job.status", read_only=True)
    progress = serializers.FloatField(source="job.progress", read_only=True)
    stage = serializers.CharField(source="job.stage", read_only=True)
    error = serializers.CharField(source="job.error", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    within_budget = serializers.SerializerMethodField(
        help_text="Model version id of the best-ranked candidate that meets every budget limit."
    )
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
            "max_parameters",
            "max_latency_ms",
            "within_budget",
            "budget_note",
            "confidence",
            "confidence_note",
            "shortlist_k",
            "shortlist_note",
            "results",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_within_budget(self, run: ProbeRun) -> int | None:
        return run.budget_choice.version_id if run.budget_choice_id else None

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
    # Ranges are the launch service's rule, so every caller gets the same message.
    max_parameters = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Budget: the largest acceptable model, in parameters. Optional.",
    )
    max_latency_ms = serializers.FloatField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Budget: the slowest acceptable CPU latency per example, in ms. Optional.",
    )
    shortlist_k = serializers.IntegerField(
        required=False,
        default=0,
        help_text=(
            "Check the top k by scores with a brief fine-tune each and order them by "
            "validation accuracy: 0 (off, the default) or 2 up to the number of candidates "
            "(10 at most)."
        ),
    )


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
            max_parameters=values["max_parameters"],
            max_latency_ms=values["max_latency_ms"],
            shortlist_k=values["shortlist_k"],
        )
        return Response(self.get_serializer(run).data, status=status.HTTP_201_CREATED)
