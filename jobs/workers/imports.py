"""The import job: run a catalogue import; the importer writes nothing unless it succeeds."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage

from governance.services import notify as notices
from jobs.engine import JobContext, register
from jobs.models import Job
from portal.errors import PortalError
from zoo import importers
from zoo.models import CatalogModel


@register(Job.Kind.IMPORT)
def import_model(ctx: JobContext) -> dict:
    """Import from the Hub, a server folder or an uploaded archive, as the params say."""
    params = ctx.params
    actor = get_user_model().objects.filter(pk=ctx.requested_by_id).first()

    def report(fraction: float, stage: str) -> None:
        ctx.progress(fraction, stage=stage)

    source = params.get("source")
    if source == "hub":
        version, created = importers.import_from_hub(
            hub_repo_id=params["hub_repo_id"],
            revision=params.get("revision") or "main",
            repo_id=params.get("repo_id") or params["hub_repo_id"],
            actor=actor,
            report=report,
        )
    elif source == "folder":
        version, created = importers.import_from_folder(
            folder=Path(params["folder"]), repo_id=params["repo_id"], actor=actor, report=report
        )
    elif source == "archive":
        version, created = _import_archive(ctx, params, actor, report)
    else:
        raise PortalError(f"Unknown import source {source!r}.")
    ctx.log(
        f"{'Imported' if created else 'Already in the catalogue:'} "
        f"{version.model.repo_id} {version.label} ({version.revision[:10]})"
    )
    for reason in version.block_reasons if version.is_blocked else []:
        ctx.log(f"blocked: {reason}")
    if created and version.model.status == CatalogModel.Status.DRAFT:
        notices.awaiting_publication(
            version=version, made_by=f"Imported by {actor or 'the system'} (job #{ctx.job_id})"
        )
    return {
        "version_id": version.pk,
        "repo_id": version.model.repo_id,
        "label": version.label,
        "revision": version.revision,
        "created": created,
        "blocked": version.is_blocked,
        "block_reasons": version.block_reasons,
    }


def _import_archive(ctx: JobContext, params: dict, actor, report):
    """Copy the upload out of storage (which may be remote) into a local file, then import it."""
    with ctx.workspace() as tmp:
        local = tmp / "archive"
        with default_storage.open(params["archive"], "rb") as src, local.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        try:
            return importers.import_from_archive(
                archive=local,
                repo_id=params["repo_id"],
                original_name=params.get("original_name", ""),
                actor=actor,
                report=report,
            )
        finally:
            default_storage.delete(params["archive"])
