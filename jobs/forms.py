from __future__ import annotations

from django import forms
from django.core.validators import MaxValueValidator


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
        from zoo.models import repo_id_validator

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

    def __init__(self, *args, user, modality: str = "", **kwargs) -> None:
        from django.conf import settings

        from zoo.models import CatalogModel, ModelVersion
        from zoo.selectors import dataset_versions_visible_to, versions_visible_to

        super().__init__(*args, **kwargs)
        self.fields["dataset_version"].queryset = dataset_versions_visible_to(user).order_by(
            "dataset__name", "-created_at"
        )
        candidates = (
            versions_visible_to(user)
            .filter(status=ModelVersion.Status.AVAILABLE)
            .exclude(model__status=CatalogModel.Status.BLOCKED)
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
    from django.core.validators import MaxValueValidator, MinValueValidator

    return [MinValueValidator(low), MaxValueValidator(high)]


class FineTuneForm(forms.Form):
    """Launch a fine-tune: what to train, how, and how to test it. Each field says why in a line."""

    # The hyperparameters that go into jobs.ml.finetune.FineTuneConfig, in the order shown.
    CONFIG_FIELDS = (
        "unfreeze_layers",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
        "learning_rate",
        "layer_decay",
        "warmup_ratio",
        "schedule",
        "epochs",
        "batch_size",
        "grad_accum",
        "weight_decay",
        "label_smoothing",
        "class_weights",
        "max_length",
        "patience",
        "seed",
    )
    LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")

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
    unfreeze_layers = forms.IntegerField(
        min_value=1,
        max_value=200,
        label="Layers to unfreeze",
        help_text="Partial unfreeze: how many of the last encoder layers train with the head.",
    )
    lora_r = forms.IntegerField(
        min_value=1,
        max_value=512,
        label="LoRA rank r",
        help_text="Rank of each adapter; higher adapts more and trains more parameters.",
    )
    lora_alpha = forms.FloatField(
        min_value=0.01,
        max_value=4096,
        label="LoRA alpha",
        help_text="Scale of the adapters' update (alpha / r); commonly twice the rank.",
    )
    lora_dropout = forms.FloatField(
        validators=_between(0.0, 0.9),
        label="LoRA dropout",
        help_text="Dropout on the adapters' input, against overfitting small datasets.",
    )
    lora_target_modules = forms.CharField(
        required=False,
        max_length=500,
        label="LoRA target modules",
        help_text="Comma-separated module names to adapt; filled in for the base model's "
        "architecture (empty: the worker decides from the model).",
    )
    learning_rate = forms.FloatField(
        validators=_between(1e-7, 1.0),
        label="Learning rate",
        help_text="Peak learning rate after warm-up; the head learns at this rate.",
    )
    layer_decay = forms.FloatField(
        validators=_between(0.01, 1.0),
        label="Layer-wise learning-rate decay",
        help_text="Each layer further from the head learns at this multiple of the one above "
        "it (1 = the same rate everywhere).",
    )
    warmup_ratio = forms.FloatField(
        validators=_between(0.0, 0.5),
        label="Warm-up ratio",
        help_text="Share of the steps over which the learning rate rises from 0 to its peak.",
    )
    schedule = forms.ChoiceField(
        choices=[("linear", "linear decay"), ("cosine", "cosine decay")],
        help_text="How the learning rate falls after warm-up.",
    )
    epochs = forms.IntegerField(
        min_value=1, max_value=100, help_text="Passes over the training split (at most)."
    )
    batch_size = forms.IntegerField(
        min_value=1, max_value=1024, label="Batch size", help_text="Examples per forward pass."
    )
    grad_accum = forms.IntegerField(
        min_value=1,
        max_value=256,
        label="Gradient accumulation",
        help_text="Batches per optimizer step: the effective batch is batch size times this.",
    )
    weight_decay = forms.FloatField(
        validators=_between(0.0, 1.0),
        label="Weight decay",
        help_text="AdamW's decoupled weight decay (not applied to biases and norms).",
    )
    label_smoothing = forms.FloatField(
        validators=_between(0.0, 0.5),
        label="Label smoothing",
        help_text="Share of the target spread over the other classes; tempers overconfidence.",
    )
    class_weights = forms.BooleanField(
        required=False,
        label="Weight classes",
        help_text="Weight the loss by inverse class frequency, for imbalanced labels.",
    )
    max_length = forms.IntegerField(
        min_value=8,
        max_value=8192,
        label="Maximum sequence length",
        help_text="Text only: longer texts are truncated to this many tokens.",
    )
    patience = forms.IntegerField(
        min_value=0,
        max_value=100,
        label="Early-stopping patience",
        help_text="Stop after this many epochs without a better validation macro-F1 "
        "(0: never stop early); the best epoch's weights are kept.",
    )
    seed = forms.IntegerField(
        min_value=0,
        max_value=2**31 - 1,
        help_text="Fixes the split, the head's initialisation and the data order.",
    )
    split = forms.ChoiceField(
        choices=[],
        widget=forms.RadioSelect,
        initial="stratified",
        help_text="How the test set is chosen; validation is always carved from training.",
    )
    test_fraction = forms.FloatField(
        initial=0.2,
        validators=_between(0.05, 0.5),
        label="Test share",
        help_text="Share of the rows held out for the final test (random or latest by time).",
    )
    val_fraction = forms.FloatField(
        initial=0.1,
        validators=_between(0.05, 0.5),
        label="Validation share",
        help_text="Share of the training rows used to pick the best epoch and stop early.",
    )
    test_dataset_version = DatasetVersionChoice(
        queryset=None,
        required=False,
        label="Test file",
        help_text="Separate test file only: another dataset version with the same labels.",
    )

    def __init__(self, *args, user, strategy: str = "head", lora_targets=None, **kwargs) -> None:
        from jobs.models import FineTuneRun
        from jobs.selectors import versions_finetunable_by
        from jobs.services import finetune_defaults
        from zoo.selectors import dataset_versions_visible_to

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

    def clean_lora_target_modules(self) -> list[str]:
        raw = self.cleaned_data.get("lora_target_modules") or ""
        names = [part.strip() for part in raw.replace("\n", ",").split(",") if part.strip()]
        bad = [n for n in names if not n.replace("_", "").replace(".", "").isalnum()]
        if bad:
            raise forms.ValidationError(f"Not a module name: {bad[0]!r}.")
        return names

    def clean(self):
        data = super().clean()
        if data.get("split") == "test_file" and not data.get("test_dataset_version"):
            self.add_error("test_dataset_version", "Choose the test file.")
        return data

    def config(self) -> dict:
        """The hyperparameters as FineTuneConfig fields, from the cleaned form."""
        return {name: self.cleaned_data.get(name) for name in self.CONFIG_FIELDS}
