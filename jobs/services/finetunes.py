"""Launch a fine-tune, and the writes its worker makes for it, down to the registered version.

Who may fine-tune what, and on which data, is governance's rule
(``governance.access``); this module adds what a run needs on top: known
settings in range, and a split the data allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
from django.db import transaction

from governance.access import data_refusal, finetune_refusal
from governance.audit import audit_record
from governance.models import Sensitivity
from governance.services import notify as notices
from jobs.engine import JobContext, job_create, owned_by
from jobs.ml import splits
from jobs.ml.config import (
    SPLIT_SHARE,
    STRATEGIES,
    TEST_FRACTION,
    VAL_FRACTION,
    FineTuneConfig,
    SettingError,
)
from jobs.ml.finetune import default_lora_targets
from jobs.models import FineTuneRun, Job
from portal.errors import NotFound, PortalError
from zoo import importers
from zoo.models import CatalogModel, ModelVersion
from zoo.selectors.datasets import dataset_versions_visible_to
from zoo.storage import copy_blob_to


def finetune_defaults(strategy: str) -> dict[str, Any]:
    """The published defaults for a strategy, as the form and the API show them."""
    if strategy not in STRATEGIES:
        raise PortalError(f"Unknown strategy {strategy!r}.", field="strategy")
    return FineTuneConfig.defaults_for(strategy).as_dict()


def lora_targets_for(version) -> list[str]:
    """The modules LoRA adapts by default for a version's architecture (from its config.json).

    Empty when the version has no readable config or no known default; the
    worker then asks the full model (and names the problem if there is one).
    """
    config = version.artifacts.filter(path="config.json").first()
    if config is None or config.size > 2**20:
        return []
    with TemporaryDirectory(prefix="lora-targets-") as tmp:
        copy_blob_to(config.blob_name, Path(tmp) / "config.json")
        try:
            return list(default_lora_targets(Path(tmp)))
        except (OSError, ValueError, KeyError):
            return []


@dataclass(frozen=True)
class FineTunePlan:
    """A fine-tune request that passed every check: what ``finetune_record`` writes."""

    base_version: Any
    dataset_version: Any
    test_dataset_version: Any
    config: FineTuneConfig
    split: str
    split_params: dict[str, Any]


def finetune_launch(
    *,
    actor,
    base_version,
    dataset_version,
    strategy: str,
    config: dict[str, Any] | None = None,
    split: str = "stratified",
    test_fraction: float = TEST_FRACTION,
    val_fraction: float = VAL_FRACTION,
    test_dataset_version=None,
    check_base_serving: bool = False,
) -> FineTuneRun:
    """Check a fine-tune request and queue it on the gpu queue; nothing is created on refusal.

    With ``check_base_serving`` the base's serving check (ONNX export and parity)
    is queued in the same transaction, unless one is already queued or running
    (that one is reused); the fine-tune does not wait for it. The run carries it
    as ``base_serving_check`` (``None`` when not asked).

    ``config`` overrides the strategy's defaults field by field. The checks, in
    order: the right to fine-tune the base version (the role, an approved reuse
    request or being its creator or a steward, not blocked, not an adapter, a
    license that allows derivatives), the dataset visible, of the model's
    modality and covered by an approval when it is confidential or restricted,
    the settings, and the split.
    """
    plan = finetune_check(
        actor=actor,
        base_version=base_version,
        dataset_version=dataset_version,
        strategy=strategy,
        config=config,
        split=split,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        test_dataset_version=test_dataset_version,
    )
    if not check_base_serving:
        run = finetune_record(actor=actor, plan=plan)
        run.base_serving_check = None
        return run
    from jobs.services.release_checks import release_check_launch, release_check_open_of

    with transaction.atomic():
        check = release_check_open_of(version=base_version, kind="serving")
        if check is None:
            check = release_check_launch(actor=actor, version=base_version, kind="serving")
        run = finetune_record(actor=actor, plan=plan)
    run.base_serving_check = check
    return run


def finetune_check(
    *,
    actor,
    base_version,
    dataset_version,
    strategy: str,
    config: dict[str, Any] | None = None,
    split: str = "stratified",
    test_fraction: float = TEST_FRACTION,
    val_fraction: float = VAL_FRACTION,
    test_dataset_version=None,
) -> FineTunePlan:
    """Every check ``finetune_launch`` makes, writing nothing; a PortalError names the first."""
    refusal = finetune_refusal(actor, base_version)
    if refusal is not None:
        raise refusal
    _check_training_data(actor, base_version, dataset_version)
    cfg = _settings(strategy, config, base_version)
    test_dataset_version = _check_split(
        actor,
        dataset_version,
        split=split,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        test_dataset_version=test_dataset_version,
        seed=cfg.seed,
    )
    return FineTunePlan(
        base_version=base_version,
        dataset_version=dataset_version,
        test_dataset_version=test_dataset_version,
        config=cfg,
        split=split,
        split_params={
            "test_fraction": float(test_fraction),
            "val_fraction": float(val_fraction),
            "seed": cfg.seed,
        },
    )


def _check_training_data(actor, base_version, dataset_version) -> None:
    if not dataset_versions_visible_to(actor).filter(pk=dataset_version.pk).exists():
        raise NotFound("No such dataset.", field="dataset_version")
    dataset = dataset_version.dataset
    model = base_version.model
    if model.modality != dataset.modality:
        raise PortalError(
            f"{model.repo_id} is a {model.get_modality_display().lower()} model; {dataset} "
            f"holds {dataset.get_modality_display().lower()} data. Fine-tune a text encoder on "
            "text and a vision backbone on images.",
            field="dataset_version",
        )
    refusal = data_refusal(actor, base_version, dataset=dataset, field="dataset_version")
    if refusal is not None:
        raise refusal


def _settings(strategy: str, config: dict[str, Any] | None, base_version) -> FineTuneConfig:
    """The strategy's defaults, overridden field by field, checked against jobs.ml.config."""
    if strategy not in STRATEGIES:
        raise PortalError(f"Unknown strategy {strategy!r}.", field="strategy")
    known = set(FineTuneConfig().as_dict()) - {"strategy"}
    overrides = {k: v for k, v in (config or {}).items() if v is not None}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise PortalError(f"Unknown setting {unknown[0]!r}.", field=unknown[0])
    values = {**FineTuneConfig.defaults_for(strategy).as_dict(), **overrides, "strategy": strategy}
    # No targets means the architecture's default; named up front so the run records them.
    values["lora_target_modules"] = list(values.get("lora_target_modules") or []) or None
    if strategy == "lora" and values["lora_target_modules"] is None:
        values["lora_target_modules"] = lora_targets_for(base_version) or None
    cfg = FineTuneConfig(**values)
    try:
        cfg.validate()
    except SettingError as exc:
        raise PortalError(f"Invalid settings: {exc}", field=exc.setting) from exc
    return cfg


def _check_split(
    actor, dataset_version, *, split, test_fraction, val_fraction, test_dataset_version, seed
):
    """Refuse a split the data cannot take now, rather than an hour into the queue.

    Returns the test file to record (None unless the split uses one).
    """
    if split not in FineTuneRun.Split.values:
        raise PortalError(f"Unknown split {split!r}.", field="split")
    low, high = SPLIT_SHARE
    for label, value, field in (
        ("test", test_fraction, "test_fraction"),
        ("validation", val_fraction, "val_fraction"),
    ):
        if not low <= float(value) <= high:
            raise PortalError(
                f"The {label} share must be between {low:g} and {high:g}.", field=field
            )
    if split == FineTuneRun.Split.TIME and not dataset_version.time_column:
        raise PortalError(
            f"{dataset_version} has no time column; choose a stratified split or upload the "
            "data again with its time column.",
            field="split",
        )
    if split == FineTuneRun.Split.TEST_FILE:
        _check_test_file(actor, dataset_version, test_dataset_version)
    else:
        test_dataset_version = None
    _check_splittable(
        dataset_version, split=split, test_fraction=test_fraction, val_fraction=val_fraction,
        seed=seed,
    )  # fmt: skip
    return test_dataset_version


def _check_test_file(actor, dataset_version, test_dataset_version) -> None:
    if test_dataset_version is None:
        raise PortalError("Choose the test file.", field="test_dataset_version")
    field = "test_dataset_version"
    if not dataset_versions_visible_to(actor).filter(pk=test_dataset_version.pk).exists():
        raise NotFound("No such test dataset.", field=field)
    if test_dataset_version.pk == dataset_version.pk:
        raise PortalError("The test file must be another file than the training data.", field=field)
    dataset, test_data = dataset_version.dataset, test_dataset_version.dataset
    if test_data.modality != dataset.modality:
        raise PortalError(
            f"{test_dataset_version} holds {test_data.get_modality_display().lower()} data; "
            f"the training data is {dataset.get_modality_display().lower()}.",
            field=field,
        )
    extra = sorted(set(test_dataset_version.label_counts) - set(dataset_version.label_counts))
    if extra:
        raise PortalError(
            f"The test file has labels the training data lacks: {', '.join(extra[:5])}.",
            field=field,
        )
    if Sensitivity.rank(test_data.sensitivity) > Sensitivity.rank(dataset.sensitivity):
        raise PortalError(
            "The test file is more sensitive than the training data; give it the same "
            "sensitivity or use a stratified split.",
            field=field,
        )


def _check_splittable(dataset_version, *, split, test_fraction, val_fraction, seed) -> None:
    """The worker's own split functions, run on the label counts."""
    counts = dict(dataset_version.label_counts)
    labels = np.repeat(np.asarray(list(counts)), list(counts.values()))
    try:
        if split == FineTuneRun.Split.STRATIFIED:
            train_idx, _ = splits.stratified_split(
                labels, test_fraction=float(test_fraction), seed=seed
            )
        else:
            train_idx = np.arange(len(labels))
        if split != FineTuneRun.Split.TIME:
            splits.carve_validation(
                np.asarray(train_idx), labels, fraction=float(val_fraction), seed=seed
            )
    except ValueError as exc:
        raise PortalError(f"{dataset_version} cannot be split so: {exc}", field="split") from exc


def finetune_record(*, actor, plan: FineTunePlan, study=None) -> FineTuneRun:
    """Write a checked fine-tune (its job, run and audit event) and queue it after commit.

    With ``study`` the run is deferred: its worker trains and validates it and
    keeps the weights; the test split waits for the study's choice.
    """
    base_version, dataset_version = plan.base_version, plan.dataset_version
    test_dataset_version, config = plan.test_dataset_version, plan.config
    split, split_params = plan.split, plan.split_params
    config_json = config.as_dict()
    with transaction.atomic():
        job = job_create(
            kind=Job.Kind.FINETUNE,
            requested_by=actor,
            params={
                "base_version": base_version.pk,
                "dataset_version": dataset_version.pk,
                "strategy": config.strategy,
            },
        )
        run = FineTuneRun.objects.create(
            job=job,
            base_version=base_version,
            dataset_version=dataset_version,
            test_dataset_version=test_dataset_version,
            requested_by=actor,
            strategy=config.strategy,
            config=config_json,
            split=split,
            split_params=split_params,
            study=study,
        )
        audit_record(
            actor=actor,
            verb="finetune.launch",
            target=run,
            payload={
                "base_version": base_version.pk,
                "dataset_version": dataset_version.pk,
                "dataset_sha256": dataset_version.sha256,
                "sensitivity": dataset_version.dataset.sensitivity,
                "strategy": config.strategy,
                "config": config_json,
                "split": split,
                "split_params": split_params,
                "test_dataset_version": getattr(test_dataset_version, "pk", None),
                **({"study": study.pk} if study is not None else {}),
            },
        )
    return run


# --- what the worker writes -------------------------------------------------------------


def finetune_run_update(*, ctx: JobContext, run_id: int, **fields: Any) -> None:
    """Write results of the attempt that owns the job (a stale attempt cannot)."""
    with owned_by(ctx.job_id, ctx.attempt):
        FineTuneRun.objects.filter(pk=run_id).update(**fields)


def finetune_curves_append(
    *, ctx: JobContext, run_id: int, steps: list, epoch: dict[str, Any] | None = None
) -> None:
    """Append loss points (and an epoch's validation report) to the run's curves."""
    if not steps and epoch is None:
        return
    with owned_by(ctx.job_id, ctx.attempt):
        run = FineTuneRun.objects.select_for_update().only("curves").get(pk=run_id)
        curves = {"steps": [], "epochs": [], **(run.curves or {})}
        curves["steps"] = [*curves["steps"], *steps]
        if epoch is not None:
            curves["epochs"] = [*curves["epochs"], epoch]
        FineTuneRun.objects.filter(pk=run_id).update(curves=curves)


def finetune_checkpoint_record(
    *, ctx: JobContext, run_id: int, checkpoint: dict[str, Any]
) -> dict[str, Any]:
    """Point the run at its newest checkpoint; returns the one it replaces (or {})."""
    with owned_by(ctx.job_id, ctx.attempt):
        run = FineTuneRun.objects.select_for_update().only("last_checkpoint").get(pk=run_id)
        previous = run.last_checkpoint or {}
        FineTuneRun.objects.filter(pk=run_id).update(last_checkpoint=checkpoint)
    return previous


def finetune_resume_point(*, ctx: JobContext, run_id: int) -> dict[str, Any]:
    """The checkpoint a new attempt resumes from; curves after it are dropped to be redone."""
    with owned_by(ctx.job_id, ctx.attempt):
        run = (
            FineTuneRun.objects.select_for_update().only("curves", "last_checkpoint").get(pk=run_id)
        )
        checkpoint = run.last_checkpoint or {}
        curves = run.curves or {}
        if checkpoint:
            step, epoch = checkpoint.get("step", 0), checkpoint.get("epoch", 0)
            curves = {
                "steps": [p for p in curves.get("steps", []) if p[0] <= step],
                "epochs": [e for e in curves.get("epochs", []) if e.get("epoch", 0) <= epoch],
            }
        else:
            curves = {"steps": [], "epochs": []}
        FineTuneRun.objects.filter(pk=run_id).update(curves=curves)
    return checkpoint


def _slug(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return re.sub(r"-{2,}", "-", cleaned)


def finetune_repo_id(run) -> str:
    """``<requester>/<base name>-ft-<dataset name>-<run id>``: one new model per run.

    The requester's namespace says whose work it is; the run id makes each
    output a model of its own, so it enters review as a draft even when an
    earlier fine-tune of the same pair was published.
    """
    owner = _slug(run.requested_by.get_username() if run.requested_by else "") or "finetunes"
    stem = _slug(f"{run.base_version.model.name}-ft-{run.dataset_version.dataset.name}")
    suffix = f"-{run.pk}"
    return f"{owner[:96]}/{stem[: 96 - len(suffix)].rstrip('-._') or 'model'}{suffix}"


def _free_repo_id(run) -> str:
    repo_id = finetune_repo_id(run)
    n = 1
    while CatalogModel.objects.filter(repo_id=repo_id).exists():
        n += 1
        repo_id = f"{finetune_repo_id(run)[:190]}-{n}"
    return repo_id


def finetune_output_register(
    *, ctx: JobContext, run_id: int, folder, title: str, summary: str
) -> Any:
    """Register the run's output folder as a new version, exactly once.

    One transaction holds the job row (only the owning attempt gets here) and
    the run row: if an earlier attempt registered a version, that one is
    returned; otherwise the files are ingested, the run points at the new
    version, and both commit together. The new model is a draft owned by the
    requester: they and stewards see it; nobody else may use it until a steward
    has reviewed and published it.
    """
    with owned_by(ctx.job_id, ctx.attempt):
        run = (
            FineTuneRun.objects.select_for_update(of=("self",))
            .select_related(
                "base_version__model",
                "base_version__license",
                "dataset_version__dataset",
                "requested_by",
                "output_version__model",
            )
            .get(pk=run_id)
        )
        if run.output_version_id:
            return run.output_version
        base = run.base_version
        kind = ModelVersion.Kind.ADAPTER if run.is_adapter else ModelVersion.Kind.FINETUNED
        version, _ = importers.import_finetune_output(
            folder=folder,
            repo_id=_free_repo_id(run),
            derived=importers.Derived(
                parent=base,
                kind=kind,
                title=title,
                summary=summary,
                bias_notes=base.bias_notes,
                limitations=base.limitations,
                provenance={
                    "base_model": [base.model.repo_id],
                    "base_revision": base.revision,
                    "datasets": [f"sha256:{run.dataset_version.sha256}"],
                    "finetune_run": run.pk,
                    # The class names in head order: the model page's loading snippet
                    # needs them for an adapter, whose files carry no config.
                    "labels": list((run.training or {}).get("classes") or []),
                },
            ),
            source_repo=f"fine-tune #{run.pk}",
            actor=run.requested_by,
        )
        FineTuneRun.objects.filter(pk=run.pk).update(output_version=version)
        audit_record(
            actor=run.requested_by,
            verb="finetune.register",
            target=version,
            payload={
                "run": run.pk,
                "parent": base.pk,
                "kind": kind,
                "license": version.license.spdx_id,
                "review": "draft until a steward publishes it",
            },
        )
        notices.awaiting_publication(
            version=version, made_by=f"Fine-tune #{run.pk} of {base.model.repo_id} {base.label}"
        )
    return version
