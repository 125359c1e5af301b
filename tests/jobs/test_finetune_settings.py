"""One description of the fine-tune settings: form, API and run refuse the same values."""

from __future__ import annotations

import pytest
from django import forms
from rest_framework import serializers

from jobs.api.finetunes import FineTuneInput
from jobs.forms import FineTuneForm
from jobs.ml.config import SETTINGS, FineTuneConfig

NUMERIC = [s for s in SETTINGS if s.kind in ("int", "float")]


def _probes(setting) -> list:
    """Values at, inside and just outside the setting's range, and of the wrong type."""
    low, high = setting.low, setting.high
    if setting.kind == "int":
        return [low - 1, low, (low + high) // 2, high, high + 1, 2.5, "many"]
    span = high - low
    return [low - span / 1000, low, (low + high) / 2, high, high + span / 1000, "many"]


def _form_accepts(name: str, value) -> bool:
    field = FineTuneForm.base_fields[name]
    try:
        field.clean(str(value))
    except forms.ValidationError:
        return False
    return True


def _api_accepts(name: str, value) -> bool:
    field = FineTuneInput().fields[name]
    try:
        field.run_validation(value)
    except serializers.ValidationError:
        return False
    return True


def _run_accepts(name: str, value) -> bool:
    try:
        FineTuneConfig(**{name: value}).validate()
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("setting", NUMERIC, ids=lambda s: s.name)
def test_form_api_and_run_refuse_exactly_the_same_numbers(setting):
    for value in _probes(setting):
        verdicts = {
            "form": _form_accepts(setting.name, value),
            "api": _api_accepts(setting.name, value),
            "run": _run_accepts(setting.name, value),
        }
        assert len(set(verdicts.values())) == 1, (setting.name, value, verdicts)
        inside = isinstance(value, int | float) and setting.low <= value <= setting.high
        if setting.kind == "int":
            inside = inside and float(value).is_integer()
        assert verdicts["form"] is inside, (setting.name, value, verdicts)


@pytest.mark.parametrize(
    ("name", "value"),
    [("batch_size", 2000), ("lora_r", 800), ("warmup_ratio", 0.8), ("seed", 2**32 - 1)],
)
def test_the_limits_the_form_always_had_now_hold_for_the_api_and_the_run(name, value):
    assert not _form_accepts(name, value)
    assert not _api_accepts(name, value)
    assert not _run_accepts(name, value)


@pytest.mark.parametrize(
    ("modules", "accepted"),
    [
        (["query", "value"], True),
        (["attention.self.query"], True),
        (["query; rm -rf"], False),
        (["x" * 101], False),
        ([f"m{i}" for i in range(33)], False),
    ],
)
def test_module_names_are_judged_alike(modules, accepted):
    assert _form_accepts("lora_target_modules", ", ".join(modules)) is accepted
    assert _api_accepts("lora_target_modules", modules) is accepted
    assert _run_accepts("lora_target_modules", modules) is accepted


@pytest.mark.parametrize("value", ["linear", "cosine", "step", "LINEAR"])
def test_the_schedule_is_one_of_the_same_choices(value):
    verdicts = {
        _form_accepts("schedule", value),
        _api_accepts("schedule", value),
        _run_accepts("schedule", value),
    }
    assert verdicts == {value in ("linear", "cosine")}


def test_every_setting_has_a_form_field_an_api_field_and_a_default():
    names = {s.name for s in SETTINGS}
    assert names <= set(FineTuneForm.base_fields)
    assert names <= set(FineTuneInput().fields)
    defaults = FineTuneConfig()
    for setting in SETTINGS:
        assert setting.help
        assert setting.label
        setting.check(getattr(defaults, setting.name))


def test_a_setting_left_empty_on_the_form_takes_the_default_as_if_the_api_left_it_out():
    api = FineTuneInput().fields
    for setting in SETTINGS:
        assert not api[setting.name].required, setting.name
        if setting.kind == "bool":
            continue  # an unticked box is a value: False
        assert FineTuneForm.base_fields[setting.name].clean("") in (None, "", []), setting.name


def test_training_progress_says_the_pace_and_the_time_left():
    from jobs.workers.finetunes import _TrainingReporter

    stages: list[str] = []

    class Ctx:
        def progress(self, fraction, *, stage):
            stages.append(stage)

    reporter = _TrainingReporter(Ctx(), None, epochs=2, samples_per_step=16)
    reporter.PROGRESS_EVERY = 0
    reporter.CURVES_EVERY = 10**9
    reporter.step(1, 100, 0.9)
    reporter.began = (reporter.began[0] - 10.0, 1)  # ten seconds for the next 9 steps
    reporter.step(10, 100, 0.5)

    assert stages[0] == "epoch 1/2, step 1/100, loss 0.9000"
    assert stages[1].startswith("epoch 1/2, step 10/100, 14.")
    assert "samples/s, about 2 min left, loss 0.5000" in stages[1]
