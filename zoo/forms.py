from __future__ import annotations

import functools

from django import forms

from governance.models import License, Sensitivity
from zoo.models import SCAN_WAIVER_MAX_DAYS, CatalogModel, Dataset, ModelVersion


class CatalogueFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search", max_length=200)
    modality = forms.ChoiceField(
        required=False, choices=[("", "any modality"), *CatalogModel.Modality.choices]
    )
    task = forms.CharField(required=False, max_length=64)
    license_category = forms.ChoiceField(
        required=False, label="License", choices=[("", "any license"), *License.Category.choices]
    )
    commercial = forms.ChoiceField(
        required=False,
        label="Commercial use",
        choices=[
            ("", "commercial use: any"),
            ("yes", "commercial use allowed"),
            ("no", "not allowed"),
        ],
    )
    status = forms.ChoiceField(
        required=False, choices=[("", "any status"), *CatalogModel.Status.choices]
    )
    domain = forms.CharField(required=False, max_length=64)
    approved = forms.BooleanField(required=False, label="Approved for me")
    sort = forms.ChoiceField(
        required=False,
        choices=[
            ("", "relevance"),
            ("name", "name"),
            ("recent", "recently updated"),
            ("params", "size"),
        ],
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The filters sit in one row without visible labels; screen readers still get them.
        for name, field in self.fields.items():
            field.widget.attrs.setdefault("aria-label", field.label or name.title())

    def widgets_html(self) -> dict[str, str]:
        """The drop-downs and the checkbox as HTML, by field name, for the catalogue page.

        Each is a pure function of its field's raw value (its choices are fixed), so
        it is drawn once per value and process: through the template engine the six
        cost more than the page's search.
        """
        bound = self.is_bound
        drawn = {}
        for name in FILTER_WIDGETS:
            raw = self.data.get(name) if bound else None
            # A value no choice has this long is typed by hand: drawn, not remembered.
            remember = raw is None or len(raw) <= MAX_REMEMBERED_VALUE
            draw = _filter_widget if remember else _filter_widget.__wrapped__
            drawn[name] = draw(name, raw, bound)
        return drawn


MAX_REMEMBERED_VALUE = 40
FILTER_WIDGETS = ("modality", "license_category", "commercial", "status", "approved", "sort")


@functools.lru_cache(maxsize=1024)
def _filter_widget(name: str, raw: str | None, bound: bool) -> str:
    """One field's widget as a form holding only that value draws it (errors included)."""
    form = CatalogueFilterForm({name: raw} if raw is not None else {}) if bound else None
    return str((form or CatalogueFilterForm())[name])


class ModelEditForm(forms.ModelForm):
    domain_tags = forms.CharField(
        required=False, help_text="Comma-separated, e.g. finance, support-tickets."
    )

    class Meta:
        model = CatalogModel
        fields = ["title", "summary", "modality", "task", "architecture"]
        widgets = {"summary": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["domain_tags"] = ", ".join(self.instance.domain_tags)

    def clean_domain_tags(self) -> list[str]:
        raw = self.cleaned_data.get("domain_tags") or ""
        tags = [t.strip().lower() for t in raw.split(",") if t.strip()]
        if len(tags) > 30:
            raise forms.ValidationError("At most 30 tags.")
        return tags


class ModelStatusForm(forms.Form):
    status = forms.ChoiceField(choices=CatalogModel.Status.choices)
    reason = forms.CharField(
        required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2})
    )


class VersionLicenseForm(forms.Form):
    license = forms.ModelChoiceField(queryset=License.objects.all(), to_field_name="spdx_id")


class ScanWaiverForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Who checked these bytes and how, e.g. 'scikit-learn 1.5 pipeline exported by "
        "the fraud team; opcodes reviewed, only sklearn and numpy globals'.",
    )
    days = forms.IntegerField(
        label="Expires after (days)",
        min_value=1,
        max_value=SCAN_WAIVER_MAX_DAYS,
        initial=90,
        help_text=f"Between 1 and {SCAN_WAIVER_MAX_DAYS} days.",
    )


class ScanWaiverRevokeForm(forms.Form):
    reason = forms.CharField(max_length=2000, required=False, label="Why (optional)")


class VersionNotesForm(forms.ModelForm):
    class Meta:
        model = ModelVersion
        fields = ["bias_notes", "limitations"]
        widgets = {
            "bias_notes": forms.Textarea(attrs={"rows": 4}),
            "limitations": forms.Textarea(attrs={"rows": 4}),
        }


class DatasetUploadForm(forms.Form):
    """Step one of an upload: the file (and, for a new version, the dataset it belongs to)."""

    file = forms.FileField(
        help_text="CSV, TSV or JSON Lines for text classification; a .zip with one folder of "
        "images per class for image classification."
    )
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(),
        required=False,
        empty_label="a new dataset",
        label="Add to",
        help_text="Upload a new version of one of your datasets, or start a new one.",
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = Dataset.objects.filter(owner=user).order_by("name")


class DatasetConfirmForm(forms.Form):
    """Step two: the columns to use and how sensitive the data is."""

    token = forms.CharField(widget=forms.HiddenInput)
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(), required=False, widget=forms.HiddenInput
    )
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="Letters, digits, '.', '_' or '-'; unique among your datasets.",
    )
    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=2000
    )
    sensitivity = forms.ChoiceField(
        choices=Sensitivity.choices,
        initial=Sensitivity.INTERNAL,
        help_text="Confidential and restricted data can be fine-tuned on only under an "
        "approval that covers that sensitivity.",
    )
    text_column = forms.ChoiceField(required=False, help_text="The input text.")
    label_column = forms.ChoiceField(required=False, help_text="The class to predict.")
    slice_column = forms.ChoiceField(
        required=False,
        help_text="Optional: a group (region, product…) to report metrics per slice.",
    )
    time_column = forms.ChoiceField(
        required=False, help_text="Optional: a date, to train on earlier rows and test on later."
    )

    def __init__(self, *args, user, columns: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = Dataset.objects.filter(owner=user)
        choices = [(c, c) for c in columns]
        for name in ("text_column", "label_column"):
            self.fields[name].choices = [("", "—"), *choices]
            self.fields[name].required = bool(columns)
        for name in ("slice_column", "time_column"):
            self.fields[name].choices = [("", "none"), *choices]

    def clean(self):
        data = super().clean()
        if not data.get("dataset") and not data.get("name"):
            self.add_error("name", "Name the new dataset.")
        return data


class DatasetShareForm(forms.Form):
    username = forms.CharField(max_length=150, label="Share with (user name)")


class CardEditForm(forms.Form):
    """A version's whole card, YAML front matter included, and why it changed."""

    markdown = forms.CharField(
        label="Model card",
        required=False,
        strip=False,
        max_length=2 * 2**20,
        widget=forms.Textarea(attrs={"rows": 30, "class": "code", "spellcheck": "false"}),
        help_text="Markdown, as the README.md of a Hugging Face repository: an optional YAML "
        "header between '---' lines, then the text.",
    )
    reason = forms.CharField(
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why you changed it, e.g. 'Added the evaluation on the March tickets'.",
    )
    base = forms.IntegerField(widget=forms.HiddenInput, min_value=1)


class CardDiffForm(forms.Form):
    """Two revisions of a card to compare, by number."""

    a = forms.IntegerField(label="From revision", min_value=1)
    b = forms.IntegerField(label="To revision", min_value=1)

    def __init__(self, *args, numbers: list[int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.numbers = numbers

    def clean(self):
        data = super().clean()
        known = ", ".join(str(n) for n in self.numbers)
        for name in ("a", "b"):
            if name in data and data[name] not in self.numbers:
                self.add_error(name, f"There is no revision {data[name]}; this card has {known}.")
        return data


def _words(text: str) -> list[str]:
    """One word or name per line (commas also separate), blanks dropped."""
    return [w.strip() for line in text.splitlines() for w in line.split(",") if w.strip()]


class AssociationTestSetForm(forms.Form):
    """A steward's edit of one word-association test: the four word lists, one per line."""

    title = forms.CharField(max_length=200)
    target_x = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), label="Target words X")
    target_y = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), label="Target words Y")
    attribute_a = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}), label="Attribute words A"
    )
    attribute_b = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}), label="Attribute words B"
    )
    source = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), label="Source (citation)")
    active = forms.BooleanField(required=False, label="Run by default")

    WORD_FIELDS = ("target_x", "target_y", "attribute_a", "attribute_b")

    @classmethod
    def initial_of(cls, test_set) -> dict:
        return {
            "title": test_set.title,
            "source": test_set.source,
            "active": test_set.active,
            **{name: "\n".join(getattr(test_set, name)) for name in cls.WORD_FIELDS},
        }

    def fields_to_save(self) -> dict:
        data = dict(self.cleaned_data)
        for name in self.WORD_FIELDS:
            data[name] = _words(data[name])
        return data
