"""REST endpoints for fine-tunes (ml-engineers): launch on an approved version, follow, cancel.

The settings' fields are built from ``jobs.ml.config.SETTINGS``, as the form's are.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.api.jobs import RunViewSet
from jobs.ml.config import (
    MAX_TARGET_MODULES,
    SETTINGS,
    SPLIT_SHARE,
    TEST_FRACTION,
    VAL_FRACTION,
    Setting,
    is_module_name,
)
from jobs.models import FineTuneRun
from jobs.selectors import finetune_runs_visible_to, get_finetune_for_user
from jobs.services.finetunes import finetune_launch
from portal.errors import NotFound
from zoo.selectors.catalogue import versions_visible_to
from zoo.selectors.datasets import get_dataset_version_for_user


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
        default=TEST_FRACTION, min_value=SPLIT_SHARE[0], max_value=SPLIT_SHARE[1]
    )
    val_fraction = serializers.FloatField(
        default=VAL_FRACTION, min_value=SPLIT_SHARE[0], max_value=SPLIT_SHARE[1]
    )
    test_dataset_version = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="For the test_file split."
    )
    check_base_serving = serializers.BooleanField(
        default=False,
        help_text="Also queue the base's serving (ONNX) release check; the fine-tune does not "
        "wait for it.",
    )

    CONFIG_FIELDS = tuple(setting.name for setting in SETTINGS)


class FineTuneViewSet(RunViewSet):
    """Fine-tunes (ml-engineers): launch on an approved version, follow, cancel."""

    serializer_class = FineTuneRunSerializer

    runs_visible_to = staticmethod(finetune_runs_visible_to)
    get_run_for_user = staticmethod(get_finetune_for_user)

    @extend_schema(request=FineTuneInput, responses={201: FineTuneRunSerializer})
    def create(self, request: Request) -> Response:
        data = FineTuneInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        base = (
            versions_visible_to(request.user)
            .select_related("model", "license")
            .filter(pk=values["base_version"])
            .first()
        )
        if base is None:
            raise NotFound(
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
            check_base_serving=values["check_base_serving"],
        )
        run = get_finetune_for_user(request.user, run.pk)
        return Response(self.get_serializer(run).data, status=status.HTTP_201_CREATED)
