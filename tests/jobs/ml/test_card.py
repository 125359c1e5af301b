"""Hugging Face model cards: metadata that round-trips through huggingface_hub, a readable body."""

from __future__ import annotations

import numpy as np
import pytest
from huggingface_hub import ModelCard

from jobs.ml.card import build_model_card, hf_license
from jobs.ml.evaluate import classification_report, energy_estimate

DATASET = "sha256:" + "ab" * 32


def _card(**overrides) -> str:
    y = np.array([0, 1, 1, 0, 1, 0])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9], [0.8, 0.2]])
    slices = ["north", "south", "north", "south", "north", "south"]
    baseline = np.array([[0.6, 0.4]] * 6)  # always "ham"
    arguments = {
        "repo_id": "acme/sms-spam-minilm",
        "base_repo_id": "sentence-transformers/all-MiniLM-L6-v2",
        "base_revision": "c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
        "relation": "finetune",
        "license_id": "Apache-2.0",
        "pipeline_tag": "text-classification",
        "dataset_ids": [DATASET],
        "class_names": ["ham", "spam|promo"],
        "metrics": classification_report(y, proba, ["ham", "spam|promo"], slices=slices),
        "baseline": classification_report(y, baseline, ["ham", "spam|promo"], slices=slices),
        "hyperparameters": {"learning_rate": 2e-5, "epochs": 3, "lora_target_modules": None},
        "strategy": "full",
        "training": {
            "device": "cuda:0 (NVIDIA H100 80GB HBM3)",
            "seconds": 1800.0,
            "gpu_hours": 0.5,
            "epochs_run": 3,
            "best_epoch": 2,
            "samples": 3000,
        },
        "emissions": energy_estimate(
            seconds=1800, device="cuda:0", gpu_name="NVIDIA H100 80GB HBM3"
        ),
        "intended_use": "Flag likely spam in internal SMS gateways for human review.",
        "limitations": "English SMS from 2012; slang and new scams drift.",
        "bias_notes": "Web text from Reddit and Stack Exchange.",
        "provenance": {"job": 42, "portal": "model-zoo", "split": {"kind": "stratified"}},
    }
    arguments.update(overrides)
    return build_model_card(**arguments)


def test_metadata_round_trips_through_huggingface_hub():
    text = _card()
    card = ModelCard(text)
    data = card.data
    assert data.license == "apache-2.0"
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert data.base_model_relation == "finetune"
    assert data.datasets == [DATASET]
    assert data.pipeline_tag == "text-classification"
    assert data.library_name == "transformers"
    results = {r.metric_type: r for r in data.eval_results}
    assert results["accuracy"].metric_value == pytest.approx(4 / 6, abs=1e-6)
    assert results["f1"].metric_value == pytest.approx(
        classification_report(
            np.array([0, 1, 1, 0, 1, 0]),
            np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9], [0.8, 0.2]]),
            ["ham", "spam"],
        )["macro_f1"],
        abs=1e-6,
    )
    assert results["f1"].metric_config == "macro"
    assert results["accuracy"].task_type == "text-classification"
    assert results["accuracy"].dataset_split == "test"
    co2 = data.co2_eq_emissions
    # 700 W x 0.5 h x PUE 1.58 x 0.48 kg/kWh, in grams.
    assert co2["emissions"] == pytest.approx(0.7 * 0.5 * 1.58 * 0.48 * 1000, abs=1e-3)
    assert co2["training_type"] == "fine-tuning"
    assert co2["hardware_used"] == "1 x NVIDIA H100 80GB HBM3"
    assert "Estimate" in co2["source"]


def test_body_has_every_section_and_escapes_table_cells():
    text = _card()
    for heading in (
        "## Intended use",
        "## Training procedure",
        "### Training data",
        "### Hyperparameters",
        "## Evaluation",
        "### Per class",
        "### Per slice",
        "### Calibration",
        "### Confusion matrix",
        "## Environmental impact",
        "## Limitations and biases",
        "## Provenance",
    ):
        assert heading in text
    assert "| spam\\|promo |" in text  # a pipe in a class name does not break the table
    assert "| learning_rate | 2e-05 |" in text
    assert "Web text from Reddit" in text
    assert "inherits the limitations and biases of its base model" in text
    assert "c9745ed1d9f207416be6d2e6f8de32d1f16199bf" in text
    assert "| accuracy | 0.6667 | 0.5000 |" in text  # the model beside the baseline


def test_adapter_card_says_peft_and_lora():
    card = ModelCard(_card(relation="adapter", strategy="lora"))
    assert card.data.library_name == "peft"
    assert card.data.base_model_relation == "adapter"
    assert "lora" in card.data.tags
    assert "low-rank adapters" in card.text
    assert 'PeftModel.from_pretrained(base, "acme/sms-spam-minilm")' in card.text
    # The class names travel in the snippet: an adapter's files carry no config.
    assert 'labels = ["ham", "spam|promo"]' in card.text
    assert "id2label=dict(enumerate(labels))" in card.text


def test_cards_without_slices_have_no_slice_section():
    y = np.array([0, 1])
    report = classification_report(y, np.eye(2), ["a", "b"])
    text = _card(metrics=report, baseline=report, class_names=["a", "b"])
    assert "### Per slice" not in text


def test_license_mapping_and_refusals():
    assert hf_license("Apache-2.0") == ("apache-2.0", None)
    assert hf_license("GPL-3.0-only") == ("gpl-3.0", None)
    assert hf_license("LicenseRef-Acme Internal") == ("other", "licenseref-acme-internal")
    card = ModelCard(_card(license_id="LicenseRef-Acme Internal"))
    assert card.data.license == "other"
    assert card.data.license_name == "licenseref-acme-internal"
    with pytest.raises(ValueError, match="relation must be"):
        _card(relation="merge")
