"""Bring model files into the catalogue: from the Hub, a server folder, or an uploaded archive.

Every path ends in ``ingest``: each file is copied into a private staging
folder while it is hashed (so the bytes hashed are the bytes stored), checked
against what the source promised, scanned, and only then stored by content
hash. Database rows are written in one transaction at the very end, so a
refusal at any step leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from governance.audit import audit_record
from governance.models import License
from portal.errors import PortalError
from zoo import safety, scanning, storage
from zoo.cards import CardError, CardInfo, parse_card
from zoo.models import Artifact, CatalogModel, ModelVersion
from zoo.services.catalogue import catalog_model_refresh_search, version_block_reasons

logger = logging.getLogger(__name__)

Report = Callable[[float, str], None]


class ImportRefused(PortalError):
    """An import that cannot go ahead, with the reason for the steward."""


@dataclass(frozen=True)
class Expected:
    """What the source says a file is; checked against the bytes actually received."""

    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None


@dataclass(frozen=True)
class Derived:
    """What the portal itself knows of a version it made (a fine-tune), instead of the card.

    The parent, the kind and the license are the portal's own facts: the license
    is the parent's, never re-read from the card, so a fine-tune of a
    non-commercial base stays non-commercial.
    """

    parent: ModelVersion
    kind: str
    title: str = ""
    summary: str = ""
    bias_notes: str = ""
    limitations: str = ""
    provenance: dict | None = None


def limits() -> safety.Limits:
    return safety.Limits(
        max_files=settings.IMPORT_MAX_FILES,
        max_total_bytes=settings.IMPORT_MAX_BYTES,
        max_ratio=settings.IMPORT_MAX_RATIO,
        max_file_bytes=settings.IMPORT_MAX_BYTES,
    )


def _no_report(fraction: float, stage: str) -> None:
    return None


def _staging_dir() -> Path:
    root = Path(settings.IMPORT_STAGING_DIR)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="import-", dir=root))


def find_version(repo_id: str, revision: str) -> ModelVersion | None:
    return (
        ModelVersion.objects.select_related("model", "license")
        .filter(model__repo_id=repo_id, revision=revision)
        .first()
    )


# --- sources ------------------------------------------------------------------


def import_from_hub(
    *,
    hub_repo_id: str,
    revision: str = "main",
    repo_id: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    actor=None,
    report: Report = _no_report,
) -> tuple[ModelVersion, bool]:
    """Import one pinned revision of a Hub repository. Returns (version, created)."""
    from huggingface_hub import snapshot_download  # loaded only when an import runs

    endpoint = endpoint or settings.HF_ENDPOINT
    repo_id = repo_id or hub_repo_id
    report(0.02, f"Resolving {hub_repo_id}@{revision}")
    info = _hub_model_info(hub_repo_id, revision, endpoint, token)
    commit = info.sha
    existing = find_version(repo_id, commit)
    if existing:
        return existing, False
    expected = _expected_files(hub_repo_id, info)
    staging = _staging_dir()
    try:
        report(0.05, "Downloading files")
        snapshot = staging / "snapshot"
        try:
            snapshot_download(
                hub_repo_id,
                revision=commit,
                endpoint=endpoint,
                token=token or False,
                local_dir=snapshot,
                cache_dir=staging / "cache",
            )
        except Exception as exc:
            raise ImportRefused(f"Downloading {hub_repo_id}@{commit[:10]} failed: {exc}") from None
        files = _checked(lambda: safety.check_folder(snapshot, limits=limits()))
        missing = set(expected) - {f.as_posix() for f in files}
        if missing:
            raise ImportRefused(f"The download lacks {', '.join(sorted(missing)[:5])}.")
        return ingest(
            root=snapshot,
            files=files,
            repo_id=repo_id,
            revision=commit,
            source=ModelVersion.Source.HUB,
            source_repo=f"{endpoint.rstrip('/')}/{hub_repo_id}",
            source_revision=revision,
            expected=expected,
            actor=actor,
            report=report,
        )
    finally:
        storage.remove_tree(staging)


def _hub_model_info(hub_repo_id: str, revision: str, endpoint: str, token: str | None):
    """The Hub's description of one revision, with every file's size and hash."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = HfApi(endpoint=endpoint, token=token or False)
    try:
        return api.model_info(hub_repo_id, revision=revision, files_metadata=True)
    except GatedRepoError:
        raise ImportRefused(
            f"{hub_repo_id} is gated: an access token with access is needed."
        ) from None
    except RepositoryNotFoundError:
        raise ImportRefused(f"There is no model {hub_repo_id} at {endpoint}.") from None
    except RevisionNotFoundError:
        raise ImportRefused(f"{hub_repo_id} has no revision {revision!r}.") from None
    except (HfHubHTTPError, OSError) as exc:
        raise ImportRefused(f"The hub at {endpoint} did not answer properly: {exc}") from None
    except Exception as exc:  # httpx transport errors are not OSErrors
        if type(exc).__module__.startswith(("httpx", "httpcore", "requests")):
            raise ImportRefused(f"The hub at {endpoint} could not be reached: {exc}") from None
        raise


def _expected_files(hub_repo_id: str, info) -> dict[str, Expected]:
    """What each file must be, as the Hub promised it; the limits are checked before download."""
    expected: dict[str, Expected] = {}
    total = 0
    for sibling in info.siblings or []:
        # Refused before anything is downloaded: the client would write what it is told.
        _checked(lambda name=sibling.rfilename: safety.check_name(name, "file"))
        lfs = getattr(sibling, "lfs", None)
        # For LFS files the Hub's blob id hashes the pointer, not the content:
        # those are checked by their sha256, the others by their git blob id.
        expected[sibling.rfilename] = Expected(
            size=sibling.size,
            sha256=getattr(lfs, "sha256", None) if lfs else None,
            git_sha1=None if lfs else sibling.blob_id,
        )
        total += sibling.size or 0
    cap = limits()
    if len(expected) > cap.max_files:
        raise ImportRefused(
            f"{hub_repo_id} has {len(expected)} files; the limit is {cap.max_files}."
        )
    if total > cap.max_total_bytes:
        raise ImportRefused(
            f"{hub_repo_id} holds {total:,} bytes; the limit is {cap.max_total_bytes:,}."
        )
    return expected


def import_from_folder(
    *, folder: Path, repo_id: str, actor=None, report: Report = _no_report
) -> tuple[ModelVersion, bool]:
    """Import the files of a folder on the server (one the settings allow)."""
    if not folder.is_dir():
        raise ImportRefused(f"{folder} is not a folder on the server.")
    files = _checked(lambda: safety.check_folder(folder, limits=limits()))
    return ingest(
        root=folder,
        files=files,
        repo_id=repo_id,
        revision=None,
        source=ModelVersion.Source.FOLDER,
        source_repo=str(folder),
        source_revision="",
        expected=None,
        actor=actor,
        report=report,
    )


def import_from_archive(
    *, archive: Path, repo_id: str, original_name: str = "", actor=None, report: Report = _no_report
) -> tuple[ModelVersion, bool]:
    """Import an uploaded .zip or .tar.gz after checking every member before extracting any."""
    staging = _staging_dir()
    try:
        report(0.02, "Checking the archive")
        extracted = staging / "files"
        extracted.mkdir()
        _checked(lambda: safety.extract_archive(archive, extracted, limits=limits()))
        files = _checked(lambda: safety.check_folder(extracted, limits=limits()))
        root = extracted
        # An archive of one top folder holding the model: import that folder's contents.
        tops = {f.parts[0] for f in files}
        if len(tops) == 1 and all(len(f.parts) > 1 for f in files):
            root = extracted / tops.pop()
            files = [Path(*f.parts[1:]) for f in files]
        return ingest(
            root=root,
            files=files,
            repo_id=repo_id,
            revision=None,
            source=ModelVersion.Source.ARCHIVE,
            source_repo=original_name or archive.name,
            source_revision="",
            expected=None,
            actor=actor,
            report=report,
        )
    finally:
        storage.remove_tree(staging)


def import_finetune_output(
    *,
    folder: Path,
    repo_id: str,
    derived: Derived,
    source_repo: str,
    actor,
    report: Report = _no_report,
) -> tuple[ModelVersion, bool]:
    """Record a fine-tune's output folder as a new version of a new draft model.

    The files go through the same hashing, scanning and storage as any import;
    parent, kind and license come from ``derived``. A card that states another
    license than the parent's is refused rather than silently corrected, and so
    is a model id already in use: a fine-tune never adds files to another model.
    The model stays a draft (seen by its owner and stewards only) until a
    steward publishes it.
    """
    files = _checked(lambda: safety.check_folder(folder, limits=limits()))
    readme = folder / "README.md"
    try:
        card = parse_card(readme.read_text(encoding="utf-8")) if readme.is_file() else None
    except (CardError, UnicodeDecodeError) as exc:
        raise ImportRefused(f"README.md: {exc}") from None
    expected_license = derived.parent.license.spdx_id
    # The Hub's own license ids go in ``license``; others as ``other`` + ``license_name``.
    stated = card and (card.license_name if card.license == "other" else card.license)
    if (stated or "").lower() != expected_license.lower():
        raise ImportRefused(
            f"The model card must carry the base model's license {expected_license!r}; "
            f"it states {stated!r}."
        )
    if CatalogModel.objects.filter(repo_id=repo_id).exists():
        raise ImportRefused(f"{repo_id} is already in the catalogue; choose another id.")
    return ingest(
        root=folder,
        files=files,
        repo_id=repo_id,
        revision=None,
        source=ModelVersion.Source.FINETUNE,
        source_repo=source_repo,
        source_revision="",
        expected=None,
        actor=actor,
        report=report,
        derived=derived,
    )


def import_conversion_output(
    *,
    folder: Path,
    original: ModelVersion,
    converted: dict[str, str],
    actor,
    report: Report = _no_report,
) -> tuple[ModelVersion, bool]:
    """Record a safetensors conversion of ``original`` as a new version of the same model.

    Its parent is the original and its license, notes and provenance are the
    original's, with ``converted_from`` naming the original version and each
    converted file (``converted`` maps old paths to new ones). The files go
    through the same hashing and scanning as any import.
    """
    files = _checked(lambda: safety.check_folder(folder, limits=limits()))
    derived = Derived(
        parent=original,
        kind=original.kind,
        bias_notes=original.bias_notes,
        limitations=original.limitations,
        provenance={
            **(original.provenance or {}),
            "converted_from": {
                "version": original.pk,
                "label": original.label,
                "revision": original.revision,
                "files": converted,
            },
        },
    )
    return ingest(
        root=folder,
        files=files,
        repo_id=original.model.repo_id,
        revision=None,
        source=ModelVersion.Source.CONVERSION,
        source_repo=original.model.repo_id,
        source_revision=original.revision,
        expected=None,
        actor=actor,
        report=report,
        derived=derived,
    )


def _checked(func):
    try:
        return func()
    except safety.UnsafeContent as exc:
        raise ImportRefused(exc.message) from None


# --- the common path ---------------------------------------------------------


@dataclass
class _Staged:
    path: str
    staged: Path
    digest: safety.FileDigest
    fmt: str
    scan: scanning.ScanReport


def content_revision(entries: list[tuple[str, str]]) -> str:
    """A 40-hex revision for a local import: sha1 over the sorted (path, sha256) list."""
    manifest = "".join(f"{path}\0{sha}\n" for path, sha in sorted(entries))
    return hashlib.sha1(manifest.encode(), usedforsecurity=False).hexdigest()


def ingest(
    *,
    root: Path,
    files: list[Path],
    repo_id: str,
    revision: str | None,
    source: str,
    source_repo: str,
    source_revision: str,
    expected: dict[str, Expected] | None,
    actor,
    report: Report,
    derived: Derived | None = None,
) -> tuple[ModelVersion, bool]:
    if not files:
        raise ImportRefused("There are no files to import.")
    CatalogModel._meta.get_field("repo_id").run_validators(repo_id)
    staging = _staging_dir()
    try:
        staged: list[_Staged] = []
        for index, rel in enumerate(files):
            name = rel.as_posix()
            report(0.1 + 0.7 * index / len(files), f"Hashing and scanning {name}")
            target = staging / f"{index:06d}"
            with target.open("xb") as out:
                digest = _checked(lambda rel=rel, out=out: safety.copy_with_digest(root / rel, out))
            if expected is not None:
                _verify(name, digest, expected.get(name))
            # What the file is comes from its bytes; the name is only reported.
            scan = scanning.scan_file(target, name, limits=limits())
            staged.append(_Staged(name, target, digest, scan.format, scan))
        card = _read_card(staged)
        _config(staged)  # refuses a hostile config.json before anything is stored
        revision = revision or content_revision([(s.path, s.digest.sha256) for s in staged])
        existing = find_version(repo_id, revision)
        if existing:
            return existing, False
        report(0.85, "Storing files")
        blob_names = {s.path: storage.store_blob(s.staged, s.digest.sha256) for s in staged}
        report(0.95, "Recording the version")
        try:
            with transaction.atomic():
                version = _record(
                    staged=staged,
                    blob_names=blob_names,
                    card=card,
                    repo_id=repo_id,
                    revision=revision,
                    source=source,
                    source_repo=source_repo,
                    source_revision=source_revision,
                    actor=actor,
                    derived=derived,
                )
        except IntegrityError:
            # Another import of the same revision finished first: same result.
            existing = find_version(repo_id, revision)
            if existing is None:
                raise
            return existing, False
        return version, True
    finally:
        storage.remove_tree(staging)


def _verify(name: str, digest: safety.FileDigest, promised: Expected | None) -> None:
    if promised is None:
        raise ImportRefused(f"{name} arrived but the source did not list it.")
    problems = []
    if promised.size is not None and promised.size != digest.size:
        problems.append(f"size {digest.size:,} instead of {promised.size:,}")
    if promised.sha256 and promised.sha256 != digest.sha256:
        problems.append("sha256 differs from the source's")
    if promised.git_sha1 and promised.git_sha1 != digest.git_sha1:
        problems.append("git blob id differs from the source's")
    if problems:
        raise ImportRefused(
            f"{name} does not match what the source promised ({'; '.join(problems)}); "
            "it may have changed during the import. Nothing was imported."
        )


def _read_card(staged: list[_Staged]) -> CardInfo | None:
    readme = next((s for s in staged if s.path.lower() == "readme.md"), None)
    if readme is None:
        return None
    if readme.digest.size > 2 * 2**20:
        raise ImportRefused("README.md is larger than 2 MiB; that is not a model card.")
    try:
        text = readme.staged.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ImportRefused("README.md is not UTF-8 text.") from None
    try:
        return parse_card(text)
    except CardError as exc:
        raise ImportRefused(f"README.md: {exc}") from None


MAX_CONFIG_DEPTH = 100
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON ``text`` (strings skipped), without parsing."""
    depth = deepest = 0
    for char in _JSON_STRING.sub("", text):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _config(staged: list[_Staged]) -> dict:
    config = next((s for s in staged if s.path == "config.json"), None)
    if config is None or config.digest.size > 2**20:
        return {}
    try:
        text = config.staged.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return {}
    if json_depth(text) > MAX_CONFIG_DEPTH:
        raise ImportRefused(
            f"config.json nests more than {MAX_CONFIG_DEPTH} levels deep; a model "
            "configuration never does. Nothing was imported."
        )
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _parameter_count(staged: list[_Staged]) -> int | None:
    total = 0
    found = False
    for s in staged:
        if s.fmt == Artifact.Format.SAFETENSORS and not s.scan.blocks:
            count = scanning.safetensors_parameter_count(s.staged)
            if count is not None:
                total += count
                found = True
    return total if found else None


def _resolve_license(card: CardInfo | None) -> tuple[License, str]:
    stated = card.license if card else None
    if stated:
        found = License.objects.filter(spdx_id=stated).first()
        if found:
            return found, stated
    return License.objects.get(spdx_id="unknown"), stated or ""


def _record(
    *,
    staged: list[_Staged],
    blob_names: dict[str, str],
    card: CardInfo | None,
    repo_id: str,
    revision: str,
    source: str,
    source_repo: str,
    source_revision: str,
    actor,
    derived: Derived | None = None,
) -> ModelVersion:
    """Write the model (if new), the version and its artifacts, in the caller's transaction."""
    card = card or CardInfo()
    model, created = _model_for(repo_id, card, staged, actor, derived)
    lineage = _lineage(card, staged, derived)
    version = ModelVersion(
        model=model,
        revision=revision,
        label=f"v{model.versions.count() + 1}",
        source=source,
        source_repo=source_repo[:300],
        source_revision=source_revision[:100],
        bias_notes=derived.bias_notes if derived else card.section("bias"),
        limitations=derived.limitations if derived else card.section("limitation"),
        card_markdown=card.body,
        card_metadata=card.metadata,
        metrics=_model_index_metrics(card.metadata),
        total_size=sum(s.digest.size for s in staged),
        file_count=len(staged),
        created_by=actor,
        **lineage,
    )
    version.save()
    _record_artifacts(version, staged, blob_names)
    reasons = version_block_reasons(version)
    if reasons:
        version.status = ModelVersion.Status.BLOCKED
        version.block_reasons = reasons
        version.save(update_fields=["status", "block_reasons"])
    count = _parameter_count(staged)
    if count is not None and (created or model.parameter_count is None):
        model.parameter_count = count
        model.save(update_fields=["parameter_count", "updated_at"])
    catalog_model_refresh_search(model=model)
    audit_record(
        actor=actor,
        verb="version.import",
        target=version,
        payload={
            "source": source,
            "source_repo": source_repo,
            "revision": revision,
            "files": {s.path: s.digest.sha256 for s in staged},
            "blocked": version.block_reasons,
            **({"parent": derived.parent.pk, "kind": version.kind} if derived else {}),
        },
    )
    return version


def _model_for(repo_id: str, card: CardInfo, staged, actor, derived) -> tuple[CatalogModel, bool]:
    """The catalogue model the version belongs to, created as a draft from the card if new."""
    config = _config(staged)
    architectures = config.get("architectures")
    architecture = (
        str(architectures[0])
        if isinstance(architectures, list) and architectures
        else str(config.get("model_type") or "")
    )
    return CatalogModel.objects.select_for_update().get_or_create(
        repo_id=repo_id,
        defaults={
            "title": str(
                (derived and derived.title)
                or card.metadata.get("model_name")
                or card.title
                or repo_id.split("/", 1)[1]
            )[:200],
            "summary": (derived and derived.summary) or card.summary,
            "modality": derived.parent.model.modality if derived else card.modality,
            "task": (card.pipeline_tag or "")[:64],
            "architecture": architecture[:100],
            "domain_tags": card.tags[:50],
            "owner": actor,
            "status": CatalogModel.Status.DRAFT,
        },
    )


def _lineage(card: CardInfo, staged, derived) -> dict:
    """Parent, kind, license and provenance: from the card, or from the run that made it."""
    parent = None
    if card.base_models:
        parent = (
            ModelVersion.objects.filter(model__repo_id=card.base_models[0])
            .order_by("-created_at")
            .first()
        )
    if any(s.path == "adapter_config.json" for s in staged):
        kind = ModelVersion.Kind.ADAPTER
    elif card.base_models:
        kind = ModelVersion.Kind.FINETUNED
    else:
        kind = ModelVersion.Kind.BASE
    license_obj, license_raw = _resolve_license(card)
    provenance = {
        "datasets": card.datasets,
        "languages": card.languages,
        "library_name": card.library_name,
        "base_model": card.base_models,
        "paper": card.metadata.get("paper") or card.metadata.get("arxiv"),
    }
    if derived is not None:
        parent, kind = derived.parent, derived.kind
        license_obj, license_raw = derived.parent.license, card.license or ""
        provenance.update(derived.provenance or {})
    return {
        "parent": parent,
        "kind": kind,
        "license": license_obj,
        "license_raw": license_raw[:200],
        "provenance": provenance,
    }


def _record_artifacts(version: ModelVersion, staged, blob_names: dict[str, str]) -> None:
    Artifact.objects.bulk_create(
        [
            Artifact(
                version=version,
                path=s.path,
                size=s.digest.size,
                sha256=s.digest.sha256,
                git_sha1=s.digest.git_sha1,
                format=s.fmt,
                scan_status=s.scan.status,
                scan_findings=s.scan.findings,
                detected=s.scan.detected,
                blob_name=blob_names[s.path],
            )
            for s in staged
        ]
    )


def _model_index_metrics(metadata: dict) -> dict:
    """Flatten a card's model-index into {dataset: {metric: value}}, best effort."""
    out: dict = {}
    index = metadata.get("model-index")
    if not isinstance(index, list):
        return out
    for entry in index:
        for result in (entry or {}).get("results", []) if isinstance(entry, dict) else []:
            if not isinstance(result, dict):
                continue
            dataset = (result.get("dataset") or {}).get("name") or "unnamed"
            for metric in result.get("metrics", []) or []:
                if isinstance(metric, dict) and "value" in metric:
                    name = str(metric.get("name") or metric.get("type") or "metric")
                    out.setdefault(str(dataset), {})[name] = metric["value"]
    return out
