from __future__ import annotations

from django import forms

from governance.models import License
from zoo.models import CatalogModel, ModelVersion


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


class VersionNotesForm(forms.ModelForm):
    class Meta:
        model = ModelVersion
        fields = ["bias_notes", "limitations"]
        widgets = {
            "bias_notes": forms.Textarea(attrs={"rows": 4}),
            "limitations": forms.Textarea(attrs={"rows": 4}),
        }
