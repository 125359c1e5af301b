"""Hugging Face-format model cards for fine-tuned models.

The card is README.md text: YAML metadata (license, base model and how this
model derives from it, datasets, the model-index with the test metrics,
CO2 emissions) written through ``huggingface_hub.ModelCardData`` so the Hub,
``huggingface_hub.ModelCard`` and the portal's own importer read it back,
followed by a Markdown body for people. Nothing here imports Django.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .verdict import frozen_verdict

__all__ = ["build_model_card", "hf_license"]

# License identifiers the Hugging Face Hub accepts in card metadata
# (https://huggingface.co/docs/hub/repositories-licenses), lower case.
HF_LICENSES = frozenset(
    [
        "apache-2.0",
        "mit",
        "openrail",
        "bigscience-openrail-m",
        "creativeml-openrail-m",
        "bigscience-bloom-rail-1.0",
        "bigcode-openrail-m",
        "afl-3.0",
        "artistic-2.0",
        "bsl-1.0",
        "bsd",
        "bsd-2-clause",
        "bsd-3-clause",
        "bsd-3-clause-clear",
        "c-uda",
        "cc",
        "cc0-1.0",
        "cc-by-2.0",
        "cc-by-2.5",
        "cc-by-3.0",
        "cc-by-4.0",
        "cc-by-sa-3.0",
        "cc-by-sa-4.0",
        "cc-by-nc-2.0",
        "cc-by-nc-3.0",
        "cc-by-nc-4.0",
        "cc-by-nd-4.0",
        "cc-by-nc-nd-3.0",
        "cc-by-nc-nd-4.0",
        "cc-by-nc-sa-2.0",
        "cc-by-nc-sa-3.0",
        "cc-by-nc-sa-4.0",
        "cdla-sharing-1.0",
        "cdla-permissive-1.0",
        "cdla-permissive-2.0",
        "wtfpl",
        "ecl-2.0",
        "epl-1.0",
        "epl-2.0",
        "etalab-2.0",
        "eupl-1.1",
        "eupl-1.2",
        "agpl-3.0",
        "gfdl",
        "gpl",
        "gpl-2.0",
        "gpl-3.0",
        "lgpl",
        "lgpl-2.1",
        "lgpl-3.0",
        "isc",
        "h-research",
        "intel-research",
        "lppl-1.3c",
        "ms-pl",
        "apple-ascl",
        "apple-amlr",
        "mpl-2.0",
        "odc-by",
        "odbl",
        "openrail++",
        "osl-3.0",
        "postgresql",
        "ofl-1.1",
        "ncsa",
        "unlicense",
        "zlib",
        "pddl",
        "lgpl-lr",
        "deepfloyd-if-license",
        "fair-noncommercial-research-license",
        "llama2",
        "llama3",
        "llama3.1",
        "llama3.2",
        "llama3.3",
        "llama4",
        "gemma",
        "unknown",
        "other",
    ]
)

_TASK_NAMES = {
    "text-classification": "Text Classification",
    "image-classification": "Image Classification",
}

_STRATEGY_TEXT = {
    "head": "head only: the pretrained backbone stayed frozen; only a new classification "
    "head (and the pooler, where the architecture has one) was trained",
    "partial": "partial unfreeze: the last layers of the backbone and a new classification "
    "head were trained; the embeddings and lower layers stayed frozen",
    "full": "full fine-tuning: every weight of the backbone and a new classification head "
    "were trained",
    "lora": "LoRA: low-rank adapters on the backbone and a new classification head were "
    "trained; the base weights stayed frozen and are not part of this repository",
}


def hf_license(license_id: str) -> tuple[str, str | None]:
    """(Hub license field, license_name or None) for an SPDX id.

    ``Apache-2.0`` -> ``apache-2.0``; ``GPL-3.0-only`` -> ``gpl-3.0``; an id the
    Hub does not list -> ``other`` with the id as ``license_name``.
    """
    spdx = (license_id or "unknown").strip().lower()
    for suffix in ("-only", "-or-later"):
        if spdx.endswith(suffix) and spdx.removesuffix(suffix) in HF_LICENSES:
            spdx = spdx.removesuffix(suffix)
    if spdx in HF_LICENSES:
        return spdx, None
    name = "".join(c if c.isalnum() or c in ".-" else "-" for c in spdx).strip("-") or "custom"
    return "other", name


def _cell(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _cell(value) if value is not None else "-"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _text(value: str, fallback: str) -> str:
    value = (value or "").strip()
    return value if value else fallback


def _evaluation(metrics: Mapping, baseline: Mapping, class_names: list[str], name: str) -> str:
    parts = [
        f"Measured on the held-out test split ({_num(metrics.get('n'))} examples), which was "
        "used neither for training nor for early stopping. The baseline is "
        f"{name}, trained on the same training split without any pretrained weights: "
        "the difference is what the pretrained model bought.",
        "",
        "### Overall",
        "",
        _overall_table(metrics, baseline),
        *_frozen_head_lines(metrics, baseline),
        "",
        "### Per class",
        "",
        _per_class_table(metrics, baseline, class_names),
    ]
    parts += _confusion_section(metrics, class_names)
    parts += _slices_section(metrics, baseline)
    parts += [
        "",
        "### Calibration",
        "",
        "ECE is the expected calibration error over 15 equal-width bins of the top-class "
        "probability: the average gap between how confident the model is and how often it "
        "is right. The Brier score is the mean over examples of the summed squared "
        "difference between the predicted probabilities and the one-hot true label. "
        "Probabilities are the raw softmax outputs, without temperature scaling.",
    ]
    return "\n".join(parts)


def _frozen_head_lines(metrics: Mapping, baseline: Mapping) -> list[str]:
    """The head-only probe beside the fine-tune: what fine-tuning the encoder added."""
    frozen = baseline.get("frozen_head") or {}
    if "macro_f1" not in frozen:
        return []
    return [
        "",
        f"A linear head on the base model's frozen features (logistic regression, trained on "
        f"the same training split) reaches accuracy {_num(frozen.get('accuracy'))} and "
        f"macro-F1 {_num(frozen.get('macro_f1'))} on this test split. "
        + frozen_verdict(metrics, frozen),
    ]


def _overall_table(metrics: Mapping, baseline: Mapping) -> str:
    rows = [
        ("accuracy", "accuracy"),
        ("macro-F1", "macro_f1"),
        ("ECE (15 bins, lower is better)", "ece"),
        ("Brier score (multi-class, 0-2, lower is better)", "brier"),
    ]
    return _table(
        ["metric", "this model", "baseline"],
        [[label, _num(metrics.get(key)), _num(baseline.get(key))] for label, key in rows],
    )


def _per_class_table(metrics: Mapping, baseline: Mapping, class_names: list[str]) -> str:
    per_class = metrics.get("per_class", {})
    base_class = baseline.get("per_class", {})
    rows = []
    for cls in class_names:
        m = per_class.get(cls, {})
        b = base_class.get(cls, {})
        rows.append(
            [
                _cell(cls),
                _num(m.get("precision")),
                _num(m.get("recall")),
                _num(m.get("f1")),
                _num(b.get("f1")),
                _num(m.get("support")),
            ]
        )
    return _table(["class", "precision", "recall", "F1", "baseline F1", "support"], rows)


def _confusion_section(metrics: Mapping, class_names: list[str]) -> list[str]:
    matrix = metrics.get("confusion_matrix")
    if not matrix:
        return []
    return [
        "",
        "### Confusion matrix",
        "",
        "Rows are the true class, columns the predicted class.",
        "",
        _table(
            ["true \\ predicted", *(_cell(c) for c in class_names)],
            [
                [_cell(cls), *(_num(int(v)) for v in row)]
                for cls, row in zip(class_names, matrix, strict=False)
            ],
        ),
    ]


def _slices_section(metrics: Mapping, baseline: Mapping) -> list[str]:
    slices = metrics.get("slices")
    if not slices:
        return []
    base_slices = baseline.get("slices", {})
    return [
        "",
        "### Per slice",
        "",
        _table(
            ["slice", "n", "accuracy", "macro-F1", "baseline macro-F1"],
            [
                [
                    _cell(key),
                    _num(value.get("n")),
                    _num(value.get("accuracy")),
                    _num(value.get("macro_f1")),
                    _num(base_slices.get(key, {}).get("macro_f1")),
                ]
                for key, value in slices.items()
            ],
        ),
    ]


def build_model_card(
    *,
    repo_id: str,
    base_repo_id: str,
    base_revision: str,
    relation: str,
    license_id: str,
    pipeline_tag: str,
    dataset_ids: list[str],
    class_names: list[str],
    metrics: dict,
    baseline: dict,
    hyperparameters: dict,
    strategy: str,
    training: dict,
    emissions: dict,
    intended_use: str,
    limitations: str,
    bias_notes: str,
    provenance: dict,
    library_name: str | None = None,
    baseline_name: str | None = None,
    selection: dict | None = None,
) -> str:
    """The README.md of a fine-tuned model: YAML metadata, then a Markdown body.

    ``relation`` is "finetune" (a full model) or "adapter" (LoRA weights that
    need the base). ``metrics`` and ``baseline`` are ``evaluate.classification_report``
    dicts, ``emissions`` an ``evaluate.energy_estimate`` dict, ``training`` holds
    device, seconds, gpu_hours, epochs_run, best_epoch and samples. The
    model-index carries accuracy and macro-F1 on the test split, so
    ``ModelCard(text).data.eval_results`` gives them back.
    ``library_name`` defaults to "peft" for adapters, else "transformers";
    ``baseline_name`` describes the baseline (default from ``pipeline_tag``).
    ``selection`` records the study the model won (``study_selection``), so the
    next team reads what was compared and why next to the model itself.
    """
    facts = _CardFacts(**locals())  # first, while the arguments are all the locals there are
    from huggingface_hub import ModelCard

    data = _card_data(facts)
    body = _card_intro(facts) + _selection_section(facts.selection) + _card_outro(facts)
    for key, value in provenance.items():
        body += f"- {_cell(key)}: {_cell(_hp(value))}\n"
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


@dataclass(frozen=True)
class _CardFacts:
    """What ``build_model_card`` was given, checked, with the defaults it derives."""

    repo_id: str
    base_repo_id: str
    base_revision: str
    relation: str
    license_id: str
    pipeline_tag: str
    dataset_ids: list[str]
    class_names: list[str]
    metrics: dict
    baseline: dict
    hyperparameters: dict
    strategy: str
    training: dict
    emissions: dict
    intended_use: str
    limitations: str
    bias_notes: str
    provenance: dict
    library_name: str | None = None
    baseline_name: str | None = None
    selection: dict | None = None

    def __post_init__(self) -> None:
        if self.relation not in ("finetune", "adapter"):
            raise ValueError(f"relation must be 'finetune' or 'adapter', got {self.relation!r}")
        if not self.dataset_ids:
            raise ValueError("dataset_ids must name the dataset the model was trained on")

    @property
    def library(self) -> str:
        return self.library_name or ("peft" if self.relation == "adapter" else "transformers")

    @property
    def task_name(self) -> str:
        tag = self.pipeline_tag
        return _TASK_NAMES.get(tag, tag.replace("-", " ").title())

    @property
    def baseline_method(self) -> str:
        if self.baseline_name is not None:
            return self.baseline_name
        if self.pipeline_tag == "text-classification":
            return "TF-IDF (word 1-2 grams) + logistic regression"
        return "logistic regression on downscaled pixels"

    @property
    def dataset(self) -> str:
        return self.dataset_ids[0]


def _card_data(f: _CardFacts):
    """The card's YAML metadata: license, base model, datasets, model-index, f.emissions."""
    from huggingface_hub import EvalResult, ModelCardData

    license_field, license_name = hf_license(f.license_id)
    dataset = f.dataset
    common = {
        "task_type": f.pipeline_tag,
        "task_name": f.task_name,
        "dataset_type": dataset,
        "dataset_name": f"{dataset} (test split)",
        "dataset_split": "test",
    }
    eval_results = [
        EvalResult(
            **common,
            metric_type="accuracy",
            metric_name="Accuracy",
            metric_value=round(float(f.metrics["accuracy"]), 6),
        ),
        EvalResult(
            **common,
            metric_type="f1",
            metric_name="F1 (macro)",
            metric_config="macro",
            metric_args={"average": "macro"},
            metric_value=round(float(f.metrics["macro_f1"]), 6),
        ),
    ]
    tags = [f.pipeline_tag, "fine-tuned", f"strategy-{f.strategy}", "model-zoo-portal"]
    if f.relation == "adapter":
        tags += ["lora", "peft"]
    co2 = {
        "emissions": round(float(f.emissions.get("co2_kg", 0.0)) * 1000.0, 3),
        "source": str(
            f.emissions.get("assumptions")
            or "Estimate, not a measurement: board power x time x PUE x grid intensity."
        ),
        "training_type": "fine-tuning",
        "hardware_used": str(f.emissions.get("hardware") or f.training.get("device") or ""),
    }
    return ModelCardData(
        license=license_field,
        license_name=license_name,
        base_model=f.base_repo_id,
        datasets=list(f.dataset_ids),
        pipeline_tag=f.pipeline_tag,
        library_name=f.library,
        tags=tags,
        model_name=f.repo_id,
        eval_results=eval_results,
        base_model_relation=f.relation,
        base_model_revision=f.base_revision,
        co2_eq_emissions=co2,
    )


def _training_rows(training: dict) -> list[list[str]]:
    rows = [
        ["device", _cell(training.get("device", "-"))],
        ["wall time (s)", _num(float(training.get("seconds", 0.0)), 1)],
        ["GPU-hours", _num(float(training.get("gpu_hours", 0.0)), 4)],
        ["epochs run", _num(training.get("epochs_run"))],
        ["best epoch (weights kept)", _num(training.get("best_epoch"))],
        ["training examples seen", _num(training.get("samples"))],
    ]
    for key in ("train_examples", "validation_examples", "test_examples", "split"):
        if key in training:
            rows.append([key.replace("_", " "), _num(training[key])])
    return rows


def _card_intro(f: _CardFacts) -> str:
    """The Markdown body up to the evaluation: what it is, how to load it, how it was trained."""
    labels = ", ".join(f"`{_cell(name)}`" for name in f.class_names)
    how_to_load = _how_to_load(
        repo_id=f.repo_id,
        base_repo_id=f.base_repo_id,
        base_revision=f.base_revision,
        relation=f.relation,
        library=f.library,
        pipeline_tag=f.pipeline_tag,
        class_names=list(f.class_names),
    )
    hp_rows = [[_cell(key), _cell(_hp(value))] for key, value in sorted(f.hyperparameters.items())]
    train_rows = _training_rows(f.training)
    return f"""
# {f.repo_id}

A {f.task_name.lower()} model {"adapter " if f.relation == "adapter" else ""}fine-tuned from
`{f.base_repo_id}` (revision `{f.base_revision}`) to predict one of
{len(f.class_names)} classes: {labels}.

Strategy: {_STRATEGY_TEXT.get(f.strategy, f.strategy)}.

{how_to_load}

## Intended use

{_text(f.intended_use, "Not stated.")}

## Training procedure

### Training data

Trained on `{f.dataset}`. A validation set was carved out of the training split
(stratified) and used for early stopping on macro-F1; the weights of the best
validation epoch are the ones published.

### Hyperparameters

{_table(["setting", "value"], hp_rows)}

### Training run

{_table(["", ""], train_rows)}

"""


def _selection_section(selection: Mapping | None) -> str:
    """ "How the base model was chosen": the study's candidates, probe and validation side by side.

    ``selection`` holds ``study`` (its id), ``reason`` (why it ran), ``choice_reason``
    and ``candidates``: per candidate in the probe's rank order ``repo_id``,
    ``label``, ``rank``, ``knn``, ``linear``, ``val_accuracy``, ``val_macro_f1``,
    ``chosen``.
    """
    if not selection:
        return ""
    rows = [
        [
            _cell(c.get("rank") if c.get("rank") is not None else "-"),
            _cell(f"{c['repo_id']} {c['label']}") + (" (this model's base)" if c["chosen"] else ""),
            _num(c.get("knn"), 3),
            _num(c.get("linear"), 3),
            _num(c.get("val_accuracy"), 3),
            _num(c.get("val_macro_f1"), 3),
        ]
        for c in selection["candidates"]
    ]
    table = _table(
        [
            "probe rank",
            "candidate base model",
            "probe kNN accuracy",
            "probe linear-probe accuracy",
            "validation accuracy",
            "validation macro-F1",
        ],
        rows,
    )
    return f"""## How the base model was chosen

Study #{selection["study"]} fine-tuned the probe's top {len(selection["candidates"])} candidates
with the same recipe, split and seed and compared them on the validation split only.
Why it ran: {_text(selection.get("reason", ""), "no reason given.")}

{table}

Chosen because: {_text(selection.get("choice_reason", ""), "no reason given.")}

Only this model was scored on the test split, once; the other candidates never were,
and their weights were removed.

"""


def _card_outro(f: _CardFacts) -> str:
    """The Markdown body from the evaluation to the provenance list (which the caller ends)."""
    evaluation = _evaluation(f.metrics, f.baseline, f.class_names, f.baseline_method)
    return f"""## Evaluation

{evaluation}

## Environmental impact

{_cell(f.emissions.get("assumptions", ""))}

- energy: {_num(float(f.emissions.get("energy_kwh", 0.0)), 4)} kWh
- CO2-equivalent: {_num(float(f.emissions.get("co2_kg", 0.0)) * 1000.0, 1)} g
- GPU-hours: {_num(float(f.emissions.get("gpu_hours", 0.0)), 4)}

## Limitations and biases

{_text(f.limitations, "Not stated.")}

This model inherits the limitations and biases of its base model
{f.base_repo_id} and of the base model's training data:

{_text(f.bias_notes, "The base model's card states none; that does not mean there are none.")}

Fine-tuning on `{f.dataset}` adds the biases of that dataset: classes or groups
that are rare there are learned less well (see the per-class and per-slice
tables above). Check performance on your own population before relying on it.

## Provenance

- base model: {f.base_repo_id} at revision `{f.base_revision}`
- relation to the base: {f.relation}
- datasets: {", ".join(f"`{d}`" for d in f.dataset_ids)}
"""


def _how_to_load(
    *,
    repo_id: str,
    base_repo_id: str,
    base_revision: str,
    relation: str,
    library: str,
    pipeline_tag: str,
    class_names: list[str],
) -> str:
    auto = {
        "text-classification": "AutoModelForSequenceClassification",
        "image-classification": "AutoModelForImageClassification",
    }.get(pipeline_tag)
    if relation == "adapter" and auto:
        # The base needs a head of the right size, and the class names, before the
        # adapter (which carries the trained head) loads onto it; the tokenizer is the base's.
        labels = json.dumps([str(name) for name in class_names], ensure_ascii=False)
        tokenizer = (
            f'tokenizer = AutoTokenizer.from_pretrained("{base_repo_id}", '
            f'revision="{base_revision}")\n'
            if pipeline_tag == "text-classification"
            else ""
        )
        return (
            "```python\n"
            "from peft import PeftModel\n"
            f"from transformers import {auto}" + (", AutoTokenizer" if tokenizer else "") + "\n\n"
            f"labels = {labels}\n"
            f"base = {auto}.from_pretrained(\n"
            f'    "{base_repo_id}", revision="{base_revision}", num_labels=len(labels),\n'
            "    id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},\n"
            "    ignore_mismatched_sizes=True,\n"
            ")\n"
            f'model = PeftModel.from_pretrained(base, "{repo_id}")\n' + tokenizer + "```"
        )
    if library == "transformers":
        return (
            "```python\n"
            "from transformers import pipeline\n\n"
            f'classifier = pipeline("{pipeline_tag}", model="{repo_id}")\n'
            "```"
        )
    if relation == "adapter":
        return (
            "Load the adapter with peft's `PeftModel.from_pretrained(base, path)` onto the "
            "base model named above."
        )
    return "The weights are a safetensors state dict of the portal's model definition."


def _hp(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:g}"
    if value is None or isinstance(value, bool | int):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, default=str)
