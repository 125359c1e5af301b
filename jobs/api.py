from __future__ import annotations

import django_filters
from django.db import transaction
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.ml.config import (
    MAX_TARGET_MODULES,
    SETTINGS,
    SPLIT_SHARE,
    Setting,
    is_module_name,
)
from jobs.models import FineTuneRun, Job, ProbeResult, ProbeRun
from jobs.selectors import (
    can_cancel,
    finetune_runs_visible_to,
    get_finetune_for_user,
    get_job_for_user,
    get_probe_for_user,
    jobs_visible_to,
    probe_results_of,
    probe_runs_visible_to,
)
from jobs.services import finetune_launch, import_launch, job_cancel, job_create, probe_launch
from portal.errors import Forbidden, PortalError
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


class ProbeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Transferability probes: which of several models suits a dataset."""

    serializer_class = ProbeRunSerializer

    def get_queryset(self):
        return probe_runs_visible_to(self.request.user).order_by("-created_at", "-id")

    def get_object(self) -> ProbeRun:
        return get_probe_for_user(self.request.user, int(self.kwargs["pk"]))

    @extend_schema(request=ProbeInput, responses={201: ProbeRunSerializer})
    def create(self, request: Request) -> Response:
        from zoo.models import ModelVersion
        from zoo.selectors import get_dataset_version_for_user

        data = ProbeInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        dataset_version = get_dataset_version_for_user(request.user, values["dataset_version"])
        found = ModelVersion.objects.select_related("model").in_bulk(values["versions"])
        missing = [pk for pk in values["versions"] if pk not in found]
        if missing:
            raise PortalError(f"No model version {missing[0]} that you may see.", field="versions")
        run = probe_launch(
            actor=request.user,
            dataset_version=dataset_version,
            versions=[found[pk] for pk in values["versions"]],
            max_examples=values["max_examples"],
            seed=values["seed"],
        )
        return Response(self.get_serializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ProbeRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        if not can_cancel(request.user, run.job) and run.job.is_active:
            raise Forbidden("Only the person who started a probe, or staff, may cancel it.")
        job_cancel(job=run.job, actor=request.user)
        return Response(self.get_serializer(self.get_object()).data)


# --- fine-tunes -----------------------------------------------------------------


class FineTuneRunSerializer(serializers.ModelSerializer):
    status = serializers.CharField(source="job.status", read_only=True)
    progress = serializers.FloatField(source="job.progress", read_only=True)
    stage = serializers.CharField(source="job.stage", read_only=True)
    error = serializers.CharField(source="job.error", read_only=True)
    attempts = serializers.IntegerField(source="job.attempts", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    base_repo_id = serializers.CharField(source="base_version.model.repo_id", read_only=True)
    output_repo_id = serializers.CharField(
        source="output_version.model.repo_id", read_only=True, allow_null=True, default=None
    )
    in_review = serializers.SerializerMethodField(
        help_text="True while the output model is a draft that only its author and stewards see."
    )

    class Meta:
        model = FineTuneRun
        fields = [
            "id",
            "job",
            "status",
            "progress",
            "stage",
            "error",
            "attempts",
            "requested_by",
            "base_version",
            "base_repo_id",
            "dataset_version",
            "test_dataset_version",
            "strategy",
            "config",
            "split",
            "split_params",
            "curves",
            "last_checkpoint",
            "metrics",
            "baseline",
            "training",
            "emissions",
            "output_version",
            "output_repo_id",
            "in_review",
            "created_at",
        ]
        read_only_fields = fields

    def get_in_review(self, run: FineTuneRun) -> bool | None:
        if run.output_version_id is None:
            return None
        return run.output_version.model.status == "draft"


def setting_serializer_field(setting: Setting) -> serializers.Field:
    """The API field of one fine-tune setting, with the range jobs.ml.config gives it."""
    common = {"required": False, "help_text": f"{setting.label}: {setting.help}"}
    if setting.kind == "int":
        return serializers.IntegerField(min_value=setting.low, max_value=setting.high, **common)
    if setting.kind == "float":
        return serializers.FloatField(min_value=setting.low, max_value=setting.high, **common)
    if setting.kind == "bool":
        return serializers.BooleanField(**common)
    if setting.kind == "choice":
        return serializers.ChoiceField(choices=setting.choices, **common)
    return serializers.ListField(
        child=serializers.CharField(max_length=100, validators=[_module_name]),
        allow_empty=True,
        max_length=MAX_TARGET_MODULES,
        **common,
    )


def _module_name(value: str) -> None:
    if not is_module_name(value):
        raise serializers.ValidationError(f"Not a module name: {value!r}.")


FineTuneSettingsInput = type(serializers.Serializer)(
    "FineTuneSettingsInput",
    (serializers.Serializer,),
    {"__module__": __name__, **{s.name: setting_serializer_field(s) for s in SETTINGS}},
)


class FineTuneInput(FineTuneSettingsInput):
    """A launch: every hyperparameter left out takes the strategy's published default."""

    base_version = serializers.IntegerField(help_text="Id of a model version approved for you.")
    dataset_version = serializers.IntegerField(help_text="Id of a dataset version you may see.")
    strategy = serializers.ChoiceField(choices=FineTuneRun.Strategy.choices)
    split = serializers.ChoiceField(choices=FineTuneRun.Split.choices, default="stratified")
    test_fraction = serializers.FloatField(
        default=0.2, min_value=SPLIT_SHARE[0], max_value=SPLIT_SHARE[1]
    )
    val_fraction = serializers.FloatField(
        default=0.1, min_value=SPLIT_SHARE[0], max_value=SPLIT_SHARE[1]
    )
    test_dataset_version = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="For the test_file split."
    )

    CONFIG_FIELDS = tuple(setting.name for setting in SETTINGS)


class FineTuneViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Fine-tunes (ml-engineers): launch on an approved version, follow, cancel."""

    serializer_class = FineTuneRunSerializer

    def get_queryset(self):
        return finetune_runs_visible_to(self.request.user).order_by("-created_at", "-id")

    def get_object(self) -> FineTuneRun:
        return get_finetune_for_user(self.request.user, int(self.kwargs["pk"]))

    @extend_schema(request=FineTuneInput, responses={201: FineTuneRunSerializer})
    def create(self, request: Request) -> Response:
        from zoo.models import ModelVersion
        from zoo.selectors import get_dataset_version_for_user

        data = FineTuneInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        base = (
            ModelVersion.objects.select_related("model", "license")
            .filter(pk=values["base_version"])
            .first()
        )
        if base is None:
            raise PortalError(
                f"No model version {values['base_version']} that you may see.",
                field="base_version",
            )
        dataset_version = get_dataset_version_for_user(request.user, values["dataset_version"])
        test_dataset_version = (
            get_dataset_version_for_user(request.user, values["test_dataset_version"])
            if values.get("test_dataset_version")
            else None
        )
        run = finetune_launch(
            actor=request.user,
            base_version=base,
            dataset_version=dataset_version,
            strategy=values["strategy"],
            config={k: values[k] for k in FineTuneInput.CONFIG_FIELDS if k in values},
            split=values["split"],
            test_fraction=values["test_fraction"],
            val_fraction=values["val_fraction"],
            test_dataset_version=test_dataset_version,
        )
        run = get_finetune_for_user(request.user, run.pk)
        return Response(self.get_serializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=FineTuneRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        if not can_cancel(request.user, run.job) and run.job.is_active:
            raise Forbidden("Only the person who started a fine-tune, or staff, may cancel it.")
        job_cancel(job=run.job, actor=request.user)
        return Response(self.get_serializer(self.get_object()).data)
