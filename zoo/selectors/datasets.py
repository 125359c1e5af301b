"""Read queries over datasets: who sees which dataset and version."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from guardian.shortcuts import get_objects_for_user, get_users_with_perms

from portal.errors import NotFound
from zoo.models import Dataset, DatasetVersion


def datasets_visible_to(user) -> QuerySet[Dataset]:
    """The owner sees a dataset, and those it was shared with (an object permission); staff all."""
    if not user.is_authenticated:
        return Dataset.objects.none()
    qs = Dataset.objects.select_related("owner")
    if user.is_staff:
        return qs
    shared = get_objects_for_user(
        user, "zoo.view_dataset", klass=Dataset, with_superuser=False, accept_global_perms=False
    )
    return qs.filter(Q(owner=user) | Q(pk__in=shared.values("pk")))


def get_dataset_for_user(user, pk: int) -> Dataset:
    dataset = datasets_visible_to(user).filter(pk=pk).first()
    if dataset is None:
        raise NotFound("No such dataset.")
    return dataset


def dataset_versions_visible_to(user) -> QuerySet[DatasetVersion]:
    return DatasetVersion.objects.select_related("dataset__owner").filter(
        dataset__in=datasets_visible_to(user).values("pk")
    )


def get_dataset_version_for_user(user, pk: int) -> DatasetVersion:
    version = dataset_versions_visible_to(user).filter(pk=pk).first()
    if version is None:
        raise NotFound("No such dataset version.")
    return version


def dataset_shared_with(dataset: Dataset) -> list:
    """Users the owner shared the dataset with, by name."""
    users = get_users_with_perms(
        dataset, only_with_perms_in=["view_dataset"], with_superusers=False
    )
    return sorted((u for u in users if u.pk != dataset.owner_id), key=lambda u: u.get_username())
