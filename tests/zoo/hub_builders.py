"""Catalogue versions, tokens and approvals for the Hugging Face endpoint tests.

Everything goes through the real services: versions through the importer (so the
blobs are in the artifact storage), tokens through ``access_token_create``,
approvals through a reuse request that a legal reviewer approves.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from governance.models import ReuseRequest
from governance.services import reuse as gov_reuse
from governance.services import tokens as gov_tokens
from tests.jobs.probe_builders import import_model
from tests.zoo.builders import make_model

__all__ = ["approve", "bearer", "import_folder", "import_model", "small_model", "token_for"]

# Files that exercise folders, LFS-by-extension and plain git blobs.
EXTRA = {
    "tokenizer/vocab.txt": b"[PAD]\n[UNK]\nhello\nworld\n",
    "tokenizer/special/added_tokens.json": b'{"<x>": 5}',
    "notes/changelog.md": "first cut, caf\u00e9 edition\n".encode(),
}


def small_model(name: str, *, extra: dict[str, bytes] | None = None) -> Path:
    """A small model folder under the first import root (where the importer may read)."""
    folder = Path(settings.IMPORT_ROOTS[0]) / name
    return make_model(folder, extra={**EXTRA, **(extra or {})})


def import_folder(folder: Path, repo_id: str, *, actor):
    """Import through the real importer and publish, as a steward would."""
    return import_model(folder, repo_id, actor=actor)


def token_for(user, *, days: int = 30, name: str = "tests") -> str:
    return gov_tokens.access_token_create(user=user, name=name, days=days)[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def approve(requester, version, *, reviewer, days: int = 30) -> ReuseRequest:
    """A research request on public data needs only legal review: approve it.

    The object permissions are granted after commit; callers outside a live
    server wrap this in ``django_capture_on_commit_callbacks(execute=True)``.
    """
    request = gov_reuse.reuse_request_submit(
        requester=requester,
        version=version,
        intended_use="Evaluate it on our tickets",
        use_type="research",
        business_unit="ML platform",
        data_sensitivity="public",
        justification="Needed for the evaluation",
        duration_days=days,
    )
    assert request.required_roles == ["legal"], request.required_roles
    return gov_reuse.review_submit(
        request=request, reviewer=reviewer, role="legal", decision="approve"
    )
