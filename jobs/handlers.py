"""Job kinds that belong to the jobs app itself."""

from __future__ import annotations

from jobs.ml.device import environment_report
from jobs.models import Job
from jobs.services import JobContext, register
from portal.errors import PortalError


@register(Job.Kind.WORKER_CHECK)
def worker_check(ctx: JobContext) -> dict:
    """Report what the worker that took this job can do.

    With ``require_gpu`` the job fails on a worker without CUDA, which is how
    an operator confirms that the ``gpu`` queue really reaches a GPU node.
    """
    ctx.progress(0.1, stage="Inspecting the worker")
    report = environment_report()
    ctx.log(f"python {report['python']}, torch {report['torch']}, device {ctx.device}")
    if ctx.params.get("require_gpu") and not report["cuda_available"]:
        raise PortalError(
            f"This worker has no CUDA device (it runs on {ctx.device}); "
            "the gpu queue should be served by GPU nodes."
        )
    ctx.progress(1.0, stage="Done")
    return report


@register(Job.Kind.IMPORT)
def import_model(ctx: JobContext) -> dict:
    """Run a catalogue import; the importer writes nothing unless it succeeds."""
    import shutil
    import tempfile
    from pathlib import Path

    from django.contrib.auth import get_user_model
    from django.core.files.storage import default_storage

    from zoo import importers

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
        # Copy the upload out of storage (which may be remote) into a local file.
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "archive"
            with default_storage.open(params["archive"], "rb") as src, local.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            try:
                version, created = importers.import_from_archive(
                    archive=local,
                    repo_id=params["repo_id"],
                    original_name=params.get("original_name", ""),
                    actor=actor,
                    report=report,
                )
            finally:
                default_storage.delete(params["archive"])
    else:
        raise PortalError(f"Unknown import source {source!r}.")
    ctx.log(
        f"{'Imported' if created else 'Already in the catalogue:'} "
        f"{version.model.repo_id} {version.label} ({version.revision[:10]})"
    )
    if version.is_blocked:
        for reason in version.block_reasons:
            ctx.log(f"blocked: {reason}")
    return {
        "version_id": version.pk,
        "repo_id": version.model.repo_id,
        "label": version.label,
        "revision": version.revision,
        "created": created,
        "blocked": version.is_blocked,
        "block_reasons": version.block_reasons,
    }
