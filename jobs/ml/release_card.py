"""The model-card text of release checks: tables and the usage snippet. No Django."""

from __future__ import annotations


def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def calibration_markdown(result: dict, *, repo_id: str) -> str:
    """The calibration table, the threshold (if any) and how to apply both in code."""
    t = result["temperature"]
    lines = [
        "| | ECE (15 bins) | NLL | Brier |",
        "|---|---|---|---|",
        f"| test, as trained | {_num(result['test_before']['ece'])} | "
        f"{_num(result['test_before']['nll'])} | {_num(result['test_before']['brier'])} |",
        f"| test, temperature {t:.3f} | {_num(result['test_after']['ece'])} | "
        f"{_num(result['test_after']['nll'])} | {_num(result['test_after']['brier'])} |",
        "",
    ]
    decision = result.get("decision")
    code = [
        "```python",
        "import torch",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        f'model = AutoModelForSequenceClassification.from_pretrained("{repo_id}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
        f"TEMPERATURE = {t:.6g}  # fitted on the validation split",
        'inputs = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")',
        "with torch.no_grad():",
        "    probs = torch.softmax(model(**inputs).logits / TEMPERATURE, dim=-1)",
    ]
    if decision:
        index = decision["positive_index"]
        on_val, on_test = decision["validation"], decision["test"]
        lines += [
            f"Decision threshold for **{decision['positive_class']}**: "
            f"{decision['threshold']:.4f} on the calibrated probability, chosen on validation "
            f"for {decision['target']} >= {decision['target_value']:g} "
            f"({'reached' if on_val['reached'] else 'not reached'} there: recall "
            f"{_num(on_val['recall'])}, precision {_num(on_val['precision'])}). On the test "
            f"split it gives recall {_num(on_test['recall'])}, precision "
            f"{_num(on_test['precision'])}, specificity {_num(on_test['specificity'])}.",
            "",
        ]
        code += [
            f"THRESHOLD = {decision['threshold']:.6g}  # {decision['target']} >= "
            f"{decision['target_value']:g} on validation",
            f"is_{_identifier(decision['positive_class'])} = probs[:, {index}] >= THRESHOLD",
        ]
    code.append("```")
    return "\n".join([*lines, "Usage with the calibration applied:", "", *code])


def _identifier(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in str(name).lower()).strip("_")
    return cleaned if cleaned and not cleaned[0].isdigit() else "positive"


def leakage_markdown(result: dict) -> str:
    """How many test rows repeat training rows, a few examples, the score without them."""
    lines = [
        "| | test rows | accuracy | macro-F1 |",
        "|---|---|---|---|",
        f"| all test rows | {result['n_test']} | {_num(result['all']['accuracy'])} | "
        f"{_num(result['all']['macro_f1'])} |",
    ]
    clean = result.get("clean")
    if clean:
        lines.append(
            f"| without the {result['n_duplicates']} duplicates | {clean['n']} | "
            f"{_num(clean['accuracy'])} | {_num(clean['macro_f1'])} |"
        )
    examples = result.get("examples") or []
    if examples:
        # Row positions only: the texts are the dataset's, and a card travels further
        # than the data's sensitivity allows. The version page shows them to its keepers.
        shown = ", ".join(_pair(ex) for ex in examples[:10])
        lines += ["", f"Duplicated rows (positions within the splits): {shown}."]
    return "\n".join(lines)


def _pair(ex: dict) -> str:
    if ex["how"] == "dhash":
        how = f"dHash {ex['distance']} bits apart"
    else:
        how = "exact" if ex["how"] == "exact" else f"cosine {ex['cosine']:.3f}"
    return f"test {ex['test_index']} = train {ex['train_index']} ({how})"


def forgetting_markdown(result: dict) -> str:
    """Linear CKA with the base per layer, the neighbours kept and, for an image backbone,
    the kNN labels of the labelled digits before and after."""
    rows = ["| layer | linear CKA with the base |", "|---|---|"]
    for row in result["layers"]:
        name = row.get("name") or ("embeddings" if row["layer"] == 0 else f"layer {row['layer']}")
        flat = {"fine-tune": " (constant after the fine-tune)", "base": " (constant in the base)"}
        rows.append(f"| {name}{flat.get(row.get('constant'), '')} | {row['cka']:.4f} |")
    what = "image" if result.get("modality") == "vision" else "sentence"
    lines = [
        *rows,
        "",
        f"Nearest-neighbour agreement (last layer, k = {result['k']}): "
        f"{result['knn_agreement']:.3f} of each reference {what}'s neighbours are kept.",
    ]
    knn = result.get("labelled")
    if knn:
        lines += [
            "",
            f"kNN labels (k = {knn['k']}, leave-one-out, cosine) of {knn['n']} handwritten "
            "digits (scikit-learn's load_digits, upscaled):",
            "",
            "| | base | fine-tune |",
            "|---|---|---|",
            f"| kNN accuracy | {knn['accuracy_before']:.3f} | {knn['accuracy_after']:.3f} |",
            f"| same kNN label as the base | 1.000 | {knn['label_agreement']:.3f} |",
            "",
            result.get("verdict", ""),
        ]
    return "\n".join(lines).rstrip()


def drift_markdown(result: dict) -> str:
    """The newest batch's PSI and MMD against the fine-tune's own data, with the bands."""
    mmd = result["mmd"]
    lines = [
        f"Batch #{result['batch']} of production inputs ({result['n_batch']} compared of "
        f"{result['n_batch_rows']} uploaded) against {result['n_reference']} of the fine-tune's "
        f"{result['n_pool']} {result['reference_rows']}.",
        "",
        "| | value | band |",
        "|---|---|---|",
        f"| PSI, predicted classes | {result['psi_class']:.4f} | {result['band']} |",
        f"| PSI, top-class confidence ({result['confidence_bins']} bins) | "
        f"{result['psi_confidence']:.4f} | {result['band_confidence']} |",
        f"| MMD² of {result.get('embedding', 'the encoder embeddings')} "
        f"(RBF, width {mmd['sigma']:.3g}) | "
        f"{mmd['mmd2']:.5f} | p = {mmd['p_value']:.3f} ({mmd['permutations']} permutations) |",
        "",
        "PSI bands: below 0.1 stable, 0.1 to 0.25 watch, 0.25 and above retrain.",
        "",
        "| class | reference rows | batch |",
        "|---|---|---|",
    ]
    for name, ref, cur in zip(
        result["classes"],
        result["class_shares"]["reference"],
        result["class_shares"]["batch"],
        strict=True,
    ):
        shown = str(name).replace("|", "\\|")
        lines.append(f"| {shown} | {ref:.1%} | {cur:.1%} |")
    return "\n".join(lines)


def _p(value: float) -> str:
    return f"{value:.4f}" if value >= 1e-4 else f"{value:.1e}"


def association_markdown(result: dict) -> str:
    """Effect size and p-value per word-association test, WEAT and SEAT, with its source."""
    adjusted = result.get("correction") is not None
    rows = [
        "| test | X vs Y, A vs B | WEAT d | WEAT p | SEAT d | SEAT p |",
        "|---|---|---|---|---|---|",
    ]

    def p_cell(test: dict) -> str:
        raw = _p(test["p_two_sided"])
        return f"{raw} (Holm {_p(test['p_holm'])})" if adjusted else raw

    for t in result["tests"]:
        n = t["names"]
        rows.append(
            f"| {t['name']} | {n['x']} vs {n['y']}, {n['a']} vs {n['b']} | "
            f"{t['weat']['effect_size']:+.3f} | {p_cell(t['weat'])} | "
            f"{t['seat']['effect_size']:+.3f} | {p_cell(t['seat'])} |"
        )
    judged_on = (
        f"Judged at Holm-adjusted p < {result['alpha']:g} over the "
        f"{result['correction']['family']} tests run together."
        if adjusted
        else f"Judged at p < {result['alpha']:g}."
    )
    sources = [f"- {t['name']}: {t['source']}" for t in result["tests"]]
    return "\n".join(
        [
            *rows,
            "",
            "d: Caliskan et al.'s effect size (positive: X closer to A); p: two-sided "
            f"permutation p-value ({result['permutations']:,} re-deals, or all of them when "
            f"few). {judged_on} SEAT places each word in "
            f"{len(result['templates'])} bleached sentences (May et al. 2019).",
            "",
            "Word lists:",
            *sources,
        ]
    )


def slices_markdown(result: dict) -> str:
    """Per slice: rows, accuracy, recall and false-positive rate with intervals; the gaps."""

    def cell(row: dict, name: str) -> str:
        value, ci = row.get(name), row.get(f"{name}_ci")
        if value is None:
            return "n/a"
        return f"{value:.3f} ({ci[0]:.3f} to {ci[1]:.3f})" if ci else f"{value:.3f}"

    rows = [
        f"| {result['column']} | rows | accuracy | recall | false-positive rate |",
        "|---|---|---|---|---|",
    ]
    for row in result["slices"]:
        mark = "" if row["judged"] else " (too few rows, not judged)"
        rows.append(
            f"| {row['slice']}{mark} | {row['n']} | {cell(row, 'accuracy')} | "
            f"{cell(row, 'recall')} | {cell(row, 'fpr')} |"
        )
    family = result.get("gap_intervals")
    gaps = []
    for name, words in (("accuracy", "accuracy"), ("recall", "recall"), ("fpr", "FPR")):
        gap = result["gaps"].get(name)
        if gap:
            level = f"{gap['ci_level']:.2%} simultaneous" if family else "95%"
            ci = f" ({level} CI {gap['ci'][0]:.3f} to {gap['ci'][1]:.3f})" if gap["ci"] else ""
            gaps.append(f"- {words}: {gap['gap']:.3f}{ci}, {gap['high']} over {gap['low']}")
    simultaneous = (
        [
            "",
            f"The gaps' intervals are simultaneous: Bonferroni-adjusted over the "
            f"{family['comparisons']} comparisons (every pair of judged slices, for each metric) "
            f"the largest gaps were picked from, each at {family['level']:.2%}, so together they "
            "hold at least 95% of the time.",
        ]
        if family and gaps
        else []
    )
    return "\n".join(
        [
            *rows,
            "",
            "Per-slice intervals are 95% each, not adjusted for the number of slices: Wilson for "
            "proportions, bootstrap for macro averages.",
            *(["", "Largest gaps between slices:", *gaps] if gaps else []),
            *simultaneous,
        ]
    )


_RUNTIMES = (
    ("pytorch", "PyTorch (fp32)"),
    ("onnxruntime", "ONNX Runtime (fp32)"),
    ("onnxruntime_int8", "ONNX Runtime (int8 dynamic)"),
)


def _ms(latency: dict) -> str:
    return f"{latency['p50_ms']:.1f} / {latency['p95_ms']:.1f}"


def _serving_image_base_markdown(result: dict) -> str:
    """A base image backbone: pooled-feature parity, size and latency per runtime."""
    lat = result["latency"]
    lines = [
        "| runtime | max feature diff | lowest cosine | size MiB | batch 1 p50 / p95 ms | "
        "batch 32 p50 / p95 ms |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in _RUNTIMES:
        if key not in lat:
            continue
        c = result["compared"][key]
        size = result["sizes"].get(key)
        lines.append(
            f"| {name} | {c['max_abs_diff']:.2e} | {c['min_cosine']:.6f} | "
            f"{'n/a' if size is None else f'{size / 2**20:.2f}'} | "
            f"{_ms(lat[key]['batch_1'])} | {_ms(lat[key]['batch_32'])} |"
        )
    lines += [
        "",
        f"Pooled features ({result['dim']}) of the base backbone, no head, on {result['n']} "
        f"reference crops of scikit-learn's sample photos ({result['threads']} CPU threads, "
        f"opset {result['opset']}, dynamic batch axis).",
    ]
    return "\n".join(lines)


def serving_markdown(result: dict) -> str:
    """Parity and CPU latency per runtime; for a fine-tune also accuracy and file size."""
    lat = result["latency"]
    if result.get("base") and result.get("modality") == "vision":
        return _serving_image_base_markdown(result)
    if result.get("base"):
        lines = [
            "| runtime | batch 1 p50 / p95 ms | batch 32 p50 / p95 ms |",
            "|---|---|---|",
        ]
        for key, name in _RUNTIMES:
            if key in lat:
                lines.append(
                    f"| {name} | {_ms(lat[key]['batch_1'])} | {_ms(lat[key]['batch_32'])} |"
                )
        lines += [
            "",
            f"Largest hidden-state difference, ONNX Runtime vs PyTorch: "
            f"{result['max_abs_hidden_diff']:.2e} over {result['n']} reference sentences "
            f"({result['threads']} CPU threads, opset {result['opset']}).",
        ]
        return "\n".join(lines)
    lines = [
        "| runtime | test accuracy | labels as PyTorch | max prob. diff | max logit diff | "
        "size MiB | batch 1 p50 / p95 ms | batch 32 p50 / p95 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, name in _RUNTIMES:
        if key not in result["compared"]:
            continue
        c = result["compared"][key]
        size = result["sizes"].get(key)
        lines.append(
            f"| {name} | {c['accuracy']:.3f} | {c['label_agreement']:.3f} | "
            f"{c['max_abs_prob_diff']:.2e} | {c['max_abs_logit_diff']:.2e} | "
            f"{'n/a' if size is None else f'{size / 2**20:.1f}'} | "
            f"{_ms(lat[key]['batch_1'])} | {_ms(lat[key]['batch_32'])} |"
        )
    lines += [
        "",
        f"On the {result['n']} test rows, {result['threads']} CPU threads, ONNX opset "
        f"{result['opset']}, dynamic batch axis.",
    ]
    registered = result.get("registered") or {}
    if registered.get("version_id"):
        lines.append(
            f"The checked ONNX files are in {registered['repo_id']} {registered['label']}."
        )
    return "\n".join(lines)


def inconsistency_markdown(result: dict) -> str:
    """How many rows change label against the other version, on which inputs, and between
    which labels."""
    other = f"{result['other']['repo_id']} {result['other']['label']}"
    classes = result["classes"]
    inputs = result.get("inputs") or {"source": "test"}
    on = (
        f"{result['n']} test rows"
        if inputs["source"] == "test"
        else f"{result['n']} production inputs of drift batch #{inputs['batch']}"
    )
    labelled = (
        f"; {result['fixed']} now right, {result['broken']} now wrong. Accuracy "
        f"{result['accuracy_new']:.3f} (this version) and {result['accuracy_old']:.3f} ({other})."
        if result.get("labelled", True)
        else "; the inputs have no labels, so right and wrong are not known."
    )
    lines = [
        f"Compared with {other} on {on}: {result['n_changed']} change label "
        f"({result['share']:.1%}){labelled}",
        "",
        f"| {other} ↓ / this version → | " + " | ".join(classes) + " |",
        "|---|" + "---|" * len(classes),
    ]
    for name, row in zip(classes, result["confusion"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)
