"""Browsing: search, filters, the model page, steward actions and the API."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import (
    ArtifactFactory,
    CatalogModelFactory,
    ModelVersionFactory,
    catalogue_entry,
)
from zoo.models import CatalogModel

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue(db):
    return {
        "minilm": catalogue_entry(
            "sentence-transformers/all-MiniLM-L6-v2",
            summary="Maps sentences to a 384 dimensional dense vector space.",
            card="Trained on one billion sentence pairs for semantic search.",
            domain_tags=["semantic-search"],
        ),
        "effnet": catalogue_entry(
            "google/efficientnet-lite0",
            summary="Mobile image classifier.",
            modality="vision",
            task="image-classification",
            license="apache-2.0",
        ),
        "nc": catalogue_entry(
            "acme/research-only",
            summary="A sentiment model for reviews.",
            license="cc-by-nc-4.0",
            task="text-classification",
        ),
        "draft": catalogue_entry(
            "acme/secret-draft", summary="Unpublished sentence model.", status="draft"
        ),
    }


def _ids(response):
    return [row["repo_id"] for row in response.json()["results"]]


def test_full_text_search_matches_card_text_and_stems(client, bob, catalogue):
    client.force_login(bob)
    html = client.get("/catalogue/", {"q": "sentence pairs searching"}).content.decode()
    assert "all-MiniLM-L6-v2" in html
    assert "efficientnet" not in html


def test_filters_combine(client, bob, catalogue):
    client.force_login(bob)
    vision = client.get("/catalogue/", {"modality": "vision"}).content.decode()
    assert "efficientnet-lite0" in vision
    assert "MiniLM" not in vision
    commercial = client.get("/catalogue/", {"commercial": "no"}).content.decode()
    assert "research-only" in commercial
    assert "MiniLM" not in commercial
    nc = client.get("/catalogue/", {"license_category": "non-commercial"}).content.decode()
    assert "research-only" in nc
    tagged = client.get("/catalogue/", {"domain": "semantic-search"}).content.decode()
    assert "MiniLM" in tagged
    assert "research-only" not in tagged


def test_drafts_are_for_stewards_only(client, bob, sam, catalogue):
    client.force_login(bob)
    assert "secret-draft" not in client.get("/catalogue/").content.decode()
    assert client.get("/catalogue/acme/secret-draft/").status_code == 404
    client.force_login(sam)
    assert "secret-draft" in client.get("/catalogue/").content.decode()
    assert client.get("/catalogue/acme/secret-draft/").status_code == 200


def test_model_page_shows_card_license_files_and_lineage(client, bob, catalogue):
    base = catalogue["minilm"]
    ArtifactFactory(version=base, path="model.safetensors", size=90_000_000)
    child = ModelVersionFactory(
        model=CatalogModelFactory(repo_id="acme/minilm-tickets"), parent=base, kind="finetuned"
    )
    client.force_login(bob)

    html = client.get("/catalogue/sentence-transformers/all-MiniLM-L6-v2/").content.decode()
    assert "one billion sentence pairs" in html
    assert "apache-2.0" in html
    assert "model.safetensors" in html
    assert "85.8\xa0MB" in html  # file size, humanised
    assert "acme/minilm-tickets" in html
    child_html = client.get("/catalogue/acme/minilm-tickets/").content.decode()
    assert "sentence-transformers/all-MiniLM-L6-v2 v" in child_html
    assert child.parent_id == base.pk


def test_catalogue_query_count_does_not_grow_with_rows(client, bob, django_assert_max_num_queries):
    for i in range(30):
        catalogue_entry(f"bulk/model-{i}")
    client.force_login(bob)
    with django_assert_max_num_queries(8):
        response = client.get("/catalogue/")
    assert response.status_code == 200


def test_steward_blocks_with_reason_and_others_cannot(client, bob, sam, catalogue):
    url = "/catalogue/google/efficientnet-lite0/status/"
    client.force_login(bob)
    assert client.post(url, {"status": "blocked", "reason": "x"}).status_code == 403
    client.force_login(sam)
    client.post(url, {"status": "blocked", "reason": "Weights under legal hold"})
    model = CatalogModel.objects.get(repo_id="google/efficientnet-lite0")
    assert (model.status, model.status_reason) == ("blocked", "Weights under legal hold")
    page = client.get("/catalogue/google/efficientnet-lite0/").content.decode()
    assert "Weights under legal hold" in page


def test_steward_edits_metadata(client, sam, bob, catalogue):
    url = "/catalogue/google/efficientnet-lite0/edit/"
    client.force_login(bob)
    assert client.get(url).status_code == 403
    client.force_login(sam)
    response = client.post(
        url,
        {
            "title": "EfficientNet Lite0",
            "summary": "Edge image classifier",
            "modality": "vision",
            "task": "image-classification",
            "architecture": "EfficientNet",
            "domain_tags": "Retail, Edge",
            "v-bias_notes": "ImageNet's geographic skew.",
            "v-limitations": "224px inputs only.",
        },
    )
    assert response.status_code == 302
    model = CatalogModel.objects.get(repo_id="google/efficientnet-lite0")
    assert model.domain_tags == ["retail", "edge"]
    assert model.versions.get().bias_notes == "ImageNet's geographic skew."


# --- API ------------------------------------------------------------------------


@pytest.fixture
def api():
    return APIClient()


def test_api_requires_authentication(api, catalogue):
    for url in ["/api/models/", "/api/versions/", "/api/artifacts/"]:
        assert api.get(url).status_code == 401


def test_api_lists_and_filters_models(api, bob, catalogue):
    api.force_authenticate(bob)
    everything = _ids(api.get("/api/models/"))
    assert "acme/secret-draft" not in everything
    assert len(everything) == 3
    assert _ids(api.get("/api/models/", {"modality": "vision"})) == ["google/efficientnet-lite0"]
    assert _ids(api.get("/api/models/", {"commercial_use": "false"})) == ["acme/research-only"]
    assert _ids(api.get("/api/models/", {"q": "dense vector"})) == [
        "sentence-transformers/all-MiniLM-L6-v2"
    ]
    row = api.get("/api/models/", {"modality": "vision"}).json()["results"][0]
    assert row["license"] == "apache-2.0"
    assert row["license_category"] == "permissive"


def test_api_hides_drafts_and_their_versions(api, bob, catalogue):
    api.force_authenticate(bob)
    draft = catalogue["draft"]
    assert api.get(f"/api/models/{draft.model_id}/").status_code == 404
    assert api.get(f"/api/versions/{draft.pk}/").status_code == 404
    assert draft.pk not in [v["id"] for v in api.get("/api/versions/").json()["results"]]


def test_api_edits_are_for_stewards(api, bob, sam, catalogue):
    model_id = catalogue["effnet"].model_id
    api.force_authenticate(bob)
    assert api.patch(f"/api/models/{model_id}/", {"title": "x"}, format="json").status_code == 403
    api.force_authenticate(sam)
    response = api.patch(f"/api/models/{model_id}/", {"title": "Lite0"}, format="json")
    assert response.status_code == 200
    assert response.json()["title"] == "Lite0"
    refused = api.post(f"/api/models/{model_id}/status/", {"status": "blocked"}, format="json")
    assert refused.status_code == 400
    assert "reason" in refused.json()["detail"]


def test_api_version_license_by_steward(api, bob, sam):
    version = catalogue_entry("acme/nolicense", license="unknown")
    api.force_authenticate(bob)
    url = f"/api/versions/{version.pk}/license/"
    assert api.post(url, {"license": "mit"}, format="json").status_code == 403
    api.force_authenticate(sam)
    assert api.post(url, {"license": "nope"}, format="json").status_code == 400
    body = api.post(url, {"license": "mit"}, format="json").json()
    assert body["license"]["spdx_id"] == "mit"


def test_api_list_query_count_is_flat(api, bob, django_assert_max_num_queries):
    for i in range(40):
        ArtifactFactory(version=catalogue_entry(f"bulk/m-{i}"))
    api.force_authenticate(bob)
    for url in ["/api/models/", "/api/versions/", "/api/artifacts/"]:
        # Capped count and page; whether bob is a steward is asked inside them.
        with django_assert_max_num_queries(2):
            assert api.get(url).status_code == 200
    model = CatalogModel.objects.get(repo_id="bulk/m-0")
    with django_assert_max_num_queries(1):
        assert api.get(f"/api/models/{model.pk}/").status_code == 200


def test_a_colleagues_draft_fine_tune_is_not_listed_under_its_base(client, alice, bob, sam):
    base = catalogue_entry("acme/base-encoder")
    draft = CatalogModelFactory(
        repo_id="alice/base-encoder-ft-salaries-7", status="draft", owner=alice
    )
    ModelVersionFactory(model=draft, parent=base, kind="finetuned", created_by=alice)
    published = CatalogModelFactory(repo_id="acme/router-ft", status="available")
    ModelVersionFactory(model=published, parent=base, kind="finetuned")
    url = base.model.get_absolute_url()
    for user, sees_draft in ((bob, False), (alice, True), (sam, True)):
        client.force_login(user)
        page = client.get(url).content.decode()
        assert "acme/router-ft" in page, user
        assert ("alice/base-encoder-ft-salaries-7" in page) is sees_draft, user


def test_lineage_is_drawn_from_the_base_to_every_descendant_the_viewer_may_see(client, alice, bob):
    base = catalogue_entry("acme/base-encoder")
    child = ModelVersionFactory(
        model=CatalogModelFactory(repo_id="acme/router-ft", status="available"),
        parent=base,
        kind="finetuned",
    )
    grandchild = ModelVersionFactory(
        model=CatalogModelFactory(repo_id="acme/router-lora", status="available"),
        parent=child,
        kind="adapter",
    )
    ModelVersionFactory(
        model=CatalogModelFactory(repo_id="alice/router-ft-salaries", status="draft", owner=alice),
        parent=child,
        kind="finetuned",
        created_by=alice,
    )
    client.force_login(bob)

    page = client.get(f"{grandchild.model.get_absolute_url()}").content.decode()
    tree = page[
        page.index('data-testid="lineage-tree"') : page.index("</ul>\n", page.index("lineage-tree"))
    ]

    # From the root down, nested: base > fine-tune > adapter (here), the draft left out.
    assert (
        tree.index("acme/base-encoder")
        < tree.index("acme/router-ft")
        < tree.index("acme/router-lora")
    )
    assert 'class="current" aria-current="true"' in tree
    assert "<strong>acme/router-lora v" in tree
    assert "alice/router-ft-salaries" not in page
    client.force_login(alice)
    assert "alice/router-ft-salaries" in client.get(base.model.get_absolute_url()).content.decode()


def test_a_draft_is_seen_by_its_owner_stewards_and_superusers_only(
    api, alice, bob, sam, admin_user
):
    draft = catalogue_entry("acme/alices-draft", status="draft", owner=alice).model
    catalogue_entry("acme/unowned-draft", status="draft", owner=None)
    catalogue_entry("acme/live")
    seen = {}
    for user in (alice, bob, sam, admin_user):
        api.force_authenticate(user)
        seen[user.username] = sorted(_ids(api.get("/api/models/")))
        found = api.get(f"/api/models/{draft.pk}/").status_code
        assert found == (404 if user is bob else 200)
    everything = ["acme/alices-draft", "acme/live", "acme/unowned-draft"]
    assert seen == {
        "alice": ["acme/alices-draft", "acme/live"],
        "bob": ["acme/live"],
        "sam": everything,
        admin_user.username: everything,
    }
    # A steward no more: the next request already hides the drafts.
    sam.groups.clear()
    api.force_authenticate(sam)
    assert _ids(api.get("/api/models/")) == ["acme/live"]
