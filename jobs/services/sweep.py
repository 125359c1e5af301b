"""Sweep up what dead processes leave: work folders, staging, stray uploads, blobs, checkpoints.

Every worker cleans up after itself on every way out it gets to take; a
process killed outright (the OOM killer, a lost node) takes none, so a beat
task runs this sweep every SWEEP_EVERY_S. Each kind of leftover is recognised
by what it belongs to, not only by its age:

* ``WORK_DIR/job-<id>-a<attempt>-…``: the attempt's workspace, removed once
  that attempt no longer owns its job; other entries there after the grace.
* the import staging folders and half-built model folders, after the grace
  (SWEEP_GRACE_S, by default longer than the longest job).
* stored checkpoints of fine-tunes that are no longer running, and the weights a
  study run kept once its study no longer waits for them.
* staged dataset uploads nobody confirmed within a day, and uploaded import
  archives whose job is over.
* objects left under ``incoming/`` by a write killed between upload and check
  (object storage writes there first), after the grace.
* content-addressed blobs that no artifact, dataset version, feature set or drift
  batch names, once they are older than the grace (and than a day: a blob is stored
  before the row that names it commits).

What it removed is returned, logged and written to the audit log.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from governance.audit import audit_record
from jobs.models import DriftBatch, FeatureSet, FineTuneRun, Job, Study
from zoo.models import Artifact, DatasetVersion
from zoo.storage import INCOMING, STAGED_UPLOADS, remove_tree

logger = logging.getLogger(__name__)

_WORKSPACE = re.compile(r"^job-(\d+)-a(\d+)-")
_CHECKPOINTS = re.compile(r"^finetune-(\d+)$")
# Staged uploads are confirmed within a day (the upload token's life) or never.
UPLOAD_LIFE = timedelta(hours=25)
LISTED = 50  # names kept per kind in the report; the counts are complete


@dataclass
class SweepReport:
    """What one sweep removed, by kind."""

    removed: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    bytes_freed: int = 0
    kept_for_grace: int = 0

    def add(self, kind: str, name: str, size: int = 0) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        names = self.removed.setdefault(kind, [])
        if len(names) < LISTED:
            names.append(name)
        self.bytes_freed += size

    def as_dict(self) -> dict:
        return {
            "counts": self.counts,
            "removed": self.removed,
            "bytes_freed": self.bytes_freed,
            "kept_for_grace": self.kept_for_grace,
        }


def storage_sweep(*, now=None, dry_run: bool = False) -> dict:
    """Remove every leftover the rules above name; returns the report (``dry_run``: only say)."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.SWEEP_GRACE_S)
    report = SweepReport()
    _sweep_workspaces(report, now, grace, dry_run)
    _sweep_folder_by_age(report, Path(settings.IMPORT_STAGING_DIR), "staging", now, grace, dry_run)
    _sweep_half_built_models(report, now, grace, dry_run)
    _sweep_checkpoints(report, dry_run)
    _sweep_uploads(report, now, grace, dry_run)
    _sweep_incoming(report, now, grace, dry_run)
    _sweep_blobs(report, now, max(grace, UPLOAD_LIFE), dry_run)
    summary = report.as_dict()
    if report.counts and not dry_run:
        logger.info("storage sweep removed %s (%s bytes)", report.counts, report.bytes_freed)
        with transaction.atomic():
            audit_record(actor=None, verb="storage.sweep", payload=summary)
    return summary


def _age(path: Path, now) -> timedelta:
    return timedelta(seconds=max(0.0, now.timestamp() - path.stat().st_mtime))


def _folder_size(path: Path) -> int:
    try:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


def _remove_local(report, kind: str, path: Path, dry_run: bool) -> None:
    size = _folder_size(path) if path.is_dir() else path.stat().st_size
    if dry_run or remove_tree(path):
        report.add(kind, str(path), size)


def _sweep_workspaces(report: SweepReport, now, grace: timedelta, dry_run: bool) -> None:
    root = Path(settings.WORK_DIR)
    if not root.is_dir():
        return
    entries = list(root.iterdir())
    owners = {}
    ids = {int(m.group(1)) for e in entries if (m := _WORKSPACE.match(e.name))}
    for job_id, status, attempts in Job.objects.filter(pk__in=ids).values_list(
        "pk", "status", "attempts"
    ):
        owners[job_id] = attempts if status == Job.Status.RUNNING else None
    for entry in entries:
        match = _WORKSPACE.match(entry.name)
        if match:
            job_id, attempt = int(match.group(1)), int(match.group(2))
            if owners.get(job_id) == attempt:
                continue  # the attempt that owns the job is working in it
            _remove_local(report, "workspaces", entry, dry_run)
        elif _age(entry, now) > grace:
            _remove_local(report, "workspaces", entry, dry_run)
        else:
            report.kept_for_grace += 1


def _sweep_folder_by_age(report, root: Path, kind: str, now, grace, dry_run: bool) -> None:
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if _age(entry, now) > grace:
            _remove_local(report, kind, entry, dry_run)
        else:
            report.kept_for_grace += 1


def _sweep_half_built_models(report, now, grace, dry_run: bool) -> None:
    """Model folders are built under a hidden name and renamed when whole; a kill leaves one."""
    root = Path(settings.MODEL_CACHE_DIR)
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.name.startswith("."):
            if _age(entry, now) > grace:
                _remove_local(report, "half_built_models", entry, dry_run)
            else:
                report.kept_for_grace += 1


def _walk(prefix: str) -> Iterator[str]:
    """Every stored file's name under ``prefix`` (any storage backend)."""
    try:
        folders, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in files:
        yield f"{prefix}/{name}"
    for folder in folders:
        yield from _walk(f"{prefix}/{folder}")


def _delete_stored(report, kind: str, name: str, dry_run: bool) -> None:
    try:
        size = default_storage.size(name)
        if not dry_run:
            default_storage.delete(name)
    except FileNotFoundError:
        return
    report.add(kind, name, size)


def _modified(name: str):
    try:
        return default_storage.get_modified_time(name)
    except (FileNotFoundError, NotImplementedError):
        return None


def _sweep_checkpoints(report: SweepReport, dry_run: bool) -> None:
    """Checkpoints are for resuming a running fine-tune (or a study run waiting for the
    study's choice); any other run's can go."""
    try:
        folders, _ = default_storage.listdir("checkpoints")
    except FileNotFoundError:
        return
    run_ids = {int(m.group(1)) for f in folders if (m := _CHECKPOINTS.match(f))}
    # A study run's kept weights wait for the study's choice, and the chosen one's for its
    # test scoring; once the study is decided, or the run was not chosen, they can go.
    waiting = (
        Q(job__status__in=Job.ACTIVE)
        | Q(study__status=Study.Status.OPEN)
        | Q(chosen_in__status=Study.Status.SCORING)
    )
    running = set(FineTuneRun.objects.filter(waiting, pk__in=run_ids).values_list("pk", flat=True))
    for folder in folders:
        match = _CHECKPOINTS.match(folder)
        if match and int(match.group(1)) in running:
            continue
        for name in _walk(f"checkpoints/{folder}"):
            _delete_stored(report, "checkpoints", name, dry_run)


def _sweep_uploads(report: SweepReport, now, grace, dry_run: bool) -> None:
    for name in _walk(STAGED_UPLOADS):
        modified = _modified(name)
        if modified is not None and now - modified > UPLOAD_LIFE:
            _delete_stored(report, "staged_uploads", name, dry_run)
    waiting = {
        params.get("archive")
        for params in Job.objects.filter(kind=Job.Kind.IMPORT, status__in=Job.ACTIVE).values_list(
            "params", flat=True
        )
        if isinstance(params, dict)
    }
    for name in _walk("uploads/imports"):
        modified = _modified(name)
        if name in waiting or modified is None:
            continue
        # An archive is uploaded just before its job row commits: give it a minute.
        if now - modified > timedelta(minutes=10):
            _delete_stored(report, "import_uploads", name, dry_run)


def _sweep_incoming(report: SweepReport, now, grace, dry_run: bool) -> None:
    """A write is checked and copied within one job's life; what is older was abandoned."""
    for name in _walk(INCOMING):
        modified = _modified(name)
        if modified is not None and now - modified > grace:
            _delete_stored(report, "incoming_temporaries", name, dry_run)
        else:
            report.kept_for_grace += 1


def _sweep_blobs(report: SweepReport, now, grace, dry_run: bool) -> None:
    started = time.monotonic()
    names = list(_walk("blobs/sha256"))
    if not names:
        return
    named = set(Artifact.objects.values_list("blob_name", flat=True))
    named |= set(DatasetVersion.objects.values_list("blob_name", flat=True))
    named |= set(FeatureSet.objects.values_list("blob_name", flat=True))
    named |= set(DriftBatch.objects.values_list("blob_name", flat=True))
    for name in names:
        if name in named:
            continue
        if name.rsplit("/", 1)[-1].startswith("."):  # a write in progress (or a killed one)
            modified = _modified(name)
            if modified is not None and now - modified > timedelta(hours=1):
                _delete_stored(report, "blob_temporaries", name, dry_run)
            continue
        modified = _modified(name)
        if modified is not None and now - modified > grace:
            _delete_stored(report, "unreferenced_blobs", name, dry_run)
        else:
            report.kept_for_grace += 1
    logger.debug("blob sweep over %d names took %.1fs", len(names), time.monotonic() - started)
