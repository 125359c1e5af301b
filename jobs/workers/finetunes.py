"""The fine-tune job: train, evaluate against a baseline, write the card, register the version.

A retried job resumes from the last checkpoint an earlier attempt stored;
every write is made for the attempt that owns the job, and the output version
is registered once (see ``jobs.services.finetunes.finetune_output_register``).

A study's run (``jobs.services.studies``) stops after training: it keeps its
best-validation weights and never reads the test split. The ``study_choice``
job scores the chosen one on test, once, and registers it the same way.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage

from jobs.engine import JobCancelled, JobContext, register
from jobs.ml import card as cards
from jobs.ml import finetune as ft
from jobs.ml import splits
from jobs.ml.config import FineTuneConfig
from jobs.ml.verdict import FROZEN_HEAD_METHOD, frozen_verdict, transfer_verdict
from jobs.models import FineTuneRun, Job, Study
from jobs.selectors import study_selection
from jobs.services import finetunes as services
from jobs.services import studies as study_services
from jobs.workers.data import Rows, read_rows
from portal.errors import PortalError
from zoo.safety import digest_file
from zoo.storage import copy_blob_to, materialize_version, save_verified

logger = logging.getLogger(__name__)


@dataclass
class _Split:
    """Train, validation and test sets (inputs, class indices), and the test rows' slices."""

    class_names: list[str]
    train: tuple[list, Any]
    val: tuple[list, Any]
    test: tuple[list, Any]
    test_slices: list[str] | None


@dataclass
class _Evaluation:
    metrics: dict
    baseline: dict
    seconds: float
    emissions: dict


# What the fine-tune and the study-choice jobs read of a run, in one query.
_RUN_RELATED = (
    "base_version__model",
    "base_version__license",
    "dataset_version__dataset",
    "test_dataset_version__dataset",
    "requested_by",
    "output_version__model",
)


@register(Job.Kind.FINETUNE, queue="gpu")
def finetune(ctx: JobContext) -> dict:
    """Fine-tune a base version on a dataset, evaluate it and register the result."""
    run = FineTuneRun.objects.select_related(*_RUN_RELATED).get(job_id=ctx.job_id)
    if run.output_version_id:
        # An earlier attempt registered the version and stopped before reporting success.
        ctx.log(f"Already registered as {run.output_version.model.repo_id}")
        _remove_checkpoints(run.pk)
        return _finetune_result(run, run.output_version)
    if run.is_deferred and run.kept_weights:
        # An earlier attempt kept the weights and stopped before reporting success.
        ctx.log("Already trained and validated; the weights wait for the study's choice")
        return _deferred_result(run)
    began = time.perf_counter()
    ctx.progress(0.0, stage="Loading the base model")
    base_dir = materialize_version(run.base_version, settings.MODEL_CACHE_DIR)
    with ctx.workspace() as tmp:
        data = _training_data(ctx, run, tmp)
        config = _config_of(run)
        checkpoint = services.finetune_resume_point(ctx=ctx, run_id=run.pk)
        result = _train(ctx, run, base_dir, data, config, checkpoint, tmp)
        if run.is_deferred:
            return _keep_for_study(ctx, run, data, result, checkpoint, began)
        evaluation = _evaluate(ctx, run, base_dir, data, config, result)
        training = _training_record(ctx, run, data, result, evaluation, checkpoint, began)
        services.finetune_run_update(
            ctx=ctx,
            run_id=run.pk,
            metrics=evaluation.metrics,
            baseline=evaluation.baseline,
            training=training,
            emissions=evaluation.emissions,
        )
        version = _write_and_register(ctx, run, data, config, result, evaluation, training)
    _remove_checkpoints(run.pk)
    ctx.log(f"Registered {version.model.repo_id} {version.label} (in review)")
    ctx.progress(1.0, stage="Done")
    return _finetune_result(run, version)


def _device(ctx: JobContext) -> str:
    return "cuda" if ctx.device.startswith("cuda") else "cpu"


def _training_data(ctx: JobContext, run, tmp: Path) -> _Split:
    ctx.progress(0.01, stage="Reading the dataset")
    data = split_of(run, tmp)
    ctx.log(
        f"{len(data.train[1])} training, {len(data.val[1])} validation and "
        f"{len(data.test[1])} test examples; {len(data.class_names)} classes; "
        f"{run.get_split_display().lower()} split"
    )
    return data


def split_of(run, tmp: Path) -> _Split:
    """The run's train, validation and test sets exactly as its fine-tune made them.

    Same dataset versions, split kind, fractions and seed, so a release check
    calibrates on the validation rows the run chose its epoch on and scores the
    test rows its card reports.
    """
    rows = read_rows(run.dataset_version, tmp, with_time=run.split == "time")
    test_rows = read_rows(run.test_dataset_version, tmp) if run.test_dataset_version else None
    return split_rows(rows, split=run.split, params=run.split_params, test_rows=test_rows)


def _config_of(run) -> FineTuneConfig:
    try:
        return FineTuneConfig.from_dict(dict(run.config))
    except (TypeError, ValueError) as exc:
        raise PortalError(f"The run's settings are not valid: {exc}") from exc


def split_rows(rows: Rows, *, split: str, params: dict, test_rows: Rows | None = None) -> _Split:
    """Train, validation and test sets as a fine-tune's split says, with every class indexed.

    ``split`` and ``params`` are a run's ``split`` and ``split_params``; the
    probe's brief fine-tunes pass a default fine-tune's, so they train on the
    rows such a fine-tune would train on and never see its test rows.
    """
    seed = int(params.get("seed", 0))
    class_names = sorted(set(rows.labels))
    index = {name: i for i, name in enumerate(class_names)}
    y = np.array([index[label] for label in rows.labels], dtype=np.int64)
    named = np.asarray(rows.labels)  # split on the names, so a refusal names the classes
    try:
        if split == FineTuneRun.Split.STRATIFIED:
            train_idx, test_idx = splits.stratified_split(
                named, test_fraction=params["test_fraction"], seed=seed
            )
        elif split == FineTuneRun.Split.TIME:
            if rows.times is None:
                raise ValueError("the dataset has no time column")
            train_idx, test_idx = splits.time_split(
                rows.times, named, test_fraction=params["test_fraction"]
            )
        else:
            train_idx, test_idx = np.arange(len(y), dtype=np.int64), None
        train_idx, val_idx = splits.carve_validation(
            train_idx, named, fraction=params["val_fraction"], seed=seed
        )
    except ValueError as exc:
        raise PortalError(f"The data cannot be split as asked: {exc}") from exc

    def take(source: Rows, idx) -> list:
        return [source.inputs[i] for i in idx]

    if test_idx is not None:
        test = (take(rows, test_idx), y[test_idx])
        test_slices = [rows.slices[i] for i in test_idx] if rows.slices is not None else None
    else:
        test, test_slices = _test_file_rows(test_rows, class_names, index)
    return _Split(
        class_names=class_names,
        train=(take(rows, train_idx), y[train_idx]),
        val=(take(rows, val_idx), y[val_idx]),
        test=test,
        test_slices=test_slices,
    )


def _test_file_rows(test_rows: Rows, class_names: list[str], index: dict[str, int]):
    unknown = sorted(set(test_rows.labels) - set(class_names))
    if unknown:
        raise PortalError(
            f"The test file has labels the training data lacks: {', '.join(unknown[:5])}."
        )
    labels = np.array([index[label] for label in test_rows.labels], dtype=np.int64)
    return (list(test_rows.inputs), labels), test_rows.slices


def _train(ctx, run, base_dir: Path, data: _Split, config, checkpoint: dict, tmp: Path):
    """Train (resuming from ``checkpoint`` when an earlier attempt left one)."""
    resume = None
    if checkpoint:
        resume = _fetch_checkpoint(checkpoint, tmp)
        ctx.log(
            f"Resuming from the checkpoint of epoch {checkpoint['epoch']} "
            f"(step {checkpoint['step']}, stored by attempt {checkpoint['attempt']})"
        )
    run.refresh_from_db(fields=["last_checkpoint"])
    reporter = _TrainingReporter(
        ctx, run, epochs=config.epochs, samples_per_step=config.batch_size * config.grad_accum
    )
    device = _device(ctx)
    ctx.progress(0.05, stage=f"Training ({run.get_strategy_display().lower()}) on {device}")
    try:
        result = ft.finetune(
            base_dir,
            run.dataset_version.dataset.modality,
            data.class_names,
            train=data.train,
            val=data.val,
            config=config,
            work_dir=tmp / "work",
            device=device,
            resume=resume,
            on_step=reporter.step,
            on_epoch=reporter.epoch,
            on_search_step=reporter.search_step,
        )
    except JobCancelled:
        # Cancelled by a person: nobody will resume, so the checkpoints go. (Taken over
        # by a newer attempt instead: that attempt needs them, so they stay.)
        if Job.objects.filter(pk=ctx.job_id, status=Job.Status.CANCELLED).exists():
            _remove_checkpoints(run.pk)
        raise
    except ValueError as exc:
        # The ML code names what is wrong with the data or settings in words.
        logger.warning("fine-tune %s could not train", run.pk, exc_info=True)
        raise PortalError(f"Training could not run: {exc}") from exc
    reporter.flush()
    if result.lr_search:
        ctx.log(_search_summary(result))
    ctx.log(
        f"Trained {result.epochs_run} of {config.epochs} epochs ({result.steps} steps) in "
        f"{float(result.train_seconds):.1f} s; best epoch {result.best_epoch}"
        + (
            f"; stopped early: validation macro-F1 did not improve for {config.patience} epochs"
            if result.stopped_early
            else ""
        )
    )
    return result


def _search_summary(result) -> str:
    """One line: which learning rate the search chose, from what, on what."""
    tried = ", ".join(
        f"{t['learning_rate']:g} (macro-F1 {t['val_macro_f1']:.3f})" for t in result.lr_search
    )
    return (
        f"Learning rate {result.learning_rate:g} chosen on the validation split after one "
        f"epoch at each of {tried}; the search took {result.search_seconds:.1f} s more"
    )


def _evaluate(ctx, run, base_dir: Path, data: _Split, config, result) -> _Evaluation:
    """The test split scored for the fine-tune and for the non-transfer baseline."""
    from jobs.ml import evaluate  # sklearn: loaded by workers only, not every web process

    modality = run.dataset_version.dataset.modality
    device = _device(ctx)
    ctx.progress(0.88, stage="Evaluating on the test split")
    evaluated = time.perf_counter()
    proba = ft.predict_proba(
        Path(result.output_dir),
        modality,
        data.test[0],
        device=device,
        max_length=config.max_length,
        base_model_dir=base_dir if run.is_adapter else None,
    )
    metrics = evaluate.classification_report(
        data.test[1], proba, data.class_names, slices=data.test_slices
    )
    ctx.progress(0.92, stage="Training the baseline")
    fit = evaluate.image_baseline if modality == "vision" else evaluate.text_baseline
    baseline_proba = fit(
        data.train[0], data.train[1], data.test[0], len(data.class_names), seed=config.seed
    )
    baseline = evaluate.classification_report(
        data.test[1], baseline_proba, data.class_names, slices=data.test_slices
    )
    baseline["method"] = (
        "logistic regression on downscaled pixels"
        if modality == "vision"
        else "TF-IDF (word 1-2 grams) + logistic regression"
    )
    ctx.progress(0.93, stage="Fitting a linear head on the frozen base features")
    frozen_proba = evaluate.frozen_probe(
        base_dir,
        modality,
        data.train[0],
        data.train[1],
        data.test[0],
        len(data.class_names),
        seed=config.seed,
        device=device,
        max_length=config.max_length,
    )
    frozen = evaluate.classification_report(data.test[1], frozen_proba, data.class_names)
    # Only the headline figures: the page and the card set it beside the fine-tune.
    baseline["frozen_head"] = {
        "accuracy": frozen["accuracy"],
        "macro_f1": frozen["macro_f1"],
        "method": FROZEN_HEAD_METHOD,
    }
    seconds = time.perf_counter() - evaluated
    emissions = evaluate.energy_estimate(
        seconds=float(result.train_seconds) + float(result.search_seconds) + seconds,
        device=device,
        gpu_name=_gpu_name(ctx.device),
    )
    ctx.log(
        f"Test accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}; "
        f"baseline {baseline['accuracy']:.3f} / {baseline['macro_f1']:.3f}"
    )
    ctx.log(transfer_verdict(metrics, baseline))
    ctx.log(frozen_verdict(metrics, baseline["frozen_head"]))
    return _Evaluation(metrics=metrics, baseline=baseline, seconds=seconds, emissions=emissions)


def _training_record(ctx, run, data: _Split, result, evaluation, checkpoint, began) -> dict:
    """What the run page and the card say of training: sizes, epochs, time, device, memory."""
    return {
        "n_train": len(data.train[1]),
        "n_val": len(data.val[1]),
        "n_test": len(data.test[1]),
        "classes": data.class_names,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "steps": result.steps,
        "samples_seen": result.samples_seen,
        # Training time of the epochs behind the weights, over every attempt that made them.
        "train_seconds": float(result.train_seconds),
        # The learning-rate search: the rate trained at, each rate tried and the time
        # the rates not chosen took (the cost of the search beyond the run itself).
        "learning_rate": result.learning_rate,
        "lr_search": result.lr_search,
        "search_seconds": float(result.search_seconds),
        "eval_seconds": evaluation.seconds if evaluation is not None else 0.0,
        "attempt_wall_seconds": time.perf_counter() - began,
        "precision": getattr(result, "precision", ""),
        "device": ctx.device,
        "attempts": ctx.attempt,
        "resumed_from_epoch": checkpoint.get("epoch"),
        "peak_memory_bytes": result.peak_memory_bytes,
        "trainable_parameters": result.trainable_parameters,
        "total_parameters": result.total_parameters,
    }


# --- study runs: validated now, scored on test only if chosen ---------------------------


def _keep_for_study(ctx, run, data: _Split, result, checkpoint, began) -> dict:
    """Keep the best-validation weights and what validation said; the test split stays unread.

    The weights go to storage next to the run's checkpoints (``kept_weights``);
    the study's choice later scores them on test once and registers them.
    """
    from jobs.ml import evaluate  # sklearn: loaded by workers only

    ctx.progress(0.9, stage="Keeping the best-validation weights for the study")
    device = _device(ctx)
    emissions = evaluate.energy_estimate(
        seconds=float(result.train_seconds) + float(result.search_seconds),
        device=device,
        gpu_name=_gpu_name(ctx.device),
    )
    training = _training_record(ctx, run, data, result, None, checkpoint, began)
    training["validation"] = _best_validation(run, result)
    kept = _store_checkpoint(
        Path(result.output_dir), run_id=run.pk, attempt=ctx.attempt, stem="best-validation"
    )
    kept["epoch"] = int(result.best_epoch)
    try:
        services.finetune_run_update(
            ctx=ctx, run_id=run.pk, training=training, emissions=emissions, kept_weights=kept
        )
    except JobCancelled:
        default_storage.delete(kept["name"])  # this attempt no longer owns the run
        raise
    _remove_checkpoints(run.pk, keep=kept["name"])
    validation = training["validation"]
    ctx.log(
        f"Validation accuracy {validation.get('accuracy', 0):.3f}, macro-F1 "
        f"{validation.get('macro_f1', 0):.3f} (epoch {result.best_epoch}); part of study "
        f"#{run.study_id}: not scored on test and not registered unless the study chooses it"
    )
    ctx.progress(1.0, stage="Validated; waiting for the study's choice")
    run.refresh_from_db(fields=["training", "kept_weights"])
    return _deferred_result(run)


def _best_validation(run, result) -> dict:
    """The validation report of the epoch whose weights were kept."""
    run.refresh_from_db(fields=["curves"])
    epochs = (run.curves or {}).get("epochs") or []
    best = next((e for e in epochs if e.get("epoch") == result.best_epoch), None)
    best = best or (epochs[-1] if epochs else {})
    return {
        "epoch": best.get("epoch"),
        "accuracy": best.get("val_accuracy"),
        "macro_f1": best.get("val_macro_f1"),
        "loss": best.get("val_loss"),
    }


def _deferred_result(run) -> dict:
    validation = (run.training or {}).get("validation") or {}
    return {
        "deferred": True,
        "study": run.study_id,
        "val_accuracy": validation.get("accuracy"),
        "val_macro_f1": validation.get("macro_f1"),
    }


@register(Job.Kind.STUDY_CHOICE, queue="gpu")
def study_choice(ctx: JobContext) -> dict:
    """Score a study's chosen run on the test split, once, and register it like any fine-tune."""
    study = Study.objects.get(final_job_id=ctx.job_id)
    run = FineTuneRun.objects.select_related(*_RUN_RELATED).get(pk=study.chosen_run_id)
    if run.output_version_id:
        ctx.log(f"Already registered as {run.output_version.model.repo_id}")
    else:
        _score_and_register(ctx, run)
        run.refresh_from_db()
    _remove_checkpoints(run.pk)
    study_services.study_decided(ctx=ctx, study_id=study.pk)
    ctx.log(f"Registered {run.output_version.model.repo_id} {run.output_version.label} (in review)")
    ctx.progress(1.0, stage="Done")
    return {"study": study.pk, "run": run.pk, **_finetune_result(run, run.output_version)}


def _score_and_register(ctx, run) -> None:
    if not run.kept_weights:
        raise PortalError(f"Fine-tune #{run.pk} kept no weights to score.")
    ctx.progress(0.0, stage="Loading the base model")
    base_dir = materialize_version(run.base_version, settings.MODEL_CACHE_DIR)
    with ctx.workspace() as tmp:
        data = _training_data(ctx, run, tmp)
        config = _config_of(run)
        ctx.progress(0.5, stage="Fetching the kept weights")
        result = _kept_result(run, _fetch_checkpoint(run.kept_weights, tmp))
        if run.metrics and run.baseline:
            # An earlier attempt scored it: the test split is scored once.
            evaluation = _Evaluation(
                metrics=run.metrics,
                baseline=run.baseline,
                seconds=float(run.training.get("eval_seconds") or 0.0),
                emissions=run.emissions,
            )
        else:
            evaluation = _evaluate(ctx, run, base_dir, data, config, result)
        training = {**run.training, "eval_seconds": evaluation.seconds}
        services.finetune_run_update(
            ctx=ctx,
            run_id=run.pk,
            metrics=evaluation.metrics,
            baseline=evaluation.baseline,
            training=training,
            emissions=evaluation.emissions,
        )
        _write_and_register(ctx, run, data, config, result, evaluation, training)


def _kept_result(run, folder: Path) -> ft.TrainResult:
    """The training outcome as the deferred attempt recorded it, over the fetched weights."""
    t = run.training
    return ft.TrainResult(
        output_dir=folder,
        curves=list((run.curves or {}).get("epochs") or []),
        best_epoch=t["best_epoch"],
        epochs_run=t["epochs_run"],
        stopped_early=t["stopped_early"],
        steps=t["steps"],
        samples_seen=t["samples_seen"],
        train_seconds=t["train_seconds"],
        peak_memory_bytes=t.get("peak_memory_bytes"),
        trainable_parameters=t["trainable_parameters"],
        total_parameters=t["total_parameters"],
        precision=t.get("precision") or "fp32",
        learning_rate=t.get("learning_rate"),
        lr_search=list(t.get("lr_search") or []),
        search_seconds=float(t.get("search_seconds") or 0.0),
    )


def _write_and_register(ctx, run, data: _Split, config, result, evaluation, training):
    """Write the model card into the output folder and register the folder as a version."""
    ctx.progress(0.95, stage="Writing the model card")
    output = Path(result.output_dir)
    base = run.base_version
    if run.is_adapter:
        _point_adapter_at_base(output, base)
    text = _model_card(ctx, run, data, config, result, evaluation, training)
    (output / "README.md").write_text(text, encoding="utf-8")
    ctx.progress(0.97, stage="Registering the new version")
    metrics, baseline = evaluation.metrics, evaluation.baseline
    return services.finetune_output_register(
        ctx=ctx,
        run_id=run.pk,
        folder=output,
        title=f"{base.model.title} fine-tuned on {run.dataset_version.dataset.name}",
        summary=(
            f"{run.get_strategy_display()} fine-tune of {base.model.repo_id} "
            f"{base.label} on {run.dataset_version.dataset.name}: test accuracy "
            f"{metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
            f"(baseline {baseline['accuracy']:.3f})."
        ),
    )


def _model_card(ctx, run, data: _Split, config, result, evaluation, training) -> str:
    base = run.base_version
    modality = run.dataset_version.dataset.modality
    dataset_ids = [f"sha256:{run.dataset_version.sha256}"]
    if run.test_dataset_version:
        dataset_ids.append(f"sha256:{run.test_dataset_version.sha256}")
    return cards.build_model_card(
        repo_id=services.finetune_repo_id(run),
        base_repo_id=base.model.repo_id,
        base_revision=base.revision,
        relation="adapter" if run.is_adapter else "finetune",
        license_id=base.license.spdx_id,
        pipeline_tag="image-classification" if modality == "vision" else "text-classification",
        dataset_ids=dataset_ids,
        class_names=data.class_names,
        metrics=evaluation.metrics,
        baseline=evaluation.baseline,
        hyperparameters=_trained_settings(config, result),
        strategy=run.strategy,
        training={
            "device": ctx.device,
            "seconds": training["train_seconds"] + training["search_seconds"],
            "gpu_hours": evaluation.emissions["gpu_hours"],
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "samples": result.samples_seen,
            "train_examples": training["n_train"],
            "validation_examples": training["n_val"],
            "test_examples": training["n_test"],
            "split": run.get_split_display(),
        },
        emissions=evaluation.emissions,
        baseline_name=evaluation.baseline["method"],
        intended_use=_intended_use(run, data.class_names, modality),
        limitations=base.limitations,
        bias_notes=base.bias_notes,
        provenance=_provenance(ctx, run),
        selection=_selection(run),
    )


def _selection(run) -> dict | None:
    """The study this run won, for its card; None for a run launched on its own."""
    study = Study.objects.filter(chosen_run_id=run.pk).first() if run.study_id else None
    return study_selection(study) if study is not None else None


def _trained_settings(config, result) -> dict:
    """The settings as trained: the searched rate replaces the centre the form held."""
    settings_used = _as_dict(config)
    if result.lr_search:
        settings_used["learning_rate"] = result.learning_rate
        settings_used["lr_search"] = "chosen on validation from " + ", ".join(
            f"{t['learning_rate']:g}" for t in result.lr_search
        )
    return settings_used


def _provenance(ctx, run) -> dict:
    base = run.base_version
    return {
        "base_model": f"{base.model.repo_id}@{base.revision}",
        "base_license": base.license.spdx_id,
        "dataset": str(run.dataset_version),
        "dataset_sha256": run.dataset_version.sha256,
        "test_dataset_sha256": getattr(run.test_dataset_version, "sha256", None),
        "split": run.split,
        "split_params": run.split_params,
        "finetune_run": run.pk,
        "job": run.job_id,
        "requested_by": run.requested_by.get_username() if run.requested_by else None,
        "attempts": ctx.attempt,
    }


def _finetune_result(run, version) -> dict:
    run.refresh_from_db(fields=["metrics", "baseline"])
    return {
        "version_id": version.pk,
        "repo_id": version.model.repo_id,
        "label": version.label,
        "kind": version.kind,
        "accuracy": run.metrics.get("accuracy"),
        "macro_f1": run.metrics.get("macro_f1"),
        "baseline_accuracy": run.baseline.get("accuracy"),
    }


def _point_adapter_at_base(output: Path, base) -> None:
    """peft records the base as the worker's local folder; name it as the catalogue does.

    With the repo id and pinned revision, ``PeftModel.from_pretrained`` run
    against the portal's Hugging Face endpoint finds the exact base.
    """
    path = output / "adapter_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = base.model.repo_id
    data["revision"] = base.revision
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")


def _gpu_name(device: str) -> str | None:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` -> ``NVIDIA H100 80GB HBM3``."""
    if device.startswith("cuda") and "(" in device:
        return device.split("(", 1)[1].rstrip(")")
    return None


def _intended_use(run, class_names: list[str], modality: str) -> str:
    what = "texts" if modality == "text" else "images"
    shown = ", ".join(class_names[:10]) + (" …" if len(class_names) > 10 else "")
    return (
        f"Classifies {what} into {len(class_names)} classes ({shown}), as in the dataset "
        f"{run.dataset_version.dataset.name} it was fine-tuned on. It was made for its "
        "requester's use of that data and has not been reviewed for production: in the model "
        "zoo it is a draft until a steward publishes it, and any use stays within the base "
        "model's license and the reuse approvals that cover it. Check the evaluation below, "
        "its slices and the baseline before relying on it; data unlike the training data "
        "may be classified worse than the test figures suggest."
    )


def _as_dict(report) -> dict:
    data = asdict(report) if is_dataclass(report) else dict(vars(report))
    return {k: (float(v) if isinstance(v, float) else v) for k, v in data.items()}


# --- checkpoints ---------------------------------------------------------------------------


def _checkpoint_prefix(run_id: int) -> str:
    return f"checkpoints/finetune-{run_id}"


def _store_checkpoint(
    folder: Path, *, run_id: int, attempt: int, epoch: int = 0, stem: str = ""
) -> dict:
    """Zip a checkpoint folder into storage (any backend); returns its name, hash and size.

    ``stem`` names the archive instead of the attempt and epoch (a study run's kept weights).
    """
    # Next to the checkpoint, inside the attempt's workspace, so a kill leaves nothing elsewhere.
    with tempfile.TemporaryDirectory(prefix="checkpoint-", dir=folder.parent) as tmp:
        archive = Path(tmp) / "checkpoint.zip"
        # Weights do not compress; storing keeps the upload as fast as a copy.
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(folder).as_posix())
        # Verified under a temporary name before the checkpoint's own name shows it, so a
        # resume never finds a truncated archive (the bucket may be another host's only link).
        return save_verified(
            archive, f"{_checkpoint_prefix(run_id)}/{stem or f'attempt{attempt}-epoch{epoch}'}.zip"
        )


def _fetch_checkpoint(checkpoint: dict, dest: Path) -> Path:
    """Download and unpack the checkpoint an earlier attempt left, checking its hash."""
    archive = copy_blob_to(checkpoint["name"], dest / "checkpoint.zip")
    if digest_file(archive).sha256 != checkpoint["sha256"]:
        raise PortalError(f"Checkpoint {checkpoint['name']} does not match its recorded hash.")
    folder = dest / "checkpoint"
    folder.mkdir()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            target = (folder / member.filename).resolve()
            if not target.is_relative_to(folder.resolve()):
                raise PortalError(f"Checkpoint member {member.filename!r} leaves its folder.")
        zf.extractall(folder)  # every member was checked above
    archive.unlink()
    return folder


def _remove_checkpoints(run_id: int, *, keep: str = "") -> None:
    """Checkpoints are only for resuming; once the version is registered they go.

    ``keep`` names one stored file to leave (a study run's kept weights).
    """
    prefix = _checkpoint_prefix(run_id)
    try:
        _, names = default_storage.listdir(prefix)
        for name in names:
            if f"{prefix}/{name}" != keep:
                default_storage.delete(f"{prefix}/{name}")
    except (FileNotFoundError, NotImplementedError, OSError):
        logger.warning("could not remove the checkpoints of fine-tune %s", run_id, exc_info=True)


class _TrainingReporter:
    """The training callbacks: progress, live curves and a checkpoint per epoch.

    Progress is written at most once a second and curves at most every two
    seconds (each write also checks for cancellation and renews the lease);
    long runs keep about a thousand loss points, each the mean of its window.
    """

    MAX_POINTS = 1000
    PROGRESS_EVERY = 1.0
    CURVES_EVERY = 2.0

    def __init__(self, ctx: JobContext, run, *, epochs: int, samples_per_step: int = 0) -> None:
        self.ctx = ctx
        self.run = run
        self.epochs = epochs
        self.samples_per_step = samples_per_step
        self.began: tuple[float, int] | None = None  # (time, step) of this attempt's first step
        self.pending: list[list[float]] = []
        self.window: list[float] = []
        self.last_point = 0
        self.last_progress = 0.0
        self.last_flush = time.monotonic()

    def step(self, step: int, total_steps: int, loss: float) -> None:
        every = max(1, -(-total_steps // self.MAX_POINTS))
        self.window.append(float(loss))
        if step - self.last_point >= every or step >= total_steps:
            self.pending.append([int(step), sum(self.window) / len(self.window)])
            self.window, self.last_point = [], step
        now = time.monotonic()
        if now - self.last_progress >= self.PROGRESS_EVERY or step >= total_steps:
            self.last_progress = now
            per_epoch = max(1, -(-total_steps // self.epochs))
            epoch = min(self.epochs, (step - 1) // per_epoch + 1)
            self.ctx.progress(
                0.05 + 0.8 * step / max(total_steps, 1),
                stage=f"epoch {epoch}/{self.epochs}, step {step}/{total_steps}"
                + self._pace(step, total_steps, now)
                + f", loss {loss:.4f}",
            )
        if now - self.last_flush >= self.CURVES_EVERY:
            self.flush()

    def search_step(
        self, index: int, count: int, rate: float, step: int, steps: int, loss: float
    ) -> None:
        """Progress of the learning-rate search (no curve points: those runs are discarded)."""
        now = time.monotonic()
        if now - self.last_progress < self.PROGRESS_EVERY and step < steps:
            return
        self.last_progress = now
        # Drawn inside the first epoch's share of the bar: the chosen rate's first
        # epoch is the search's, and the bar then moves on from epoch 2 without
        # going back.
        share = (index + step / max(steps, 1)) / count / self.epochs
        self.ctx.progress(
            0.05 + 0.8 * share,
            stage=f"choosing the learning rate: trying {rate:g} ({index + 1} of {count}), "
            f"step {step}/{steps}, loss {loss:.4f}",
        )

    def _pace(self, step: int, total_steps: int, now: float) -> str:
        """ ", 14.2 samples/s, about 3 min left", measured over this attempt's steps."""
        if self.began is None:
            self.began = (now, step)
            return ""
        seconds, steps = now - self.began[0], step - self.began[1]
        if seconds <= 0 or steps <= 0:
            return ""
        per_second = steps / seconds
        left = (total_steps - step) / per_second
        pace = (
            f", {per_second * self.samples_per_step:.1f} samples/s" if self.samples_per_step else ""
        )
        if left >= 90:
            return pace + f", about {round(left / 60)} min left"
        return pace + f", about {max(1, round(left))} s left"

    def flush(self, epoch: dict | None = None) -> None:
        steps, self.pending = self.pending, []
        services.finetune_curves_append(ctx=self.ctx, run_id=self.run.pk, steps=steps, epoch=epoch)
        self.last_flush = time.monotonic()

    def epoch(self, report, checkpoint_dir: Path) -> None:
        self.flush(epoch=_as_dict(report))
        stored = _store_checkpoint(
            Path(checkpoint_dir), run_id=self.run.pk, attempt=self.ctx.attempt, epoch=report.epoch
        )
        checkpoint = {
            **stored,
            "epoch": int(report.epoch),
            "step": int(report.step),
            "attempt": self.ctx.attempt,
        }
        try:
            previous = services.finetune_checkpoint_record(
                ctx=self.ctx, run_id=self.run.pk, checkpoint=checkpoint
            )
        except JobCancelled:
            default_storage.delete(stored["name"])  # this attempt no longer owns the run
            raise
        if previous.get("name") and previous["name"] != stored["name"]:
            default_storage.delete(previous["name"])
        self.ctx.log(
            f"epoch {report.epoch}/{self.epochs}: train loss {report.train_loss:.4f}, "
            f"validation loss {report.val_loss:.4f}, accuracy {report.val_accuracy:.3f}, "
            f"macro-F1 {report.val_macro_f1:.3f} ({report.seconds:.1f} s); checkpoint stored"
        )
