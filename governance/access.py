"""Who may use, fine-tune and probe a model version: the access rules, each written once.

Every rule is a queryset first (``versions_usable_by``, ``versions_finetunable_by``),
so a form's choices, a page's buttons and the services' checks all ask the same
question; the yes/no helpers filter that queryset for one version, and the
``*_refusal`` helpers turn a "no" into the error that says why.

The approval's own expiry decides, not the beat task that later marks it expired:
access ends at the moment an approval lapses.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.utils import timezone
from guardian.shortcuts import get_objects_for_user

from governance.models import License, ReuseRequest, Sensitivity
from governance.roles import ML_ENGINEERS, has_role, is_steward
from portal.errors import Forbidden, NotFound, PortalError
from zoo.models import CatalogModel, ModelVersion
from zoo.selectors.catalogue import versions_visible_to

DOWNLOAD = "zoo.download_files"
FINETUNE = "zoo.finetune_version"
# Modalities the portal's workers can fine-tune and probe.
TRAINABLE_MODALITIES = ("text", "vision")


def live_approvals(user) -> QuerySet[ReuseRequest]:
    """The user's approved reuse requests that have not yet expired."""
    return ReuseRequest.objects.filter(requester=user, status=ReuseRequest.Status.APPROVED).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
    )


def versions_usable_by(user, perm: str = DOWNLOAD) -> QuerySet[ModelVersion]:
    """Versions whose files the user may use: the gate of the hub endpoint and of fine-tunes.

    Stewards and staff may use every version they see; a version's creator may
    use it (a fine-tune's author, before its review); anyone else needs a live
    approval, which grants the object permission ``perm`` for that version.
    """
    if not user.is_authenticated:
        return ModelVersion.objects.none()
    visible = versions_visible_to(user)
    if user.is_staff or is_steward(user):
        return visible
    granted = get_objects_for_user(
        user, perm, klass=ModelVersion, with_superuser=False, accept_global_perms=False
    )
    approved = live_approvals(user).values("version_id")
    return visible.filter(
        Q(created_by=user) | (Q(pk__in=granted.values("pk")) & Q(pk__in=approved))
    )


def can_use_version(user, version: ModelVersion, perm: str = DOWNLOAD) -> bool:
    return versions_usable_by(user, perm).filter(pk=version.pk).exists()


def models_usable_by(user) -> QuerySet:
    """Ids of catalogue models with a version the user may use (the "approved for me" filter)."""
    return versions_usable_by(user).values("model_id")


def may_launch_finetunes(user) -> bool:
    """Members of ml-engineers (and staff) launch fine-tunes."""
    return bool(user.is_authenticated and (user.is_staff or has_role(user, ML_ENGINEERS)))


def _derivative_free_licenses() -> QuerySet[License]:
    ids = [lic.pk for lic in License.objects.only("spdx_id") if lic.forbids_derivatives]
    return License.objects.filter(pk__in=ids)


def versions_finetunable_by(user) -> QuerySet[ModelVersion]:
    """Versions the user may fine-tune: usable for fine-tuning, published, unblocked, a model
    (not an adapter) of a trainable modality, under a license that allows derivatives."""
    if not may_launch_finetunes(user):
        return ModelVersion.objects.none()
    return (
        versions_usable_by(user, FINETUNE)
        .filter(status=ModelVersion.Status.AVAILABLE, model__modality__in=TRAINABLE_MODALITIES)
        .exclude(model__status=CatalogModel.Status.BLOCKED)
        .exclude(kind=ModelVersion.Kind.ADAPTER)
        .exclude(license__in=_derivative_free_licenses())
        .select_related("model", "license")
    )


def can_finetune(user, version: ModelVersion) -> bool:
    return versions_finetunable_by(user).filter(pk=version.pk).exists()


def finetune_refusal(user, version: ModelVersion) -> PortalError | None:
    """Why ``user`` may not fine-tune ``version`` (the error to raise), or None when they may."""
    if can_finetune(user, version):
        return None
    name = f"{version.model.repo_id} {version.label}"
    field = "base_version"
    if not may_launch_finetunes(user):
        return Forbidden("Only members of ml-engineers may launch fine-tunes.")
    if not versions_visible_to(user).filter(pk=version.pk).exists():
        return NotFound(f"No model version {version.pk} that you may see.", field=field)
    if not can_use_version(user, version, FINETUNE):
        return Forbidden(
            f"{name} is not approved for you: fine-tuning needs an approved reuse request "
            "for this version.",
            field=field,
        )
    if version.is_blocked or version.model.status == CatalogModel.Status.BLOCKED:
        reasons = version.block_reasons or [version.model.status_reason]
        return PortalError(
            f"{name} is blocked and cannot be fine-tuned: " + " ".join(r for r in reasons if r),
            field=field,
        )
    if version.kind == ModelVersion.Kind.ADAPTER:
        parent = version.parent
        return PortalError(
            f"{name} is a LoRA adapter, not a model: fine-tune its base "
            f"({parent.model.repo_id if parent else 'the model it adapts'}) instead.",
            field=field,
        )
    if version.license.forbids_derivatives:
        return PortalError(
            f"{name} is licensed {version.license.spdx_id}, which allows no derivatives: "
            "a fine-tune of it may not be made.",
            field=field,
        )
    if version.model.modality not in TRAINABLE_MODALITIES:
        return PortalError(
            f"{version.model.repo_id} is a {version.model.get_modality_display().lower()} "
            "model; the portal fine-tunes text encoders and vision backbones.",
            field=field,
        )
    return PortalError(f"{name} cannot be fine-tuned.", field=field)


def versions_probeable_by(user) -> QuerySet[ModelVersion]:
    """Versions the user may probe: published ones (the model available or deprecated) and
    any they may use (their own drafts, approved versions), unblocked, of a trainable modality.

    A probe only evaluates a model on frozen features, so a published version needs
    no approval; which data it may be probed on is ``data_refusal``'s rule.
    """
    if not user.is_authenticated:
        return ModelVersion.objects.none()
    published = versions_visible_to(user).filter(
        model__status__in=[CatalogModel.Status.AVAILABLE, CatalogModel.Status.DEPRECATED]
    )
    return (
        (published | versions_usable_by(user))
        .filter(status=ModelVersion.Status.AVAILABLE, model__modality__in=TRAINABLE_MODALITIES)
        .exclude(model__status=CatalogModel.Status.BLOCKED)
        .distinct()
    )


def probe_refusal(user, version: ModelVersion, *, dataset) -> PortalError | None:
    """Why ``user`` may not probe ``version`` on ``dataset``, or None when they may."""
    field = "versions"
    name = f"{version.model.repo_id} {version.label}"
    if not versions_visible_to(user).filter(pk=version.pk).exists():
        return NotFound(f"No model version {version.pk} that you may see.", field=field)
    if version.is_blocked or version.model.status == CatalogModel.Status.BLOCKED:
        reasons = version.block_reasons or [version.model.status_reason]
        return PortalError(
            f"{name} is blocked and cannot be loaded: " + " ".join(r for r in reasons if r),
            field=field,
        )
    if not versions_probeable_by(user).filter(pk=version.pk).exists():
        return Forbidden(
            f"{name} is not published: only published versions, and versions approved for "
            "you, may be probed.",
            field=field,
        )
    return data_refusal(user, version, dataset=dataset, action="probing", field=field)


def approval_covers_data(user, version: ModelVersion, sensitivity: str) -> bool:
    """Whether data of ``sensitivity`` may be used with ``version`` by ``user``.

    Public and internal data need nothing more than the right to use the
    version; confidential and restricted data need a live approval of the
    user's for this version whose stated data sensitivity is at least as high.
    """
    if not Sensitivity.needs_approval(sensitivity):
        return True
    return (
        live_approvals(user)
        .filter(version=version, data_sensitivity__in=Sensitivity.at_least(sensitivity))
        .exists()
    )


def data_refusal(
    user, version: ModelVersion, *, dataset, action: str = "fine-tuning", field: str = ""
) -> PortalError | None:
    """Why ``dataset`` may not be used with ``version`` for ``action``, or None when it may."""
    sensitivity = dataset.sensitivity
    if approval_covers_data(user, version, sensitivity):
        return None
    label = Sensitivity(sensitivity).label.lower()
    higher = len(Sensitivity.at_least(sensitivity)) > 1
    return Forbidden(
        f"{dataset} is {label} data: {action} {version.model.repo_id} {version.label} on it "
        "needs an approved reuse request of yours for this version whose data sensitivity is "
        f"{label}" + (" or higher." if higher else "."),
        field=field or None,
    )
