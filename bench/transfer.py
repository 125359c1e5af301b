"""Transferability benchmark: how well the probe's scores and ranking predict fine-tuned accuracy.

For each dataset of ``_transfer_data`` the probe's work is done on the train
and validation rows (what a probe of that dataset would see; the test rows
are never touched): features of every candidate (mean-pooled, as the probe
extracts them) at the old default length (256 tokens) and the new one (128,
the fine-tune's length), raw and L2-normalised; then LogME, linear probe, kNN
and H-score through ``jobs.ml.probe.score_features``. Each score, and each
ranking rule built from them, is compared with the ground truth of
``bench/data/transfer/truth.json`` (written by ``bench/transfer_truth.py``:
the test accuracy of the better of two full fine-tunes):

- tau_w: weighted Kendall tau (``scipy.stats.weightedtau``, hyperbolic
  weights: swaps near the top cost more), the measure the probe is tuned on;
- tau: plain Kendall tau-b;
- regret: true accuracy of the best candidate minus that of the one ranked
  first, in points.

The baseline in the same run is the probe's rule as it was (mean rank of the
four scores, ``mean_rank`` here, on 128-token features; on 256-token ones as
it was first shipped); the ratio lines compare today's rule,
``scores.recommend`` (kNN accuracy, ties broken by linear probe), with it.
A candidate's truth may tie with others (several controls stay at the
majority class); ties count as ties in both taus.

    .venv/bin/python bench/transfer.py [--datasets sms_spam,fortunes]

Needs no database; CPU only, a few minutes (features are cached under
~/.cache/portal-bench/transfer-features).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _transfer_data import DATA_DIR, DATASETS, MODELS, load_dataset, model_dir  # noqa: E402

from jobs.ml import scores  # noqa: E402
from jobs.ml.features import extract_text_features  # noqa: E402
from jobs.ml.probe import score_features  # noqa: E402
from jobs.ml.reference import reference_texts  # noqa: E402

FEATURE_CACHE = Path.home() / ".cache" / "portal-bench" / "transfer-features"
SCORES = ("logme", "linear_probe_accuracy", "knn_accuracy", "h_score")
TRUTH_LRS = (5e-5, 2e-4)
"""The truth grid's learning rates (``transfer_truth.TRUTH_LRS``)."""
SHORT = {"logme": "LogME", "linear_probe_accuracy": "LP", "knn_accuracy": "kNN", "h_score": "H"}
LENGTHS = (256, 128)
CURRENT = "kNN, then LP @128"
"""The probe's rule today: ``scores.recommend`` on 128-token features (``TEXT_MAX_LENGTH``)."""
BASELINE = "mean rank (4 scores) @128"
"""The probe's rule before: the mean rank of the four scores (``mean_rank``), 128 tokens."""
EXTRA_K = (1, 20)
"""kNN neighbourhoods besides the probe's k = 5, for the rule that averages k = 1, 5, 20."""


def truth() -> dict[str, dict[str, float]]:
    """{dataset: {model: true accuracy}}: the better learning rate of the truth grid.

    A cell counts only once both learning rates have run: an interrupted grid
    leaves one, and the better of one is not the truth.
    """
    runs = json.loads((DATA_DIR / "truth.json").read_text())["runs"]
    rates: dict[tuple[str, str], dict[float, float]] = {}
    for run in runs:
        if run["kind"] == "truth":
            rates.setdefault((run["dataset"], run["model"]), {})[run["learning_rate"]] = run[
                "test_accuracy"
            ]
    out: dict[str, dict[str, float]] = {}
    for (dataset, model), by_rate in rates.items():
        if set(TRUTH_LRS) <= set(by_rate):
            out.setdefault(dataset, {})[model] = max(by_rate.values())
    return out


def _features(model: str, texts: list[str], max_length: int) -> np.ndarray:
    key = hashlib.sha256(
        json.dumps([model, max_length, texts], ensure_ascii=False).encode()
    ).hexdigest()[:24]
    path = FEATURE_CACHE / f"{model}-{max_length}-{key}.npy"
    if path.is_file():
        return np.load(path)
    x = extract_text_features(model_dir(model), texts, max_length=max_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    return x


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def probe_scores(dataset: str, models) -> dict[str, dict[str, dict[str, float]]]:
    """{variant: {model: {score: value}}} for variants "256", "128", "128-l2"."""
    splits = load_dataset(dataset)
    texts = splits["train"][0] + splits["val"][0]
    names = splits["train"][1] + splits["val"][1]
    classes = sorted(set(names))
    labels = np.array([classes.index(n) for n in names])
    out: dict[str, dict[str, dict[str, float]]] = {}
    for model in models:
        for length in LENGTHS:
            x = _features(model, texts, length)
            ref = _features(model, reference_texts(), length)
            out.setdefault(str(length), {})[model] = score_features(x, labels, ref)
            if length == 128:
                out.setdefault("128-l2", {})[model] = score_features(_l2(x), labels, _l2(ref))
                for k in EXTRA_K:
                    out["128"][model][f"knn_k{k}"] = scores.knn_accuracy(x, labels, k=k)
    return out


def _order_score(ranked: list) -> dict[str, float]:
    """A ranking as a score (higher = better) for the taus."""
    return {entry.name: -float(entry.rank) for entry in ranked}


def _ordered(by_model: dict[str, dict[str, float]], key) -> dict[str, float]:
    """Models sorted by ``key`` (lower first), ties by MMD then name, as a score for the taus."""
    order = sorted(by_model, key=lambda m: (key(m), by_model[m]["mmd"], m))
    return {m: -float(place) for place, m in enumerate(order)}


def mean_rank(by_model: dict[str, dict[str, float]], subset=SCORES) -> dict[str, float]:
    """The probe's rule before ``scores.recommend`` changed: mean rank over ``subset``.

    Each score ranks the candidates (1 = best, ties share the average rank);
    candidates go by their mean rank over the scores of ``subset``, then MMD,
    then name. Kept here so the baseline runs in the same script as the rule
    that replaced it.
    """

    def ranks(score: str) -> dict[str, float]:
        v = {m: by_model[m][score] for m in by_model}
        return {
            m: sum(o > v[m] for o in v.values()) + (sum(o == v[m] for o in v.values()) + 1) / 2
            for m in v
        }

    table = {score: ranks(score) for score in subset}
    return _ordered(by_model, lambda m: sum(table[s][m] for s in subset) / len(subset))


def rules(values: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """{rule: {model: score}} for every single score, the old rule and the probe's rule."""
    out: dict[str, dict[str, float]] = {}
    for variant, by_model in values.items():
        for score in SCORES:
            out[f"{score} @{variant}"] = {m: v[score] for m, v in by_model.items()}
        out[f"mean rank (4 scores) @{variant}"] = mean_rank(by_model)
        out[f"kNN, then LP @{variant}"] = _order_score(scores.recommend(by_model))
    return out


def family(values: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """{rule: {model: score}}: the rules leave-one-dataset-out chooses among.

    Mean rank over every non-empty subset of the four scores (the old rule's
    kind; a subset of one is that score alone), on raw and L2-normalised
    features; and rules led by kNN, the best single score: the probe's rule
    (kNN, then linear probe), kNN averaged over k = 1, 5, 20 (less hostage to
    one k), the mean of the two probe accuracies (same unit, so a plain mean),
    and a mean rank that counts kNN twice beside the other three. kNN on
    L2-normalised features is kNN itself (it compares rows by cosine), so the
    kNN-led rules run on raw features only.
    """
    out: dict[str, dict[str, float]] = {}
    for variant in ("128", "128-l2"):
        by_model = values[variant]
        for k in range(1, len(SCORES) + 1):
            for subset in combinations(SCORES, k):
                name = f"mean rank ({'+'.join(SHORT[s] for s in subset)}) @{variant}"
                out[name] = mean_rank(by_model, subset)
    by_model = values["128"]
    out[CURRENT] = _order_score(scores.recommend(by_model))
    ks = [f"knn_k{k}" for k in EXTRA_K] + ["knn_accuracy"]
    out["kNN over k=1,5,20, then LP @128"] = _ordered(
        by_model,
        lambda m: (
            -np.mean([by_model[m][k] for k in ks]),
            -by_model[m]["linear_probe_accuracy"],
        ),
    )
    out["mean of kNN and LP accuracy @128"] = _ordered(
        by_model,
        lambda m: -(by_model[m]["knn_accuracy"] + by_model[m]["linear_probe_accuracy"]) / 2,
    )
    twice = mean_rank(by_model, ("knn_accuracy", *SCORES))
    out["mean rank (kNN x2+LP+LogME+H) @128"] = twice
    return out


def leave_one_out(per_dataset: dict[str, dict[str, tuple[float, float, float]]]) -> None:
    """Choose a rule of ``family`` on all datasets but one, score it on that one, for each.

    The choice: highest mean tau_w on the others, then lowest regret, then the
    probe's rule. The mean over held-out datasets is what a rule picked this
    way can be expected to reach on data it was not picked on; a rule change is
    only worth making when it beats the rule it replaces there. The probe's
    rule and the old one are fixed rules, so their held-out figures are their
    in-sample ones, shown beside each fold.
    """
    datasets = sorted(per_dataset)
    if len(datasets) < 2:
        return
    names = sorted(per_dataset[datasets[0]])

    def fit(rule: str, on: list[str]) -> tuple:
        rows = np.array([per_dataset[d][rule] for d in on])
        return (round(rows[:, 0].mean(), 9), -round(rows[:, 2].mean(), 9), rule == CURRENT)

    print("\nleave one dataset out: a rule chosen on the others, scored on the one left out")
    print(
        "held out          chosen rule                            tau_w    tau regret"
        " | today's rule tau_w tau regret | old rule tau_w tau regret"
    )
    rows: dict[str, list] = {"chosen": [], CURRENT: [], BASELINE: []}
    for held in datasets:
        rest = [d for d in datasets if d != held]
        best = max(names, key=lambda rule: fit(rule, rest))
        rows["chosen"].append(per_dataset[held][best])
        rows[CURRENT].append(per_dataset[held][CURRENT])
        rows[BASELINE].append(per_dataset[held][BASELINE])
        cells = [" ".join(f"{v:6.3f}" for v in rows[r][-1]) for r in rows]
        print(f"{held:17s} {best:38s} {cells[0]} | {cells[1]} | {cells[2]}")
    for label, rule in (
        ("chosen rules", "chosen"),
        ("today's rule", CURRENT),
        ("old rule", BASELINE),
    ):
        a = np.array(rows[rule])
        print(
            f"left-out mean, {label:12s}: tau_w {a[:, 0].mean():.3f}, tau {a[:, 1].mean():.3f},"
            f" regret {a[:, 2].mean():.2f}, worst tau_w {a[:, 0].min():.3f}"
        )
    overall = sorted(names, key=lambda rule: fit(rule, datasets), reverse=True)[:8]
    print(
        f"in-sample best of the family (all {len(datasets)} datasets;"
        " optimistic, for reading only):"
    )
    for rule in overall:
        a = np.array([per_dataset[d][rule] for d in datasets])
        print(
            f"  {rule:40s} tau_w {a[:, 0].mean():.3f}  regret {a[:, 2].mean():.2f}"
            f"  worst {a[:, 0].min():.3f}"
        )


def _taus(true: dict[str, float], predicted: dict[str, float]) -> tuple[float, float, float]:
    from scipy.stats import kendalltau, weightedtau

    models = sorted(true)
    t = np.array([true[m] for m in models])
    p = np.array([predicted[m] for m in models])
    tau_w = float(weightedtau(t, p).statistic)
    tau = float(kendalltau(t, p).statistic)
    picked = models[int(np.argmax(p))]
    regret = 100.0 * (t.max() - true[picked])
    return tau_w, tau, regret


def recipe_table() -> None:
    """The form's default recipe per cell against the grid and the previous defaults.

    grid best = the best test accuracy of any grid run of the cell (an oracle:
    it peeks at test); grid by validation = the grid run with the best
    validation macro-F1, what a person running the grid would pick. Cost is
    in epochs of training (one per rate tried, plus the chosen run's later
    epochs), against one 3-epoch run; seconds are shown too, but a shared
    machine disturbs them.
    """
    runs = json.loads((DATA_DIR / "truth.json").read_text())["runs"]
    cells: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for run in runs:
        cells.setdefault((run["dataset"], run["model"]), {}).setdefault(run["kind"], []).append(run)
    rows = [(k, v) for k, v in sorted(cells.items()) if "recipe" in v]
    if not rows:
        return
    print(
        "\nrecipe (form default) per cell: test accuracy, gap to the grid in points, cost"
        "\ncell                              previous recipe  rate    grid best  by val"
        "  gap best  gap val  epochs  cost"
    )
    gaps = []
    for (dataset, model), kinds in rows:
        recipe = kinds["recipe"][0]
        grid = kinds.get("truth", []) + kinds.get("grid", [])
        best = max(r["test_accuracy"] for r in grid)
        by_val = max(grid, key=lambda r: r["val_macro_f1"])["test_accuracy"]
        previous = kinds.get("previous", [{}])[0].get("test_accuracy")
        one_run = [r["wall_seconds"] for r in grid if r["epochs"] == 3]
        cost = recipe["epochs_trained"] / 3
        gap_best, gap_val = (
            100 * (recipe["test_accuracy"] - best),
            100 * (recipe["test_accuracy"] - by_val),
        )
        gaps.append((gap_best, gap_val, cost, len(grid)))
        shown = f"{previous:.3f}" if previous is not None else "  -  "
        print(
            f"{dataset + ' / ' + model:33s} {shown:>8s} {recipe['test_accuracy']:.3f}"
            f"  {recipe.get('learning_rate_trained') or 0:.0e}  {best:.3f} ({len(grid)})"
            f"  {by_val:.3f} {gap_best:+8.1f} {gap_val:+8.1f} {recipe['epochs_trained']:5d}"
            f"  {cost:.2f}x ({recipe['wall_seconds']:.0f} s vs"
            f" {np.median(one_run):.0f} s)"
        )
    a = np.array(gaps)
    print(
        f"mean gap to the grid's best cell {a[:, 0].mean():+.1f} points"
        f" (worst {a[:, 0].min():+.1f});"
        f" to the grid chosen on validation {a[:, 1].mean():+.1f}; cost {a[:, 2].mean():.2f}x"
        " one 3-epoch run (epochs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--recipe-only", action="store_true", help="only the recipe table")
    parser.add_argument(
        "--models", default=",".join(MODELS), help="candidates to rank (default: every one)"
    )
    args = parser.parse_args()
    if args.recipe_only:
        recipe_table()
        return
    gold = truth()
    table: dict[str, list[tuple[float, float, float]]] = {}
    per_dataset: dict[str, dict[str, tuple[float, float, float]]] = {}
    wanted = args.models.split(",")
    for dataset in args.datasets.split(","):
        models = [m for m in MODELS if m in wanted and m in gold.get(dataset, {})]
        if len(models) < 3:
            print(f"{dataset}: ground truth for {len(models)} models only; skipped")
            continue
        true = {m: gold[dataset][m] for m in models}
        values = probe_scores(dataset, models)
        shown = ", ".join(f"{m} {true[m]:.3f}" for m in models)
        print(f"{dataset}: true accuracy {shown}")
        for rule, predicted in rules(values).items():
            table.setdefault(rule, []).append(_taus(true, predicted))
        per_dataset[dataset] = {
            rule: _taus(true, predicted) for rule, predicted in family(values).items()
        }
        per_dataset[dataset][BASELINE] = table[BASELINE][-1]
        for label, rule in (("today's rule", CURRENT), ("old rule", BASELINE)):
            order = sorted(rules(values)[rule].items(), key=lambda item: -item[1])
            t_w, t, regret = table[rule][-1]
            print(
                f"  {label}: {', '.join(m for m, _ in order)};"
                f" tau_w {t_w:.3f}, tau {t:.3f}, regret {regret:.2f}"
            )
    if not table:
        raise SystemExit("no dataset has ground truth yet: run bench/transfer_truth.py")
    n = len(next(iter(table.values())))
    print(f"\nmean over {n} datasets       tau_w   tau   regret(pts)  worst tau_w")
    for rule, rows in table.items():
        a = np.array(rows)
        print(
            f"{rule:38s} {a[:, 0].mean():6.3f} {a[:, 1].mean():6.3f} {a[:, 2].mean():8.2f}"
            f" {a[:, 0].min():10.3f}"
        )
    new = np.array(table[CURRENT])
    for rule in (BASELINE, "mean rank (4 scores) @256"):
        old = np.array(table[rule])
        print(
            f"{CURRENT} vs {rule}: tau_w {new[:, 0].mean():.3f} / {old[:, 0].mean():.3f}"
            f" = {new[:, 0].mean() / old[:, 0].mean():.2f}x; regret {new[:, 2].mean():.2f}"
            f" vs {old[:, 2].mean():.2f} points; worst tau_w {new[:, 0].min():.3f}"
            f" vs {old[:, 0].min():.3f}"
        )
    leave_one_out(per_dataset)
    recipe_table()


if __name__ == "__main__":
    main()
