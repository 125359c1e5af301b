"""Fine-tune pages: the list, the launch form, and a run's live curves and evaluation."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from governance.access import may_launch_finetunes, versions_finetunable_by
from jobs.forms import FineTuneForm
from jobs.ml.config import FineTuneConfig
from jobs.ml.verdict import frozen_verdict, transfer_verdict
from jobs.models import FineTuneRun
from jobs.selectors import (
    can_cancel,
    finetune_runs_visible_to,
    get_finetune_for_user,
    queue_warning,
)
from jobs.services.finetunes import finetune_defaults, finetune_launch, lora_targets_for
from jobs.views.jobs import cancel_and_return, live_page
from portal.errors import Forbidden
from portal.http import shown_to
from zoo.selectors.datasets import dataset_versions_visible_to


@login_required
def finetune_list(request: HttpRequest) -> HttpResponse:
    runs = finetune_runs_visible_to(request.user)
    page = Paginator(runs, 25).get_page(request.GET.get("page"))
    return render(
        request,
        "jobs/finetune_list.html",
        {"page": page, "may_launch": may_launch_finetunes(request.user)},
    )


def _picked(queryset, raw):
    return queryset.filter(pk=raw).first() if str(raw or "").isdigit() else None


# The form opens on the recipe that measured best (see jobs.ml.config's defaults).
DEFAULT_STRATEGY = FineTuneConfig().strategy


@login_required
def finetune_new(request: HttpRequest) -> HttpResponse:
    """The launch form; ``?version=`` and ``?dataset_version=`` preselect the pair."""
    if not may_launch_finetunes(request.user):
        raise Forbidden("Only members of ml-engineers may launch fine-tunes.")
    source = request.POST if request.method == "POST" else request.GET
    strategy = source.get("strategy", DEFAULT_STRATEGY)
    if strategy not in FineTuneRun.Strategy.values:
        strategy = DEFAULT_STRATEGY
    base = _picked(
        versions_finetunable_by(request.user), source.get("base_version") or source.get("version")
    )
    dataset_version = _picked(
        dataset_versions_visible_to(request.user), source.get("dataset_version")
    )
    lora_targets = lora_targets_for(base) if base is not None else []
    form = FineTuneForm(
        request.POST or None,
        user=request.user,
        strategy=strategy,
        lora_targets=lora_targets,
        initial={"base_version": base, "dataset_version": dataset_version},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        with shown_to(request, form) as attempt:
            run = finetune_launch(
                actor=request.user,
                base_version=data["base_version"],
                dataset_version=data["dataset_version"],
                strategy=data["strategy"],
                config=form.config(),
                split=data["split"],
                test_fraction=data["test_fraction"],
                val_fraction=data["val_fraction"],
                test_dataset_version=data.get("test_dataset_version"),
                check_base_serving=data.get("check_base_serving", False),
            )
        if attempt.succeeded:
            messages.success(request, f"Fine-tune queued as job #{run.job_id}.")
            if run.base_serving_check is not None:
                messages.info(
                    request,
                    f"The base's ONNX serving check runs as job #{run.base_serving_check.job_id}; "
                    "its result appears on the base model's page.",
                )
            return redirect(run.get_absolute_url())
    return render(
        request,
        "jobs/finetune_new.html",
        {
            "form": form,
            "strategy": strategy,
            "defaults": _strategy_defaults(lora_targets),
            "lora_fields": FineTuneForm.LORA_FIELDS,
            "hyperparameters": [
                form[name]
                for name in FineTuneForm.CONFIG_FIELDS
                if name not in FineTuneForm.LORA_FIELDS
            ],
            "lora": [form[name] for name in FineTuneForm.LORA_FIELDS],
        },
    )


def _strategy_defaults(lora_targets: list[str]) -> dict:
    """Each strategy's defaults, so the page can refill the fields when the strategy changes."""
    defaults = {}
    for name in FineTuneRun.Strategy.values:
        values = finetune_defaults(name)
        values["lora_target_modules"] = ", ".join(
            lora_targets or values.get("lora_target_modules") or []
        )
        defaults[name] = values
    return defaults


@login_required
def finetune_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_finetune_for_user(request.user, pk)
    context = {
        "run": run,
        "job": run.job,
        "can_cancel": can_cancel(request.user, run.job),
        "queue_warning": queue_warning(run.job),
        **finetune_view_data(run),
    }
    return live_page(request, "jobs/finetune_detail.html", "jobs/_finetune_status.html", context)


@login_required
@require_POST
def finetune_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_finetune_for_user(request.user, pk)
    return cancel_and_return(request, run.job, what="Fine-tune", to=run.get_absolute_url())


def finetune_view_data(run: FineTuneRun) -> dict:
    """What the run page draws: the curves, and the evaluation laid out next to the baseline."""
    curves = run.curves or {}
    metrics, baseline = run.metrics or {}, run.baseline or {}
    classes = (run.training or {}).get("classes") or list(metrics.get("per_class") or {})
    per_class = [
        {
            "name": name,
            **values,
            "baseline_f1": ((baseline.get("per_class") or {}).get(name) or {}).get("f1"),
        }
        for name, values in (metrics.get("per_class") or {}).items()
    ]
    confusion = [
        {"name": name, "cells": row}
        for name, row in zip(classes, metrics.get("confusion_matrix") or [], strict=False)
    ]
    slices = [
        {
            "name": name,
            **values,
            "baseline": (baseline.get("slices") or {}).get(name) or {},
        }
        for name, values in (metrics.get("slices") or {}).items()
    ]
    frozen = baseline.get("frozen_head") or {}
    comparison = [
        (label, metrics.get(key), baseline.get(key), frozen.get(key), better)
        for label, key, better in (
            ("Accuracy", "accuracy", "higher"),
            ("Macro-F1", "macro_f1", "higher"),
            ("ECE (15 bins)", "ece", "lower"),
            ("Brier score", "brier", "lower"),
        )
        if key in metrics
    ]
    # The settings that mattered for this strategy, in the form's order.
    skip = set()
    if run.strategy != "lora":
        skip |= {"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"}
    if run.strategy != "partial":
        skip.add("unfreeze_layers")
    config = {k: v for k, v in (run.config or {}).items() if k not in skip and k != "strategy"}
    settings = [
        (name.replace("_", " "), ", ".join(v) if isinstance(v, list) else v)
        for name, v in config.items()
    ]
    split = {k: v for k, v in (run.split_params or {}).items() if k != "seed"}
    settings += [(name.replace("_", " "), v) for name, v in split.items()]
    return {
        "settings": settings,
        "chart": {
            "steps": curves.get("steps", []),
            "epochs": curves.get("epochs", []),
        },
        "comparison": comparison,
        "verdict": transfer_verdict(metrics, baseline) if metrics and baseline else "",
        "frozen": frozen,
        "frozen_verdict": frozen_verdict(metrics, frozen) if metrics and frozen else "",
        "per_class": per_class,
        "confusion": confusion,
        "classes": classes,
        "slices": slices,
    }
