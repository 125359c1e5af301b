"""The release-check job: one handler per check kind, on the fine-tune's own splits.

Each handler recomputes the run's train / validation / test split exactly as
its fine-tune did (``jobs.workers.finetunes.split_of``: same data, split
parameters and seed), scores the registered output version, and stores one
``zoo.ReleaseCheck`` verdict, which also rewrites the card's "Release checks"
section. A check that cannot run is recorded as such and never counts as passed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from django.conf import settings

from jobs.engine import JobCancelled, JobContext, register
from jobs.ml import finetune as ft
from jobs.ml.release_card import (
    calibration_markdown,
    drift_markdown,
    forgetting_markdown,
    leakage_markdown,
)
from jobs.models import DriftBatch, FineTuneRun, Job
from jobs.services import drift as drift_services
from jobs.services import release_checks as services
from jobs.workers.finetunes import split_of
from portal.errors import PortalError
from zoo.models import ReleaseCheck
from zoo.storage import materialize_version


@register(Job.Kind.RELEASE_CHECK, queue="gpu")
def release_check(ctx: JobContext) -> dict:
    """Run the check the job names and store its verdict."""
    check_id = int(ctx.params["check_id"])
    check = ReleaseCheck.objects.select_related("version__model").filter(pk=check_id).first()
    if check is None:
        raise PortalError(f"Release check #{check_id} no longer exists.")
    run_id = ctx.params.get("run_id")  # None for a kind that also checks base models
    run = (
        FineTuneRun.objects.select_related(
            "base_version__model", "dataset_version__dataset", "test_dataset_version__dataset"
        ).get(pk=int(run_id))
        if run_id is not None
        else None
    )
    handler = HANDLERS[check.kind]
    services.release_check_started(ctx=ctx, check_id=check_id)
    began = time.perf_counter()
    try:
        with ctx.workspace() as tmp:
            measure, summary, result = handler(ctx, check, run, tmp)
    except JobCancelled:
        if Job.objects.filter(pk=ctx.job_id, status=Job.Status.CANCELLED).exists():
            services.checks.release_check_error(check_id=check_id, error="Cancelled.")
        raise
    except PortalError as exc:
        services.release_check_failed(ctx=ctx, check_id=check_id, error=exc.message)
        raise
    except ValueError as exc:
        message = f"The {check.kind} check could not run: {exc}"
        services.release_check_failed(ctx=ctx, check_id=check_id, error=message)
        raise PortalError(message) from exc
    except Exception as exc:
        # A bug: the job records the traceback; the check must not stay "running".
        services.release_check_failed(
            ctx=ctx, check_id=check_id, error=f"The check failed: {type(exc).__name__}: {exc}"
        )
        raise
    seconds = time.perf_counter() - began
    result["seconds"] = seconds
    # A drift verdict may also tell the owners (once per crossing of the retrain band).
    done = (
        drift_services.drift_check_done
        if check.kind == ReleaseCheck.Kind.DRIFT
        else services.release_check_done
    )
    stored = done(
        ctx=ctx, check_id=check_id, measure=measure, summary=summary, result=result, seconds=seconds
    )
    ctx.log(f"{check.get_kind_display()}: {stored.status} ({summary[:300]})")
    ctx.progress(1.0, stage="Done")
    return {"check_id": check_id, "status": stored.status, "measure": measure}


def _device(ctx: JobContext) -> str:
    return "cuda" if ctx.device.startswith("cuda") else "cpu"


def _predictor(ctx: JobContext, run: FineTuneRun, version):
    """proba(inputs) of the registered output version, as its fine-tune evaluated it."""
    output_dir = materialize_version(version, settings.MODEL_CACHE_DIR)
    base_dir = (
        materialize_version(run.base_version, settings.MODEL_CACHE_DIR) if run.is_adapter else None
    )
    modality = run.dataset_version.dataset.modality
    max_length = int((run.config or {}).get("max_length", 128))

    def proba(inputs: list) -> np.ndarray:
        return ft.predict_proba(
            output_dir,
            modality,
            inputs,
            device=_device(ctx),
            max_length=max_length,
            base_model_dir=base_dir,
        )

    return proba


def _split(ctx: JobContext, run: FineTuneRun, tmp: Path):
    ctx.progress(0.05, stage="Recomputing the fine-tune's splits")
    data = split_of(run, tmp)
    trained = list(run.training.get("classes") or data.class_names)
    if trained != data.class_names:
        raise PortalError(
            "The data no longer splits into the classes the fine-tune was trained on "
            f"({', '.join(trained)}); the check cannot reproduce its splits."
        )
    ctx.log(
        f"{len(data.train[1])} training, {len(data.val[1])} validation and "
        f"{len(data.test[1])} test rows, as the fine-tune split them"
    )
    return data


# --- calibration and decision threshold ----------------------------------------------------


def _calibration_scores(y: np.ndarray, proba: np.ndarray) -> dict:
    from jobs.ml.evaluate import expected_calibration_error, multiclass_brier

    p = np.clip(proba, 1e-12, 1.0)
    return {
        "ece": expected_calibration_error(y, proba),
        "nll": float(-np.mean(np.log(p[np.arange(y.size), y]))),
        "brier": multiclass_brier(y, proba),
        "accuracy": float(np.mean(proba.argmax(axis=1) == y)),
    }


def _calibration(ctx: JobContext, check: ReleaseCheck, run: FineTuneRun, tmp: Path):
    from jobs.ml import calibration as cal

    data = _split(ctx, run, tmp)
    proba_of = _predictor(ctx, run, check.version)
    ctx.progress(0.3, stage="Scoring the validation and test splits")
    val_logits = cal.logits_from_proba(proba_of(data.val[0]))
    test_logits = cal.logits_from_proba(proba_of(data.test[0]))
    ctx.progress(0.7, stage="Fitting the temperature on validation")
    temperature = cal.fit_temperature(val_logits, data.val[1])
    before = _calibration_scores(data.test[1], cal.apply_temperature(test_logits, 1.0))
    after = _calibration_scores(data.test[1], cal.apply_temperature(test_logits, temperature))
    result: dict = {
        "temperature": temperature,
        "n_val": int(data.val[1].size),
        "n_test": int(data.test[1].size),
        "test_before": before,
        "test_after": after,
        "classes": data.class_names,
    }
    decision_words = ""
    if check.params.get("target"):
        result["decision"] = _decision(check.params, data, val_logits, test_logits, temperature)
        d = result["decision"]
        decision_words = (
            f" For {d['positive_class']!r} it chose a decision threshold of "
            f"{d['threshold']:.4f} on validation for {d['target']} >= {d['target_value']:g} "
            f"({'reached' if d['validation']['reached'] else 'NOT reached'} there); on the test "
            f"split that threshold gives recall {_fmt(d['test']['recall'])} and precision "
            f"{_fmt(d['test']['precision'])}."
        )
    bound = float(np.exp(cal.LOG_T_BOUND))
    if not 1 / bound * 1.001 < temperature < bound / 1.001:
        decision_words += (
            f" The temperature sits at the end of the range searched ({1 / bound:.3f} to "
            f"{bound:.1f}): the confidences are far off, and scaling alone may not fix them."
        )
    result["card_markdown"] = calibration_markdown(result, repo_id=check.version.model.repo_id)
    summary = (
        f"Fitted one temperature ({temperature:.3f}) on the {result['n_val']} validation rows "
        f"the fine-tune held out, and measured on its {result['n_test']} test rows the expected "
        f"calibration error (15 bins, top-class confidence): {before['ece']:.4f} as trained, "
        f"{after['ece']:.4f} after scaling (threshold {check.threshold:g}).{decision_words} "
        "Temperature scaling changes confidences, not which class is predicted, so accuracy "
        "is unchanged. Not measured: calibration on data unlike the test split, per slice or "
        f"per class; with {result['n_test']} test rows the ECE itself is noisy."
    )
    return after["ece"], summary, result


def _fmt(value) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _decision(params: dict, data, val_logits, test_logits, temperature: float) -> dict:
    from jobs.ml import calibration as cal

    positive = params["positive_class"]
    index = data.class_names.index(positive)
    val_score = cal.apply_temperature(val_logits, temperature)[:, index]
    test_score = cal.apply_temperature(test_logits, temperature)[:, index]
    chosen = cal.choose_threshold(
        (data.val[1] == index).astype(np.int64),
        val_score,
        target=params["target"],
        value=float(params["target_value"]),
    )
    on_test = cal.binary_rates(
        (data.test[1] == index).astype(np.int64), test_score, chosen["threshold"]
    )
    return {
        "positive_class": positive,
        "positive_index": index,
        "target": params["target"],
        "target_value": float(params["target_value"]),
        "threshold": chosen["threshold"],
        "validation": chosen,
        "test": on_test,
    }


# --- train/test leakage --------------------------------------------------------------------


def _leakage(ctx: JobContext, check: ReleaseCheck, run: FineTuneRun, tmp: Path):
    from jobs.ml import leakage
    from jobs.ml.evaluate import classification_report

    data = _split(ctx, run, tmp)
    modality = run.dataset_version.dataset.modality
    train, test = data.train[0], data.test[0]
    if modality == "vision":
        ctx.progress(0.3, stage="Hashing the images")
        found = leakage.find_image_duplicates(train, test)
        method = "64-bit difference hashes (dHash) within 4 bits"
    else:
        from jobs.ml.features import extract_text_features

        ctx.progress(0.2, stage="Embedding the training and test texts with the base model")
        base_dir = materialize_version(run.base_version, settings.MODEL_CACHE_DIR)
        device = _device(ctx)
        train_e = extract_text_features(base_dir, train, device=device, max_length=128)
        test_e = extract_text_features(base_dir, test, device=device, max_length=128)
        cosine = float(check.params.get("cosine_threshold", 0.95))
        found = leakage.find_text_duplicates(
            train, test, train_embeddings=train_e, test_embeddings=test_e, cosine_threshold=cosine
        )
        method = (
            "normalised-text hashes (case, accents, punctuation and spacing ignored) and a "
            f"cosine above {cosine:g} between the base model's mean-pooled embeddings "
            "(centred on the training rows' mean)"
        )
    ctx.progress(0.7, stage="Scoring the test split with and without the duplicates")
    proba = _predictor(ctx, run, check.version)(test)
    y = data.test[1]
    everything = classification_report(y, proba, data.class_names)
    leaked = sorted({f["test_index"] for f in found})
    keep = np.setdiff1d(np.arange(y.size), np.array(leaked, dtype=np.int64))
    clean = None
    if keep.size:
        report = classification_report(y[keep], proba[keep], data.class_names)
        clean = {k: report[k] for k in ("n", "accuracy", "macro_f1")}
    share = len(leaked) / max(y.size, 1)
    examples = [
        {
            **f,
            "test_text": str(test[f["test_index"]]) if modality == "text" else "",
            "train_text": str(train[f["train_index"]]) if modality == "text" else "",
        }
        for f in found[:20]
    ]
    result = {
        "method": method,
        "n_train": int(data.train[1].size),
        "n_test": int(y.size),
        "n_duplicates": len(leaked),
        "n_exact": sum(1 for f in found if f["how"] == "exact"),
        "share": share,
        "all": {k: everything[k] for k in ("n", "accuracy", "macro_f1")},
        "clean": clean,
        "examples": examples,
    }
    result["card_markdown"] = leakage_markdown(result)
    rescored = (
        f"Test accuracy {everything['accuracy']:.3f} on all {y.size} rows, "
        f"{clean['accuracy']:.3f} on the {clean['n']} without them."
        if clean
        else "Every test row duplicates a training row: there is no clean test score."
    )
    summary = (
        f"Compared each of the {y.size} test rows with the {result['n_train']} training rows by "
        f"{method}: {len(leaked)} test rows ({share:.1%}) repeat a training row "
        f"({result['n_exact']} exactly). {rescored} Not measured: duplicates within the "
        "validation split, paraphrases the embedding does not bring above the cosine "
        "threshold, and overlap with the base model's own pretraining data."
    )
    return share, summary, result


# --- forgetting ----------------------------------------------------------------------------


def _forgetting(ctx: JobContext, check: ReleaseCheck, run: FineTuneRun, tmp: Path):
    from jobs.ml.forgetting import representation_change
    from jobs.ml.reference import reference_texts

    texts = reference_texts()  # the probes' general sample: "ordinary" text, not the task's
    ctx.progress(0.2, stage=f"Embedding {len(texts)} reference sentences before and after")
    base_dir = materialize_version(run.base_version, settings.MODEL_CACHE_DIR)
    output_dir = materialize_version(check.version, settings.MODEL_CACHE_DIR)
    result = representation_change(
        base_dir,
        output_dir,
        texts,
        base_model_dir=base_dir if run.is_adapter else None,
        device=_device(ctx),
        max_length=int((run.config or {}).get("max_length", 128)),
        k=int(check.params.get("k", 10)),
    )
    result["card_markdown"] = forgetting_markdown(result)
    summary = (
        f"Compared the base's and the fine-tune's mean-pooled hidden states on the "
        f"{result['n']} reference sentences the probes use, layer by layer, with linear CKA "
        f"(1 = the same geometry): lowest {result['min_cka']:.3f} at "
        f"{'the embeddings' if result['min_layer'] == 0 else 'layer ' + str(result['min_layer'])}"
        f" (threshold {check.threshold:g}); {result['knn_agreement']:.1%} of each sentence's "
        f"{result['k']} nearest neighbours in the last layer are kept. Not measured: whether "
        "the base's own tasks got worse (no task of the base is scored), nor representations "
        "of data unlike the reference sentences."
    )
    return result["min_cka"], summary, result


# --- drift of production inputs ------------------------------------------------------------

# Rows predicted on each side, and rows of each side in the MMD test (its kernel is square).
DRIFT_ROWS = 2000
MMD_ROWS = 1000
PERMUTATIONS = 500
MIN_HELD_OUT = 20  # fewer held-out rows than this: compare with the training rows
DRIFT_SEED = 0


def _sample(items: list, cap: int, seed: int) -> list:
    if len(items) <= cap:
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=cap, replace=False))
    return [items[i] for i in keep]


def _drift(ctx: JobContext, check: ReleaseCheck, run: FineTuneRun, tmp: Path):
    from jobs.ml import drift
    from zoo.storage import copy_blob_to

    batch = DriftBatch.objects.filter(pk=int(check.params["batch"])).first()
    if batch is None:
        raise PortalError(f"Drift batch #{check.params['batch']} no longer exists.")
    path = copy_blob_to(batch.blob_name, tmp / f"batch.{batch.format}")
    texts = drift_services.read_batch_texts(path, fmt=batch.format, text_column=batch.text_column)
    data = _split(ctx, run, tmp)
    # The reference is the fine-tune's held-out rows (validation and test): the model is
    # over-confident on the rows it was fitted to, so against those even inputs of the
    # same kind read as drifted confidences. Too few held-out rows: the training rows.
    held_out = [str(t) for t in data.val[0]] + [str(t) for t in data.test[0]]
    if len(held_out) >= MIN_HELD_OUT:
        pool, pool_words = held_out, "held-out (validation and test) rows"
    else:
        pool, pool_words = [str(t) for t in data.train[0]], "training rows"
    reference = _sample(pool, DRIFT_ROWS, DRIFT_SEED)
    current = _sample(texts, DRIFT_ROWS, DRIFT_SEED)
    if len(reference) < 2 or len(current) < 2:
        raise PortalError("A drift check needs two or more reference rows and batch rows.")
    output_dir = materialize_version(check.version, settings.MODEL_CACHE_DIR)
    base_dir = (
        materialize_version(run.base_version, settings.MODEL_CACHE_DIR) if run.is_adapter else None
    )
    options = {
        "device": _device(ctx),
        "max_length": int((run.config or {}).get("max_length", 128)),
        "base_model_dir": base_dir,
    }
    ctx.progress(0.3, stage=f"Predicting {len(reference)} {pool_words}")
    ref_p, ref_e = drift.predict_and_embed(output_dir, reference, **options)
    ctx.progress(0.55, stage=f"Predicting {len(current)} production inputs")
    cur_p, cur_e = drift.predict_and_embed(output_dir, current, **options)
    ctx.progress(0.8, stage="Comparing the distributions")
    n_classes = ref_p.shape[1]
    psi_class, ref_share, cur_share = drift.class_psi(
        ref_p.argmax(axis=1), cur_p.argmax(axis=1), n_classes
    )
    psi_conf, edges, ref_conf, cur_conf = drift.confidence_psi(ref_p.max(axis=1), cur_p.max(axis=1))
    rng = np.random.default_rng(DRIFT_SEED)
    pick_ref = np.sort(rng.permutation(len(reference))[:MMD_ROWS])
    pick_cur = np.sort(rng.permutation(len(current))[:MMD_ROWS])
    mmd = drift.mmd_permutation_test(
        ref_e[pick_ref], cur_e[pick_cur], permutations=PERMUTATIONS, seed=DRIFT_SEED
    )
    classes = list(run.training.get("classes") or data.class_names)
    # PSI's chance level for two samples of one distribution: about (bins - 1)(1/n + 1/m).
    sizes = 1 / len(reference) + 1 / len(current)
    noise_class, noise_conf = (n_classes - 1) * sizes, len(edges) * sizes
    result = {
        "batch": batch.pk,
        "psi_chance": {"class": noise_class, "confidence": noise_conf},
        "n_batch_rows": len(texts),
        "n_batch": len(current),
        "n_pool": len(pool),
        "reference_rows": pool_words,
        "n_reference": len(reference),
        "classes": classes,
        "class_shares": {"reference": ref_share, "batch": cur_share},
        "psi_class": psi_class,
        "band": drift.band(psi_class),
        "psi_confidence": psi_conf,
        "band_confidence": drift.band(psi_conf),
        "confidence_bins": len(edges) + 1,
        "confidence_edges": edges,
        "confidence_shares": {"reference": ref_conf, "batch": cur_conf},
        "mmd": mmd,
        "caps": {"predicted": DRIFT_ROWS, "mmd": MMD_ROWS, "seed": DRIFT_SEED},
    }
    result["card_markdown"] = drift_markdown(result)
    summary = (
        f"Predicted {len(current)} of the {len(texts)} production inputs in batch #{batch.pk} and "
        f"{len(reference)} of the fine-tune's {len(pool)} {pool_words} (at most {DRIFT_ROWS} "
        f"each, drawn with seed {DRIFT_SEED}). PSI of the predicted classes {psi_class:.3f} "
        f"({result['band']}; threshold {check.threshold:g}), of the top-class confidence "
        f"{psi_conf:.3f} ({result['band_confidence']}; {len(edges) + 1} quantile bins of the "
        "reference rows). MMD² between the encoder's mean-pooled embeddings "
        f"{mmd['mmd2']:.5f}, permutation p-value {mmd['p_value']:.3f} ({mmd['permutations']} "
        f"permutations, {mmd['m']} and {mmd['n']} rows). Two samples of one distribution this "
        f"size give a PSI of about {noise_class:.2f} (classes) and {noise_conf:.2f} (confidence) "
        "by chance alone. Bands: below 0.1 stable, 0.1 to 0.25 "
        "watch, 0.25 and above retrain. "
        + (
            "The reference rows come from the fine-tune's own data but were not trained on. "
            if pool is held_out
            else f"Fewer than {MIN_HELD_OUT} rows were held out, so the reference is the rows "
            "the model was fitted to, on which it is more confident than on new rows of the "
            "same kind: the confidence PSI reads high sooner than the class PSI. "
        )
        + "Not measured: whether the predictions on these inputs "
        "are right (they have no labels), shifts that neither the answers nor the last layer's "
        "mean embedding show, and drift within a batch over time."
    )
    return psi_class, summary, result


HANDLERS = {
    ReleaseCheck.Kind.CALIBRATION: _calibration,
    ReleaseCheck.Kind.LEAKAGE: _leakage,
    ReleaseCheck.Kind.FORGETTING: _forgetting,
    ReleaseCheck.Kind.DRIFT: _drift,
}
