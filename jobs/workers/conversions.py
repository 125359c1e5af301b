"""The conversion job: torch checkpoints to safetensors, loaded in an isolated child process."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth import get_user_model

from jobs.engine import JobContext, register
from jobs.ml.convert import convert_isolated
from jobs.models import Job
from portal.errors import PortalError
from zoo import importers
from zoo.models import ModelVersion
from zoo.storage import copy_artifact_to

_INDEX = "pytorch_model.bin.index.json"


@register(Job.Kind.CONVERT)
def convert_version(ctx: JobContext) -> dict:
    """Copy the version's files out of storage, convert its checkpoints, import the result."""
    version = ModelVersion.objects.select_related("model", "license").get(
        pk=ctx.params["version_id"]
    )
    plan: dict[str, str] = ctx.params["files"]
    actor = get_user_model().objects.filter(pk=ctx.requested_by_id).first()
    with ctx.workspace() as tmp:
        original, output = tmp / "original", tmp / "converted"
        artifacts = list(version.artifacts.all())
        for index, artifact in enumerate(artifacts):
            ctx.progress(0.3 * index / len(artifacts), stage=f"Fetching {artifact.path}")
            copy_artifact_to(artifact, original if artifact.path in plan else output)
        ctx.progress(0.3, stage=f"Converting {len(plan)} checkpoint{'s' if len(plan) != 1 else ''}")
        summary = convert_isolated(
            [(name, original / name, output / target) for name, target in plan.items()],
            tmp,
            timeout_s=settings.CONVERT_TIMEOUT_S,
            memory_bytes=settings.CONVERT_MAX_MEMORY_MB * 2**20,
        )
        for name, facts in summary.items():
            ctx.log(
                f"{name} → {plan[name]}: {facts['tensors']} tensors, "
                f"{facts['parameters']:,} parameters ({', '.join(facts['dtypes'])})"
            )
        _rewrite_index(output, plan)
        ctx.progress(0.7, stage="Importing the safetensors version")
        converted, created = importers.import_conversion_output(
            folder=output,
            original=version,
            converted=plan,
            actor=actor,
            report=lambda fraction, stage: ctx.progress(0.7 + 0.3 * fraction, stage=stage),
        )
    ctx.log(
        f"{'Recorded' if created else 'Already in the catalogue:'} {converted.model.repo_id} "
        f"{converted.label}, converted from {version.label}"
    )
    return {
        "version_id": converted.pk,
        "repo_id": converted.model.repo_id,
        "label": converted.label,
        "parent": version.pk,
        "created": created,
        "blocked": converted.is_blocked,
        "files": plan,
    }


def _rewrite_index(folder, plan: dict[str, str]) -> None:
    """A sharded checkpoint's index names the shards: point it at the new files."""
    index = folder / _INDEX
    if not index.is_file():
        return
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        weight_map = data["weight_map"]
    except (ValueError, KeyError, TypeError):
        raise PortalError(f"{_INDEX} is not a checkpoint index; it cannot be rewritten.") from None
    data["weight_map"] = {k: plan.get(v, v) for k, v in weight_map.items()}
    (folder / "model.safetensors.index.json").write_text(json.dumps(data, indent=2))
    index.unlink()
