"""What a probe says beyond its ranking: serving cost, the best model within a budget, how sure.

The handler runs in this process on tiny real models (as in test_probes.py),
against the real database; a real worker's measurement is in test_probe_worker.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from django.test import Client
from rest_framework.test import APIClient
from transformers import BertModel

from jobs.engine import job_execute
from jobs.ml import features
from jobs.ml.scores import human_count
from jobs.models import FeatureSet, Job, ProbeRun
from jobs.services.probes import probe_launch
from jobs.workers import probes as probe_worker
from portal.errors import PortalError
from tests.builders.catalogue import import_model
from tests.builders.datasets import keyword_rows, text_dataset
from tests.builders.weights import tiny_bert_folder

pytestmark = pytest.mark.django_db


def _numel(folder) -> int:
    model = BertModel.from_pretrained(folder, local_files_only=True)
    return sum(p.numel() for p in model.parameters())


@pytest.fixture
def sizes(sam, tmp_path):
    """A two-layer and a one-layer tiny encoder, and their true parameter counts."""
    big = tiny_bert_folder(tmp_path / "big", seed=0, layers=2)
    small = tiny_bert_folder(tmp_path / "small", seed=1, layers=1)
    return {
        "big": (import_model(big, "acme/big", actor=sam), _numel(big)),
        "small": (import_model(small, "acme/small", actor=sam), _numel(small)),
    }


@pytest.fixture
def keywords(alice):
    """Texts of equal length whose last word is the label: words decide, length does not."""
    return text_dataset(alice, name="keywords", rows=keyword_rows(60))


@pytest.fixture
def readers(sam, tmp_path):
    """Two encoders with the very same weights, and one that cannot tell words apart."""
    return {
        "reader-a": import_model(
            tiny_bert_folder(tmp_path / "ra", seed=0), "acme/reader-a", actor=sam
        ),
        "reader-b": import_model(
            tiny_bert_folder(tmp_path / "rb", seed=0), "acme/reader-b", actor=sam
        ),
        "blind": import_model(
            tiny_bert_folder(tmp_path / "blind", seed=0, blind=True), "acme/blind", actor=sam
        ),
    }


def _run(run: ProbeRun) -> ProbeRun:
    assert job_execute(job_id=run.job_id) == "succeeded"
    run.refresh_from_db()
    run.job.refresh_from_db()
    return run


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --------------------------------------------------------------------------- the rule


def test_the_worker_ranks_by_knn_where_the_old_mean_rank_would_not(alice, readers):
    """Scores an earlier attempt stored are ranked by kNN, linear probe breaking its ties.

    Hand-worked: the old rule (mean rank of LogME, linear probe, kNN and
    H-score) gave acme/blind (1 + 1 + 3 + 1) / 4 = 1.5, acme/reader-b
    (2 + 3 + 1.5 + 2) / 4 = 2.125 and acme/reader-a (3 + 2 + 1.5 + 3) / 4 =
    2.375, so blind first. kNN puts the readers first (tied at 0.9, reader-a
    ahead on linear probe) and blind last.
    """
    stored = {
        "acme/reader-a": {"logme": -0.9, "linear_probe_accuracy": 0.85, "h_score": 1.0},
        "acme/reader-b": {"logme": -0.5, "linear_probe_accuracy": 0.80, "h_score": 2.0},
        "acme/blind": {"logme": 0.4, "linear_probe_accuracy": 0.95, "h_score": 3.0},
    }
    knn = {"acme/reader-a": 0.9, "acme/reader-b": 0.9, "acme/blind": 0.6}
    run = probe_launch(
        actor=alice,
        dataset_version=text_dataset(alice),
        versions=list(readers.values()),
        max_examples=40,
    )
    # Given: every candidate finished by an earlier attempt (a retry skips those).
    for result in run.results.select_related("version__model"):
        name = result.version.model.repo_id
        run.results.filter(pk=result.pk).update(
            status="succeeded", knn_accuracy=knn[name], mmd=0.1, **stored[name]
        )

    run = _run(run)

    ranked = list(run.results.select_related("version__model").order_by("rank"))
    assert [(r.version.model.repo_id, r.rank) for r in ranked] == [
        ("acme/reader-a", 1),
        ("acme/reader-b", 2),
        ("acme/blind", 3),
    ]
    assert ranked[0].reason == (
        "Best kNN (0.9), which sets the order; 2nd on linear probe (0.85);"
        " 3rd on LogME (-0.9) and H-score (1); tie on kNN broken by linear probe"
    )
    assert ranked[2].reason.startswith(
        "3rd on kNN (0.6), which sets the order; best linear probe (0.95), LogME (0.4)"
    )
    assert run.recommendation == f"acme/reader-a v1: {ranked[0].reason}"
    assert run.job.result["ranking"] == ["acme/reader-a v1", "acme/reader-b v1", "acme/blind v1"]
    page = _client(alice).get(run.get_absolute_url()).content.decode()
    assert "The ranking orders candidates by kNN accuracy" in page
    assert "averages each candidate" not in page


# --------------------------------------------------------------------------- serving cost


def test_each_candidate_records_its_parameters_memory_and_cpu_latency(alice, sizes):
    versions = [sizes["big"][0], sizes["small"][0]]
    run = _run(
        probe_launch(
            actor=alice, dataset_version=text_dataset(alice), versions=versions, max_examples=40
        )
    )

    for key in ("big", "small"):
        version, numel = sizes[key]
        result = run.results.get(version=version)
        assert result.parameters == numel
        assert result.memory_bytes == 4 * numel
        # Hidden 32, one or two layers: far below a second per example on any CPU.
        assert 0 < result.latency_ms < 1000
        assert result.cost_method == result.cost_method | {
            "device": "cpu",
            "precision": "fp32",
            "batch_size": 1,
            "warmup": features.LATENCY_WARMUP,
            "repeats": features.LATENCY_REPEATS,
            "statistic": "median",
            "threads": torch.get_num_threads(),
            "max_length": 128,
        }
        assert f"{numel:,} parameters" in run.job.log
    assert sizes["big"][1] > sizes["small"][1]


def test_texts_are_embedded_at_128_tokens_and_older_256_token_features_are_not_reused(
    alice, sam, tmp_path, monkeypatch
):
    # 512 positions, so 128 is a real cut and not the model's own limit.
    folder = tiny_bert_folder(tmp_path / "long", positions=512)
    version = import_model(folder, "acme/long", actor=sam)
    dataset = text_dataset(alice)
    lengths = []
    real = features.extract_text_features

    def spy(model_dir, texts, **kwargs):
        lengths.append(kwargs.get("max_length"))
        return real(model_dir, texts, **kwargs)

    monkeypatch.setattr(features, "extract_text_features", spy)
    assert probe_worker.TEXT_MAX_LENGTH == 128

    _run(probe_launch(actor=alice, dataset_version=dataset, versions=[version], max_examples=40))

    assert lengths == [128, 128]  # the sample and the reference texts
    stored = FeatureSet.objects.get()
    assert stored.preprocessing == features.preprocessing_key(folder, "text", max_length=128)
    assert "-text-L128-" in stored.preprocessing
    # Features an older probe cached at the extractor's default of 256 tokens...
    FeatureSet.objects.update(preprocessing=features.preprocessing_key(folder, "text"))
    again = _run(
        probe_launch(actor=alice, dataset_version=dataset, versions=[version], max_examples=40)
    )
    # ...are not taken for 128-token ones: the probe embeds afresh.
    assert again.results.get().cached is False
    assert FeatureSet.objects.count() == 2


# --------------------------------------------------------------------------- budget


@pytest.mark.parametrize(
    ("budget", "field", "message"),
    [
        ({"max_parameters": 0}, "max_parameters", "parameter limit must be a whole number"),
        ({"max_parameters": -5}, "max_parameters", "above 0"),
        ({"max_parameters": 1.5e6}, "max_parameters", "whole number of parameters"),
        ({"max_parameters": True}, "max_parameters", "whole number of parameters"),
        ({"max_parameters": 10**14}, "max_parameters", "at most 10,000,000,000,000"),
        ({"max_latency_ms": 0}, "max_latency_ms", "latency limit must be a number of milli"),
        ({"max_latency_ms": -1.0}, "max_latency_ms", "above 0"),
        ({"max_latency_ms": math.nan}, "max_latency_ms", "milliseconds per example"),
        ({"max_latency_ms": math.inf}, "max_latency_ms", "milliseconds per example"),
        ({"max_latency_ms": "fast"}, "max_latency_ms", "milliseconds per example"),
        ({"max_latency_ms": 10**7}, "max_latency_ms", "at most 600,000"),
    ],
)
def test_a_budget_that_is_not_a_usable_limit_is_refused_and_nothing_is_created(
    alice, sizes, budget, field, message
):
    jobs_before = Job.objects.count()

    with pytest.raises(PortalError, match=message) as caught:
        probe_launch(
            actor=alice,
            dataset_version=text_dataset(alice),
            versions=[sizes["small"][0]],
            max_examples=40,
            **budget,
        )

    assert caught.value.field == field
    assert "leave it empty for no limit" in caught.value.message
    assert Job.objects.count() == jobs_before
    assert not ProbeRun.objects.exists()


def test_the_run_names_the_best_ranked_candidate_within_the_budget(alice, sizes):
    big, small = sizes["big"], sizes["small"]
    run = _run(
        probe_launch(
            actor=alice,
            dataset_version=text_dataset(alice),
            versions=[big[0], small[0]],
            max_examples=40,
            max_parameters=small[1],  # a limit is met at equality
        )
    )

    choice = run.results.get(version=small[0])
    over = run.results.get(version=big[0])
    assert run.budget_choice == choice
    assert choice.budget_misses == []
    assert over.budget_misses == [
        f"{human_count(over.parameters)} parameters, over the {human_count(small[1])} limit"
    ]
    assert run.job.result["within_budget"] == "acme/small v1"
    # The ranking is the full one whatever the budget.
    assert sorted(run.results.values_list("rank", flat=True)) == [1, 2]
    if choice.rank == 1:
        assert run.budget_note.startswith("acme/small v1, ranked first, fits the budget")
    else:
        assert run.budget_note.startswith("Best within the budget (at most ")
        assert "acme/small v1, ranked 2nd" in run.budget_note
    page = _client(alice).get(run.get_absolute_url()).content.decode()
    assert "Best within your budget: acme/small v1" in page
    assert "over the" in page
    assert 'class="limit"' in page  # the budget drawn on the size chart
    assert 'class="pick-ring"' in page


def test_when_no_candidate_fits_the_page_says_which_limit_excluded_what(alice, sizes):
    run = _run(
        probe_launch(
            actor=alice,
            dataset_version=text_dataset(alice),
            versions=[sizes["big"][0], sizes["small"][0]],
            max_examples=40,
            max_parameters=1000,
            max_latency_ms=1e-6,
        )
    )

    assert run.budget_choice is None
    assert run.budget_note.startswith(
        "No candidate fits the budget (at most 1.0K parameters and at most 1e-06 ms CPU latency "
        "per example). "
    )
    for result in run.results.all():
        assert len(result.budget_misses) == 2
        assert result.budget_misses[0].endswith("parameters, over the 1.0K limit")
        assert result.budget_misses[1].endswith("ms CPU latency, over the 1e-06 ms limit")
    assert run.job.result["within_budget"] is None
    page = _client(alice).get(run.get_absolute_url()).content.decode()
    assert "No candidate fits your budget" in page
    assert "What each limit excluded:" in page
    assert "over the 1.0K limit" in page


# --------------------------------------------------------------------------- confidence


def test_identical_models_are_within_noise_and_a_clearly_worse_one_is_not(alice, keywords, readers):
    run = _run(
        probe_launch(
            actor=alice,
            dataset_version=keywords,
            versions=list(readers.values()),
            max_examples=60,
        )
    )

    by_name = {r.version.model.repo_id: r for r in run.results.select_related("version__model")}
    twins = sorted(["acme/reader-a", "acme/reader-b"], key=lambda name: by_name[name].rank)
    top, twin, blind = by_name[twins[0]], by_name[twins[1]], by_name["acme/blind"]
    assert blind.rank == 3
    assert top.linear_probe_accuracy == twin.linear_probe_accuracy > 0.9
    assert blind.linear_probe_accuracy <= 0.6
    assert top.within_noise is None
    assert top.gap_low is None
    assert (twin.within_noise, twin.gap_low, twin.gap_high, twin.top_holds) == (
        True,
        0.0,
        0.0,
        1.0,
    )
    assert blind.within_noise is False
    assert blind.gap_low > 0.2
    assert blind.top_holds == 1.0
    assert blind.knn_gap_low is not None
    assert blind.knn_gap_high >= blind.knn_gap_low
    assert run.confidence == ProbeRun.Confidence.NEAR_TIE
    assert run.confidence_note == (
        f"{twins[0]} v1 and {twins[1]} v1 are within noise of each other on this sample; "
        "fine-tune them briefly to decide (bake-off)."
    )
    assert run.job.result["within_noise"] == [f"{twins[0]} v1", f"{twins[1]} v1"]

    page = _client(alice).get(run.get_absolute_url()).content.decode()
    assert f"Ranked first: {twins[0]} v1" in page
    assert "Recommended:" not in page
    near = page[page.index('data-testid="near-ties"') :]
    near = near[: near.index("</div>")]
    assert "are within noise of each other on this sample; fine-tune them briefly" in near
    assert f'data-version="{top.version_id}"' in near
    assert f'data-version="{twin.version_id}"' in near
    assert "acme/blind" not in near


def test_a_clear_lead_is_stated_with_its_margin(alice, keywords, readers):
    run = _run(
        probe_launch(
            actor=alice,
            dataset_version=keywords,
            versions=[readers["blind"], readers["reader-a"]],
            max_examples=60,
        )
    )

    assert run.confidence == ProbeRun.Confidence.CLEAR
    assert run.confidence_note == (
        "acme/reader-a v1 is ahead of every other candidate beyond noise on this sample: its "
        "linear-probe accuracy is at least as high as each other's in all 1,000 paired "
        "bootstrap resamples of the examples."
    )
    page = _client(alice).get(run.get_absolute_url()).content.decode()
    assert "Recommended: acme/reader-a v1" in page
    assert 'data-testid="confidence"' in page
    assert 'data-testid="near-ties"' not in page


def test_a_single_candidate_has_no_margin_to_measure(alice, sizes):
    run = _run(
        probe_launch(
            actor=alice,
            dataset_version=text_dataset(alice),
            versions=[sizes["small"][0]],
            max_examples=40,
        )
    )

    assert run.confidence == ProbeRun.Confidence.SINGLE
    assert run.results.get().within_noise is None


# --------------------------------------------------------------------------- page and API


def test_the_page_draws_accuracy_against_size_and_latency_accessibly(alice, sizes):
    run = _run(
        probe_launch(
            actor=alice,
            dataset_version=text_dataset(alice),
            versions=[sizes["big"][0], sizes["small"][0]],
            max_examples=40,
            max_latency_ms=500,
        )
    )

    page = _client(alice).get(run.get_absolute_url()).content.decode()

    for key in ("parameters", "latency"):
        svg = page[page.index(f'data-testid="tradeoff-{key}"') :]
        svg = svg[: svg.index("</svg>")]
        assert f'aria-labelledby="tradeoff-{key}-title tradeoff-{key}-desc"' in page
        assert f'<title id="tradeoff-{key}-title">' in svg
        assert f'<desc id="tradeoff-{key}-desc">' in svg
        assert svg.count('class="dot"') == 2
        assert "acme/big v1</text>" in svg
        assert "acme/small v1</text>" in svg
        assert "Pareto front" in svg
    assert "Parameters (log scale)" in page
    assert "limit 500 ms" in page  # the latency budget, drawn
    assert "Pareto front: " in page  # the caption says it in words too
    assert 'data-testid="cost-method"' in page
    assert "median of 15 forward passes of one" in page


def test_the_api_takes_a_budget_and_shows_cost_budget_and_confidence(alice, sizes):
    api = APIClient()
    api.force_authenticate(alice)
    created = api.post(
        "/api/probes/",
        {
            "dataset_version": text_dataset(alice).pk,
            "versions": [sizes["big"][0].pk, sizes["small"][0].pk],
            "max_examples": 40,
            "max_parameters": sizes["small"][1],
            "max_latency_ms": 250.5,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["max_parameters"], body["max_latency_ms"]) == (sizes["small"][1], 250.5)
    assert body["within_budget"] is None
    assert body["confidence"] == ""
    _run(ProbeRun.objects.get(pk=body["id"]))

    read = api.get(f"/api/probes/{body['id']}/").json()

    assert read["within_budget"] == sizes["small"][0].pk
    assert read["budget_note"]
    assert read["confidence"] in {"clear", "near_tie"}
    assert read["confidence_note"]
    results = {r["repo_id"]: r for r in read["results"]}
    assert results["acme/small"]["parameters"] == sizes["small"][1]
    assert results["acme/small"]["memory_bytes"] == 4 * sizes["small"][1]
    assert results["acme/small"]["latency_ms"] > 0
    assert results["acme/small"]["cost_method"]["batch_size"] == 1
    assert results["acme/big"]["budget_misses"]
    second = next(r for r in read["results"] if r["rank"] == 2)
    assert second["gap_low"] <= second["gap_high"]
    assert 0 <= second["top_holds"] <= 1
    assert isinstance(second["within_noise"], bool)
    assert "linear_correct" not in second  # the raw per-example bits stay inside


def test_the_api_refuses_a_bad_budget_with_the_services_message(alice, sizes):
    api = APIClient()
    api.force_authenticate(alice)

    response = api.post(
        "/api/probes/",
        {
            "dataset_version": text_dataset(alice).pk,
            "versions": [sizes["small"][0].pk],
            "max_examples": 40,
            "max_latency_ms": -3,
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["field"] == "max_latency_ms"
    assert response.json()["detail"].startswith("The latency limit must be a number of")
    assert not Job.objects.exists()


def test_the_form_takes_a_budget_in_the_units_people_write(alice, sizes):
    dataset = text_dataset(alice)
    client = _client(alice)
    form = {
        "dataset_version": dataset.pk,
        "versions": [sizes["small"][0].pk],
        "max_examples": 40,
        "seed": 0,
    }

    refused = client.post("/probes/new/", {**form, "max_parameters": "lots"})
    negative = client.post("/probes/new/", {**form, "max_parameters": "-2M"})
    accepted = client.post(
        "/probes/new/", {**form, "max_parameters": "1.5M", "max_latency_ms": "20"}
    )

    assert "Write a number of parameters such as 110M" in refused.content.decode()
    assert "The parameter limit must be a whole number" in negative.content.decode()
    assert accepted.status_code == 302
    run = ProbeRun.objects.get()
    assert (run.max_parameters, run.max_latency_ms) == (1_500_000, 20.0)
    assert run.job.params["max_parameters"] == 1_500_000
    page = client.get("/probes/new/").content.decode()
    assert "Largest model (parameters)" in page
    assert "Slowest CPU latency (ms per example)" in page
