"""Ground truth for ``bench/transfer.py``: the accuracy each candidate reaches when fine-tuned.

For every (dataset, candidate) cell of ``_transfer_data``, full fine-tunes
through the portal's own runner (``jobs.ml.finetune.finetune``) over a fixed
grid, each scored once on the cell's test split:

- ``truth`` grid (every cell): strategy full, learning rate 5e-5 and 2e-4,
  3 epochs, batch 16, max_length 128, warm-up 10 %, linear decay, weight
  decay 0.01, no early stop, the best validation epoch's weights kept, seed
  42. True accuracy = the better of the two learning rates on test (the
  definition the independent check used).
- ``--grid`` adds, for the cells named, the standard grid learning rate in
  {2e-5, 5e-5, 1e-4, 2e-4} x 3 or 5 epochs, to measure the form's default
  recipe against ("within 1 point of the grid's best cell").
- ``--previous`` runs the defaults the form had before the recipe (LoRA r=8,
  alpha 16, lr 2e-4, 3 epochs, patience 2, no search) on the cells named: the
  baseline the recipe is measured against.
- ``--recipe`` runs the form's default settings (``FineTuneConfig()``, the
  recipe a person gets without touching anything) on the cells named and
  records its test accuracy, its validation choices and its cost in training
  epochs and seconds next to one plain 3-epoch run.

Results are appended run by run to ``bench/data/transfer/truth.json`` (a run
already there is skipped), so the file is the repo's ground truth and an
interrupted run continues where it stopped. CPU is enough (about half an hour
for the truth grid on 2 cores); ``--device cuda`` uses a GPU.

    .venv/bin/python bench/transfer_truth.py                  # truth grid
    .venv/bin/python bench/transfer_truth.py --grid minilm-l6:sms_spam --recipe all
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _transfer_data import DATA_DIR, DATASETS, MODELS, load_dataset, model_dir  # noqa: E402

from jobs.ml.config import FineTuneConfig  # noqa: E402
from jobs.ml.finetune import finetune, predict_proba  # noqa: E402

TRUTH_FILE = DATA_DIR / "truth.json"
TRUTH_LRS = (5e-5, 2e-4)
PREVIOUS_DEFAULTS = {
    "strategy": "lora",
    "learning_rate": 2e-4,
    "epochs": 3,
    "patience": 2,
    "lr_search": False,
    "lora_r": 8,
    "lora_alpha": 16.0,
    "lora_dropout": 0.1,
}
GRID_LRS = (2e-5, 5e-5, 1e-4, 2e-4)
GRID_EPOCHS = (3, 5)


def _load() -> dict:
    if TRUTH_FILE.is_file():
        return json.loads(TRUTH_FILE.read_text())
    return {"runs": []}


def _save(data: dict) -> None:
    tmp = TRUTH_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(TRUTH_FILE)


def _key(run: dict) -> tuple:
    return (run["kind"], run["dataset"], run["model"], run.get("learning_rate"), run["epochs"])


def _encoded(dataset: str):
    splits = load_dataset(dataset)
    classes = sorted(set(splits["train"][1]))
    return classes, {
        name: (texts, np.array([classes.index(label) for label in labels], dtype=np.int64))
        for name, (texts, labels) in splits.items()
    }


def one_run(dataset: str, model: str, config: FineTuneConfig, device: str) -> dict:
    """Train on train, choose on validation inside the runner, score test once."""
    classes, splits = _encoded(dataset)
    folder = model_dir(model)
    began, cpu_began = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="truth-") as tmp:
        result = finetune(
            folder,
            "text",
            classes,
            train=splits["train"],
            val=splits["val"],
            config=config,
            work_dir=Path(tmp),
            device=device,
        )
        seconds = time.perf_counter() - began
        proba = predict_proba(
            result.output_dir,
            "text",
            splits["test"][0],
            device=device,
            max_length=config.max_length,
        )
    y_test = splits["test"][1]
    predicted = proba.argmax(axis=1)
    best = next(c for c in result.curves if "val_macro_f1" in c and c["epoch"] == result.best_epoch)
    from sklearn.metrics import f1_score

    return {
        "test_accuracy": float(np.mean(predicted == y_test)),
        "test_macro_f1": float(f1_score(y_test, predicted, average="macro")),
        "val_macro_f1": float(best["val_macro_f1"]),
        "val_accuracy": float(best["val_accuracy"]),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "train_seconds": float(result.train_seconds),
        "wall_seconds": seconds,
        "cpu_seconds": time.process_time() - cpu_began,
        "learning_rate_trained": result.learning_rate,
        "lr_search": result.lr_search,
        "search_seconds": float(result.search_seconds),
        # Cost in epochs of training, which other load on the machine cannot disturb:
        # one per rate tried, plus the chosen run's epochs after its first.
        "epochs_trained": len(result.lr_search) + result.epochs_run - 1
        if result.lr_search
        else result.epochs_run,
    }


def _cells(spec: str) -> list[tuple[str, str]]:
    if spec == "all":
        return [(m, d) for d in DATASETS for m in MODELS]
    cells = []
    for part in spec.split(","):
        model, _, dataset = part.partition(":")
        models = MODELS if model in ("", "*") else (model,)
        datasets = DATASETS if dataset in ("", "*") else (dataset,)
        cells.extend((m, d) for d in datasets for m in models)
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--truth", default="all", help="cells for the truth grid ('' for none)")
    parser.add_argument("--grid", default="", help="cells for the standard grid, model:dataset,...")
    parser.add_argument("--recipe", default="", help="cells for the default recipe")
    parser.add_argument("--previous", default="", help="cells for the previous defaults")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    data = _load()
    data["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
    done = {_key(run) for run in data["runs"]}
    plan = []
    for model, dataset in _cells(args.truth) if args.truth else []:
        for lr in TRUTH_LRS:
            plan.append(("truth", dataset, model, lr, 3))
    for model, dataset in _cells(args.recipe) if args.recipe else []:
        plan.append(("recipe", dataset, model, None, FineTuneConfig().epochs))
    for model, dataset in _cells(args.previous) if args.previous else []:
        plan.append(("previous", dataset, model, None, PREVIOUS_DEFAULTS["epochs"]))
    for model, dataset in _cells(args.grid) if args.grid else []:
        for lr in GRID_LRS:
            for epochs in GRID_EPOCHS:
                if (lr, epochs) not in ((x, 3) for x in TRUTH_LRS):
                    plan.append(("grid", dataset, model, lr, epochs))
    for kind, dataset, model, lr, epochs in plan:
        key = (kind, dataset, model, lr, epochs)
        if key in done:
            continue
        if kind == "recipe":
            config = FineTuneConfig()
        elif kind == "previous":
            config = FineTuneConfig(**PREVIOUS_DEFAULTS)
        else:
            config = FineTuneConfig(
                strategy="full", learning_rate=lr, epochs=epochs, patience=0, max_length=128
            )
        print(f"{kind} {dataset} {model} lr={lr} epochs={epochs} ...", file=sys.stderr, flush=True)
        outcome = one_run(dataset, model, config, args.device)
        print(
            f"  test accuracy {outcome['test_accuracy']:.3f} in {outcome['wall_seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        data["runs"].append(
            {
                "kind": kind,
                "dataset": dataset,
                "model": model,
                "learning_rate": lr,
                "epochs": epochs,
                "config": config.as_dict(),
                "device": args.device,
                **outcome,
            }
        )
        _save(data)
        done.add(key)


if __name__ == "__main__":
    main()
