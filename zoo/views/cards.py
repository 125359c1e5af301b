"""A version's model card: the stewards' editor, the card's history and a diff of two revisions.

Anyone who may see the model may read its card's history (the card itself is
on the model page); only stewards edit, and the service asks again.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from governance.roles import is_steward
from portal.errors import Conflict, Forbidden, NotFound
from portal.http import shown_to
from zoo.forms import CardDiffForm, CardEditForm
from zoo.models import CatalogModel, ModelVersion
from zoo.selectors import cards
from zoo.selectors.catalogue import versions_visible_to
from zoo.services import card_revisions


def _version(request: HttpRequest, namespace: str, name: str, label: str) -> ModelVersion:
    """The version, when its model is one the user may see; missing and hidden both 404."""
    version = (
        versions_visible_to(request.user)
        .select_related("model")
        .filter(model__repo_id=f"{namespace}/{name}", label=label)
        .first()
    )
    if version is None:
        raise NotFound(f"No version {label} of {namespace}/{name} in the catalogue.")
    return version


def _card_url(version: ModelVersion) -> str:
    return f"{version.model.get_absolute_url()}?version={version.label}#model-card"


@login_required
def card_edit(request: HttpRequest, namespace: str, name: str, label: str) -> HttpResponse:
    version = _version(request, namespace, name, label)
    if not is_steward(request.user):
        raise Forbidden("Only stewards may edit model cards.")
    latest = cards.latest_card(version)
    form = CardEditForm(
        request.POST or None, initial={"markdown": latest.markdown, "base": latest.number}
    )
    if request.method == "POST" and form.is_valid():
        with shown_to(request, form) as attempt:
            revision = card_revisions.version_card_edit(
                version=version,
                actor=request.user,
                markdown=form.cleaned_data["markdown"],
                reason=form.cleaned_data["reason"],
                base=form.cleaned_data["base"],
            )
        if attempt.succeeded:
            _saved(request, revision)
            return redirect(_card_url(version))
        if isinstance(attempt.error, Conflict):
            # The text stays as typed; saving again now replaces the newer revision, knowingly.
            form.data = form.data.copy()
            form.data["base"] = str(cards.latest_card(version).number)
    requirements = cards.card_requirements()
    return render(
        request,
        "zoo/card_edit.html",
        {
            "model": version.model,
            "version": version,
            "form": form,
            "latest": latest,
            "requirements": requirements,
            "missing": cards.sections_missing(version.card_markdown, requirements),
        },
    )


def _saved(request: HttpRequest, revision) -> None:
    version = revision.version
    messages.success(request, f"Saved revision {revision.number} of the card of {version.label}.")
    missing = cards.card_missing_sections(version)
    if missing and version.model.status == CatalogModel.Status.DRAFT:
        messages.warning(
            request, f"Before it can be published, the card still needs: {', '.join(missing)}."
        )


@login_required
def card_history(request: HttpRequest, namespace: str, name: str, label: str) -> HttpResponse:
    version = _version(request, namespace, name, label)
    revisions = cards.card_revisions(version)
    return render(
        request,
        "zoo/card_history.html",
        {
            "model": version.model,
            "version": version,
            "revisions": revisions[::-1],
            "newest": revisions[-1].number,
            "is_steward": is_steward(request.user),
        },
    )


@login_required
def card_diff(request: HttpRequest, namespace: str, name: str, label: str) -> HttpResponse:
    version = _version(request, namespace, name, label)
    revisions = {r.number: r for r in cards.card_revisions(version)}
    numbers = sorted(revisions)
    asked = "a" in request.GET or "b" in request.GET
    # Without a choice: the last change, the newest revision against the one before.
    data = request.GET if asked else {"a": max(numbers[-1] - 1, 1), "b": numbers[-1]}
    form = CardDiffForm(data, numbers=numbers)
    context = {"model": version.model, "version": version, "form": form, "numbers": numbers}
    if not form.is_valid():
        return render(request, "zoo/card_diff.html", context, status=400)
    old, new = revisions[form.cleaned_data["a"]], revisions[form.cleaned_data["b"]]
    context.update(old=old, new=new, hunks=cards.side_by_side(old.markdown, new.markdown))
    return render(request, "zoo/card_diff.html", context)
