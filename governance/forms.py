from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from governance.models import (
    ACCESS_TOKEN_DEFAULT_DAYS,
    ACCESS_TOKEN_MAX_DAYS,
    AccessToken,
    Incident,
    IncidentCategory,
    IncidentStep,
    NotificationKind,
    RiskEntry,
    Sensitivity,
    UseType,
)
from governance.services.signin import client_address, sign_in
from portal.errors import PortalError, TooManyAttempts


class SignInForm(AuthenticationForm):
    """The sign-in page's form, held to the same throttle as POST /api/auth/token/."""

    throttled: TooManyAttempts | None = None

    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            try:
                self.user_cache = sign_in(
                    username=username,
                    password=password,
                    client=client_address(self.request),
                    request=self.request,
                )
            except TooManyAttempts as exc:
                self.throttled = exc
                raise forms.ValidationError(exc.message, code="throttled") from exc
            except PortalError as exc:
                raise forms.ValidationError(exc.message, code="invalid_login") from exc
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=150)
    verb = forms.ChoiceField(required=False, label="Action")
    target_type = forms.ChoiceField(required=False, label="Target type")
    target_id = forms.CharField(required=False, max_length=64)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, choices: dict[str, list[str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        for name, values in (choices or {}).items():
            self.fields[name].choices = [("", f"any {self.fields[name].label.lower()}")] + [
                (v, v) for v in values
            ]
        for name, field in self.fields.items():
            field.widget.attrs.setdefault("aria-label", name.replace("_", " ").capitalize())
            if not isinstance(field, forms.ChoiceField):
                field.widget.attrs.setdefault("placeholder", name.replace("_", " "))


class ReuseRequestForm(forms.Form):
    version = forms.ModelChoiceField(queryset=None, to_field_name="label", empty_label=None)
    intended_use = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text="What will the model do?",
    )
    use_type = forms.ChoiceField(choices=UseType.choices)
    business_unit = forms.CharField(max_length=120)
    data_sensitivity = forms.ChoiceField(
        choices=Sensitivity.choices, help_text="The most sensitive data the model will see."
    )
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)
    duration_days = forms.IntegerField(
        min_value=1, max_value=730, initial=90, help_text="How long the approval should last."
    )

    def __init__(self, *args, versions=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = versions


class ReviewForm(forms.Form):
    role = forms.ChoiceField(choices=[])
    decision = forms.ChoiceField(
        choices=[("approve", "Approve"), ("changes", "Request changes"), ("reject", "Reject")]
    )
    comment = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=4000
    )

    def __init__(self, *args, roles=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = [(r, r) for r in roles]


class RiskForm(forms.Form):
    category = forms.ChoiceField(choices=RiskEntry.Category.choices)
    title = forms.CharField(max_length=200)
    severity = forms.TypedChoiceField(choices=RiskEntry.Level.choices, coerce=int)
    likelihood = forms.TypedChoiceField(choices=RiskEntry.Level.choices, coerce=int)
    mitigation = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    status = forms.ChoiceField(choices=RiskEntry.Status.choices, initial=RiskEntry.Status.OPEN)


class AccessTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="What the token is for, e.g. 'laptop' or 'training-node-3'."
    )
    days = forms.IntegerField(
        label="Expires after (days)",
        min_value=1,
        max_value=ACCESS_TOKEN_MAX_DAYS,
        initial=ACCESS_TOKEN_DEFAULT_DAYS,
        help_text=f"Between 1 and {ACCESS_TOKEN_MAX_DAYS} days.",
    )
    scope = forms.ChoiceField(
        label="For",
        choices=AccessToken.Scope.choices,
        initial=AccessToken.Scope.READ,
        required=False,
        help_text="Downloads with the Hugging Face client, or scripts calling the REST API "
        "(Authorization: Token …). A token works for its own use only.",
    )

    def clean_scope(self) -> str:
        return self.cleaned_data["scope"] or AccessToken.Scope.READ


class IncidentForm(forms.Form):
    category = forms.ChoiceField(choices=IncidentCategory.choices)
    severity = forms.TypedChoiceField(choices=Incident.Severity.choices, coerce=int)
    title = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}))
    recall = forms.BooleanField(
        required=False,
        help_text="Block this version and everything made from it, and suspend the approvals "
        "on them, now.",
    )


class IncidentStepForm(forms.Form):
    step = forms.ChoiceField(choices=IncidentStep.Step.choices)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=5000)


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=5000)


class AttestForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=5000,
        label="What you checked",
        help_text="The card, the license and the risk register still describe this version.",
    )


class NotificationPreferencesForm(forms.Form):
    """Two boxes per kind of notification: in the inbox, by e-mail."""

    def __init__(self, *args, channels: list[tuple[str, str, bool, bool]], **kwargs):
        super().__init__(*args, **kwargs)
        self.kinds = [(kind, label) for kind, label, _, _ in channels]
        for kind, label, inbox, email in channels:
            self.fields[f"{kind}__inbox"] = forms.BooleanField(
                required=False, initial=inbox, label=f"{label}: in the inbox"
            )
            self.fields[f"{kind}__email"] = forms.BooleanField(
                required=False, initial=email, label=f"{label}: by e-mail"
            )

    def rows(self):
        """(label, inbox box, e-mail box) per kind, for the settings table."""
        return [
            (label, self[f"{kind}__inbox"], self[f"{kind}__email"]) for kind, label in self.kinds
        ]

    def choices(self) -> dict[str, tuple[bool, bool]]:
        data = self.cleaned_data
        return {kind: (data[f"{kind}__inbox"], data[f"{kind}__email"]) for kind, _ in self.kinds}


class WebhookEndpointForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the endpoint feeds, e.g. “SIEM”.")
    # A plain text field: the service says what a usable URL is (http or https only).
    url = forms.CharField(
        label="URL", max_length=500, help_text="http:// or https://; it receives signed POSTs."
    )
    kinds = forms.MultipleChoiceField(
        required=False,
        choices=NotificationKind.choices,
        widget=forms.CheckboxSelectMultiple,
        label="Events",
        help_text="None ticked: every kind of event.",
    )
