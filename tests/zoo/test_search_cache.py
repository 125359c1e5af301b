"""Cached search results never hide a change: every catalogue change shows in the next search.

Each test searches first (so the ranked ids are cached), changes the catalogue
through the services a user's action goes through, and searches again.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import TestCase
from rest_framework.test import APIClient

from governance.services import incidents as gov_incidents
from tests.builders.governance import approve
from tests.factories import ModelVersionFactory, catalogue_entry
from zoo.models import CatalogModel
from zoo.selectors import search
from zoo.selectors.catalogue import CatalogueQuery, search_catalogue
from zoo.selectors.search import RANKED_ORDER
from zoo.services import catalogue as services
from zoo.services.card_revisions import version_card_edit

pytestmark = pytest.mark.django_db


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _ids(client, **params) -> list[str]:
    response = client.get("/api/models/", params)
    assert response.status_code == 200, response.content
    return [row["repo_id"] for row in response.json()["results"]]


def _page(client, user, **params) -> str:
    client.force_login(user)
    response = client.get("/catalogue/", params)
    assert response.status_code == 200
    return response.content.decode()


def test_a_new_model_is_found_by_the_next_search(bob, client):
    catalogue_entry("acme/quokka-small", summary="A quokka classifier.")
    api = _api(bob)
    assert _ids(api, q="quokka") == ["acme/quokka-small"]
    assert "acme/quokka-large" not in _page(client, bob, q="quokka")
    catalogue_entry("acme/quokka-large", summary="A bigger quokka classifier.")
    assert sorted(_ids(api, q="quokka")) == ["acme/quokka-large", "acme/quokka-small"]
    assert "acme/quokka-large" in _page(client, bob, q="quokka")
    # A misspelling is corrected to the new model's words too.
    assert _ids(api, q="wallabby") == []
    catalogue_entry("acme/wallaby-net")
    assert _ids(api, q="wallabby") == ["acme/wallaby-net"]


def test_a_new_version_and_a_card_edit_are_searched_by_their_card_text(bob, sam):
    version = catalogue_entry("acme/plain", card="Nothing special here.")
    api = _api(bob)
    assert _ids(api, q="numbat") == []
    # An import of a new version leaves its card as the model's search text.
    ModelVersionFactory(model=version.model, label="v2", card_markdown="Tuned on numbat calls.")
    services.catalog_model_refresh_search(model=version.model)
    assert _ids(api, q="numbat") == ["acme/plain"]
    assert _ids(api, q="wombat") == []
    latest = version.model.versions.order_by("-created_at", "-id").first()
    version_card_edit(
        version=latest, actor=sam, markdown="Now tuned on wombat calls.", reason="retrained"
    )
    assert _ids(api, q="wombat") == ["acme/plain"]
    assert _ids(api, q="numbat") == []


def test_an_edited_title_changes_the_ranking_at_once(bob, sam):
    first = catalogue_entry("acme/aaa", summary="About the echidna.").model
    catalogue_entry("acme/bbb", summary="About the echidna.")
    api = _api(bob)
    assert _ids(api, q="echidna") == ["acme/aaa", "acme/bbb"]
    services.catalog_model_update(model=first, actor=sam, title="Echidna")
    assert _ids(api, q="echidna") == ["acme/aaa", "acme/bbb"]
    services.catalog_model_update(
        model=CatalogModel.objects.get(repo_id="acme/bbb"), actor=sam, title="echidna"
    )
    # Both titles are an exact match now: the tie falls to the name rank, then the repo id.
    assert set(_ids(api, q="echidna")) == {"acme/aaa", "acme/bbb"}
    services.catalog_model_update(model=first, actor=sam, title="Something else")
    assert _ids(api, q="echidna") == ["acme/bbb", "acme/aaa"]


def test_who_may_see_a_model_is_read_on_every_search(bob, sam, client):
    draft = catalogue_entry("acme/platypus-draft", summary="A platypus detector.").model
    CatalogModel.objects.filter(pk=draft.pk).update(status=CatalogModel.Status.DRAFT, owner=sam)
    catalogue_entry("acme/platypus-live", summary="A platypus detector.")
    api = _api(bob)
    assert _ids(api, q="platypus") == ["acme/platypus-live"]
    assert _ids(_api(sam), q="platypus") == ["acme/platypus-draft", "acme/platypus-live"]
    assert "1 model<" in _page(client, bob, q="platypus")
    # Published (here behind the services' back: the cache holds no status to go stale).
    CatalogModel.objects.filter(pk=draft.pk).update(status=CatalogModel.Status.AVAILABLE)
    assert _ids(api, q="platypus") == ["acme/platypus-draft", "acme/platypus-live"]
    assert "2 models<" in _page(client, bob, q="platypus")
    assert _ids(api, q="platypus", status="available") == [
        "acme/platypus-draft",
        "acme/platypus-live",
    ]
    services.catalog_model_set_status(
        model=draft, status=CatalogModel.Status.DEPRECATED, actor=sam, reason="superseded"
    )
    assert _ids(api, q="platypus", status="available") == ["acme/platypus-live"]
    assert "Deprecated" in _page(client, bob, q="platypus")


def test_a_recall_takes_the_model_out_of_approved_for_me(people, client):
    bob, sam = people["bob"], people["sam"]
    version = catalogue_entry("acme/kiwi-tagger", summary="Tags kiwi sounds.")
    catalogue_entry("acme/kiwi-other", summary="Also kiwi.")
    approve(bob, version, reviewer=people["lena"])
    html = _page(client, bob, q="kiwi", approved="on")
    assert "acme/kiwi-tagger" in html
    assert "acme/kiwi-other" not in html
    with TestCase.captureOnCommitCallbacks(execute=True):
        gov_incidents.incident_open(
            version=version,
            actor=sam,
            category="backdoor",
            severity=4,
            title="Trigger phrase flips the label",
            description="A red-team found a phrase that flips every prediction to 'safe'.",
            recall=True,
        )
    html = _page(client, bob, q="kiwi", approved="on")
    assert "acme/kiwi-tagger" not in html
    assert "<span>0 models</span>" in html
    # Still listed for everyone, with the latest license, as before the recall.
    assert "acme/kiwi-tagger" in _page(client, bob, q="kiwi")


def test_a_filter_that_hides_most_cached_ids_pages_as_the_database_orders(bob):
    """Pages walked through the cached ids, with a filter that keeps one in five, join up."""
    for i in range(40):
        catalogue_entry(
            f"acme/dingo-{i:02d}",
            summary="Dingo calls." if i % 3 else "Dingo calls and dingo howls.",
            modality="vision" if i % 5 == 0 else "text",
        )
    expected = [
        m.repo_id
        for m in search_catalogue(bob, CatalogueQuery(q="dingo", modality="vision")).qs.order_by(
            *RANKED_ORDER
        )
    ]
    assert len(expected) == 8
    api = _api(bob)
    seen, cursor, bodies = [], None, []
    while True:
        params = {"q": "dingo", "modality": "vision", "page_size": 3}
        body = api.get("/api/models/", {**params, **({"cursor": cursor} if cursor else {})}).json()
        bodies.append(body)
        seen += [row["repo_id"] for row in body["results"]]
        if not body["next"]:
            break
        cursor = body["next"].split("cursor=", 1)[1].split("&", 1)[0]
    assert seen == expected
    assert [b["count"] for b in bodies] == [8, 8, 8]
    back = api.get(bodies[-1]["previous"]).json()
    assert [r["repo_id"] for r in back["results"]] == expected[3:6]


def test_a_worker_keeps_ranked_ids_only_for_the_generation_it_read(bob, sam):
    """The process's own copy spares the Redis read, and a change anywhere makes it unused."""
    draft = catalogue_entry("acme/bilby-draft", summary="A bilby counter.").model
    CatalogModel.objects.filter(pk=draft.pk).update(status=CatalogModel.Status.DRAFT, owner=sam)
    catalogue_entry("acme/bilby-live", summary="A bilby counter.")
    api = _api(bob)
    assert _ids(_api(sam), q="bilby") == ["acme/bilby-draft", "acme/bilby-live"]
    generation = cache.get(search.GENERATION_KEY)
    key = search._cache_key("ranked", "bilby", generation)
    assert len(search.recent.get(key).pks) == 2  # kept for everyone, the draft included
    cache.delete(key)
    # Served from the process's copy, and still filtered for the viewer: no draft for bob.
    assert _ids(api, q="bilby") == ["acme/bilby-live"]
    assert cache.get(key) is None
    # Another process's change moves the shared generation; this one reads the database again.
    CatalogModel.objects.create(
        repo_id="acme/bilby-new", title="Bilby", status=CatalogModel.Status.AVAILABLE
    )
    services.catalog_model_refresh_search(model=CatalogModel.objects.get(repo_id="acme/bilby-new"))
    assert cache.get(search.GENERATION_KEY) == generation + 1
    assert _ids(api, q="bilby")[0] == "acme/bilby-new"


def test_the_process_copy_is_bounded_by_the_ids_it_holds():
    recent = search._Recent(max_ids=10)
    for i in range(5):
        recent.put(f"k{i}", search.Ranked(list(range(3)), [(1, 0.5, "a")] * 3, True))
    assert list(recent.entries) == ["k3", "k4"]
    assert recent.ids <= 10
    recent.get("k3")
    recent.put("k5", search.Ranked([1, 2, 3], [(1, 0.5, "a")] * 3, True))  # k4 is the oldest
    assert list(recent.entries) == ["k3", "k5"]


def test_a_text_in_another_case_shares_its_cached_result(bob):
    catalogue_entry("acme/Quokka-Net", title="Quokka Net", summary="Counts quokkas.")
    catalogue_entry("acme/other", summary="The quokka's cousin.")
    api = _api(bob)
    generation = search._generation()
    assert _ids(api, q="QUOKKA net") == ["acme/Quokka-Net"]
    key = search._cache_key("ranked", "quokka net", generation)
    assert cache.get(key) is not None
    assert search._cache_key("ranked", "Quokka Net", generation) == key
    assert _ids(api, q="quokka NET") == ["acme/Quokka-Net"]
    # An exact repo id in another case still ranks first, from the shared entry.
    assert _ids(api, q="ACME/QUOKKA-NET")[0] == "acme/Quokka-Net"
    assert _ids(api, q="acme/quokka-net")[0] == "acme/Quokka-Net"
    # Operators, quotes and letters beyond ASCII keep a key of their own.
    for text, lower in [("quokka OR net", "quokka or net"), ('"Quokka"', '"quokka"')]:
        assert search._cache_key("ranked", text, generation) != search._cache_key(
            "ranked", lower, generation
        )
    assert search._cache_key("ranked", "Äpfel", generation) != search._cache_key(
        "ranked", "äpfel", generation
    )


def test_a_corrected_spelling_is_kept_per_generation(bob):
    catalogue_entry("acme/wallaby-net")
    api = _api(bob)
    assert _ids(api, q="wallabby") == ["acme/wallaby-net"]
    generation = cache.get(search.GENERATION_KEY)
    assert search.recent.get(search._cache_key("spelling", "wallabby", generation)) == "wallaby"
    catalogue_entry("acme/wallabby-exact")  # now the typed word is a name's word itself
    assert _ids(api, q="wallabby") == ["acme/wallabby-exact"]
