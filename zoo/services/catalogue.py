"""Every change to catalogue entries: models, their versions' licenses and metadata.

Stewards keep the catalogue, and each function here refuses anyone else,
whichever view, endpoint, task or command calls it.
"""

from __future__ import annotations

import re

from django.db import transaction

from governance.audit import audit_record
from governance.models import License
from governance.roles import is_steward
from portal.errors import Conflict, Forbidden, PortalError
from zoo.models import (
    Artifact,
    CatalogModel,
    ModelVersion,
    ScanWaiver,
    SearchEntry,
    SearchWord,
    VersionHold,
)
from zoo.selectors import search
from zoo.selectors.cards import card_missing_sections
from zoo.selectors.release_checks import release_checks_missing
from zoo.services.events import block_change, standing_changed


def version_block_reasons(version: ModelVersion) -> list[str]:
    """Why a version may not be used, derived from its files, license and holds.

    A file whose sha256 has a live waiver (zoo.services.waivers) blocks nothing;
    a live blocking hold (an incident's recall, zoo.services.holds) blocks.
    """
    reasons = [
        hold.reason
        for hold in VersionHold.objects.live()
        .filter(version=version, blocks=True)
        .order_by("placed_at", "id")
    ]
    artifacts = list(version.artifacts.all())
    waived = set(
        ScanWaiver.objects.live()
        .filter(sha256__in=[a.sha256 for a in artifacts if a.blocks])
        .values_list("sha256", flat=True)
    )
    for artifact in artifacts:
        if artifact.sha256 in waived:
            continue
        if artifact.scan_status == Artifact.Scan.DANGEROUS:
            names = ", ".join(
                f"{f.get('module', '?')}.{f.get('name', '?')}"
                for f in artifact.scan_findings[:5]
                if isinstance(f, dict)
            )
            reasons.append(f"{artifact.path}: unsafe pickle ({names or 'dangerous imports'}).")
        elif artifact.scan_status == Artifact.Scan.UNSCANNABLE:
            reasons.append(f"{artifact.path}: the file could not be verified as safe.")
    license_obj = version.license
    if license_obj.is_unknown:
        stated = version.license_raw
        reasons.append(
            f"License {stated!r} is not one the portal knows; a steward must set the license."
            if stated and stated not in ("unknown", "other")
            else "No usable license is stated; a steward must set the license."
        )
    return reasons


def apply_block_state(version: ModelVersion) -> list[dict]:
    """Re-derive the version's block state (unsaved); the change, if its status moved."""
    before = version.status
    reasons = version_block_reasons(version)
    version.block_reasons = reasons
    version.status = ModelVersion.Status.BLOCKED if reasons else ModelVersion.Status.AVAILABLE
    return block_change(before, version.status, reasons)


CARD_SEARCH_CHARS = 20_000


def search_fields(model: CatalogModel, card: str) -> dict[str, str]:
    """What search matches for ``model`` whose latest card is ``card``, by rank of the field."""
    return {
        "name": f"{model.repo_id} {model.repo_id.replace('/', ' ')} {model.title}",
        "meta": "\n".join(
            p
            for p in (
                model.summary,
                model.task,
                model.architecture,
                " ".join(str(t) for t in model.domain_tags),
            )
            if p
        ),
        "card": card[:CARD_SEARCH_CHARS],
    }


def name_words(model: CatalogModel) -> set[str]:
    """The words of a model's repo id and title that a misspelt search may be corrected to."""
    return {
        w
        for w in re.findall(r"\w+", f"{model.repo_id} {model.title}".lower())
        if 3 <= len(w) <= 100 and not w.isdigit()
    }


def catalog_model_refresh_search(*, model: CatalogModel) -> None:
    """Rebuild the text that catalogue search matches against, and forget cached results.

    Forgotten now and again once the change commits: a search that ran in
    between read the old text and may have cached it under the new generation.
    """
    latest = model.versions.order_by("-created_at", "-id").first()
    SearchEntry.objects.update_or_create(
        model=model, defaults=search_fields(model, latest.card_markdown if latest else "")
    )
    SearchWord.objects.bulk_create(
        [SearchWord(word=w) for w in sorted(name_words(model))], ignore_conflicts=True
    )
    search.catalogue_changed()
    transaction.on_commit(search.catalogue_changed)


def _require_steward(actor) -> None:
    """Catalogue entries are kept by stewards; ``None`` is the system (imports, the demo seed)."""
    if actor is not None and not is_steward(actor):
        raise Forbidden("Only stewards may change catalogue entries.")


@transaction.atomic
def catalog_model_update(*, model: CatalogModel, actor, **fields) -> CatalogModel:
    """Edit a model's descriptive metadata."""
    _require_steward(actor)
    allowed = {"title", "summary", "modality", "task", "architecture", "domain_tags"}
    unknown = set(fields) - allowed
    if unknown:
        raise PortalError(f"These fields cannot be edited: {', '.join(sorted(unknown))}.")
    before = {name: getattr(model, name) for name in fields}
    for name, value in fields.items():
        setattr(model, name, value)
    model.full_clean(exclude=["owner"])
    model.save()
    catalog_model_refresh_search(model=model)
    audit_record(
        actor=actor, verb="model.update", target=model, payload={"before": before, "after": fields}
    )
    return model


_S = CatalogModel.Status
# target status -> the statuses it may be reached from
STATUS_MOVES = {
    _S.AVAILABLE: {_S.DRAFT, _S.DEPRECATED, _S.BLOCKED},
    _S.DEPRECATED: {_S.AVAILABLE},
    _S.BLOCKED: {_S.DRAFT, _S.AVAILABLE, _S.DEPRECATED},
}


@transaction.atomic
def catalog_model_set_status(
    *, model: CatalogModel, status: str, actor, reason: str = ""
) -> CatalogModel:
    """Publish, deprecate, block or restore a model, as a conditional update."""
    _require_steward(actor)
    reason = reason.strip()
    if status not in STATUS_MOVES:
        raise PortalError(f"{status!r} is not a status a steward can set.")
    if status in (CatalogModel.Status.DEPRECATED, CatalogModel.Status.BLOCKED) and not reason:
        raise PortalError("Say why: a reason is required to deprecate or block a model.")
    if (
        status == CatalogModel.Status.AVAILABLE
        and not model.versions.filter(status=ModelVersion.Status.AVAILABLE).exists()
    ):
        raise PortalError("Every version of this model is blocked; fix or replace one first.")
    # Publishing needs the card sections policy requires of the latest version: from a
    # draft, and from a block too (else draft -> blocked -> available would skip the
    # rule). Undeprecating is not publishing. The locks keep a concurrent status change
    # or card edit from slipping between the check and the move.
    if status == CatalogModel.Status.AVAILABLE and (
        CatalogModel.objects.select_for_update()
        .filter(pk=model.pk, status__in=(_S.DRAFT, _S.BLOCKED))
        .exists()
    ):
        latest = model.versions.select_for_update().order_by("-created_at", "-id").first()
        missing = card_missing_sections(latest) if latest else []
        if missing:
            raise PortalError(
                f"The card of {latest.label} lacks {', '.join(missing)}: add "
                f"{'that section' if len(missing) == 1 else 'those sections'} before publishing.",
                field="status",
            )
        unpassed = release_checks_missing(latest) if latest else []
        if unpassed:
            raise PortalError(
                f"Release checks required before publishing have not passed on {latest.label}: "
                f"{'; '.join(unpassed)}. Run them from the version's page.",
                field="status",
            )
    moved = CatalogModel.objects.filter(pk=model.pk, status__in=STATUS_MOVES[status]).update(
        status=status, status_reason=reason
    )
    if not moved:
        model.refresh_from_db()
        raise Conflict(
            f"The model is {model.get_status_display().lower()}; it cannot become {status}."
        )
    before = model.status
    model.refresh_from_db()
    audit_record(
        actor=actor,
        verb="model.status",
        target=model,
        payload={"before": {"status": before}, "after": {"status": status}, "reason": reason},
    )
    return model


@transaction.atomic
def version_set_license(*, version: ModelVersion, license: License, actor) -> ModelVersion:
    """A steward's decision on a version's license; unblocks it if that was the only problem."""
    _require_steward(actor)
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    before = {"license": version.license.spdx_id, "status": version.status}
    version.license = license
    changes = apply_block_state(version)
    version.save(update_fields=["license", "status", "block_reasons", "updated_at"])
    audit_record(
        actor=actor,
        verb="version.license",
        target=version,
        payload={"before": before, "after": {"license": license.spdx_id, "status": version.status}},
    )
    if before["license"] != license.spdx_id:
        changes.insert(
            0, {"what": "license", "before": before["license"], "after": license.spdx_id}
        )
    standing_changed(version=version, actor=actor, changes=changes)
    return version


@transaction.atomic
def version_update_metadata(*, version: ModelVersion, actor, **fields) -> ModelVersion:
    """Correct the descriptive metadata of a version; its files and revision stay pinned."""
    _require_steward(actor)
    allowed = {"bias_notes", "limitations", "provenance"}
    unknown = set(fields) - allowed
    if unknown:
        raise PortalError(f"These fields cannot be edited: {', '.join(sorted(unknown))}.")
    before = {name: getattr(version, name) for name in fields}
    for name, value in fields.items():
        setattr(version, name, value)
    version.save(update_fields=[*fields, "updated_at"])
    audit_record(
        actor=actor,
        verb="version.update",
        target=version,
        payload={"before": before, "after": fields},
    )
    return version
