"""Drift monitoring: batches of production inputs uploaded for a fine-tuned version, each
compared with the fine-tune's training data by a ``drift`` release check.

Who may upload: whoever may use the version's files — the rule the hub endpoint
and the fine-tune form ask (``governance.access.can_use_version``): stewards and
staff, the version's maker, and holders of a live approved reuse request. Only
versions a fine-tune in the portal made: their training data is known.

A text model's batch is a CSV, TSV or JSONL file; an image model's a zip of
images (in class folders or not). Either goes through the dataset reader's
limits (size, encoding, rows, cell sizes; for a zip the archive safety rules and
every image decoded in memory; nothing is ever unpickled) before anything is
kept. A refused file leaves nothing behind: no row, no stored file, no job.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from governance.access import can_use_version
from governance.audit import audit_record
from governance.models import NotificationKind
from governance.services.notify import absolute, notify, stewards
from jobs.engine import JobContext, owned_by
from jobs.models import DriftBatch, FineTuneRun
from jobs.services import release_checks as launcher
from portal.errors import Forbidden, NotFound, PortalError
from zoo import datasets, storage
from zoo.models import Dataset, DatasetVersion, ModelVersion, ReleaseCheck
from zoo.selectors.catalogue import versions_visible_to
from zoo.selectors.datasets import dataset_versions_visible_to
from zoo.services import release_checks as checks
from zoo.services.datasets import dataset_limits

# Fewer rows than this say little about a distribution of ten confidence bins.
MIN_ROWS = 20
TABLE_FORMATS = ("csv", "tsv", "jsonl")
IMAGE_FORMATS = ("zip",)
# Column names read as "the text" when the training data's own text column is absent.
TEXT_NAMES = ("text", "message", "sentence", "input", "content", "body")


def may_upload_drift(actor, version: ModelVersion) -> bool:
    """Anyone who may use the version's files (``governance.access.can_use_version``)."""
    return bool(getattr(actor, "is_authenticated", False)) and can_use_version(actor, version)


def _run_of(version: ModelVersion) -> FineTuneRun:
    run = (
        FineTuneRun.objects.select_related("dataset_version__dataset", "base_version__model")
        .filter(output_version=version)
        .first()
    )
    if run is None:
        raise PortalError(
            f"{version.model.repo_id} {version.label} was not made by a fine-tune in the portal, "
            "so its training data is not known and production inputs cannot be compared with it."
        )
    return run


def _refuse_early(actor, version: ModelVersion) -> FineTuneRun:
    if not versions_visible_to(actor).filter(pk=version.pk).exists():
        raise NotFound("No such model version.")
    if not may_upload_drift(actor, version):
        raise Forbidden(
            "Only people who may use this version (an approved reuse request, the person who "
            "made it, stewards and staff) may upload its production samples."
        )
    run = _run_of(version)
    if version.is_blocked:
        raise PortalError(
            f"{version.model.repo_id} {version.label} is blocked, so it cannot be run on new "
            "inputs: " + "; ".join(version.block_reasons)
        )
    return run


def _text_column(columns: list[str], wanted: str, run: FineTuneRun) -> str:
    if wanted:
        if wanted not in columns:
            raise PortalError(
                f"The file has no column {wanted!r}; its columns are {', '.join(columns)}.",
                field="text_column",
            )
        return wanted
    trained = run.dataset_version.text_column
    if trained and trained in columns:
        return trained
    if len(columns) == 1:
        return columns[0]
    named = [c for c in columns if c.strip().lower() in TEXT_NAMES]
    if len(named) == 1:
        return named[0]
    raise PortalError(
        f"Name the column that holds the texts: one of {', '.join(columns)}.", field="text_column"
    )


def read_batch_texts(path: Path, *, fmt: str, text_column: str) -> list[str]:
    """The non-blank texts of a stored batch, in file order (the worker reads it the same way)."""
    return read_batch_rows(path, fmt=fmt, text_column=text_column)[0]


def read_batch_rows(
    path: Path, *, fmt: str, text_column: str, label_column: str = ""
) -> tuple[list[str], list[str] | None]:
    """(non-blank texts in file order, their labels when ``label_column`` is given)."""
    try:
        frame, _, _ = datasets.read_table(path, fmt=fmt, limits=dataset_limits())
    except datasets.DatasetError as exc:
        raise PortalError(" ".join(exc.messages), field="file") from exc
    for column in (text_column, label_column):
        if column and column not in frame.columns:
            raise PortalError(f"The file has no column {column!r}.", field="text_column")
    texts = [str(v).strip() for v in frame[text_column]]
    keep = [i for i, t in enumerate(texts) if t]
    if not label_column:
        return [texts[i] for i in keep], None
    labels = [str(v).strip() for v in frame[label_column]]
    return [texts[i] for i in keep], [labels[i] for i in keep]


@dataclass(frozen=True)
class _Checked:
    """What an accepted file holds: its text column (tables), inputs and labels if any."""

    text_column: str
    n_rows: int
    label_column: str


def _labels_of(frame, column: str, run: FineTuneRun) -> str:
    """The training data's label column if every text row of the file carries a trained
    class there (then the batch could be trained on), else empty."""
    wanted = run.dataset_version.label_column
    classes = {str(c) for c in run.training.get("classes") or []}
    if not wanted or wanted not in frame.columns or not classes:
        return ""
    texts = [str(v).strip() for v in frame[column]]
    labels = [str(v).strip() for v, t in zip(frame[wanted], texts, strict=True) if t]
    return wanted if labels and all(label in classes for label in labels) else ""


def _checked_texts(path: Path, *, fmt: str, wanted: str, run: FineTuneRun) -> _Checked:
    """The text column, rows and labels of an uploaded table that passes every limit."""
    limits = dataset_limits()
    try:
        frame, _, _ = datasets.read_table(path, fmt=fmt, limits=limits)
    except datasets.DatasetError as exc:
        raise PortalError(" ".join(exc.messages), field="file") from exc
    column = _text_column([str(c) for c in frame.columns], wanted, run)
    texts = [str(v).strip() for v in frame[column]]
    limit = limits.max_text_chars
    too_long = [row for row, t in zip(frame.index, texts, strict=True) if len(t) > limit]
    if too_long:
        rows = ", ".join(str(r) for r in too_long[:5])
        raise PortalError(
            f"Texts are limited to {limit:,} characters; longer in row "
            f"{rows}{' and more' if len(too_long) > 5 else ''}.",
            field="file",
        )
    n = sum(1 for t in texts if t)
    if n < MIN_ROWS:
        raise PortalError(
            f"The file holds {n} non-blank text{'s' if n != 1 else ''} in {column!r}; a batch "
            f"needs at least {MIN_ROWS} to compare distributions.",
            field="file",
        )
    return _Checked(column, n, _labels_of(frame, column, run))


def _checked_images(path: Path, *, run: FineTuneRun) -> _Checked:
    """The images of an uploaded zip that passes the archive and image limits."""
    try:
        batch = datasets.load_image_batch(
            path, limits=dataset_limits(), classes=run.training.get("classes") or ()
        )
    except datasets.DatasetError as exc:
        raise PortalError(" ".join(exc.messages), field="file") from exc
    if batch.n_rows < MIN_ROWS:
        raise PortalError(
            f"The archive holds {batch.n_rows} image{'s' if batch.n_rows != 1 else ''}; a batch "
            f"needs at least {MIN_ROWS} to compare distributions.",
            field="file",
        )
    labels = DriftBatch.LABEL_FOLDERS if batch.labels is not None else ""
    return _Checked("", batch.n_rows, labels)


def _check_format(fmt: str, modality: str, text_column: str) -> None:
    """Refuse a file of the other modality's kind, saying what this model reads."""
    if modality == Dataset.Modality.VISION:
        if fmt not in IMAGE_FORMATS:
            raise PortalError(
                "This is an image model: upload its production inputs as a zip of images "
                "(loose or in folders; folders named after its classes count as labels).",
                field="file",
            )
        if text_column:
            raise PortalError(
                "A text column names the texts of a table; an image batch has none.",
                field="text_column",
            )
    elif fmt not in TABLE_FORMATS:
        raise PortalError(
            "This is a text model: upload its production inputs as a CSV, TSV or JSONL file "
            "with a text column.",
            field="file",
        )


def drift_batch_upload(
    *, actor, version: ModelVersion, upload, text_column: str = ""
) -> DriftBatch:
    """Keep one batch of production inputs and queue its drift check; nothing kept when refused."""
    run = _refuse_early(actor, version)
    modality = run.dataset_version.dataset.modality
    original = (getattr(upload, "name", "") or "")[:255]
    head = upload.read(4096)
    upload.seek(0)
    try:
        fmt = datasets.detect_format(original, head)
    except datasets.DatasetError as exc:
        raise PortalError(" ".join(exc.messages), field="file") from exc
    _check_format(fmt, modality, text_column.strip())
    staged, sha256, size = storage.stage_upload(upload, max_bytes=settings.DATASET_MAX_BYTES)
    try:
        with tempfile.TemporaryDirectory(prefix="drift-") as tmp:
            path = storage.copy_blob_to(staged, Path(tmp) / f"batch.{fmt}")
            if modality == Dataset.Modality.VISION:
                found = _checked_images(path, run=run)
            else:
                found = _checked_texts(path, fmt=fmt, wanted=text_column.strip(), run=run)
            # Kept under its hash before the row that names it commits (the sweep allows for it).
            blob = storage.store_blob(path, sha256)
    finally:
        storage.discard(staged)
    return _record_batch(
        actor=actor,
        version=version,
        found=found,
        fields={
            "original_name": original,
            "format": fmt,
            "sha256": sha256,
            "size": size,
            "blob_name": blob,
        },
    )


def _record_batch(*, actor, version: ModelVersion, found: _Checked, fields: dict) -> DriftBatch:
    with transaction.atomic():
        batch = DriftBatch.objects.create(
            version=version,
            uploaded_by=actor,
            n_rows=found.n_rows,
            text_column=found.text_column,
            label_column=found.label_column,
            **fields,
        )
        audit_record(
            actor=actor,
            verb="drift_batch.upload",
            target=version,
            payload={
                "batch": batch.pk,
                "rows": found.n_rows,
                "sha256": fields["sha256"],
                "column": found.text_column,
                "labels": found.label_column,
            },
        )
        check = launcher.release_check_launch(
            actor=actor, version=version, kind=ReleaseCheck.Kind.DRIFT, params={"batch": batch.pk}
        )
        DriftBatch.objects.filter(pk=batch.pk).update(release_check=check)
        batch.release_check = check
    return batch


# --- what the drift job writes: the verdict, and the owners told once per crossing ------------


def drift_check_done(
    *, ctx: JobContext, check_id: int, measure: float, summary: str, result: dict, seconds: float
) -> ReleaseCheck:
    """Store the batch's verdict; if it newly crosses the retrain band, tell the owners."""
    with owned_by(ctx.job_id, ctx.attempt):
        check = checks.release_check_finish(
            check_id=check_id, measure=measure, summary=summary, result=result, seconds=seconds
        )
        if result.get("band") == "retrain" and not _previous_was_retrain(check):
            _tell_owners(check)
    return check


def _previous_was_retrain(check: ReleaseCheck) -> bool:
    """Whether the batch uploaded before this one (with a verdict) was already in the band."""
    batch = DriftBatch.objects.filter(release_check=check).first()
    if batch is None:
        return False
    earlier = (
        DriftBatch.objects.filter(
            version_id=check.version_id,
            release_check__status__in=(ReleaseCheck.Status.PASSED, ReleaseCheck.Status.FAILED),
        )
        .filter(created_at__lte=batch.created_at)
        .exclude(pk=batch.pk)
        .exclude(created_at=batch.created_at, pk__gt=batch.pk)
        .select_related("release_check")
        .order_by("-created_at", "-id")
        .first()
    )
    return bool(earlier and (earlier.release_check.result or {}).get("band") == "retrain")


@dataclass(frozen=True)
class RetrainSuggestion:
    """What a retrain after drift would start from: the fine-tune form filled in (``link``),
    where newer data is added (``upload_link``), and what is still needed, in words."""

    link: str
    upload_link: str
    newer: DatasetVersion | None
    words: str


def newer_dataset_version(run: FineTuneRun, viewer=None) -> DatasetVersion | None:
    """The newest version of the fine-tune's dataset uploaded after the one it trained on
    (of those ``viewer`` may use, when given)."""
    trained = run.dataset_version
    versions = dataset_versions_visible_to(viewer) if viewer is not None else DatasetVersion.objects
    return (
        versions.filter(dataset_id=trained.dataset_id)
        .filter(created_at__gt=trained.created_at)
        .order_by("-created_at", "-id")
        .first()
    )


def finetune_form_link(run: FineTuneRun, newer: DatasetVersion | None = None) -> str:
    """The fine-tune form with this version's base and strategy chosen, and the newer version
    of its dataset when there is one (the form shows it only to those who may use it)."""
    link = f"{reverse('finetunes:new')}?version={run.base_version_id}&strategy={run.strategy}"
    return f"{link}&dataset_version={newer.pk}" if newer is not None else link


def _batch_words(batch: DriftBatch | None, dataset: Dataset) -> str:
    if batch is None:
        return ""
    if not batch.label_column:
        return (
            f"Batch #{batch.pk} has no labels, so it cannot be trained on as it is: a retrain "
            "needs labelled data, such as a labelled sample of these production inputs."
        )
    where = (
        "its images sit in folders named after the classes"
        if batch.label_column == DriftBatch.LABEL_FOLDERS
        else f"its column {batch.label_column!r} holds the trained classes"
    )
    return (
        f"Batch #{batch.pk} carries labels ({where}): uploaded as a new version of "
        f"{dataset.name!r}, it can be trained on."
    )


def retrain_suggestion(
    run: FineTuneRun, batch: DriftBatch | None, *, viewer=None
) -> RetrainSuggestion:
    """A new fine-tune of the same base with newer labelled data: the form's link, and
    what is still needed for it (the batch itself is data only when it carries labels).

    With ``viewer`` (the drift section), only a newer dataset version that person may use
    is named. The notification names it without one: it goes only to the fine-tune's
    maker and the model's owner, and the form itself offers only what its user may use.
    """
    newer = newer_dataset_version(run, viewer)
    dataset = run.dataset_version.dataset
    base = f"{run.base_version.model.repo_id} {run.base_version.label}"
    if newer is not None:
        data = (
            f"The dataset {dataset.name!r} has a newer version than the "
            f"{run.dataset_version.label} this model was trained on: {newer.label} "
            f"({newer.n_rows:,} rows, uploaded {newer.created_at:%Y-%m-%d}); the fine-tune form "
            f"has the base, the {run.strategy} strategy and {newer.label} chosen."
        )
    else:
        data = (
            f"Upload the newer data as a new version of the dataset {dataset.name!r}, then "
            f"launch from the fine-tune form (it has the base and the {run.strategy} strategy "
            "chosen; pick the new version there)."
        )
    words = " ".join(
        w
        for w in (
            f"Consider a new fine-tune of {base} with newer, labelled data.",
            data,
            _batch_words(batch, dataset),
        )
        if w
    )
    return RetrainSuggestion(
        link=finetune_form_link(run, newer),
        upload_link=f"{reverse('datasets:upload')}?dataset={dataset.pk}",
        newer=newer,
        words=words,
    )


def _tell_owners(check: ReleaseCheck) -> None:
    version = check.version
    run = FineTuneRun.objects.select_related("base_version__model", "dataset_version__dataset").get(
        output_version=version
    )
    people = {p for p in (run.requested_by_id, version.model.owner_id) if p}
    users = list(people) or list(stewards())
    r = check.result
    batch = r.get("batch")
    suggestion = retrain_suggestion(run, DriftBatch.objects.filter(pk=batch).first())
    drift_page = version.get_absolute_url() + "#drift"
    notify(
        kind=NotificationKind.DRIFT,
        users=users,
        title=f"Production inputs of {version.model.repo_id} {version.label} drifted into the "
        "retrain band",
        body=(
            f"Batch #{batch} ({r.get('n_batch')} inputs) against {r.get('n_reference')} "
            f"{r.get('reference_rows', 'reference rows')}: PSI of the predicted classes "
            f"{r['psi_class']:.3f} and of the confidence {r['psi_confidence']:.3f} (retrain band "
            f"from 0.25); MMD permutation p-value {r['mmd']['p_value']:.3f}. The model may no "
            f"longer fit what it is used on. The batches and their chart: "
            f"{absolute(drift_page)}\n\n{suggestion.words}\n\nThe fine-tune form: "
            f"{absolute(suggestion.link)}"
            + (
                ""
                if suggestion.newer is not None
                else f"\nA new version of the dataset: {absolute(suggestion.upload_link)}"
            )
        ),
        url=drift_page,
        event_key=f"drift:{version.pk}:{batch}",
        data={
            "version": version.pk,
            "batch": batch,
            "psi_class": r["psi_class"],
            "band": r.get("band"),
            "finetune_form": absolute(suggestion.link),
        },
    )
