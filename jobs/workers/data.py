"""A stored dataset version read back on a worker, as probes and fine-tunes consume it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from portal.errors import PortalError
from zoo import datasets
from zoo.services.datasets import dataset_limits
from zoo.storage import copy_blob_to


@dataclass
class Rows:
    """One dataset version's rows: inputs (texts, or paths of extracted images) and labels."""

    inputs: list
    labels: list[str]
    slices: list[str] | None = None
    times: list[str] | None = None


def read_rows(dataset_version, tmp: Path, *, with_time: bool = False) -> Rows:
    """Copy the version's file into ``tmp`` and read it with the same rules as at upload."""
    local = copy_blob_to(
        dataset_version.blob_name, tmp / f"data-{dataset_version.pk}.{dataset_version.format}"
    )
    limits = dataset_limits()
    try:
        if dataset_version.dataset.modality == "vision":
            images = tmp / f"images-{dataset_version.pk}"
            images.mkdir()
            table = datasets.load_image_archive(local, limits=limits)
            paths = datasets.extract_image_archive(local, images, limits=limits)
            return Rows(inputs=[str(p) for p in paths], labels=list(table.labels))
        table = datasets.load_text_dataset(
            local,
            fmt=dataset_version.format,
            text_column=dataset_version.text_column,
            label_column=dataset_version.label_column,
            slice_column=dataset_version.slice_column or None,
            time_column=(dataset_version.time_column or None) if with_time else None,
            limits=limits,
        )
    except datasets.DatasetError as exc:
        raise PortalError(f"{dataset_version} cannot be read: " + " ".join(exc.messages)) from exc
    return Rows(inputs=table.texts, labels=table.labels, slices=table.slices, times=table.times)
