"""Start a catalogue import: from the Hub, a folder on the server, or an uploaded archive."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage

from governance.roles import is_steward
from jobs.engine import job_create
from jobs.models import Job
from portal.errors import Forbidden, PortalError


def import_launch(
    *,
    actor,
    source: str,
    repo_id: str,
    hub_repo_id: str = "",
    revision: str = "main",
    folder: str = "",
    upload=None,
) -> Job:
    """Check an import request and queue it as a job; stewards only.

    Folders must lie under one of settings.IMPORT_ROOTS (after resolving links);
    an upload is stored first, so the worker reads it from shared storage.
    """
    if not is_steward(actor):
        raise Forbidden("Only stewards may import models.")
    params: dict[str, Any] = {"source": source, "repo_id": repo_id}
    if source == "hub":
        params.update(hub_repo_id=hub_repo_id, revision=revision or "main")
    elif source == "folder":
        params["folder"] = str(_import_folder(folder))
    elif source == "archive":
        params.update(_stored_archive(upload))
    else:
        raise PortalError(f"Unknown import source {source!r}.", field="source")
    return job_create(kind=Job.Kind.IMPORT, requested_by=actor, params=params)


def _import_folder(folder: str) -> Path:
    """The folder, resolved; it must lie under an allowed import root (links included)."""
    path = Path(folder)
    if not path.is_absolute():
        raise PortalError("Give the folder as an absolute path.", field="folder")
    resolved = path.resolve()
    roots = [Path(r).resolve() for r in settings.IMPORT_ROOTS]
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise PortalError(
            f"Imports are allowed only from folders under: {allowed}.", field="folder"
        )
    if not resolved.is_dir():
        raise PortalError(f"{folder} is not a folder on the server.", field="folder")
    return resolved


def _stored_archive(upload) -> dict[str, str]:
    if upload is None:
        raise PortalError("Choose an archive to upload.", field="archive")
    if upload.size > settings.UPLOAD_MAX_BYTES:
        raise PortalError(
            f"The archive is {upload.size:,} bytes; the limit is {settings.UPLOAD_MAX_BYTES:,}.",
            field="archive",
        )
    stored = default_storage.save(f"uploads/imports/{uuid.uuid4().hex}", upload)
    return {"archive": stored, "original_name": getattr(upload, "name", "")[:200]}
