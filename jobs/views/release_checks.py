"""Launching a release check from a version's page (the results show on that page)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from jobs.services.release_checks import release_check_launch
from portal.errors import NotFound, PortalError
from portal.http import shown_to
from zoo.selectors.catalogue import versions_visible_to

NUMBERS = (
    "target_value",
    "cosine_threshold",
    "threshold",
    "k",
    "permutations",
    "alpha",
    "min_count",
    "calls",
)
WORDS = ("target", "positive_class", "sets", "other_version", "register", "batch")


def _params(post) -> dict:
    """The form's non-empty settings; numbers read as numbers (the service checks ranges)."""
    params: dict = {}
    for name in WORDS:
        if post.get(name, "").strip():
            params[name] = post[name].strip()
    for name in NUMBERS:
        raw = post.get(name, "").strip()
        if raw:
            try:
                params[name] = float(raw)
            except ValueError:
                raise PortalError(f"{name} must be a number.", field=name) from None
    return params


@login_required
@require_POST
def release_check_new(request: HttpRequest, pk: int) -> HttpResponse:
    version = versions_visible_to(request.user).select_related("model").filter(pk=pk).first()
    if version is None:
        raise NotFound("No such version.")
    kind = request.POST.get("kind", "")
    with shown_to(request) as attempt, transaction.atomic():
        check = release_check_launch(
            actor=request.user, version=version, kind=kind, params=_params(request.POST)
        )
    if attempt.succeeded:
        messages.success(
            request,
            f"The {check.get_kind_display().lower()} check of {version.label} runs as job "
            f"#{check.job_id}; its result appears here and in the card.",
        )
    return redirect(f"{version.model.get_absolute_url()}?version={version.label}#release-checks")
