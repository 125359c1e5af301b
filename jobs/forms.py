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
