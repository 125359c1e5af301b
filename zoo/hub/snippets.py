"""The model page's "Use this model" box: where to point the client, and whether it will work."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse

from zoo.hub.views import usable_versions
from zoo.models import CatalogModel, ModelVersion


def use_this_model(request: HttpRequest, version: ModelVersion) -> dict:
    """Context for the model page: the endpoint, the token page, and whether this user may pull."""
    return {
        "hub_endpoint": request.build_absolute_uri(reverse("hub:index")).rstrip("/"),
        "hub_tokens_url": reverse("tokens:list"),
        "hub_can_download": version.model.status != CatalogModel.Status.BLOCKED
        and usable_versions(request.user, version.model).filter(pk=version.pk).exists(),
    }
