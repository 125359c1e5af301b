"""Fine-tuning with real tiny models: every strategy, checkpoints and resume, early stopping."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from jobs.ml.config import STRATEGIES, FineTuneConfig
from jobs.ml.finetune import (
    EpochReport,
    build_loss,
    default_lora_targets,
    finetune,
    layer_depths,
    point_adapter_at,
    predict_proba,
)
from tests.builders.weights import colour_images, spam_task, tiny_bert, tiny_effnet, tiny_vit

CLASSES = ["ham", "spam"]
TRAIN = spam_task(4)
VAL = spam_task(1, start=7)
TEST = spam_task(1, start=8)


def _config(strategy: str, **overrides) -> FineTuneConfig:
    """Settings that make a 2-layer, hidden-32 model learn the toy in a few dozen steps."""
    config = FineTuneConfig.defaults_for(strategy)
    config.batch_size = 4
    config.epochs = 2
    config.warmup_ratio = 0.0
    config.patience = 0
    config.learning_rate = 1e-2
    config.lr_search = False  # the loop's mechanics at one fixed rate; the search has its tests
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def _bert_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Encoder weights (embeddings + layers + pooler) of a saved BERT, by ``bert.``-less names."""
    state = load_file(str(folder / "model.safetensors"))
    return {k.removeprefix("bert."): v for k, v in state.items() if "classifier" not in k}


def _epoch_losses(result) -> list[float]:
    return [c["train_loss_epoch"] for c in result.curves if "val_loss" in c]


class Cancelled(Exception):
    pass


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def random_bert(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("models") / "random-bert")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, random_bert):
    """Full fine-tuning of the random BERT: it has to learn the words from scratch."""
    work = tmp_path_factory.mktemp("full")
    steps: list[tuple[int, int, float]] = []
    epochs: list[EpochReport] = []
    result = finetune(
        random_bert,
        "text",
        CLASSES,
        TRAIN,
        VAL,
        _config("full", epochs=3),
        work_dir=work,
        on_step=lambda step, total, loss: steps.append((step, total, loss)),
        on_epoch=lambda report, folder: epochs.append(report),
    )
    return result, steps, epochs


@pytest.fixture(scope="module")
def pretrained_bert(tmp_path_factory, full_run) -> Path:
    """The encoder of the full fine-tune, saved as a base model: a backbone that knows the toy."""
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path_factory.mktemp("models") / "pretrained-bert"
    model = AutoModelForSequenceClassification.from_pretrained(full_run[0].output_dir)
    model.bert.save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(full_run[0].output_dir / name, folder / name)
    return folder


# --------------------------------------------------------------------------- strategies


def test_full_finetune_learns_and_saves_a_transformers_classifier(full_run, random_bert):
    from transformers import AutoModelForSequenceClassification

    result, steps, epochs = full_run
    losses = _epoch_losses(result)
    assert losses[-1] < 0.5 * losses[0]
    assert result.epochs_run == 3
    assert not result.stopped_early
    assert result.steps == 3 * 12
    assert result.samples_seen == 3 * 48
    assert [r.epoch for r in epochs] == [1, 2, 3]
    assert epochs[-1].val_macro_f1 == 1.0
    assert steps[-1][:2] == (36, 36)
    # A 36-step run reports every step (about fifty points at least), not every tenth.
    assert [s for s, _, _ in steps] == list(range(1, 37))
    assert result.trainable_parameters == result.total_parameters
    assert result.peak_memory_bytes is None
    assert result.precision == "fp32"
    # A plain transformers folder: AutoModelForSequenceClassification loads it with its labels.
    assert (result.output_dir / "model.safetensors").is_file()
    model = AutoModelForSequenceClassification.from_pretrained(result.output_dir)
    assert model.config.id2label == {0: "ham", 1: "spam"}
    before, after = _bert_weights(random_bert), _bert_weights(result.output_dir)
    for name in (
        "embeddings.word_embeddings.weight",
        "encoder.layer.0.attention.self.query.weight",
    ):
        assert not torch.equal(before[name], after[name])
    proba = predict_proba(result.output_dir, "text", TEST[0])
    assert proba.shape == (12, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert (proba.argmax(axis=1) == TEST[1]).mean() == 1.0


def test_head_only_trains_the_head_and_leaves_the_backbone(pretrained_bert, tmp_path):
    config = _config("head", class_weights=True, label_smoothing=0.1)
    result = finetune(pretrained_bert, "text", CLASSES, TRAIN, VAL, config, work_dir=tmp_path)
    losses = _epoch_losses(result)
    assert losses[-1] < losses[0]
    before, after = _bert_weights(pretrained_bert), _bert_weights(result.output_dir)
    backbone = [k for k in before if not k.startswith("pooler")]
    assert backbone
    assert all(torch.equal(before[k], after[k]) for k in backbone)
    assert not torch.equal(before["pooler.dense.weight"], after["pooler.dense.weight"])
    # Only the pooler and the classifier count as trainable (32x32 + 32 + 32x2 + 2).
    assert result.trainable_parameters == 32 * 32 + 32 + 32 * 2 + 2
    proba = predict_proba(result.output_dir, "text", TEST[0])
    assert (proba.argmax(axis=1) == TEST[1]).mean() >= 0.9


def test_partial_unfreeze_changes_only_the_last_layers_and_the_head(pretrained_bert, tmp_path):
    config = _config("partial", unfreeze_layers=1, learning_rate=1e-3)
    result = finetune(pretrained_bert, "text", CLASSES, TRAIN, VAL, config, work_dir=tmp_path)
    losses = _epoch_losses(result)
    assert losses[-1] < losses[0]
    before, after = _bert_weights(pretrained_bert), _bert_weights(result.output_dir)
    frozen = [k for k in before if k.startswith(("embeddings.", "encoder.layer.0."))]
    trained = [k for k in before if k.startswith("encoder.layer.1.") and k.endswith("weight")]
    assert frozen
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert trained
    assert all(not torch.equal(before[k], after[k]) for k in trained)


def test_partial_refuses_more_layers_than_the_model_has(pretrained_bert, tmp_path):
    with pytest.raises(ValueError, match="has 2 layers"):
        finetune(
            pretrained_bert,
            "text",
            CLASSES,
            TRAIN,
            VAL,
            _config("partial", unfreeze_layers=3),
            work_dir=tmp_path,
        )


def test_lora_saves_only_the_adapter_and_predicts_on_the_base(pretrained_bert, tmp_path):
    config = _config("lora", learning_rate=5e-3)
    result = finetune(pretrained_bert, "text", CLASSES, TRAIN, VAL, config, work_dir=tmp_path)
    losses = _epoch_losses(result)
    assert losses[-1] < losses[0]
    files = sorted(p.name for p in result.output_dir.iterdir())
    assert files == ["adapter_config.json", "adapter_model.safetensors"]
    adapter = json.loads((result.output_dir / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA"
    assert adapter["r"] == 8
    assert adapter["lora_alpha"] == 16
    assert sorted(adapter["target_modules"]) == ["query", "value"]
    assert result.trainable_parameters < result.total_parameters / 50
    proba = predict_proba(result.output_dir, "text", TEST[0], base_model_dir=pretrained_bert)
    assert proba.shape == (12, 2)
    assert (proba.argmax(axis=1) == TEST[1]).mean() >= 0.9
    # Published adapters name the catalogue's base, not the worker's folder.
    point_adapter_at(result.output_dir, base_repo_id="acme/tiny-bert", base_revision="abc")
    adapter = json.loads((result.output_dir / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "acme/tiny-bert"
    assert adapter["revision"] == "abc"
    again = predict_proba(result.output_dir, "text", TEST[0], base_model_dir=pretrained_bert)
    np.testing.assert_allclose(again, proba, rtol=1e-6)
    with pytest.raises(ValueError, match="pass base_model_dir"):
        predict_proba(result.output_dir, "text", TEST[0])
    # Three classes: the head size is read back from the adapter.
    texts = [*TRAIN[0], "meeting moved to thursday at noon"]
    labels = np.append(TRAIN[1], 2)
    three = finetune(
        pretrained_bert,
        "text",
        ["ham", "spam", "other"],
        (texts, labels),
        VAL,
        _config("lora", epochs=1),
        work_dir=tmp_path / "three",
    )
    proba = predict_proba(three.output_dir, "text", ["hello"], base_model_dir=pretrained_bert)
    assert proba.shape == (1, 3)


def test_every_strategy_has_defaults():
    assert set(STRATEGIES) == {"head", "partial", "full", "lora"}
    rates = {s: FineTuneConfig.defaults_for(s).learning_rate for s in STRATEGIES}
    assert rates == {"head": 1e-3, "partial": 1e-4, "full": 1e-4, "lora": 1e-3}
    default = FineTuneConfig()
    assert default.strategy == "full"
    assert default.lr_search
    assert default.search_rates() == [5e-5, 1e-4, 2e-4]
    assert default == FineTuneConfig.defaults_for(default.strategy)
    default.validate()
    assert FineTuneConfig.from_dict(default.as_dict()) == default


# --------------------------------------------------------------------------- checkpoints


def test_resume_after_a_cancel_ends_with_the_weights_of_an_uninterrupted_run(random_bert, tmp_path):
    config = _config("full", batch_size=8, layer_decay=0.8, weight_decay=0.1)
    straight = finetune(random_bert, "text", CLASSES, TRAIN, VAL, config, work_dir=tmp_path / "a")

    def cancel_after_first(report: EpochReport, folder: Path) -> None:
        assert sorted(p.name for p in folder.iterdir()) == [
            "state.json",
            "trainable.safetensors",
            "training_state.pt",
        ]
        raise Cancelled

    with pytest.raises(Cancelled):
        finetune(
            random_bert,
            "text",
            CLASSES,
            TRAIN,
            VAL,
            config,
            work_dir=tmp_path / "b",
            on_epoch=cancel_after_first,
        )
    checkpoint = tmp_path / "b" / "checkpoints" / "epoch-0001"
    # Another worker picks the job up from the uploaded checkpoint.
    moved = tmp_path / "downloaded"
    shutil.copytree(checkpoint, moved)
    resumed = finetune(
        random_bert, "text", CLASSES, TRAIN, VAL, config, work_dir=tmp_path / "c", resume=moved
    )
    assert resumed.steps == straight.steps
    assert resumed.samples_seen == straight.samples_seen
    assert resumed.curves == straight.curves
    a = load_file(str(straight.output_dir / "model.safetensors"))
    b = load_file(str(resumed.output_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)

    other = _config("full", batch_size=8, layer_decay=0.8, weight_decay=0.1, learning_rate=5e-3)
    with pytest.raises(ValueError, match="different settings: learning_rate"):
        finetune(
            random_bert, "text", CLASSES, TRAIN, VAL, other, work_dir=tmp_path / "d", resume=moved
        )


# --------------------------------------------------------------------------- learning-rate search


def test_the_search_tries_each_rate_for_an_epoch_and_continues_the_best(random_bert, tmp_path):
    # 1e-4 barely moves a random model in one epoch; 4e-2 overshoots; 2e-2 learns.
    config = _config("full", epochs=3, learning_rate=2e-2, lr_search=True)
    config.search_rates = lambda: [1e-4, 2e-2, 4e-2]  # the factors are tested below
    epochs: list[tuple[int, str]] = []
    result = finetune(
        random_bert,
        "text",
        CLASSES,
        TRAIN,
        VAL,
        config,
        work_dir=tmp_path / "w",
        on_epoch=lambda report, folder: epochs.append((report.epoch, folder.name)),
    )
    tried = [t["learning_rate"] for t in result.lr_search]
    assert tried == [1e-4, 2e-2, 4e-2]
    chosen = [t for t in result.lr_search if t["chosen"]]
    assert len(chosen) == 1
    best = max(result.lr_search, key=lambda t: (t["val_macro_f1"], -t["val_loss"]))
    assert chosen[0] is best or chosen[0]["learning_rate"] == best["learning_rate"]
    assert result.learning_rate == chosen[0]["learning_rate"] != 1e-4
    # The job hears each epoch of the run it keeps once, the chosen rate's first included.
    assert epochs == [(1, "epoch-0001"), (2, "epoch-0002"), (3, "epoch-0003")]
    assert result.epochs_run == 3
    assert result.steps == 3 * 12
    assert result.search_seconds == pytest.approx(
        sum(t["seconds"] for t in result.lr_search if not t["chosen"])
    )
    assert result.search_seconds > 0
    # The discarded runs leave nothing behind.
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["best", "checkpoints", "output"]

    # The same rate without a search: identical weights (the winner was not disturbed).
    plain = _config("full", epochs=3, learning_rate=result.learning_rate)
    straight = finetune(random_bert, "text", CLASSES, TRAIN, VAL, plain, work_dir=tmp_path / "p")
    a = load_file(str(straight.output_dir / "model.safetensors"))
    b = load_file(str(result.output_dir / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)


def test_a_searched_run_resumes_from_its_checkpoint_with_the_settings_as_submitted(
    random_bert, tmp_path
):
    config = _config("full", epochs=3, learning_rate=1e-2, lr_search=True)
    straight = finetune(random_bert, "text", CLASSES, TRAIN, VAL, config, work_dir=tmp_path / "a")
    stored: list[Path] = []

    def cancel_after_second(report: EpochReport, folder: Path) -> None:
        if report.epoch == 2:
            stored.append(tmp_path / "stored")
            shutil.copytree(folder, stored[0])
            raise Cancelled

    with pytest.raises(Cancelled):
        finetune(
            random_bert,
            "text",
            CLASSES,
            TRAIN,
            VAL,
            config,
            work_dir=tmp_path / "b",
            on_epoch=cancel_after_second,
        )
    # A retried job holds the submitted settings (search on, the centre rate).
    resumed = finetune(
        random_bert, "text", CLASSES, TRAIN, VAL, config, work_dir=tmp_path / "c", resume=stored[0]
    )
    assert resumed.learning_rate == straight.learning_rate

    def untimed(trials):
        return [{k: v for k, v in t.items() if k != "seconds"} for t in trials]

    assert untimed(resumed.lr_search) == untimed(straight.lr_search)
    assert resumed.curves == straight.curves
    a = load_file(str(straight.output_dir / "model.safetensors"))
    b = load_file(str(resumed.output_dir / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)


def test_search_rates_are_half_the_rate_and_twice_it_within_the_allowed_range():
    assert FineTuneConfig(learning_rate=2e-4).search_rates() == [1e-4, 2e-4, 4e-4]
    assert FineTuneConfig(learning_rate=1.0).search_rates() == [0.5, 1.0]
    assert FineTuneConfig(learning_rate=2e-4, lr_search=False).search_rates() == [2e-4]


def test_early_stopping_keeps_the_best_epoch(pretrained_bert, tmp_path):
    # A rate this small cannot move validation macro-F1: no epoch beats the first.
    config = _config("head", learning_rate=1e-7, epochs=5, patience=1)
    reports: list[EpochReport] = []
    result = finetune(
        pretrained_bert,
        "text",
        CLASSES,
        TRAIN,
        VAL,
        config,
        work_dir=tmp_path,
        on_epoch=lambda report, folder: reports.append(report),
    )
    assert result.stopped_early
    assert result.epochs_run == 2
    assert result.best_epoch == 1
    assert [r.epoch for r in reports] == [1, 2]
    state = json.loads(next((tmp_path / "checkpoints").glob("epoch-*/state.json")).read_text())
    assert state["stopped_early"]
    assert state["best_epoch"] == 1
    # With no epoch left to skip, running out of epochs is not stopping early.
    last_chance = finetune(
        pretrained_bert,
        "text",
        CLASSES,
        TRAIN,
        VAL,
        _config("head", learning_rate=1e-7, epochs=2, patience=1),
        work_dir=tmp_path / "two",
    )
    assert last_chance.epochs_run == 2
    assert not last_chance.stopped_early
    # The best epoch's weights travel with the later checkpoint.
    assert (tmp_path / "checkpoints" / "epoch-0002" / "best.safetensors").is_file()


def test_a_raising_step_callback_cancels_between_steps(pretrained_bert, tmp_path):
    calls: list[int] = []

    def on_step(step: int, total: int, loss: float) -> None:
        calls.append(step)
        raise Cancelled

    with pytest.raises(Cancelled):
        finetune(
            pretrained_bert,
            "text",
            CLASSES,
            TRAIN,
            VAL,
            _config("head", epochs=3),
            work_dir=tmp_path,
            on_step=on_step,
        )
    assert calls == [1]
    assert not (tmp_path / "output").exists()


# --------------------------------------------------------------------------- vision


def test_vit_full_finetune_learns_colours(tmp_path):
    base = tiny_vit(tmp_path / "vit")
    paths, labels = colour_images(tmp_path / "images", 12, classes=3)
    val_paths, val_labels = colour_images(tmp_path / "val", 3, classes=3, seed=1)
    config = _config("full", batch_size=6, learning_rate=3e-3)
    result = finetune(
        base,
        "vision",
        ["red", "green", "blue"],
        (paths, labels),
        (val_paths, val_labels),
        config,
        work_dir=tmp_path / "work",
    )
    losses = _epoch_losses(result)
    assert losses[-1] < losses[0]
    proba = predict_proba(result.output_dir, "vision", val_paths)
    assert proba.shape == (9, 3)
    assert (proba.argmax(axis=1) == val_labels).mean() > 1 / 3


def test_efficientnet_head_only_and_lora(tmp_path):
    base = tiny_effnet(tmp_path / "effnet")
    paths, labels = colour_images(tmp_path / "images", 6, classes=2)
    val = colour_images(tmp_path / "val", 2, classes=2, seed=1)
    head = finetune(
        base,
        "vision",
        ["red", "green"],
        (paths, labels),
        val,
        _config("head", epochs=1),
        work_dir=tmp_path / "head",
    )
    saved = load_file(str(head.output_dir / "model.safetensors"))
    original = torch.load(base / "weights.pth", weights_only=True)
    # Weights and BatchNorm statistics of the backbone are untouched; only _fc is new.
    assert all(torch.equal(original[k], saved[k]) for k in original if not k.startswith("_fc"))
    assert saved["_fc.weight"].shape == (2, 1280)
    assert predict_proba(head.output_dir, "vision", val[0]).shape == (4, 2)

    lora = finetune(
        base,
        "vision",
        ["red", "green"],
        (paths, labels),
        val,
        _config("lora", epochs=1),
        work_dir=tmp_path / "lora",
    )
    assert sorted(p.name for p in lora.output_dir.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    proba = predict_proba(lora.output_dir, "vision", val[0], base_model_dir=base)
    assert proba.shape == (4, 2)


# --------------------------------------------------------------------------- pieces


def test_loss_applies_balanced_class_weights_and_label_smoothing():
    labels = np.array([0, 0, 0, 1])
    loss = build_loss(FineTuneConfig(class_weights=True, label_smoothing=0.1), labels, 3)
    # n / (C * n_c): 4 / (3 * 3), 4 / (3 * 1); the class absent from training gets 1.
    torch.testing.assert_close(loss.weight, torch.tensor([4 / 9, 4 / 3, 1.0]))
    assert loss.label_smoothing == 0.1
    plain = build_loss(FineTuneConfig(), labels, 3)
    assert plain.weight is None
    assert plain.label_smoothing == 0.0


def test_layer_decay_gives_each_layer_its_rate(random_bert):
    from transformers import AutoModelForSequenceClassification

    from jobs.ml.finetune import _parameter_groups

    model = AutoModelForSequenceClassification.from_pretrained(random_bert, num_labels=2)
    depths = layer_depths(model)
    assert depths["bert.embeddings.word_embeddings.weight"] == 3
    assert depths["bert.encoder.layer.0.output.dense.weight"] == 2
    assert depths["bert.encoder.layer.1.output.dense.weight"] == 1
    assert depths["bert.pooler.dense.weight"] == 0
    assert depths["classifier.weight"] == 0
    groups = _parameter_groups(model, FineTuneConfig(learning_rate=1e-3, layer_decay=0.5))
    rates = {(g["depth"], g["weight_decay"] > 0): g["lr"] for g in groups}
    assert rates[(3, True)] == pytest.approx(1e-3 / 8)
    assert rates[(2, True)] == pytest.approx(1e-3 / 4)
    assert rates[(0, False)] == pytest.approx(1e-3)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_default_lora_targets(random_bert, tmp_path):
    assert default_lora_targets(random_bert) == ["query", "value"]
    for model_type, expected in (
        ("distilbert", ["q_lin", "v_lin"]),
        ("vit", ["query", "value"]),
        ("efficientnet-lite", ["_expand_conv", "_project_conv", "_conv_head"]),
    ):
        folder = tmp_path / model_type
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
        assert default_lora_targets(folder) == expected
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "resnet"}))
    with pytest.raises(ValueError, match="LoRA is not supported for model type 'resnet'"):
        default_lora_targets(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strategy": "adapters"}, "unknown strategy"),
        ({"schedule": "step"}, "unknown schedule"),
        ({"learning_rate": 0}, "learning_rate must be in"),
        ({"layer_decay": 1.5}, "layer_decay must be in"),
        ({"warmup_ratio": 1.0}, "warmup_ratio must be in"),
        ({"epochs": 0}, "epochs must be between"),
        ({"batch_size": 2.5}, "batch_size must be a whole number"),
        ({"label_smoothing": -0.1}, "label_smoothing must be in"),
        ({"class_weights": "yes"}, "class_weights must be true or false"),
        ({"patience": True}, "patience must be a whole number"),
        ({"lora_target_modules": []}, "lora_target_modules must be a non-empty list"),
        ({"lora_target_modules": ["query; rm"]}, "not a module name"),
    ],
)
def test_config_validation_names_the_bad_setting(change, message):
    config = FineTuneConfig(**change)
    with pytest.raises(ValueError, match=message):
        config.validate()


def test_bad_inputs_are_refused_before_loading(random_bert, tmp_path):
    config = _config("head")
    with pytest.raises(ValueError, match="12 inputs for 11 labels"):
        finetune(
            random_bert, "text", CLASSES, TRAIN, (VAL[0], VAL[1][:-1]), config, work_dir=tmp_path
        )
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        finetune(
            random_bert, "text", CLASSES, (TRAIN[0], TRAIN[1] + 1), VAL, config, work_dir=tmp_path
        )
    with pytest.raises(ValueError, match="is a text model, not a vision model"):
        finetune(random_bert, "vision", CLASSES, TRAIN, VAL, config, work_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown fine-tune settings: epoch"):
        FineTuneConfig.from_dict({"epoch": 3})
