"""The release-check job: one handler per check kind, on the fine-tune's own splits.

Each handler recomputes the run's train / validation / test split exactly as
its fine-tune did (``jobs.workers.finetunes.split_of``: same data, split
parameters and seed), scores the registered output version, and stores one
``zoo.ReleaseCheck`` verdict, which also rewrites the card's "Release checks"
section. A check that cannot run is recorded as such and never counts as passed.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from django.conf import settings

from jobs.engine import JobCancelled, JobContext, register
from jobs.ml import finetune as ft
from jobs.ml.release_card import (
    association_markdown,
    calibration_markdown,
    drift_markdown,
    forgetting_markdown,
    inconsistency_markdown,
    leakage_markdown,
    serving_markdown,
    slices_markdown,
)
from jobs.models import DriftBatch, FineTuneRun, Job
from jobs.services import drift as drift_services
from jobs.services import release_checks as services
from jobs.workers.finetunes import split_of
from portal.errors import PortalError
from zoo.models import AssociationTestSet, ModelVersion, ReleaseCheck
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

    if run.dataset_version.dataset.modality == "vision":
        return _forgetting_images(ctx, check, run)
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


# Reference crops compared layer by layer (the probes' 64 come first) and labelled digits.
FORGETTING_IMAGES = 256
FORGETTING_DIGITS = 500


def _forgetting_images(ctx: JobContext, check: ReleaseCheck, run: FineTuneRun):
    from jobs.ml.features import image_settings
    from jobs.ml.forgetting import image_representation_change
    from jobs.ml.reference import reference_digits, reference_images

    base_dir = materialize_version(run.base_version, settings.MODEL_CACHE_DIR)
    output_dir = materialize_version(check.version, settings.MODEL_CACHE_DIR)
    size = image_settings(base_dir).size
    ctx.progress(
        0.2,
        stage=f"Running {FORGETTING_IMAGES} reference crops and {FORGETTING_DIGITS} digits "
        "through both backbones",
    )
    result = image_representation_change(
        base_dir,
        output_dir,
        reference_images(FORGETTING_IMAGES, size=size),
        reference_digits(FORGETTING_DIGITS, size=size),
        base_model_dir=base_dir if run.is_adapter else None,
        device=_device(ctx),
        k=int(check.params.get("k", 10)),
    )
    result["modality"] = "vision"
    result["verdict"] = _forgetting_verdict(result, check.threshold)
    result["card_markdown"] = forgetting_markdown(result)
    knn = result["labelled"]
    summary = (
        f"Compared the base's and the fine-tune's backbones (classification head left out) on "
        f"{result['n']} crops of scikit-learn's two sample photos (the probes' reference "
        f"images, {FORGETTING_IMAGES - 64} more crops of the same photos after their 64), "
        f"layer by layer with linear CKA of the pooled features (1 = the same geometry): "
        f"lowest {result['min_cka']:.3f} at {_layer_words(result['min_layer_name'])} (threshold "
        f"{check.threshold:g}); {result['knn_agreement']:.1%} of each crop's {result['k']} "
        "nearest neighbours in the final features are kept. The base's own ability was asked "
        f"on {knn['n']} labelled images of scikit-learn's handwritten digits (8 x 8 grey, "
        f"upscaled to {size} px): each gets the majority label of its {knn['k']} nearest "
        f"other digits in the frozen features; {knn['label_agreement']:.1%} keep the same "
        f"label after the fine-tune, and that kNN accuracy goes from "
        f"{knn['accuracy_before']:.3f} to {knn['accuracy_after']:.3f}. "
        f"{result['verdict']} Not measured: the base's own pretraining task (no task of the "
        "base is scored), colour, texture and natural scenes in the labelled set (digits are "
        "coarse grey shapes), and data unlike the reference photos."
    )
    return result["min_cka"], summary, result


def _layer_words(name: str) -> str:
    return f"the {name}" if name in ("embeddings", "stem", "head") else name


# A fall in the kNN accuracy on the digits larger than this is worth saying in words.
KNN_ACCURACY_DROP = 0.02


def _forgetting_verdict(result: dict, threshold: float) -> str:
    """The outcome in plain words: the judged CKA first, then what the digits say."""
    knn = result["labelled"]
    drop = knn["accuracy_before"] - knn["accuracy_after"]
    geometry = (
        f"Passed: every layer keeps a CKA of at least {threshold:g}."
        if result["min_cka"] >= threshold
        else f"Failed: {_layer_words(result['min_layer_name'])} moved further than the threshold "
        f"{threshold:g} allows."
    )
    if drop > KNN_ACCURACY_DROP:
        ability = (
            f"The frozen features also sort the digits worse (kNN accuracy down {drop:.3f}): "
            "the fine-tune lost some of what the base could tell apart."
        )
    else:
        ability = (
            "The frozen features sort the digits about as well as before, or better (kNN "
            f"accuracy down by no more than {KNN_ACCURACY_DROP:g})."
        )
    return f"{geometry} {ability}"


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


def _batch_inputs(batch: DriftBatch, tmp: Path, *, images: bool, classes=()):
    """(the batch's texts (non-blank, in file order) or image paths (by archive name), their
    labels when the batch carries them and ``classes`` are given, else None)."""
    from zoo import datasets
    from zoo.services.datasets import dataset_limits
    from zoo.storage import copy_blob_to

    path = copy_blob_to(batch.blob_name, tmp / f"drift-batch.{batch.format}")
    labelled = bool(batch.label_column and classes)
    if not images:
        return drift_services.read_batch_rows(
            path,
            fmt=batch.format,
            text_column=batch.text_column,
            label_column=batch.label_column if labelled else "",
        )
    dest = tmp / "drift-batch"
    dest.mkdir()
    try:
        paths, labels = datasets.extract_image_batch(
            path, dest, limits=dataset_limits(), classes=classes if labelled else ()
        )
    except datasets.DatasetError as exc:
        raise PortalError(" ".join(exc.messages)) from exc
    return paths, labels


def _embedder(ctx: JobContext, check: ReleaseCheck, run: FineTuneRun, *, images: bool):
    """inputs -> (probabilities, embeddings) of the checked version, as it was trained."""
    from jobs.ml import drift

    output_dir = materialize_version(check.version, settings.MODEL_CACHE_DIR)
    base_dir = (
        materialize_version(run.base_version, settings.MODEL_CACHE_DIR) if run.is_adapter else None
    )
    if images:
        return lambda inputs: drift.predict_and_embed_images(
            output_dir, inputs, device=_device(ctx), base_model_dir=base_dir
        )
    max_length = int((run.config or {}).get("max_length", 128))
    return lambda inputs: drift.predict_and_embed(
        output_dir, inputs, device=_device(ctx), max_length=max_length, base_model_dir=base_dir
    )


def _drift(ctx: JobContext, check: ReleaseCheck, run: FineTuneRun, tmp: Path):
    from jobs.ml import drift

    batch = DriftBatch.objects.filter(pk=int(check.params["batch"])).first()
    if batch is None:
        raise PortalError(f"Drift batch #{check.params['batch']} no longer exists.")
    images = run.dataset_version.dataset.modality == "vision"
    inputs, _ = _batch_inputs(batch, tmp, images=images)
    data = _split(ctx, run, tmp)
    # The reference is the fine-tune's held-out rows (validation and test): the model is
    # over-confident on the rows it was fitted to, so against those even inputs of the
    # same kind read as drifted confidences. Too few held-out rows: the training rows.
    kind = "images" if images else "rows"
    held_out = [_drift_input(t, images) for t in [*data.val[0], *data.test[0]]]
    if len(held_out) >= MIN_HELD_OUT:
        pool, pool_words = held_out, f"held-out (validation and test) {kind}"
    else:
        pool, pool_words = [_drift_input(t, images) for t in data.train[0]], f"training {kind}"
    reference = _sample(pool, DRIFT_ROWS, DRIFT_SEED)
    current = _sample(inputs, DRIFT_ROWS, DRIFT_SEED)
    if len(reference) < 2 or len(current) < 2:
        raise PortalError("A drift check needs two or more reference rows and batch rows.")
    embed = _embedder(ctx, check, run, images=images)
    ctx.progress(0.3, stage=f"Predicting {len(reference)} {pool_words}")
    ref_p, ref_e = embed(reference)
    ctx.progress(0.55, stage=f"Predicting {len(current)} production inputs")
    cur_p, cur_e = embed(current)
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
    # PSI's chance level for two samples of one distribution: about (bins - 1)(1/n + 1/m).
    sizes = 1 / len(reference) + 1 / len(current)
    result = {
        "batch": batch.pk,
        "modality": "vision" if images else "text",
        "embedding": IMAGE_EMBEDDING if images else TEXT_EMBEDDING,
        "psi_chance": {"class": (n_classes - 1) * sizes, "confidence": len(edges) * sizes},
        "n_batch_rows": len(inputs),
        "n_batch": len(current),
        "n_pool": len(pool),
        "reference_rows": pool_words,
        "n_reference": len(reference),
        "classes": list(run.training.get("classes") or data.class_names),
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
    summary = _drift_summary(check, result, held_out_used=pool is held_out)
    return psi_class, summary, result


TEXT_EMBEDDING = "the encoder's mean-pooled last-layer embeddings"
IMAGE_EMBEDDING = "the embeddings the classification head reads"


def _drift_input(item, images: bool):
    return Path(item) if images else str(item)


def _drift_summary(check: ReleaseCheck, result: dict, *, held_out_used: bool) -> str:
    """The drift check's verdict in words, from its stored result."""
    mmd, chance = result["mmd"], result["psi_chance"]
    reference = (
        "The reference rows come from the fine-tune's own data but were not trained on. "
        if held_out_used
        else f"Fewer than {MIN_HELD_OUT} rows were held out, so the reference is the rows "
        "the model was fitted to, on which it is more confident than on new rows of the "
        "same kind: the confidence PSI reads high sooner than the class PSI. "
    )
    return (
        f"Predicted {result['n_batch']} of the {result['n_batch_rows']} production inputs in "
        f"batch #{result['batch']} and {result['n_reference']} of the fine-tune's "
        f"{result['n_pool']} {result['reference_rows']} (at most {DRIFT_ROWS} each, drawn with "
        f"seed {DRIFT_SEED}). PSI of the predicted classes {result['psi_class']:.3f} "
        f"({result['band']}; threshold {check.threshold:g}), of the top-class confidence "
        f"{result['psi_confidence']:.3f} ({result['band_confidence']}; "
        f"{result['confidence_bins']} quantile bins of the reference rows). MMD² between "
        f"{result.get('embedding', TEXT_EMBEDDING)} {mmd['mmd2']:.5f}, permutation p-value "
        f"{mmd['p_value']:.3f} ({mmd['permutations']} permutations, {mmd['m']} and {mmd['n']} "
        "rows). Two samples of one distribution this size give a PSI of about "
        f"{chance['class']:.2f} (classes) and {chance['confidence']:.2f} (confidence) by chance "
        "alone. Bands: below 0.1 stable, 0.1 to 0.25 watch, 0.25 and above retrain. "
        + reference
        + "Not measured: whether the predictions on these inputs are right (the check uses "
        "no labels), shifts that neither the answers nor those embeddings show, and drift "
        "within a batch over time."
    )


# --- bias: word-association tests ----------------------------------------------------------


def _association(ctx: JobContext, check: ReleaseCheck, run: FineTuneRun | None, tmp: Path):
    from jobs.ml import weat
    from jobs.ml.features import extract_text_features

    version = check.version
    if version.model.modality != "text":
        raise PortalError("Word-association tests are for text encoders; this is not a text model.")
    names = list(check.params["sets"])
    found_sets = {s.name: s for s in AssociationTestSet.objects.filter(name__in=names)}
    gone = [n for n in names if n not in found_sets]
    if gone:
        raise PortalError(f"The association test {gone[0]!r} was removed after the launch.")
    model_dir = materialize_version(version, settings.MODEL_CACHE_DIR)
    device = _device(ctx)
    cache: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        # Attribute lists recur across tests (pleasant/unpleasant): embed each text once.
        new = [t for t in dict.fromkeys(texts) if t not in cache]
        if new:
            rows = extract_text_features(model_dir, new, device=device, max_length=64)
            cache.update(zip(new, rows, strict=True))
        return np.stack([cache[t] for t in texts])

    permutations, alpha = int(check.params["permutations"]), float(check.params["alpha"])
    tests = []
    for i, name in enumerate(names):
        ctx.progress(0.1 + 0.8 * i / len(names), stage=f"Association test {name}")
        tests.append(_association_row(found_sets[name], model_dir, embed, permutations))
    # Judged on Holm-adjusted p-values over every test and variant run in this check.
    family = [(t, v) for t in tests for v in ("weat", "seat")]
    for (t, v), adjusted in zip(
        family, weat.holm([t[v]["p_two_sided"] for t, v in family]), strict=True
    ):
        t[v]["p_holm"] = adjusted
    findings = [
        (abs(t[v]["effect_size"]), t["name"], v) for t, v in family if t[v]["p_holm"] < alpha
    ]
    worst = max(findings) if findings else None
    result = {
        "tests": tests,
        "alpha": alpha,
        "permutations": permutations,
        "correction": {"method": "holm", "family": len(family)},
        "n_raw_significant": sum(t[v]["p_two_sided"] < alpha for t, v in family),
        "templates": list(weat.SEAT_TEMPLATES),
        "measure_from": {"test": worst[1], "variant": worst[2]} if worst else None,
        "n_words_split": len({w for t in tests for w in t["split_words"]}),
        "n_words_unknown": len({w for t in tests for w in t["unknown_words"]}),
    }
    result["card_markdown"] = association_markdown(result)
    measure = worst[0] if worst else 0.0
    judged = (
        f"The largest significant effect is {measure:.3f} ({worst[1]}, {worst[2].upper()})"
        if worst
        else f"No test reached an adjusted p < {alpha:g}, so the figure judged is 0"
    )
    summary = (
        f"Ran {len(tests)} word-association tests ({', '.join(names)}) on the model's "
        "mean-pooled embeddings: WEAT on the bare words and SEAT on the words in "
        f'{len(weat.SEAT_TEMPLATES)} bleached sentences ("This is Amy."), each with Caliskan\'s '
        f"effect size and a two-sided permutation p-value ({permutations:,} fixed-seed re-deals "
        "of the targets, or every one when there are few). The p-values are Holm-adjusted "
        f"for the {len(family)} tests run together (so that judging them at {alpha:g} keeps "
        f"the chance of any false finding at {alpha:g}); {len(findings)} reach adjusted "
        f"p < {alpha:g}, {result['n_raw_significant']} would unadjusted. The figure judged is "
        f"the largest |effect size| among those with adjusted p < {alpha:g}. {judged} "
        f"(threshold {check.threshold:g}). "
        f"{result['n_words_split']} words are split into several tokens and "
        f"{result['n_words_unknown']} are unknown to the tokenizer; they were embedded all the "
        "same. Not measured: behaviour on any task (these are associations in the embedding), "
        "biases the word lists do not name, and other languages than English; the lists "
        "are American, from the studies named per test."
    )
    return measure, summary, result


def _association_row(test_set: AssociationTestSet, model_dir: Path, embed, permutations: int):
    """One word-association test, WEAT and SEAT, with the words the tokenizer splits."""
    from jobs.ml import weat

    words = test_set.word_sets()
    pieces = weat.word_pieces(model_dir, [w for group in words.values() for w in group])
    row = {
        "name": test_set.name,
        "title": test_set.title,
        "source": test_set.source,
        "names": {
            "x": test_set.target_x_name,
            "y": test_set.target_y_name,
            "a": test_set.attribute_a_name,
            "b": test_set.attribute_b_name,
        },
        "words": words,
        "split_words": sorted(w for w, p in pieces.items() if p["split"]),
        "unknown_words": sorted(w for w, p in pieces.items() if p["unknown"]),
    }
    for variant in ("weat", "seat"):
        row[variant] = weat.run_test_set(
            embed, words, variant=variant, permutations=permutations, seed=0
        )
    return row


# --- bias: gaps between slices -------------------------------------------------------------


def _slices(ctx: JobContext, check: ReleaseCheck, run: FineTuneRun, tmp: Path):
    from jobs.ml.slices import slice_gaps

    data = _split(ctx, run, tmp)
    column = run.dataset_version.slice_column
    if data.test_slices is None:
        raise PortalError(
            "The test rows carry no slice: the fine-tune was scored on a separate test file "
            f"without the slice column {column!r}."
        )
    ctx.progress(0.3, stage="Scoring the test split")
    proba = _predictor(ctx, run, check.version)(data.test[0])
    positive_name = check.params.get("positive_class")
    positive = data.class_names.index(positive_name) if positive_name else None
    ctx.progress(0.7, stage="Comparing the slices (bootstrap)")
    min_count = int(check.params.get("min_count", 20))
    found = slice_gaps(
        data.test[1],
        proba.argmax(axis=1),
        data.test_slices,
        n_classes=len(data.class_names),
        positive=positive,
        min_count=min_count,
        seed=0,
    )
    result = {
        **found,
        "column": column,
        "classes": data.class_names,
        "positive_class": positive_name,
        "n_test": int(data.test[1].size),
    }
    result["card_markdown"] = slices_markdown(result)
    how = (
        f"recall and false-positive rate of {positive_name!r}"
        if positive_name
        else "macro-averaged recall and one-vs-rest false-positive rate"
    )
    small = [row["slice"] for row in found["slices"] if not row["judged"]]
    worst = found["measure_metric"]
    family = found["gap_intervals"]
    gap = found["gaps"][worst] if worst else None
    judged = (
        f"The largest gap is in {_METRIC_WORDS[worst]}: {found['measure']:.3f} between "
        f"{gap['high']!r} and {gap['low']!r} (simultaneous {family['level']:.2%} bootstrap "
        f"interval {_interval(gap['ci'])}, Bonferroni-adjusted over the "
        f"{family['comparisons']} comparisons it was picked from, every pair of judged slices "
        f"in each metric; per comparison, 95%: {_interval(gap['ci_95'])})"
        if worst
        else "Fewer than two slices were large enough to compare, so the figure judged is 0"
    )
    summary = (
        f"Scored the {result['n_test']} test rows the fine-tune held out, per value of the "
        f"slice column {column!r} ({len(found['slices'])} slices): accuracy, {how}, each "
        "with a per-comparison 95% interval (Wilson for proportions, bootstrap for macro "
        "averages). "
        f"{judged} (threshold {check.threshold:g})."
        + (
            f" {len(small)} slices have fewer than {min_count} rows and are shown, not judged "
            f"({', '.join(small[:5])}{'…' if len(small) > 5 else ''})."
            if small
            else ""
        )
        + " Not measured: groups the slice column does not record, intersections of slices, "
        "calibration per slice, and data unlike the test split; a gap in a small slice "
        "can be noise, which the interval shows."
    )
    return found["measure"], summary, result


_METRIC_WORDS = {"accuracy": "accuracy", "recall": "recall", "fpr": "false-positive rate"}


def _interval(ci: list[float] | None) -> str:
    return f"{ci[0]:.3f} to {ci[1]:.3f}" if ci else "not defined"


# --- serving compatibility (ONNX) ----------------------------------------------------------


def _serving(ctx: JobContext, check: ReleaseCheck, run: FineTuneRun | None, tmp: Path):
    from jobs.ml import serving

    if run is None:
        return _serving_base(ctx, check, tmp)
    data = _split(ctx, run, tmp)
    modality = run.dataset_version.dataset.modality
    output_dir = materialize_version(check.version, settings.MODEL_CACHE_DIR)
    base_dir = (
        materialize_version(run.base_version, settings.MODEL_CACHE_DIR) if run.is_adapter else None
    )
    ctx.progress(0.2, stage="Exporting to ONNX")
    exported = serving.export_classifier(
        output_dir,
        modality,
        list(data.test[0]),
        tmp / "onnx" / "model.onnx",
        base_model_dir=base_dir,
        max_length=int((run.config or {}).get("max_length", 128)),
    )
    ctx.progress(0.4, stage="Comparing ONNX Runtime with PyTorch, quantising, timing")
    result = serving.check_classifier(
        exported, data.test[1], calls=int(check.params.get("calls", 50))
    )
    result.update(
        base=False, modality=modality, adapter=bool(run.is_adapter), classes=data.class_names
    )
    ort, torch_, int8 = (
        result["compared"][name] for name in ("onnxruntime", "pytorch", "onnxruntime_int8")
    )
    measure = ort["max_abs_prob_diff"]
    registered = (
        _register_onnx(ctx, check, tmp, exported.path, measure)
        if (check.params.get("register"))
        else None
    )
    result["registered"] = registered
    result["card_markdown"] = serving_markdown(result)
    lat = result["latency"]
    summary = (
        f"Exported {check.version.label} to ONNX (opset {result['opset']}, dynamic batch"
        f"{' and sequence' if modality == 'text' else ''} axes"
        f"{', the LoRA adapter merged into its base' if run.is_adapter else ''}) and ran it "
        f"with ONNX Runtime on the CPU on the fine-tune's {result['n']} test rows: the largest "
        f"difference from PyTorch is {ort['max_abs_prob_diff']:.2e} in probability and "
        f"{ort['max_abs_logit_diff']:.2e} in logits (threshold {check.threshold:g}); "
        f"{ort['label_agreement']:.1%} of the predicted labels agree. On {result['threads']} "
        f"CPU threads, batch 1 takes {lat['pytorch']['batch_1']['p50_ms']:.1f} ms in PyTorch "
        f"and {lat['onnxruntime']['batch_1']['p50_ms']:.1f} ms in ONNX Runtime (p50), batch 32 "
        f"{lat['pytorch']['batch_32']['p50_ms']:.1f} and "
        f"{lat['onnxruntime']['batch_32']['p50_ms']:.1f} ms. The int8 dynamic quantisation is "
        f"{result['sizes']['onnxruntime_int8'] / 2**20:.1f} MiB instead of "
        f"{result['sizes']['onnxruntime'] / 2**20:.1f} MiB, takes "
        f"{lat['onnxruntime_int8']['batch_1']['p50_ms']:.1f} ms at batch 1, and scores "
        f"{int8['accuracy']:.3f} test accuracy against {torch_['accuracy']:.3f} "
        f"({int8['label_agreement']:.1%} of its labels agree with PyTorch). "
        f"{_registered_words(registered)}Not measured: GPU serving, other ONNX runtimes or "
        "execution providers, inputs longer than the test rows, and latency under concurrent "
        "load; the timings are this worker's and vary with its CPU."
    )
    return measure, summary, result


def _serving_base(ctx: JobContext, check: ReleaseCheck, tmp: Path):
    from jobs.ml import serving
    from jobs.ml.reference import reference_texts

    base_dir = materialize_version(check.version, settings.MODEL_CACHE_DIR)
    if check.version.model.modality == "vision":
        return _serving_base_images(ctx, check, base_dir, tmp)
    texts = reference_texts()
    ctx.progress(0.2, stage="Exporting the encoder to ONNX")
    exported = serving.export_encoder(base_dir, texts, tmp / "onnx" / "model.onnx")
    ctx.progress(0.5, stage=f"Comparing hidden states on {len(texts)} reference sentences")
    result = serving.check_encoder(exported, calls=int(check.params.get("calls", 50)))
    result.update(base=True, modality="text", registered=None)
    result["card_markdown"] = serving_markdown(result)
    lat = result["latency"]
    summary = (
        f"Exported the base encoder {check.version.label} (no classification head) to ONNX "
        f"(opset {result['opset']}, dynamic batch and sequence axes) and compared ONNX "
        f"Runtime's last hidden states with PyTorch's on the {result['n']} reference sentences "
        f"the probes use, at every real (unpadded) token: the largest difference is "
        f"{result['max_abs_hidden_diff']:.2e} (threshold {check.threshold:g}), the lowest "
        f"cosine of the mean-pooled vectors {result['min_pooled_cosine']:.6f}. On "
        f"{result['threads']} CPU threads, batch 1 takes "
        f"{lat['pytorch']['batch_1']['p50_ms']:.1f} ms in PyTorch and "
        f"{lat['onnxruntime']['batch_1']['p50_ms']:.1f} ms in ONNX Runtime (p50), batch 32 "
        f"{lat['pytorch']['batch_32']['p50_ms']:.1f} and "
        f"{lat['onnxruntime']['batch_32']['p50_ms']:.1f} ms. Not measured: a fine-tune's "
        "head, accuracy and int8 quantisation (those are checked on each fine-tune), GPU "
        "serving, and latency under load."
    )
    return result["max_abs_hidden_diff"], summary, result


# Reference crops the base image backbone is compared on (the probes' own 64).
SERVING_IMAGES = 64


def _serving_base_images(ctx: JobContext, check: ReleaseCheck, base_dir: Path, tmp: Path):
    from jobs.ml import serving
    from jobs.ml.features import image_settings
    from jobs.ml.reference import reference_images

    size = image_settings(base_dir).size
    images = reference_images(SERVING_IMAGES, size=size)
    ctx.progress(0.2, stage="Exporting the image backbone to ONNX")
    exported = serving.export_image_encoder(base_dir, images, tmp / "onnx" / "model.onnx")
    ctx.progress(0.5, stage=f"Comparing pooled features on {len(images)} reference crops")
    result = serving.check_image_encoder(exported, calls=int(check.params.get("calls", 50)))
    result.update(base=True, modality="vision", registered=None)
    result["card_markdown"] = serving_markdown(result)
    lat, sizes, int8 = result["latency"], result["sizes"], result["compared"]["onnxruntime_int8"]
    summary = (
        f"Exported the base image backbone {check.version.label} (no classification head) to "
        f"ONNX (opset {result['opset']}, dynamic batch axis), to the {result['dim']} pooled "
        "features the probes take from it, and compared ONNX Runtime with PyTorch on the "
        f"{result['n']} reference crops of scikit-learn's sample photos the probes use "
        f"({size} px, preprocessed as the probes do): the largest difference is "
        f"{result['max_abs_hidden_diff']:.2e} (threshold {check.threshold:g}; "
        f"{result['compared']['onnxruntime']['max_rel_diff']:.1e} of the largest feature), the "
        f"lowest cosine {result['min_pooled_cosine']:.6f}. On {result['threads']} CPU threads, "
        f"batch 1 takes {lat['pytorch']['batch_1']['p50_ms']:.1f} ms in PyTorch and "
        f"{lat['onnxruntime']['batch_1']['p50_ms']:.1f} ms in ONNX Runtime (p50), batch 32 "
        f"{lat['pytorch']['batch_32']['p50_ms']:.1f} and "
        f"{lat['onnxruntime']['batch_32']['p50_ms']:.1f} ms. The int8 dynamic quantisation is "
        f"{sizes['onnxruntime_int8'] / 2**20:.2f} MiB instead of "
        f"{sizes['onnxruntime'] / 2**20:.2f} MiB, takes "
        f"{lat['onnxruntime_int8']['batch_1']['p50_ms']:.1f} ms at batch 1 and "
        f"{lat['onnxruntime_int8']['batch_32']['p50_ms']:.1f} ms at batch 32, and its features "
        f"differ by up to {int8['max_abs_diff']:.2e} (lowest cosine {int8['min_cosine']:.4f})"
        f"{_int8_words(int8['min_cosine'])}. Not measured: a fine-tune's head and accuracy "
        "(checked on each fine-tune), images unlike the two sample photos, GPU serving, and "
        "latency under load; the timings are this worker's."
    )
    return result["max_abs_hidden_diff"], summary, result


# Below this cosine with PyTorch's features, the int8 copy answers other questions.
INT8_MIN_COSINE = 0.99


def _int8_words(cosine: float) -> str:
    if cosine >= INT8_MIN_COSINE:
        return ""
    return (
        f": below {INT8_MIN_COSINE:g}, too far to serve as it is (dynamic quantisation of "
        "convolutions loses much; keep fp32, or quantise statically with calibration images)"
    )


def _registered_words(registered: dict | None) -> str:
    if not registered:
        return ""
    if registered.get("version_id"):
        return (
            f"The checked files were registered as {registered['repo_id']} "
            f"{registered['label']} (model.onnx and model.int8.onnx beside the original "
            "files, hashed and scanned like every file). "
        )
    return f"The ONNX file was not registered: {registered['reason']} "


def _register_onnx(ctx: JobContext, check: ReleaseCheck, tmp: Path, onnx: Path, measure: float):
    """The version's files plus the checked ONNX files, imported as a new version of the model.

    A version's files never change, so the export becomes a version of its own
    (source "conversion", parent the checked version), through the importer
    that hashes and scans every file, as the safetensors conversion does.
    """
    from django.contrib.auth import get_user_model

    from zoo import importers
    from zoo.storage import copy_artifact_to

    version = check.version
    if measure > check.threshold:
        return {"reason": "the check did not pass, so the export is not offered for serving."}
    artifacts = list(version.artifacts.all())
    taken = {a.path for a in artifacts} & {"model.onnx", "model.int8.onnx"}
    if taken:
        return {"reason": f"{version.label} already has {', '.join(sorted(taken))}."}
    ctx.progress(0.9, stage="Registering the checked ONNX files")
    folder = tmp / "register"
    for artifact in artifacts:
        copy_artifact_to(artifact, folder)
    shutil.copyfile(onnx, folder / "model.onnx")
    shutil.copyfile(onnx.with_name("model.int8.onnx"), folder / "model.int8.onnx")
    weights = next(
        (a.path for a in artifacts if a.format == "safetensors"), "the version's weights"
    )
    actor = get_user_model().objects.filter(pk=check.requested_by_id).first()
    made, created = importers.import_conversion_output(
        folder=folder,
        original=version,
        converted={weights: "model.onnx"},
        actor=actor,
    )
    ctx.log(
        f"{'Registered' if created else 'Already in the catalogue:'} {made.model.repo_id} "
        f"{made.label} with model.onnx and model.int8.onnx"
    )
    return {
        "version_id": made.pk,
        "repo_id": made.model.repo_id,
        "label": made.label,
        "created": created,
        "blocked": made.is_blocked,
    }


# --- inconsistency between versions --------------------------------------------------------


# Production inputs both versions are run on, at most (drawn with DRIFT_SEED).
INCONSISTENCY_ROWS = 5000


def _inconsistency_inputs(ctx: JobContext, check: ReleaseCheck, run: FineTuneRun, tmp: Path):
    """(inputs, label indices or None, class names, what the inputs were, each input's position
    in the batch or None) for the check: the fine-tune's test split, or a drift batch of
    production inputs when one is named."""
    batch_id = check.params.get("batch")
    if batch_id is None:
        data = _split(ctx, run, tmp)
        inputs = {"source": "test", "n": len(data.test[1])}
        return list(data.test[0]), data.test[1], data.class_names, inputs, None
    batch = DriftBatch.objects.select_related("version__model").filter(pk=batch_id).first()
    if batch is None:
        raise PortalError(f"Drift batch #{batch_id} no longer exists.")
    classes = list(run.training.get("classes") or [])
    images = run.dataset_version.dataset.modality == "vision"
    ctx.progress(0.05, stage=f"Reading drift batch #{batch.pk}")
    rows, labels = _batch_inputs(batch, tmp, images=images, classes=classes)
    keep = _sample(list(range(len(rows))), INCONSISTENCY_ROWS, DRIFT_SEED)
    index = {name: i for i, name in enumerate(classes)}
    known = labels is not None and all(labels[i] in index for i in keep)
    y = np.array([index[labels[i]] for i in keep], dtype=np.int64) if known else None
    inputs = {
        "source": "batch",
        "batch": batch.pk,
        "batch_of": f"{batch.version.model.repo_id} {batch.version.label}",
        "n_batch_rows": len(rows),
        "n": len(keep),
        "labelled": y is not None,
        "cap": INCONSISTENCY_ROWS,
        "seed": DRIFT_SEED,
    }
    return [rows[i] for i in keep], y, classes, inputs, keep


def _inconsistency(ctx: JobContext, check: ReleaseCheck, run: FineTuneRun, tmp: Path):
    from jobs.ml.inconsistency import label_changes

    other = (
        ModelVersion.objects.select_related("model")
        .filter(pk=check.params["other_version"])
        .first()
    )
    if other is None:
        raise PortalError("The other version no longer exists.")
    other_run = services.finetune_behind(other)
    if other_run is None:
        raise PortalError(f"{other.model.repo_id} {other.label} was not made by a fine-tune.")
    texts, y, class_names, inputs, positions = _inconsistency_inputs(ctx, check, run, tmp)
    where = "the test split" if inputs["source"] == "test" else f"batch #{inputs['batch']}"
    ctx.progress(0.3, stage=f"Scoring {where} with {other.model.repo_id} {other.label}")
    theirs = _predictor(ctx, other_run, other)(texts)
    ctx.progress(0.6, stage=f"Scoring {where} with {check.version.label}")
    mine = _predictor(ctx, run, check.version)(texts)
    shown = run.dataset_version.dataset.modality == "text" and inputs["source"] == "test"
    found = label_changes(y, theirs, mine, class_names, texts=texts if shown else None)
    changes = found.pop("examples")
    for change in changes if positions is not None else ():
        change["position"] = positions[change["index"]] + 1  # 1-based, in the batch's order
    result = {
        **found,
        "inputs": inputs,
        "changes": changes,
        "other": {"version_id": other.pk, "repo_id": other.model.repo_id, "label": other.label},
        "this": {"repo_id": check.version.model.repo_id, "label": check.version.label},
    }
    result["card_markdown"] = inconsistency_markdown(result)
    return found["share"], _inconsistency_summary(check, result), result


def _inconsistency_summary(check: ReleaseCheck, result: dict) -> str:
    """The inconsistency verdict in words, naming the inputs it was measured on."""
    name = f"{result['other']['repo_id']} {result['other']['label']}"
    inputs = result["inputs"]
    if inputs["source"] == "test":
        on = f"the fine-tune's {result['n']} test rows"
    else:
        on = (
            f"{result['n']} of the {inputs['n_batch_rows']} production inputs of drift batch "
            f"#{inputs['batch']} (uploaded for {inputs['batch_of']}; at most {inputs['cap']:,}, "
            f"drawn with seed {inputs['seed']})"
        )
    text = (
        f"Ran this version and {name} on {on}: {result['n_changed']} rows "
        f"({result['share']:.1%}) get another label from this version than from {name} "
        f"(threshold {check.threshold:g}). "
    )
    if result["labelled"]:
        text += (
            f"{result['fixed']} of the changes are now right and {result['broken']} now wrong. "
            f"Accuracy {result['accuracy_new']:.3f} here, {result['accuracy_old']:.3f} for "
            f"{name}. "
        )
    else:
        text += "The batch has no labels, so whether a change fixed or broke a row is not known. "
    if inputs["source"] == "test":
        return text + (
            "Not measured: production inputs (upload a drift batch and name it to use "
            "them), changes in confidence that keep the label, and inputs unlike the test split."
        )
    return text + (
        "The production inputs themselves are not shown: the changed rows are named by their "
        "position in the batch. Not measured: changes in confidence that keep the label."
    )


HANDLERS = {
    ReleaseCheck.Kind.SERVING: _serving,
    ReleaseCheck.Kind.INCONSISTENCY: _inconsistency,
    ReleaseCheck.Kind.CALIBRATION: _calibration,
    ReleaseCheck.Kind.LEAKAGE: _leakage,
    ReleaseCheck.Kind.FORGETTING: _forgetting,
    ReleaseCheck.Kind.DRIFT: _drift,
    ReleaseCheck.Kind.ASSOCIATION: _association,
    ReleaseCheck.Kind.SLICES: _slices,
}
