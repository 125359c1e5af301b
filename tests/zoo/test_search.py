"""Catalogue search as a user meets it: relevance, typos, keyset pages and capped counts."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from governance.models import License
from portal.pagination import COUNT_CAP, encode_cursor
from tests.factories import CatalogModelFactory, ModelVersionFactory, catalogue_entry
from zoo.models import CatalogModel, ModelVersion, SearchEntry
from zoo.selectors.catalogue import CatalogueQuery, search_catalogue
from zoo.selectors.search import RANKED_ORDER, similarity
from zoo.services.catalogue import search_fields

pytestmark = pytest.mark.django_db


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["repo_id"] for row in response.json()["results"]]


@pytest.fixture
def api(bob):
    client = APIClient()
    client.force_authenticate(bob)
    return client


@pytest.fixture
def ranked(db):
    """Four models that all mention "minilm", each in a different field."""
    return {
        "card": catalogue_entry(
            "hf-internal/tiny-random-bert",
            summary="A tiny random BERT for tests.",
            card="Smaller than MiniLM; weights are random. " * 20,
        ).model,
        "tag": catalogue_entry(
            "acme/ticket-router", summary="Routes tickets.", domain_tags=["minilm"]
        ).model,
        "name": catalogue_entry(
            "sentence-transformers/all-MiniLM-L6-v2", summary="Sentence embeddings."
        ).model,
        "exact": catalogue_entry("acme/minilm", summary="The plain one.").model,
    }


def test_exact_name_then_name_words_then_summary_and_tags_then_card_text(api, ranked):
    assert _ids(api.get("/api/models/", {"q": "MiniLM"})) == [
        "acme/minilm",
        "sentence-transformers/all-MiniLM-L6-v2",
        "acme/ticket-router",
        "hf-internal/tiny-random-bert",
    ]
    # A whole repo id typed in another case finds that model first.
    assert _ids(api.get("/api/models/", {"q": "Sentence-Transformers/ALL-MiniLM-L6-v2"}))[0] == (
        "sentence-transformers/all-MiniLM-L6-v2"
    )


def test_the_catalogue_page_ranks_as_the_api_does(client, bob, ranked):
    client.force_login(bob)
    html = client.get("/catalogue/", {"q": "minilm"}).content.decode()
    positions = [html.index(f">{m.repo_id}<") for m in ranked.values()]
    assert positions == sorted(positions, reverse=True)  # exact first ... card last
    assert "<span>4 models</span> · best matches first" in html


def test_a_typo_in_a_name_still_finds_the_model(client, bob, api, ranked):
    found = _ids(api.get("/api/models/", {"q": "minlm"}))
    assert found == _ids(api.get("/api/models/", {"q": "minilm"}))
    assert found[:2] == ["acme/minilm", "sentence-transformers/all-MiniLM-L6-v2"]
    client.force_login(bob)
    html = client.get("/catalogue/", {"q": "minlm"}).content.decode()
    assert "Nothing matches “minlm”; showing results for <strong>minilm</strong>" in html
    assert _ids(api.get("/api/models/", {"q": "efficientnte"})) == []
    catalogue_entry("google/efficientnet-lite0", summary="Mobile image classifier.")
    assert _ids(api.get("/api/models/", {"q": "efficentnet"})) == ["google/efficientnet-lite0"]


def test_search_text_is_user_text_not_syntax(api, ranked):
    for hostile in ['"', "minilm & | ! :*", "'); DROP TABLE zoo_catalogmodel; --", "(((", "\\"]:
        assert api.get("/api/models/", {"q": hostile}).status_code == 200
    assert CatalogModel.objects.count() == 4


def test_filters_and_approved_for_me_combine_with_search(client, api, bob, ranked):
    CatalogModel.objects.filter(pk=ranked["tag"].pk).update(modality="vision")
    assert _ids(api.get("/api/models/", {"q": "minilm", "modality": "vision"})) == [
        "acme/ticket-router"
    ]
    client.force_login(bob)
    html = client.get("/catalogue/", {"q": "minilm", "approved": "on"}).content.decode()
    assert "<span>0 models</span>" in html  # bob holds no approval yet


def test_model_rows_carry_no_search_text(api, ranked):
    with CaptureQueriesContext(connection) as plain:
        api.get("/api/models/")
    assert not any("zoo_catalogsearch" in q["sql"] for q in plain.captured_queries)
    with CaptureQueriesContext(connection) as searched:
        api.get("/api/models/", {"q": "minilm"})
    for q in searched.captured_queries:
        select_list = q["sql"].split(" FROM ", 1)[0]
        assert '"zoo_catalogsearch"."card"' not in select_list
        assert '"zoo_catalogsearch"."vector"' not in select_list


def _walk(api, url, params, key="repo_id"):
    seen, pages, cursor = [], 0, None
    while True:
        body = api.get(url, {**params, **({"cursor": cursor} if cursor else {})}).json()
        seen += [row[key] for row in body["results"]]
        pages += 1
        if not body["next"]:
            return seen, pages, body
        cursor = body["next"].split("cursor=", 1)[1].split("&", 1)[0]


def test_model_list_pages_by_cursor_forwards_and_back(api):
    for i in range(23):
        catalogue_entry(f"bulk/model-{i:02d}", summary="A bulk encoder.")
    names, pages, last = _walk(api, "/api/models/", {"page_size": 5})
    assert names == sorted(names)
    assert len(set(names)) == 23
    assert pages == 5
    # Back from the last page gives the one before it, in the same order.
    back = api.get(last["previous"]).json()
    assert [r["repo_id"] for r in back["results"]] == names[15:20]
    assert back["previous"]
    assert back["next"]
    # A ranked search pages the same way, every match once.
    found, _, _ = _walk(api, "/api/models/", {"q": "bulk encoder", "page_size": 4})
    assert sorted(found) == sorted(names)


def test_rows_added_while_paging_do_not_shift_the_next_page(api):
    for i in range(10):
        catalogue_entry(f"bulk/m{i}")
    first = api.get("/api/models/", {"page_size": 5}).json()
    catalogue_entry("bulk/m0a")  # sorts into the first page's range
    second = api.get(first["next"]).json()
    assert [r["repo_id"] for r in second["results"]] == [f"bulk/m{i}" for i in range(5, 10)]


def test_version_list_pages_newest_first_by_cursor(api):
    entry = catalogue_entry("acme/many")
    license = License.objects.get(spdx_id="mit")
    for i in range(11):
        ModelVersionFactory(model=entry.model, label=f"extra-{i}", license=license)
    ids, pages, _ = _walk(api, "/api/versions/", {"page_size": 4}, key="id")
    expected = list(
        ModelVersion.objects.order_by("-created_at", "-id").values_list("id", flat=True)
    )
    assert ids == expected
    assert pages == 3


def test_counts_stop_at_the_cap(api, client, bob):
    owner = CatalogModelFactory().owner
    models = CatalogModel.objects.bulk_create(
        CatalogModel(repo_id=f"bulk/n{i}", title=f"n{i}", status="available", owner=owner)
        for i in range(COUNT_CAP + 5)
    )
    SearchEntry.objects.bulk_create(SearchEntry(model=m, **search_fields(m, "")) for m in models)
    body = api.get("/api/models/", {"page_size": 1}).json()
    assert body["count"] == COUNT_CAP
    assert body["count_capped"] is True
    searched = api.get("/api/models/", {"q": "bulk", "page_size": 1}).json()
    assert searched["count_capped"] is True
    one = api.get("/api/models/", {"q": "n7"}).json()
    assert one["count"] >= 1
    assert one["count_capped"] is False
    client.force_login(bob)
    assert "<span>1,000+ models</span>" in client.get("/catalogue/").content.decode()


def test_a_forged_or_foreign_cursor_is_a_clear_400(api, client, bob, ranked):
    wrong_width = encode_cursor(["x", 1], backwards=False)
    wrong_type = encode_cursor(["not-a-date", 5], backwards=False)
    for cursor in ["garbage!", "eyJrIjogMX0", wrong_width]:
        response = api.get("/api/models/", {"cursor": cursor})
        assert response.status_code == 400, cursor
        assert "page link" in response.json()["detail"]
    assert api.get("/api/versions/", {"cursor": wrong_type}).status_code == 400
    client.force_login(bob)
    page = client.get("/catalogue/", {"cursor": "garbage!"})
    assert page.status_code == 400
    assert "page link" in page.content.decode()


def test_catalogue_page_links_walk_every_model(client, bob):
    for i in range(45):
        catalogue_entry(f"bulk/page-{i:02d}")
    client.force_login(bob)
    seen, url = [], "/catalogue/?sort=name"
    while url:
        html = client.get(url).content.decode()
        seen += [line for line in html.split('"') if line.startswith("/catalogue/bulk/")]
        marker = 'rel="next" href="'
        url = (
            "/catalogue/" + html.split(marker, 1)[1].split('"', 1)[0].replace("&amp;", "&")
            if marker in html
            else None
        )
    assert len(set(seen)) == 45


def test_model_page_query_budget(client, bob, django_assert_max_num_queries):
    entry = catalogue_entry("acme/budget", card="# Card\n\nSome text.")
    for i in range(6):
        ModelVersionFactory(model=entry.model, label=f"child-{i}", parent=entry)
    client.force_login(bob)
    # The page's own queries with a cold content-type cache, the nav's unread count,
    # and the version's release checks (one query for the newest of each kind).
    with django_assert_max_num_queries(19):
        assert client.get("/catalogue/acme/budget/").status_code == 200


def test_the_sqlite_similarity_is_pg_trgms():
    with connection.cursor() as cursor:
        for a, b in [
            ("minlm", "minilm"),
            ("sentnce", "sentence"),
            ("sentence", "sentiment"),
            ("efficientnte", "efficientnet"),
            ("bert", "bert"),
            ("zzz", "bert"),
            ("two words", "words two"),
        ]:
            cursor.execute("SELECT similarity(%s, %s)", [a, b])
            assert similarity(a, b) == pytest.approx(cursor.fetchone()[0], abs=1e-6), (a, b)


def test_name_matches_page_first_and_the_pages_join_up_with_the_rest(api, bob):
    """Pages read from the name matches alone meet the pages after them without a gap."""
    for i in range(7):
        catalogue_entry(f"acme/encoder-{i}", summary="Plain.")
    for i in range(5):
        catalogue_entry(f"acme/other-{i}", summary="An encoder too.")
    for i in range(4):
        catalogue_entry(f"acme/carded-{i}", summary="Plain.", card="Built on an encoder.")
    full = [
        m.repo_id
        for m in search_catalogue(bob, CatalogueQuery(q="encoder")).qs.order_by(*RANKED_ORDER)
    ]
    assert full[:7] == [f"acme/encoder-{i}" for i in range(7)]
    assert len(full) == 16
    seen, pages, last = _walk(api, "/api/models/", {"q": "encoder", "page_size": 3})
    assert seen == full
    assert pages == 6
    # And back again from the last page to the first, page by page.
    back, body = [], last
    while body["previous"]:
        body = api.get(body["previous"]).json()
        back = [r["repo_id"] for r in body["results"]] + back
    assert back == full[: len(back)]
    assert back[:3] == full[:3]
    # Searched again, the ranked ids come from the cache: no text or name index is read,
    # only the visible rows by id.
    with CaptureQueriesContext(connection) as again:
        assert _ids(api.get("/api/models/", {"q": "encoder", "page_size": 3})) == full[:3]
    sql = [q["sql"] for q in again.captured_queries]
    assert not [q for q in sql if "zoo_search_text" in q or "zoo_search_name" in q]


def test_pages_past_the_cached_ids_read_the_database(api, bob, monkeypatch):
    """With more matches than the cache keeps, the pages after them still join up."""
    from zoo.selectors import search

    monkeypatch.setattr(search, "RANKED_CAP", 4)
    for i in range(7):
        catalogue_entry(f"acme/encoder-{i}", summary="Plain.")
    for i in range(5):
        catalogue_entry(f"acme/other-{i}", summary="An encoder too.")
    full = [
        m.repo_id
        for m in search_catalogue(bob, CatalogueQuery(q="encoder")).qs.order_by(*RANKED_ORDER)
    ]
    assert len(full) == 12
    seen, pages, _ = _walk(api, "/api/models/", {"q": "encoder", "page_size": 3})
    assert seen == full
    assert pages == 4
    body = api.get("/api/models/", {"q": "encoder", "page_size": 3}).json()
    assert body["count"] == 12
    assert body["count_capped"] is False


def test_size_sort_puts_unsized_models_last_and_recent_sort_ranks_by_edit(client, bob):
    for i, size in enumerate([5_000, None, 90_000, 20_000, None]):
        catalogue_entry(f"acme/sized-{i}", parameter_count=size)
    client.force_login(bob)
    seen, url = [], "/catalogue/?sort=params"
    while url:
        html = client.get(url).content.decode()
        seen += [x for x in html.split('"') if x.startswith("/catalogue/acme/sized-")]
        marker = 'rel="next" href="'
        url = None
        if marker in html:
            url = "/catalogue/" + html.split(marker, 1)[1].split('"', 1)[0].replace("&amp;", "&")
    order = [s.rsplit("-", 1)[1].rstrip("/") for s in dict.fromkeys(seen)]
    assert order == ["2", "3", "0", "1", "4"]
    recent = client.get("/catalogue/", {"sort": "recent", "q": "sized"}).content.decode()
    assert recent.index("acme/sized-4") < recent.index("acme/sized-0")
