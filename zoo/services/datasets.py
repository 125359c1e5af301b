"""Every change to datasets: staged uploads, validated versions, sharing."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from guardian.shortcuts import assign_perm, remove_perm

from governance.audit import audit_record
from governance.models import Sensitivity
from portal.errors import Conflict, Forbidden, PortalError
from zoo import datasets, storage
from zoo.models import Dataset, DatasetVersion


@dataclass
class StagedUpload:
    """An uploaded dataset file kept under a name of its own until the uploader picks columns."""

    staged_name: str
    sha256: str
    size: int
    original_name: str
    format: str
    preview: dict

    def token(self, user) -> str:
        """A signed handle the preview form carries back; only its uploader can redeem it."""
        return signing.dumps(
            {
                "staged": self.staged_name,
                "sha256": self.sha256,
                "size": self.size,
                "name": self.original_name,
                "format": self.format,
                # The columns the preview offered, so confirming needs no second read.
                "columns": self.preview.get("columns", []),
                "user": user.pk,
            },
            salt=_UPLOAD_SALT,
        )

    @classmethod
    def from_token(cls, token: str, user) -> StagedUpload:
        try:
            data = signing.loads(token, salt=_UPLOAD_SALT, max_age=_UPLOAD_MAX_AGE)
        except signing.BadSignature as exc:
            raise PortalError(
                "This upload has expired or is not yours; upload the file again.", field="file"
            ) from exc
        if data.get("user") != user.pk:
            raise PortalError("This upload is not yours; upload the file again.", field="file")
        return cls(
            staged_name=data["staged"],
            sha256=data["sha256"],
            size=data["size"],
            original_name=data["name"],
            format=data["format"],
            preview={"columns": list(data.get("columns", []))},
        )


_UPLOAD_SALT = "zoo.dataset-upload"
_UPLOAD_MAX_AGE = 24 * 3600


def dataset_limits() -> datasets.DatasetLimits:
    return datasets.DatasetLimits(
        max_bytes=settings.DATASET_MAX_BYTES, max_rows=settings.DATASET_MAX_ROWS
    )


@contextmanager
def _local_copy(staged: StagedUpload):
    """The staged file on local disk, for the readers; gone, it is an expired upload."""
    with tempfile.TemporaryDirectory(prefix="dataset-") as tmp:
        try:
            path = storage.copy_blob_to(staged.staged_name, Path(tmp) / f"data.{staged.format}")
        except FileNotFoundError:
            raise PortalError(
                "This upload has expired or was already recorded; upload the file again.",
                field="file",
            ) from None
        yield path


def _problems(exc: datasets.DatasetError) -> PortalError:
    return PortalError(" ".join(exc.messages), field="file")


def dataset_stage_upload(*, actor, upload) -> StagedUpload:
    """Store an uploaded file and read enough of it to show a preview; creates no dataset yet."""
    original = (getattr(upload, "name", "") or "")[:255]
    head = upload.read(4096)
    upload.seek(0)
    try:
        fmt = datasets.detect_format(original, head)
    except datasets.DatasetError as exc:
        raise _problems(exc) from exc
    name, sha256, size = storage.stage_upload(upload, max_bytes=settings.DATASET_MAX_BYTES)
    staged = StagedUpload(
        staged_name=name, sha256=sha256, size=size, original_name=original, format=fmt, preview={}
    )
    try:
        return dataset_stage_preview(staged)
    except PortalError:
        storage.discard(name)  # refused: nothing of it is kept
        raise


def dataset_stage_preview(staged: StagedUpload) -> StagedUpload:
    """Read the stored file again for its preview: columns, a few rows, suggested columns."""
    with _local_copy(staged) as path:
        try:
            if staged.format == "zip":
                images = datasets.load_image_archive(path, limits=dataset_limits())
                staged.preview = {
                    "kind": "images",
                    "n_rows": images.n_rows,
                    "label_counts": images.label_counts,
                    "warnings": images.warnings,
                }
            else:
                table = datasets.preview_table(
                    path, original_name=staged.original_name, limits=dataset_limits()
                )
                staged.preview = {
                    "kind": "table",
                    "encoding": table.encoding,
                    "delimiter": table.delimiter,
                    "columns": table.columns,
                    "n_rows": table.n_rows,
                    "sample": table.sample,
                    "suggested_text": table.suggested_text,
                    "suggested_label": table.suggested_label,
                }
        except datasets.DatasetError as exc:
            raise _problems(exc) from exc
    return staged


def _read_dataset(path: Path, staged: StagedUpload, columns: dict[str, str]) -> dict:
    """Validate the whole file with the chosen columns; the fields a DatasetVersion stores."""
    try:
        if staged.format == "zip":
            images = datasets.load_image_archive(path, limits=dataset_limits())
            return {
                "n_rows": images.n_rows,
                "label_counts": images.label_counts,
                "warnings": images.warnings,
                "columns": [],
                "sample": [
                    {"image": member, "label": label}
                    for member, label in list(zip(images.members, images.labels, strict=True))[
                        :: max(1, images.n_rows // 10)
                    ][:10]
                ],
            }
        table = datasets.load_text_dataset(
            path,
            fmt=staged.format,
            text_column=columns["text_column"],
            label_column=columns["label_column"],
            slice_column=columns.get("slice_column") or None,
            time_column=columns.get("time_column") or None,
            limits=dataset_limits(),
        )
    except datasets.DatasetError as exc:
        raise _problems(exc) from exc
    sample = []
    for i in range(min(10, table.n_rows)):
        row = {"text": table.texts[i][:500], "label": table.labels[i]}
        if table.slices is not None:
            row["slice"] = table.slices[i]
        if table.times is not None:
            row["time"] = table.times[i]
        sample.append(row)
    return {
        "n_rows": table.n_rows,
        "label_counts": table.label_counts,
        "warnings": table.warnings,
        "columns": [c for c in columns.values() if c],
        "sample": sample,
    }


def dataset_create(
    *,
    actor,
    staged: StagedUpload,
    sensitivity: str,
    name: str = "",
    description: str = "",
    dataset: Dataset | None = None,
    text_column: str = "",
    label_column: str = "",
    slice_column: str = "",
    time_column: str = "",
) -> tuple[DatasetVersion, bool]:
    """Validate a staged file and record it as a new dataset, or a new version of ``dataset``.

    The same file under the same dataset is the same version: it is returned
    (``created`` False) rather than recorded twice, unless it was recorded with
    other columns, which is refused so no choice is silently dropped.
    """
    modality = Dataset.Modality.VISION if staged.format == "zip" else Dataset.Modality.TEXT
    columns = {
        "text_column": text_column.strip(),
        "label_column": label_column.strip(),
        "slice_column": slice_column.strip(),
        "time_column": time_column.strip(),
    }
    if modality == Dataset.Modality.VISION:
        columns = dict.fromkeys(columns, "")
    if dataset is not None:
        if dataset.owner_id != actor.pk:
            raise Forbidden("Only the dataset's owner may add versions to it.")
        if dataset.modality != modality:
            raise PortalError(
                f"{dataset} holds {dataset.get_modality_display().lower()} data; "
                f"this file is {Dataset.Modality(modality).label.lower()} data.",
                field="file",
            )
        existing = dataset.versions.filter(sha256=staged.sha256).first()
        if existing is not None:
            same = _same_file(existing, columns)
            transaction.on_commit(lambda: storage.discard(staged.staged_name))
            return same, False
    if sensitivity not in Sensitivity.values:
        raise PortalError(f"Unknown sensitivity {sensitivity!r}.", field="sensitivity")
    with _local_copy(staged) as path:
        fields = _read_dataset(path, staged, columns)
        blob = storage.store_blob(path, staged.sha256)
    try:
        result = _record_dataset_version(
            actor=actor,
            staged=staged,
            blob=blob,
            dataset=dataset,
            name=name,
            description=description,
            sensitivity=sensitivity,
            modality=modality,
            columns=columns,
            fields=fields,
        )
    except IntegrityError as exc:
        # Someone (a second tab, a retried request) recorded the same name or file meanwhile.
        raise Conflict(
            "This dataset changed while your file was checked; open it and try again."
        ) from exc
    transaction.on_commit(lambda: storage.discard(staged.staged_name))
    return result


def dataset_upload(*, actor, upload, **choices) -> tuple[DatasetVersion, bool]:
    """Stage, validate and record a file in one step (the API, the demo seed).

    Refused at any point, nothing of the upload is kept: there is no preview
    page to come back to.
    """
    staged = dataset_stage_upload(actor=actor, upload=upload)
    try:
        return dataset_create(actor=actor, staged=staged, **choices)
    except PortalError:
        storage.discard(staged.staged_name)
        raise


def _record_dataset_version(
    *, actor, staged, blob, dataset, name, description, sensitivity, modality, columns, fields
) -> tuple[DatasetVersion, bool]:
    with transaction.atomic():
        if dataset is None:
            name = name.strip()
            if Dataset.objects.filter(owner=actor, name=name).exists():
                raise PortalError(
                    f"You already have a dataset called {name!r}; "
                    "add the file to it as a new version or pick another name.",
                    field="name",
                )
            dataset = Dataset(
                owner=actor,
                name=name,
                description=description.strip(),
                modality=modality,
                sensitivity=sensitivity,
            )
            try:
                dataset.full_clean()
            except ValidationError as exc:
                field, errors = next(iter(exc.message_dict.items()))
                raise PortalError(" ".join(errors), field=field) from exc
            dataset.save()
        else:
            dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
            existing = dataset.versions.filter(sha256=staged.sha256).first()
            if existing is not None:
                return _same_file(existing, columns), False
            if Sensitivity.rank(sensitivity) > Sensitivity.rank(dataset.sensitivity):
                dataset.sensitivity = sensitivity
            dataset.save()
        version = DatasetVersion.objects.create(
            dataset=dataset,
            label=f"v{dataset.versions.count() + 1}",
            sha256=staged.sha256,
            size=staged.size,
            format=staged.format,
            original_name=staged.original_name,
            blob_name=blob,
            created_by=actor,
            **columns,
            **fields,
        )
        audit_record(
            actor=actor,
            verb="dataset.upload",
            target=version,
            payload={
                "dataset": dataset.pk,
                "sha256": staged.sha256,
                "size": staged.size,
                "format": staged.format,
                "sensitivity": dataset.sensitivity,
                "rows": version.n_rows,
                **columns,
            },
        )
    return version, True


def _same_file(existing: DatasetVersion, columns: dict[str, str]) -> DatasetVersion:
    recorded = {name: getattr(existing, name) for name in columns}
    if recorded != columns:
        chosen = ", ".join(f"{k.replace('_column', '')}={v!r}" for k, v in recorded.items() if v)
        raise PortalError(
            f"This file is already {existing} with columns {chosen}. "
            "To use other columns, upload it as a new dataset.",
            field="file",
        )
    return existing


def dataset_share(*, dataset: Dataset, actor, user) -> None:
    """Let another user see the dataset and use it in probes (an object permission)."""
    if dataset.owner_id != actor.pk:
        raise Forbidden("Only the dataset's owner may share it.")
    if user.pk == actor.pk:
        raise PortalError("You already own this dataset.", field="username")
    with transaction.atomic():
        assign_perm("zoo.view_dataset", user, dataset)
        audit_record(
            actor=actor,
            verb="dataset.share",
            target=dataset,
            payload={"user": user.get_username(), "sensitivity": dataset.sensitivity},
        )


def dataset_unshare(*, dataset: Dataset, actor, user) -> None:
    if dataset.owner_id != actor.pk:
        raise Forbidden("Only the dataset's owner may change who sees it.")
    with transaction.atomic():
        remove_perm("zoo.view_dataset", user, dataset)
        audit_record(
            actor=actor,
            verb="dataset.unshare",
            target=dataset,
            payload={"user": user.get_username()},
        )
