from __future__ import annotations

from django import forms


class WorkerCheckForm(forms.Form):
    queue = forms.ChoiceField(
        choices=[("default", "default (CPU workers)"), ("gpu", "gpu (GPU workers)")],
        help_text="The queue whose workers should answer.",
    )
    require_gpu = forms.BooleanField(
        required=False, help_text="Fail unless the worker that answers has a CUDA device."
    )
