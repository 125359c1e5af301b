from __future__ import annotations

import math

from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator

from governance.access import versions_finetunable_by, versions_probeable_by
from jobs.ml.config import (
    LORA_SETTINGS,
    MAX_TARGET_MODULES,
    SETTINGS,
    SPLIT_SHARE,
    TEST_FRACTION,
    VAL_FRACTION,
    Setting,
    is_module_name,
)
from jobs.models import FineTuneRun
from jobs.services.finetunes import finetune_defaults
from zoo.models import repo_id_validator
from zoo.selectors.datasets import dataset_versions_visible_to


class WorkerCheckForm(forms.Form):
    queue = forms.ChoiceField(
        choices=[("default", "default (CPU workers)"), ("gpu", "gpu (GPU workers)")],
        help_text="The queue whose workers should answer.",
    )
    require_gpu = forms.BooleanField(
        required=False, help_text="Fail unless the worker that answers has a CUDA device."
    )


class ImportForm(forms.Form):
    """One form for the three ways a model enters the catalogue."""

    SOURCES = [
        ("hub", "Hugging Face Hub repository"),
        ("folder", "Folder on the server"),
        ("archive", "Uploaded archive (.zip or .tar.gz)"),
    ]
    source = forms.ChoiceField(choices=SOURCES, widget=forms.RadioSelect, initial="hub")
    hub_repo_id = forms.CharField(
        required=False,
        label="Hub repository",
        max_length=193,
        help_text="e.g. sentence-transformers/all-MiniLM-L6-v2",
    )
    revision = forms.CharField(
        required=False,
        max_length=100,
        initial="main",
        help_text="Branch, tag or commit; it is pinned to a commit at import.",
    )
    folder = forms.CharField(
        required=False,
        max_length=1000,
        help_text="An absolute path under an allowed import folder.",
    )
    archive = forms.FileField(required=False)
    repo_id = forms.CharField(
        required=False,
        label="Catalogue id",
        max_length=193,
        help_text="namespace/name in the catalogue; for Hub imports it defaults to the Hub id.",
    )

    def clean(self):
        data = super().clean()
        source = data.get("source")
        repo_id = (data.get("repo_id") or "").strip()
        if source == "hub":
            hub = (data.get("hub_repo_id") or "").strip()
            if not hub:
                self.add_error("hub_repo_id", "Name the Hub repository to import.")
            else:
                try:
                    repo_id_validator(hub)
                except forms.ValidationError as exc:
                    self.add_error("hub_repo_id", exc)
            repo_id = repo_id or hub
            data["revision"] = (data.get("revision") or "main").strip()
        elif source == "folder" and not data.get("folder"):
            self.add_error("folder", "Give the folder's path on the server.")
        elif source == "archive" and not data.get("archive"):
            self.add_error("archive", "Choose an archive to upload.")
        if source in ("folder", "archive") and not repo_id:
            self.add_error("repo_id", "Give the model an id in the catalogue (namespace/name).")
        elif repo_id:
            try:
                repo_id_validator(repo_id)
            except forms.ValidationError as exc:
                self.add_error("repo_id", exc)
        data["repo_id"] = repo_id
        return data


class DatasetVersionChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return (
            f"{obj.dataset} {obj.label} · {obj.get_format_display()} · "
            f"{obj.n_rows:,} rows · {obj.n_classes} classes"
        )


class CandidateChoice(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.model.repo_id} {obj.label} ({obj.model.get_modality_display().lower()})"


class ParameterCountField(forms.CharField):
    """A parameter count written as people write them: 110M, 1.5B, 500K or 66000000.

    Whether the number is a usable limit (above 0, not absurd) is the launch
    service's rule, so the form, the API and any other caller get one message.
    """

    SUFFIXES = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}

    def clean(self, value) -> int | None:
        raw = (super().clean(value) or "").strip().replace(",", "").replace("_", "")
        raw = raw.replace(" ", "")
        if not raw:
            return None
        scale = self.SUFFIXES.get(raw[-1].lower(), 1)
        number = raw[:-1] if scale != 1 else raw
        try:
            parsed = float(number)
        except ValueError:
            raise forms.ValidationError(
                "Write a number of parameters such as 110M, 1.5B or 66000000."
            ) from None
        if not math.isfinite(parsed):
            raise forms.ValidationError("Write a number of parameters such as 110M or 1.5B.")
        return round(parsed * scale)


class ProbeForm(forms.Form):
    """Which of several models suits a dataset: the candidates are scored on frozen features."""

    dataset_version = DatasetVersionChoice(
        queryset=None, label="Dataset", help_text="A dataset of yours or one shared with you."
    )
    versions = CandidateChoice(
        queryset=None,
        widget=forms.CheckboxSelectMultiple,
        label="Candidate models",
        help_text="Text encoders for text data, vision backbones for images.",
    )
    max_examples = forms.IntegerField(
        min_value=10,
        initial=2000,
        label="Maximum examples",
        help_text="A stratified sample of at most this many rows is embedded and scored.",
    )
    seed = forms.IntegerField(
        min_value=0, max_value=2**31 - 1, initial=0, help_text="Fixes the sample and the folds."
    )
    max_parameters = ParameterCountField(
        required=False,
        max_length=40,
        label="Largest model (parameters)",
        help_text="Optional, such as 110M or 1.5B.",
        widget=forms.TextInput(attrs={"placeholder": "no limit", "inputmode": "decimal"}),
    )
    max_latency_ms = forms.FloatField(
        required=False,
        label="Slowest CPU latency (ms per example)",
        help_text="Optional; measured on the worker's CPU, one example at a time.",
        widget=forms.NumberInput(attrs={"placeholder": "no limit", "step": "any", "min": "0"}),
    )
    # The range is the launch service's rule (0, or 2 up to the candidates and 10).
    shortlist_k = forms.IntegerField(
        required=False,
        initial=0,
        label="Check the top k with a short fine-tune",
        help_text="0 = scores only. With 2 or more (up to the number of candidates), the k "
        "best-scored candidates are each fine-tuned briefly on training rows and re-ordered "
        "by validation accuracy; each costs about a minute on a CPU for a small encoder.",
        widget=forms.NumberInput(attrs={"min": "0", "max": "10"}),
    )

    def clean_shortlist_k(self) -> int:
        value = self.cleaned_data.get("shortlist_k")
        return 0 if value is None else value

    def __init__(self, *args, user, modality: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dataset_version"].queryset = dataset_versions_visible_to(user).order_by(
            "dataset__name", "-created_at"
        )
        candidates = (
            versions_probeable_by(user)
            .filter(model__modality__in=[modality] if modality else ["text", "vision"])
            .select_related("model")
            .order_by("model__repo_id", "-created_at")
        )
        self.fields["versions"].queryset = candidates
        self.fields["max_examples"].max_value = settings.PROBE_MAX_EXAMPLES
        self.fields["max_examples"].validators.append(
            MaxValueValidator(settings.PROBE_MAX_EXAMPLES)
        )


class BaseVersionChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.model.repo_id} {obj.label} ({obj.model.get_modality_display().lower()})"


def _between(low: float, high: float):
    return [MinValueValidator(low), MaxValueValidator(high)]


def setting_form_field(setting: Setting) -> forms.Field:
    """The form field of one fine-tune setting, with the range jobs.ml.config gives it.

    Left empty, a setting takes the strategy's default, as when the API omits it.
    """
    common = {"label": setting.label, "help_text": setting.help, "required": False}
    if setting.kind == "int":
        return forms.IntegerField(min_value=setting.low, max_value=setting.high, **common)
    if setting.kind == "float":
        return forms.FloatField(validators=_between(setting.low, setting.high), **common)
    if setting.kind == "bool":
        return forms.BooleanField(**common)
    if setting.kind == "choice":
        return forms.ChoiceField(choices=[("", "default"), *setting.choices], **common)
    return ModuleNamesField(max_length=500, **common)


class ModuleNamesField(forms.CharField):
    """Comma-separated module names, cleaned to a list (empty: the architecture's default)."""

    def clean(self, value) -> list[str]:
        raw = super().clean(value) or ""
        names = [part.strip() for part in raw.replace("\n", ",").split(",") if part.strip()]
        bad = [n for n in names if not is_module_name(n)]
        if bad:
            raise forms.ValidationError(f"Not a module name: {bad[0]!r}.")
        if len(names) > MAX_TARGET_MODULES:
            raise forms.ValidationError(f"Name at most {MAX_TARGET_MODULES} modules.")
        return names


# A form class holding one field per setting; FineTuneForm adds what to train and how to test.
FineTuneSettingsForm = type(forms.Form)(
    "FineTuneSettingsForm",
    (forms.Form,),
    {"__module__": __name__, **{s.name: setting_form_field(s) for s in SETTINGS}},
)


class FineTuneForm(FineTuneSettingsForm):
    """Launch a fine-tune: what to train, how, and how to test it. Each field says why in a line.

    The hyperparameter fields are built from ``jobs.ml.config.SETTINGS``, as the
    API's are, so the form refuses exactly what the API and the run refuse.
    """

    # The hyperparameters that go into jobs.ml.config.FineTuneConfig, in the order shown.
    CONFIG_FIELDS = tuple(setting.name for setting in SETTINGS)
    LORA_FIELDS = LORA_SETTINGS

    base_version = BaseVersionChoice(
        queryset=None,
        label="Base model",
        help_text="A version approved for you (or one you made); text encoders for text data, "
        "vision backbones for images.",
    )
    dataset_version = DatasetVersionChoice(
        queryset=None, label="Dataset", help_text="The labelled data to train on."
    )
    strategy = forms.ChoiceField(
        choices=[],
        widget=forms.RadioSelect,
        initial="head",
        help_text="What trains: only a new classification head, the last layers too, every "
        "weight, or small low-rank adapters (LoRA).",
    )
    split = forms.ChoiceField(
        choices=[],
        widget=forms.RadioSelect,
        initial="stratified",
        help_text="How the test set is chosen; validation is always carved from training.",
    )
    test_fraction = forms.FloatField(
        initial=TEST_FRACTION,
        validators=_between(*SPLIT_SHARE),
        label="Test share",
        help_text="Share of the rows held out for the final test (random or latest by time).",
    )
    val_fraction = forms.FloatField(
        initial=VAL_FRACTION,
        validators=_between(*SPLIT_SHARE),
        label="Validation share",
        help_text="Share of the training rows used to pick the best epoch and stop early.",
    )
    test_dataset_version = DatasetVersionChoice(
        queryset=None,
        required=False,
        label="Test file",
        help_text="Separate test file only: another dataset version with the same labels.",
    )
    check_base_serving = forms.BooleanField(
        required=False,
        label="Check the base exports to ONNX first",
        help_text="Also queues the base model's serving check: it exports the base encoder to "
        "ONNX and compares ONNX Runtime with PyTorch on reference sentences or photos. The "
        "fine-tune does not wait for it; the result shows on the base model's page.",
    )

    def __init__(self, *args, user, strategy: str = "full", lora_targets=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["strategy"].choices = FineTuneRun.Strategy.choices
        self.fields["split"].choices = FineTuneRun.Split.choices
        self.fields["base_version"].queryset = versions_finetunable_by(user).order_by(
            "model__repo_id", "-created_at"
        )
        datasets = dataset_versions_visible_to(user).order_by("dataset__name", "-created_at")
        self.fields["dataset_version"].queryset = datasets
        self.fields["test_dataset_version"].queryset = datasets
        defaults = finetune_defaults(strategy)
        if lora_targets:
            defaults["lora_target_modules"] = list(lora_targets)
        for name in self.CONFIG_FIELDS:
            value = defaults.get(name)
            if name == "lora_target_modules":
                value = ", ".join(value or [])
            self.fields[name].initial = value
        self.fields["strategy"].initial = strategy

    def clean(self):
        data = super().clean()
        if data.get("split") == "test_file" and not data.get("test_dataset_version"):
            self.add_error("test_dataset_version", "Choose the test file.")
        return data

    def config(self) -> dict:
        """The hyperparameters given, as FineTuneConfig fields; an empty one means the default."""
        values = {name: self.cleaned_data.get(name) for name in self.CONFIG_FIELDS}
        return {name: None if value == "" else value for name, value in values.items()}


class StudyForm(forms.Form):
    """Fine-tune a probe's top k with the automatic recipe, as one study."""

    k = forms.IntegerField(
        min_value=2,
        initial=2,
        label="How many of the top candidates",
        help_text="Each is fine-tuned with the automatic recipe on the same split.",
    )
    reason = forms.CharField(
        required=False,
        max_length=2000,
        label="Why",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Kept with the study, so the next team sees what was compared and why.",
    )


class StudyChoiceForm(forms.Form):
    """Choose a study's winner: it is scored on test once and registered."""

    run = forms.IntegerField(widget=forms.HiddenInput)
    reason = forms.CharField(
        max_length=2000,
        label="Why this one",
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={
            "required": "Say why you chose this one: the study keeps it for the next team."
        },
    )


class StudyCloseForm(forms.Form):
    """Close a study without choosing: nothing is scored on test or registered."""

    reason = forms.CharField(
        max_length=2000,
        label="Why close it without a choice",
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={
            "required": "Say why you close it without a choice: the study keeps it for the "
            "next team."
        },
    )
