"""The model page's "Use this model" box: where to point the client, and whether it will work."""

from __future__ import annotations

import json

from django.http import HttpRequest
from django.urls import reverse

from zoo.hub.views import usable_versions
from zoo.models import CatalogModel, ModelVersion

_HEADS = {
    "text-classification": "AutoModelForSequenceClassification",
    "image-classification": "AutoModelForImageClassification",
}


def loading_recipe(version: ModelVersion) -> dict:
    """How transformers (and peft) load this version, for the page's snippet.

    ``kind`` is "adapter" (the base with a head for the class names, then the
    adapter, the base's tokenizer), "classifier" (a fine-tuned model with its own
    head and labels), "model" (a base model's encoder) or "files" (a format of the
    portal's own, which transformers cannot load: download the files).
    """
    model = version.model
    text = model.modality == CatalogModel.Modality.TEXT
    if "EfficientNetLite" in (model.architecture or ""):
        return {"kind": "files"}
    parent = version.parent if version.parent_id else None
    if version.kind == ModelVersion.Kind.ADAPTER and parent is not None:
        head = (
            _HEADS.get(model.task)
            or _HEADS["text-classification" if text else "image-classification"]
        )
        return {
            "kind": "adapter",
            "head": head,
            "base_repo": parent.model.repo_id,
            "base_revision": parent.revision,
            "labels": json.dumps(
                (version.provenance or {}).get("labels") or [], ensure_ascii=False
            ),
            "tokenizer": text,
        }
    if version.kind == ModelVersion.Kind.FINETUNED and model.task in _HEADS:
        return {"kind": "classifier", "head": _HEADS[model.task], "tokenizer": text}
    return {"kind": "model", "head": "AutoModel", "tokenizer": text}


def use_this_model(request: HttpRequest, version: ModelVersion) -> dict:
    """Context for the model page: the endpoint, the token page, and whether this user may pull."""
    return {
        "recipe": loading_recipe(version),
        "hub_endpoint": request.build_absolute_uri(reverse("hub:index")).rstrip("/"),
        "hub_tokens_url": reverse("tokens:list"),
        "hub_can_download": version.model.status != CatalogModel.Status.BLOCKED
        and usable_versions(request.user, version.model).filter(pk=version.pk).exists(),
    }
