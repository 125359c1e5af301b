"""Probe runs: launch checks, the handler run in-process on tiny real models, pages and API.

The handler runs eagerly here (``job_execute`` in the test's own process); the
worker-driven lifecycle is in test_probe_worker.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from jobs.engine import JobCancelled, JobContext, job_claim, job_execute
from jobs.models import FeatureSet, Job, ProbeResult, ProbeRun
from jobs.services import probes as probe_services
from jobs.services.probes import probe_launch
from portal.errors import PortalError
from tests.builders.catalogue import import_model
from tests.builders.datasets import image_zip_bytes, text_dataset, upload
from tests.builders.governance import approve_reuse
from tests.builders.weights import tiny_bert_folder, tiny_vit_folder
from zoo.models import CatalogModel, ModelVersion
from zoo.services import catalogue as catalogue_services
from zoo.services import datasets as dataset_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def encoders(sam, tmp_path):
    """Two tiny text encoders in the catalogue, imported like a steward would."""
    return [
        import_model(
            tiny_bert_folder(tmp_path / f"bert-{seed}", seed=seed), f"acme/bert-{seed}", actor=sam
        )
        for seed in (0, 1)
    ]


def _run(run: ProbeRun) -> ProbeRun:
    assert job_execute(job_id=run.job_id) in {"succeeded", "failed"}
    run.refresh_from_db()
    run.job.refresh_from_db()
    return run


def test_a_probe_scores_every_candidate_and_recommends_one(alice, encoders):
    dataset = text_dataset(alice)
    run = probe_launch(actor=alice, dataset_version=dataset, versions=encoders, max_examples=40)
    assert run.job.queue == "gpu"
    assert run.job.status == Job.Status.QUEUED

    run = _run(run)

    assert run.job.status == Job.Status.SUCCEEDED, run.job.error
    assert run.n_examples == 40
    results = list(run.results.order_by("rank"))
    assert [r.status for r in results] == ["succeeded", "succeeded"]
    assert [r.rank for r in results] == [1, 2]
    for r in results:
        assert r.logme is not None
        assert r.h_score is not None
        assert r.mmd is not None
        assert 0.0 <= r.knn_accuracy <= 1.0
        assert 0.0 <= r.linear_probe_accuracy <= 1.0
        assert r.feature_dim == 32
        assert r.seconds > 0
        assert r.extraction_seconds > 0
        assert r.cached is False
        assert r.reason
    best = results[0].version
    assert run.recommendation.startswith(f"{best.model.repo_id} {best.label}: ")
    assert run.job.result["recommended"] == f"{best.model.repo_id} {best.label}"
    assert FeatureSet.objects.count() == 2
    assert "stratified sample" in run.job.log


def test_a_second_probe_on_the_same_sample_uses_the_cached_features(alice, encoders):
    dataset = text_dataset(alice)
    first = _run(
        probe_launch(actor=alice, dataset_version=dataset, versions=encoders, max_examples=40)
    )
    second = _run(
        probe_launch(actor=alice, dataset_version=dataset, versions=encoders, max_examples=40)
    )

    assert second.job.status == Job.Status.SUCCEEDED
    assert FeatureSet.objects.count() == 2
    again = {r.version_id: r for r in second.results.all()}
    for before in first.results.all():
        after = again[before.version_id]
        assert after.cached is True
        assert after.extraction_seconds is None
        assert after.logme == pytest.approx(before.logme)
        assert after.linear_probe_accuracy == pytest.approx(before.linear_probe_accuracy)
    # Another sample size is another sample: extracted afresh.
    _run(probe_launch(actor=alice, dataset_version=dataset, versions=encoders[:1], max_examples=30))
    assert FeatureSet.objects.count() == 3


def test_a_candidate_that_cannot_load_fails_alone(alice, sam, encoders, tmp_path):
    broken = tiny_bert_folder(tmp_path / "broken")
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    bad = import_model(broken, "acme/broken", actor=sam)
    dataset = text_dataset(alice)

    run = _run(
        probe_launch(
            actor=alice, dataset_version=dataset, versions=[bad, encoders[0]], max_examples=40
        )
    )

    assert run.job.status == Job.Status.SUCCEEDED
    failed = run.results.get(version=bad)
    assert failed.status == ProbeResult.Status.FAILED
    assert "no-such-architecture" in failed.error
    assert failed.rank is None
    ok = run.results.get(version=encoders[0])
    assert ok.status == ProbeResult.Status.SUCCEEDED
    assert ok.rank == 1
    assert run.job.result["failed"] == ["acme/broken v1"]


def test_files_of_the_wrong_modality_fail_that_candidate(alice, sam, encoders, tmp_path):
    # Catalogued as a text model, but its files are a vision transformer.
    mislabelled = import_model(tiny_vit_folder(tmp_path / "vit"), "acme/vit", actor=sam)
    catalogue_services.catalog_model_update(model=mislabelled.model, actor=sam, modality="text")
    dataset = text_dataset(alice)

    run = _run(
        probe_launch(
            actor=alice,
            dataset_version=dataset,
            versions=[encoders[0], mislabelled],
            max_examples=40,
        )
    )

    result = run.results.get(version=mislabelled)
    assert result.status == ProbeResult.Status.FAILED
    assert result.error == "acme/vit v1 is a vision model; this dataset holds text data."
    assert run.results.get(version=encoders[0]).status == ProbeResult.Status.SUCCEEDED


def test_when_every_candidate_fails_the_run_fails_with_the_reasons(alice, sam, tmp_path):
    mislabelled = import_model(tiny_vit_folder(tmp_path / "vit"), "acme/vit", actor=sam)
    catalogue_services.catalog_model_update(model=mislabelled.model, actor=sam, modality="text")
    dataset = text_dataset(alice)

    run = _run(
        probe_launch(actor=alice, dataset_version=dataset, versions=[mislabelled], max_examples=40)
    )

    assert run.job.status == Job.Status.FAILED
    assert run.job.error.startswith("No candidate could be scored. acme/vit v1: ")


def test_an_image_dataset_is_probed_with_a_vision_backbone(alice, sam, tmp_path):
    vit = import_model(tiny_vit_folder(tmp_path / "vit"), "acme/vit", actor=sam, modality="vision")
    staged = dataset_services.dataset_stage_upload(
        actor=alice, upload=upload("pets.zip", image_zip_bytes({"cat": 6, "dog": 6}))
    )
    images, _ = dataset_services.dataset_create(
        actor=alice, staged=staged, name="pets", sensitivity="internal"
    )

    run = _run(probe_launch(actor=alice, dataset_version=images, versions=[vit], max_examples=12))

    assert run.job.status == Job.Status.SUCCEEDED, run.job.error
    result = run.results.get()
    assert result.rank == 1
    assert result.feature_dim == 32
    # The two classes differ in colour, which even random patch features pick up.
    assert result.linear_probe_accuracy >= 0.75


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("draft", "No model version"),
        ("blocked", "is blocked"),
        ("vision", "is a vision model"),
        ("twice", "listed twice"),
        ("none", "at least one candidate"),
        ("examples", "between 10 and"),
        ("foreign_dataset", "No such dataset"),
    ],
)
def test_launch_refusals_say_why_and_create_nothing(case, message, alice, bob, sam, encoders):
    dataset = text_dataset(alice)
    versions = [encoders[0]]
    max_examples = 100
    actor = alice
    if case == "draft":
        CatalogModel.objects.filter(pk=encoders[1].model_id).update(
            status=CatalogModel.Status.DRAFT
        )
        versions = [encoders[1]]
    elif case == "blocked":
        encoders[1].status = "blocked"
        encoders[1].block_reasons = ["model.bin: unsafe pickle (os.system)."]
        encoders[1].save()
        versions = [encoders[1]]
    elif case == "vision":
        catalogue_services.catalog_model_update(
            model=encoders[1].model, actor=sam, modality="vision"
        )
        encoders[1].model.refresh_from_db()
        versions = [encoders[0], encoders[1]]
    elif case == "twice":
        versions = [encoders[0], encoders[0]]
    elif case == "none":
        versions = []
    elif case == "examples":
        max_examples = 5
    elif case == "foreign_dataset":
        actor = bob
    jobs_before = Job.objects.count()

    with pytest.raises(PortalError, match=message):
        probe_launch(
            actor=actor, dataset_version=dataset, versions=versions, max_examples=max_examples
        )

    assert Job.objects.count() == jobs_before
    assert not ProbeRun.objects.exists()


def _probe(actor, dataset, version) -> ProbeRun:
    return probe_launch(actor=actor, dataset_version=dataset, versions=[version], max_examples=50)


def test_published_versions_may_be_probed_by_anyone_on_their_own_data(alice, bob, encoders):
    for user in (alice, bob):
        run = _probe(user, text_dataset(user, name=f"{user.username}-sms"), encoders[0])
        assert run.results.get().version == encoders[0]


def test_an_unpublished_version_may_be_probed_by_whoever_may_use_it(alice, bob, sam, encoders):
    folder = tiny_bert_folder(Path(settings.IMPORT_ROOTS[0]) / "own", seed=3)
    mine = import_model(folder, "alice/own-encoder", actor=sam)
    # As a fine-tune of hers is: a draft model she owns, a version she made.
    CatalogModel.objects.filter(pk=mine.model_id).update(
        status=CatalogModel.Status.DRAFT, owner=alice
    )
    ModelVersion.objects.filter(pk=mine.pk).update(created_by=alice)
    mine.refresh_from_db()
    assert _probe(alice, text_dataset(alice), mine).results.count() == 1  # her own draft
    with pytest.raises(PortalError, match="No model version"):
        _probe(bob, text_dataset(bob, name="bob-sms"), mine)  # a colleague's draft
    assert ProbeRun.objects.count() == 1


@pytest.mark.parametrize("sensitivity", ["confidential", "restricted"])
def test_sensitive_data_needs_an_approval_that_covers_it(alice, encoders, sensitivity):
    dataset = text_dataset(alice, sensitivity=sensitivity)
    with pytest.raises(PortalError, match=f"{sensitivity} data: probing acme/bert-0"):
        _probe(alice, dataset, encoders[0])
    approve_reuse(alice, encoders[0], sensitivity="confidential")
    if sensitivity == "confidential":
        assert _probe(alice, dataset, encoders[0]).results.count() == 1
    else:  # a confidential approval does not cover restricted data
        with pytest.raises(PortalError, match="restricted data"):
            _probe(alice, dataset, encoders[0])
    assert not ProbeRun.objects.exclude(dataset_version__dataset__sensitivity="confidential")


def test_the_form_offers_only_what_may_be_probed(alice, sam, encoders):
    CatalogModel.objects.filter(pk=encoders[1].model_id).update(status=CatalogModel.Status.DRAFT)
    page = _client(alice).get("/probes/new/").content.decode()
    assert "acme/bert-0" in page
    assert "acme/bert-1" not in page


def test_history_panels_show_only_the_viewers_own_probes(alice, bob, encoders):
    dataset = text_dataset(alice)
    dataset_services.dataset_share(dataset=dataset.dataset, actor=alice, user=bob)
    hers = _probe(alice, dataset, encoders[0])
    his = _probe(bob, dataset, encoders[0])
    model_panel = f"/probes/history/?model={encoders[0].model_id}"
    dataset_panel = f"/probes/history/?dataset={dataset.dataset_id}"
    for viewer, own, other in ((alice, hers, his), (bob, his, hers)):
        for panel in (model_panel, dataset_panel):
            page = _client(viewer).get(panel).content.decode()
            assert f'href="{own.get_absolute_url()}"' in page, (viewer, panel)
            assert f'href="{other.get_absolute_url()}"' not in page, (viewer, panel)
    # Once the dataset is no longer shared, bob's panels stop naming it.
    dataset_services.dataset_unshare(dataset=dataset.dataset, actor=alice, user=bob)
    page = _client(bob).get(model_panel).content.decode()
    assert "None of your probes used it yet." in page


def test_a_stale_attempt_cannot_write_results(alice, encoders):
    dataset = text_dataset(alice)
    run = probe_launch(actor=alice, dataset_version=dataset, versions=encoders, max_examples=40)
    first = job_claim(job_id=run.job_id, worker="w1", device="cpu")
    # The first worker stops reporting; its lease runs out and another worker takes over.
    Job.objects.filter(pk=run.job_id).update(lease_expires_at="2000-01-01T00:00:00Z")
    second = job_claim(job_id=run.job_id, worker="w2", device="cpu")
    assert (first, second) == (1, 2)
    stale = JobContext(job_id=run.job_id, attempt=first, params={}, requested_by_id=alice.pk)
    result = run.results.first()

    with pytest.raises(JobCancelled):
        probe_services.probe_result_update(ctx=stale, result_id=result.pk, logme=99.0)

    result.refresh_from_db()
    assert result.logme is None


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_probe_pages_launch_show_and_hide(alice, bob, encoders):
    dataset = text_dataset(alice)
    client = _client(alice)
    form = client.get(f"/probes/new/?dataset_version={dataset.pk}")
    assert form.status_code == 200
    assert "acme/bert-0" in form.content.decode()

    response = client.post(
        "/probes/new/",
        {
            "dataset_version": dataset.pk,
            "versions": [v.pk for v in encoders],
            "max_examples": 40,
            "seed": 0,
        },
    )
    run = ProbeRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/probes/{run.pk}/"
    _run(run)

    page = client.get(f"/probes/{run.pk}/").content.decode()
    # Two random tiny encoders on 40 texts: too close to call, and the page says so.
    assert run.confidence == ProbeRun.Confidence.NEAR_TIE
    assert "Ranked first: acme/bert-" in page
    assert "are within noise of each other on this sample" in page
    assert "probe-chart-data" in page
    assert 'data-testid="tradeoff-parameters"' in page
    partial = client.get(f"/probes/{run.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in partial
    assert "hx-trigger" not in partial  # finished: the page stops polling
    history = client.get(f"/probes/history/?model={encoders[0].model_id}").content.decode()
    assert f"#{run.pk}" in history
    assert client.get(f"/probes/history/?dataset={dataset.dataset_id}").status_code == 200
    assert _client(bob).get(f"/probes/{run.pk}/").status_code == 404
    assert (
        f"#{run.pk}"
        not in _client(bob).get(f"/probes/history/?model={encoders[0].model_id}").content.decode()
    )


def test_the_form_explains_a_refusal_without_creating_anything(alice, sam, encoders):
    dataset = text_dataset(alice)
    response = _client(alice).post(
        "/probes/new/",
        {"dataset_version": dataset.pk, "versions": [], "max_examples": 40, "seed": 0},
    )
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert not Job.objects.exists()


def test_probe_api_launch_read_and_cancel(alice, bob, sam, encoders):
    dataset = text_dataset(alice)
    api = APIClient()
    api.force_authenticate(alice)
    created = api.post(
        "/api/probes/",
        {"dataset_version": dataset.pk, "versions": [encoders[0].pk], "max_examples": 40},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "queued"
    assert body["results"][0]["repo_id"] == "acme/bert-0"

    other = APIClient()
    other.force_authenticate(bob)
    assert other.get(f"/api/probes/{body['id']}/").status_code == 404
    assert other.post(f"/api/probes/{body['id']}/cancel/").status_code == 404

    cancelled = api.post(f"/api/probes/{body['id']}/cancel/")
    assert cancelled.json()["status"] == "cancelled"
    assert job_execute(job_id=body["job"]) == "skipped"


def test_probe_api_refuses_versions_the_user_cannot_see(alice, sam, encoders):
    CatalogModel.objects.filter(pk=encoders[1].model_id).update(status=CatalogModel.Status.DRAFT)
    dataset = text_dataset(alice)
    api = APIClient()
    api.force_authenticate(alice)
    for versions in ([encoders[1].pk], [999999]):
        response = api.post(
            "/api/probes/",
            {"dataset_version": dataset.pk, "versions": versions, "max_examples": 40},
            format="json",
        )
        # A version you may not see answers like one that does not exist.
        assert response.status_code == 404
        assert response.json()["detail"].startswith("No model version")
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("k", "candidates", "message"),
    [
        (1, 2, "0 \\(off\\) or between 2 and 2"),
        (3, 2, "between 2 and 2 \\(with 2 candidates"),
        (2, 1, "choose at least two candidates"),
        (True, 2, "must be a whole number"),
    ],
)
def test_a_shortlist_the_candidates_cannot_fill_is_refused(k, candidates, message, alice, encoders):
    dataset = text_dataset(alice)

    with pytest.raises(PortalError, match=message) as refused:
        probe_launch(
            actor=alice,
            dataset_version=dataset,
            versions=encoders[:candidates],
            max_examples=40,
            shortlist_k=k,
        )

    assert refused.value.field == "shortlist_k"
    assert not Job.objects.exists()
    assert not ProbeRun.objects.exists()


def test_the_shortlist_is_off_by_default_and_recorded_when_asked(alice, encoders):
    dataset = text_dataset(alice)
    plain = probe_launch(actor=alice, dataset_version=dataset, versions=encoders, max_examples=40)
    asked = probe_launch(
        actor=alice, dataset_version=dataset, versions=encoders, max_examples=40, shortlist_k=2
    )
    assert (plain.shortlist_k, asked.shortlist_k) == (0, 2)
    assert asked.job.params["shortlist_k"] == 2

    # Scores alone: no brief fine-tune runs and no result carries one.
    plain = _run(plain)
    assert plain.job.status == Job.Status.SUCCEEDED, plain.job.error
    assert plain.shortlist_note == ""
    assert not plain.results.filter(brief_accuracy__isnull=False).exists()
    assert sorted(plain.results.values_list("score_rank", flat=True)) == [1, 2]


@pytest.mark.parametrize(
    ("value", "message"),
    [(7, "between 2 and 2"), (1, "between 2 and 2"), ("many", "A valid integer is required")],
)
def test_probe_api_refuses_a_bad_shortlist_with_a_message(value, message, alice, encoders):
    dataset = text_dataset(alice)
    api = APIClient()
    api.force_authenticate(alice)

    response = api.post(
        "/api/probes/",
        {
            "dataset_version": dataset.pk,
            "versions": [e.pk for e in encoders],
            "max_examples": 40,
            "shortlist_k": value,
        },
        format="json",
    )

    assert response.status_code == 400, response.content
    assert message in json.dumps(response.json())
    assert not Job.objects.exists()
    assert not ProbeRun.objects.exists()


def test_probe_api_and_page_show_the_brief_fine_tune(alice, encoders):
    dataset = text_dataset(alice)
    api = APIClient()
    api.force_authenticate(alice)
    created = api.post(
        "/api/probes/",
        {
            "dataset_version": dataset.pk,
            "versions": [e.pk for e in encoders],
            "max_examples": 40,
            "shortlist_k": 2,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    run = _run(ProbeRun.objects.get(pk=created.json()["id"]))
    assert run.job.status == Job.Status.SUCCEEDED, run.job.error

    body = api.get(f"/api/probes/{run.pk}/").json()
    assert body["shortlist_k"] == 2
    assert body["shortlist_note"].startswith("The top 2 by scores")
    assert all(r["brief_accuracy"] is not None for r in body["results"])
    client = Client()
    client.force_login(alice)
    page = client.get(run.get_absolute_url()).content.decode()
    assert 'data-testid="brief-accuracy"' in page
    assert "Brief fine-tune: each of the top 2 by scores" in page


def test_the_form_puts_a_bad_shortlist_on_its_field_and_creates_nothing(alice, encoders):
    dataset = text_dataset(alice)
    response = _client(alice).post(
        "/probes/new/",
        {
            "dataset_version": dataset.pk,
            "versions": [e.pk for e in encoders],
            "max_examples": 40,
            "seed": 0,
            "shortlist_k": 4,
        },
    )
    assert response.status_code == 200
    assert (
        response.context["form"]
        .errors["shortlist_k"][0]
        .startswith("The number of top candidates to check")
    )
    assert not Job.objects.exists()


def test_an_image_probe_checks_its_shortlist_with_a_brief_fine_tune(alice, sam, tmp_path):
    vits = [
        import_model(
            tiny_vit_folder(tmp_path / f"vit{seed}", seed=seed),
            f"acme/vit{seed}",
            actor=sam,
            modality="vision",
        )
        for seed in (0, 1)
    ]
    staged = dataset_services.dataset_stage_upload(
        actor=alice, upload=upload("pets.zip", image_zip_bytes({"cat": 10, "dog": 10}))
    )
    images, _ = dataset_services.dataset_create(
        actor=alice, staged=staged, name="pets", sensitivity="internal"
    )

    run = _run(
        probe_launch(
            actor=alice, dataset_version=images, versions=vits, max_examples=20, shortlist_k=2
        )
    )

    assert run.job.status == Job.Status.SUCCEEDED, run.job.error
    for result in run.results.all():
        assert result.brief_error == ""
        assert result.brief_accuracy is not None
        assert result.brief_rows == 14  # 20 rows less 4 for test and 2 for validation
    assert run.shortlist_note.startswith("The top 2 by scores")
