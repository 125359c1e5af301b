"""Start a safetensors conversion of a version's torch checkpoints (stewards)."""

from __future__ import annotations

from governance.roles import is_steward
from jobs.engine import job_create
from jobs.ml.convert import safetensors_name
from jobs.models import Job
from portal.errors import Conflict, Forbidden, PortalError
from zoo.models import Artifact, CatalogModel, ModelVersion

# What torch.save writes under the names people give it.
TORCH_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def convertible_files(version: ModelVersion) -> dict[str, str]:
    """The version's pickle files mapped to the safetensors files they become.

    Refuses, naming the file, a pickle that is no torch checkpoint by its name
    (a scikit-learn ``.pkl`` stays what it is) or whose safetensors name is taken.
    """
    artifacts = list(version.artifacts.all())
    paths = {a.path for a in artifacts}
    plan = {}
    for artifact in artifacts:
        if artifact.format != Artifact.Format.PICKLE:
            continue
        if not artifact.path.lower().endswith(TORCH_SUFFIXES):
            raise PortalError(
                f"{artifact.path} is a pickle but not a torch checkpoint by its name "
                f"({', '.join(TORCH_SUFFIXES)}); only torch state dicts are converted."
            )
        target = safetensors_name(artifact.path)
        if target in paths or target in plan.values():
            raise PortalError(
                f"{artifact.path} would become {target}, which {version.label} already has; "
                "the version needs no conversion of it."
            )
        plan[artifact.path] = target
    if not plan:
        raise PortalError(f"{version.label} has no torch checkpoints to convert.")
    return plan


def conversion_launch(*, actor, version: ModelVersion) -> Job:
    """Queue the conversion; the result is a new version whose parent is ``version``."""
    if actor is None or not actor.is_authenticated or not is_steward(actor):
        raise Forbidden("Only stewards may convert a version.")
    if version.model.status == CatalogModel.Status.BLOCKED:
        raise PortalError(f"{version.model.repo_id} is blocked; it is not converted.")
    plan = convertible_files(version)
    busy = Job.objects.filter(
        kind=Job.Kind.CONVERT,
        params__version_id=version.pk,
        status__in=[Job.Status.QUEUED, Job.Status.RUNNING],
    ).first()
    if busy is not None:
        raise Conflict(f"A conversion of {version.label} is already under way (job #{busy.pk}).")
    return job_create(
        kind=Job.Kind.CONVERT,
        requested_by=actor,
        params={"version_id": version.pk, "files": plan},
    )
