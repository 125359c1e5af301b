"""Second stage of the probe: does a brief fine-tune of the shortlist rank models better?

For each dataset of ``_transfer_data`` and each candidate with ground truth,
``jobs.ml.shortlist.brief_finetune``: a full fine-tune through the portal's
runner on a stratified subsample of the TRAIN rows, at one learning rate,
for a few epochs, scored on the VALIDATION rows (the test rows, which the
truth was measured on, are never read here). Then, against the truth of
``bench/data/transfer/truth.json`` (test accuracy of the better of two full
3-epoch fine-tunes on all train rows), tau_w / tau / regret as
``bench/transfer.py`` computes them, for:

- stage 1 alone: ``scores.recommend`` on 128-token features, the probe's
  rule today (the baseline, in the same run);
- brief fine-tune of every candidate;
- top k of stage 1 re-ordered by the brief fine-tune (the rest keep their
  stage-1 order below them), k = 2, 3, 4;
- successive halving over every candidate (the better half goes on with
  twice the epochs), and over stage 1's top 4.

Cost is in CPU seconds (process time, all threads, loading and saving
included) against the probe's stage 1 for the same candidates (feature
extraction of train + validation + reference texts and the scores) and
against one full fine-tune of the truth grid (the mean of its two runs).

Settings tried (rows 256, one seed; all on debian_sections, the others
were then run with the chosen one only): lr 2e-4 batch 16 1 epoch (every
model but the full encoder stayed at the majority class), lr 5e-4 batch 8
1 epoch (chosen), lr 1e-3 batch 8 1 epoch (worse on the full encoder),
lr 5e-4 batch 8 2 epochs (better in the middle, twice the cost; it is also
successive halving's second round).

Measured (2026-12-07, 2 shared CPU cores, the chosen settings, the six
candidates other than mpnet-base on all four datasets). With the old
stage-1 rule (mean rank of four scores): stage 1 alone mean tau_w 0.500
(worst 0.309), regret 6.83 points; brief fine-tune of all 0.754 (worst
0.147, sms_spam, where four candidates are within 0.5 points of each other
in truth), regret 0.04, at 3.6x stage 1's CPU seconds (timed on
debian_sections). With ``recommend``'s kNN rule: stage 1 alone 0.748
(worst 0.286), regret 0; brief fine-tune of all 0.754 (tau 0.772 against
0.617); stage-1 top 2 / 3 / 4 re-ordered 0.748 / 0.699 / 0.681; halving
over stage 1's top 4 0.544, regret 2.21 (the 2-epoch round was noisier
than the 1-epoch one on wordnet_nouns).

Each brief run is cached under ~/.cache/portal-bench/shortlist, keyed by
model, dataset file and settings; stage-1 features come from
``bench/transfer.py``'s cache. ``--phase brief`` runs the fine-tunes only.

    .venv/bin/python bench/transfer_shortlist.py [--datasets ..] [--rows 256 --epochs 1 --lr 2e-4]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _transfer_data import DATA_DIR, DATASETS, MODELS, load_dataset, model_dir  # noqa: E402
from transfer import _order_score, _taus, probe_scores, truth  # noqa: E402

from jobs.ml import scores  # noqa: E402
from jobs.ml.shortlist import BriefResult, BriefSettings, brief_finetune  # noqa: E402
from jobs.ml.shortlist import successive_halving as halving  # noqa: E402

CACHE = Path.home() / ".cache" / "portal-bench" / "shortlist"
# Cheapest first, so a short session still fills whole datasets.
ORDER = (
    "minilm-l6-first1",
    "minilm-l6-first2",
    "minilm-l6-first3",
    "random-l3",
    "paraphrase-l3",
    "minilm-l6",
    "mpnet-base",
)
DATASET_ORDER = ("debian_sections", "wordnet_nouns", "fortunes", "sms_spam")
TOP_K = (2, 3, 4)


def _splits(dataset: str):
    splits = load_dataset(dataset)
    classes = sorted(set(splits["train"][1]))

    def encoded(split):
        texts, names = splits[split]
        return texts, np.array([classes.index(n) for n in names])

    return classes, encoded("train"), encoded("val")


def _key(model: str, dataset: str, settings: BriefSettings) -> str:
    data = hashlib.sha256((DATA_DIR / f"{dataset}.csv").read_bytes()).hexdigest()
    text = json.dumps([model, data, settings.as_dict()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def brief(model: str, dataset: str, settings: BriefSettings, *, run: bool = True):
    """The cached brief result of one cell, run when missing (None if not run)."""
    path = CACHE / f"{dataset}-{model}-{_key(model, dataset, settings)}.json"
    if path.is_file():
        return BriefResult(**json.loads(path.read_text())["result"])
    if not run:
        return None
    classes, train, val = _splits(dataset)
    result = brief_finetune(model_dir(model), "text", classes, train, val, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "model": model,
                "dataset": dataset,
                "settings": settings.as_dict(),
                "result": result.as_dict(),
            },
            indent=1,
        )
    )
    print(
        f"  {dataset} / {model} {settings.epochs} ep: val acc {result.val_accuracy:.3f}"
        f" ({result.cpu_seconds:.0f} CPU s)",
        flush=True,
    )
    return result


def stage1_cost(model: str, dataset: str) -> float:
    """CPU seconds of the probe's stage 1 for one candidate: features + scores, measured once."""
    from jobs.ml.features import extract_text_features
    from jobs.ml.probe import score_features
    from jobs.ml.reference import reference_texts

    path = CACHE / f"stage1-{dataset}-{model}.json"
    if path.is_file():
        return json.loads(path.read_text())["cpu_seconds"]
    splits = load_dataset(dataset)
    texts = splits["train"][0] + splits["val"][0]
    names = splits["train"][1] + splits["val"][1]
    classes = sorted(set(names))
    began = time.process_time()
    x = extract_text_features(model_dir(model), texts, max_length=128)
    ref = extract_text_features(model_dir(model), reference_texts(), max_length=128)
    score_features(x, np.array([classes.index(n) for n in names]), ref)
    seconds = time.process_time() - began
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cpu_seconds": seconds}))
    return seconds


def full_cost(dataset: str, model: str) -> float:
    """CPU seconds of one full fine-tune of the truth grid (mean of its runs for the cell)."""
    runs = json.loads((DATA_DIR / "truth.json").read_text())["runs"]
    seconds = [
        r["cpu_seconds"]
        for r in runs
        if r["kind"] == "truth" and r["dataset"] == dataset and r["model"] == model
    ]
    return float(np.mean(seconds))


def _ranked_by(results: dict[str, BriefResult]) -> dict[str, float]:
    return {m: r.val_accuracy + 1e-3 * r.val_macro_f1 for m, r in results.items()}


HALVINGS = {"all": "halving, all", "top4": "halving, stage-1 top 4"}


def rankings(stage1: list[str], results, halvings: dict) -> dict[str, dict]:
    """{rule: {model: score}}: every rule the bench compares, as scores for the taus."""
    n = len(stage1)
    base = {m: float(n - i) for i, m in enumerate(stage1)}
    out = {"stage 1 alone (recommend @128)": base, "brief fine-tune, all": _ranked_by(results)}
    for k in TOP_K:
        top = _ranked_by({m: results[m] for m in stage1[:k]})
        out[f"stage 1 top {k} + brief"] = {
            m: (10 + top[m] if m in top else base[m] - n) for m in base
        }
    for name, result in halvings.items():
        rank = {m: float(n - i) for i, m in enumerate(result.order)}
        out[name] = {m: (100 + rank[m] if m in rank else base[m] - n) for m in base}
    return out


def costs(stage1: list[str], results, halvings: dict) -> dict[str, float]:
    """CPU seconds of the second stage of each rule (stage 1's own cost not included)."""
    out = {
        "stage 1 alone (recommend @128)": 0.0,
        "brief fine-tune, all": sum(r.cpu_seconds for r in results.values()),
    }
    for k in TOP_K:
        out[f"stage 1 top {k} + brief"] = sum(results[m].cpu_seconds for m in stage1[:k])
    out.update({name: result.cpu_seconds for name, result in halvings.items()})
    return out


def _dataset_rows(dataset, models, gold, settings, options):
    """(taus per rule, (cost / stage 1, cost / full fine-tune) per rule) of one dataset."""
    true = {m: gold[dataset][m] for m in models}
    values = probe_scores(dataset, models)["128"]
    order = sorted(_order_score(scores.recommend(values)).items(), key=lambda kv: -kv[1])
    stage1 = [m for m, _ in order]
    results = {m: brief(m, dataset, settings) for m in models}
    score = lambda m, s, d=dataset: brief(m, d, s)  # noqa: E731
    pools = {"all": stage1, "top4": stage1[:4]}
    halvings = {HALVINGS[h]: halving(pools[h], score, settings) for h in options.halving}
    one_stage1 = (
        sum(stage1_cost(m, dataset) for m in models)
        if dataset in options.stage1_cost
        else float("nan")
    )
    one_full = float(np.mean([full_cost(dataset, m) for m in models]))
    print(f"\n{dataset}: true " + ", ".join(f"{m} {true[m]:.3f}" for m in models))
    print("  stage 1: " + ", ".join(stage1))
    print("  brief:   " + ", ".join(f"{m} {results[m].val_accuracy:.3f}" for m in stage1))
    for name, result in halvings.items():
        print(
            f"  {name}: {', '.join(result.order)}; rounds "
            + "; ".join(f"{e} ep x {len(r)}" for e, r in result.rounds)
        )
    print(f"  CPU s: stage 1 {one_stage1:.0f}, one full fine-tune {one_full:.0f} (mean)")
    cost = costs(stage1, results, halvings)
    taus, spent = {}, {}
    for rule, predicted in rankings(stage1, results, halvings).items():
        taus[rule] = _taus(true, predicted)
        spent[rule] = (cost[rule] / one_stage1, cost[rule] / one_full)
    return taus, spent


def report(datasets, gold, settings: BriefSettings, options) -> None:
    table: dict[str, list] = {}
    spent: dict[str, list] = {}
    for dataset in datasets:
        models = [m for m in MODELS if m in gold.get(dataset, {}) and m in options.models]
        if len(models) < 3:
            print(f"{dataset}: ground truth for {len(models)} models only; skipped")
            continue
        taus, cost = _dataset_rows(dataset, models, gold, settings, options)
        for rule in taus:
            table.setdefault(rule, []).append(taus[rule])
            spent.setdefault(rule, []).append(cost[rule])
    if not table:
        raise SystemExit("no dataset with ground truth")
    n = len(next(iter(table.values())))
    print(f"\nsettings: {settings.as_dict()}")
    print(
        f"mean over {n} datasets             tau_w    tau  regret  worst tau_w"
        "  cost/stage1  cost/full FT"
    )
    base = np.array(table["stage 1 alone (recommend @128)"])
    for rule, rows in table.items():
        a, c = np.array(rows), np.array(spent[rule])
        print(
            f"{rule:34s} {a[:, 0].mean():6.3f} {a[:, 1].mean():6.3f} {a[:, 2].mean():6.2f}"
            f" {a[:, 0].min():10.3f} {np.nanmean(c[:, 0]):10.1f}x {c[:, 1].mean():9.2f}x"
            f"   tau_w {a[:, 0].mean() / base[:, 0].mean():.2f}x baseline"
        )
    print(
        "cost/stage1: second-stage CPU seconds over stage 1's for the same candidates, on the"
        f" datasets where stage 1 was timed ({', '.join(options.stage1_cost) or 'none'});"
        " cost/full FT: over one full fine-tune of the truth grid (mean of the cell's runs)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASET_ORDER))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rows", type=int, default=BriefSettings.rows)
    parser.add_argument("--epochs", type=int, default=BriefSettings.epochs)
    parser.add_argument("--lr", type=float, default=BriefSettings.learning_rate)
    parser.add_argument("--batch", type=int, default=BriefSettings.batch_size)
    parser.add_argument("--phase", choices=("brief", "report"), default="report")
    parser.add_argument(
        "--halving", default="all,top4", help="which successive halvings to run: all, top4"
    )
    parser.add_argument(
        "--stage1-cost",
        default="debian_sections",
        help="datasets on which stage 1 is timed (features extracted again)",
    )
    args = parser.parse_args()
    settings = BriefSettings(
        rows=args.rows, epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch
    )
    settings.validate()
    gold = truth()
    datasets = [d for d in args.datasets.split(",") if d in DATASETS]
    wanted = args.models.split(",")
    args.models = wanted
    args.halving = [h for h in args.halving.split(",") if h]
    if set(args.halving) - set(HALVINGS):
        parser.error(f"--halving takes {', '.join(HALVINGS)}, got {','.join(args.halving)}")
    args.stage1_cost = [d for d in args.stage1_cost.split(",") if d]
    if args.phase == "brief":
        for dataset in datasets:
            for model in [m for m in ORDER if m in gold.get(dataset, {}) and m in wanted]:
                brief(model, dataset, settings)
        return
    report(datasets, gold, settings, args)


if __name__ == "__main__":
    main()
