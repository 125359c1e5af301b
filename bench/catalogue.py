"""Catalogue search and lists at scale, in-process, on PostgreSQL.

Seeds ``--models`` models with ``--versions-per-model`` versions each (the
catalogue of ``bench/_catalogue_data.py``; default 20,000 x 5 = 100,000
versions) and prints p50/p95 latency and SQL queries per request, through the
full Django stack (test client, no network), for each kind of request:
one-word searches (a common word, first and searched again, a rare one), two
words, a typo in a name, a tag filter, a filter combined with a search, the
first and a deep page of the model list and of the version list, and the model
page.

Baselines in the same run, on the same data and requests:

- the same pages found by OFFSET with an exact count (what Django's
  paginator does), against the keyset pages with a capped count;
- ranking by ts_rank over the vector of all the text (card text included),
  against the tiers and the name/summary rank the portal uses.

``--sizes 2500,20000`` runs the benchmark once per size (each in its own
database) and prints how each latency grows from the smallest size to the
largest: the goal is less than 2x for 8x the data.

Usage: .venv/bin/python bench/catalogue.py [--models 20000] [--versions-per-model 5]
       .venv/bin/python bench/catalogue.py --sizes 2500,20000
Needs PostgreSQL at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/portal_bench;
``--sizes`` appends the size to the database name). Databases are created and seeded on first
use and reused afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._catalogue_data import MODALITIES, production_environment, queries  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/portal_bench"


def _setup(database_url: str) -> None:
    os.environ.update(production_environment(database_url))
    from bench._database import create_and_migrate

    create_and_migrate(database_url)
    from django.core.management import call_command

    # Production settings serve hashed static files: build the manifest they read.
    call_command("collectstatic", interactive=False, verbosity=0)


def _summary(latencies: list[float], queries: int) -> dict:
    latencies = sorted(latencies)
    return {
        "p50": statistics.median(latencies),
        "p95": latencies[max(0, int(len(latencies) * 0.95) - 1)],
        "queries": queries,
    }


def _time(client, url: str, params_list: list[dict]) -> dict:
    return _timed(client, [(url, params) for params in params_list])


def _timed(client, requests: list[tuple[str, dict]]) -> dict:
    """Latency of each request through the whole stack, and the most SQL queries one made."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    latencies, queries_seen = [], []
    for url, params in requests:
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            response = client.get(url, params)
            latencies.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, params, response.status_code)
        queries_seen.append(len(ctx.captured_queries))
    return _summary(latencies, max(queries_seen))


def _deep_cursors(client, url: str, params: dict, depth: int) -> str:
    """The cursor of page ``depth``, found by following ``next`` links once."""
    from urllib.parse import parse_qs, urlsplit

    cursor = ""
    for _ in range(depth - 1):
        body = client.get(url, {**params, **({"cursor": cursor} if cursor else {})}).json()
        if not body["next"]:
            break
        cursor = parse_qs(urlsplit(body["next"]).query)["cursor"][0]
    return cursor


def _offset_baseline(user, kind: str, params_list: list[dict], size: int) -> dict:
    """The same lists paged by OFFSET with an exact count, as Django's Paginator would."""
    from django.core.paginator import Paginator

    from zoo.selectors import catalogue as selectors

    latencies = []
    for params in params_list:
        started = time.perf_counter()
        if kind == "models":
            qs, order, *_ = selectors.search_catalogue(
                user, selectors.CatalogueQuery(q=params.get("q", ""))
            )
            qs = qs.order_by(*order)
        else:
            qs = selectors.versions_visible_to(user).select_related("model", "license")
            qs = qs.order_by("-created_at", "-id")
        page = Paginator(qs, size).get_page(params.get("page", 1))
        list(page.object_list)
        latencies.append((time.perf_counter() - started) * 1000)
    return _summary(latencies, 2)


def _full_vector_baseline(user, words: list[str], size: int) -> dict:
    """Search ranked by ts_rank over the whole vector, card text included, with an exact count."""
    from django.db.models import BooleanField, FloatField
    from django.db.models.expressions import RawSQL

    from zoo.selectors import catalogue as selectors
    from zoo.selectors.search import TEXT_VECTOR

    latencies = []
    for q in words:
        started = time.perf_counter()
        qs = selectors.with_latest_license(selectors.models_visible_to(user))
        qs = qs.filter(search_entry__isnull=False).filter(
            RawSQL(  # noqa: S611
                f"{TEXT_VECTOR} @@ websearch_to_tsquery('english', %s)",
                [q],
                output_field=BooleanField(),
            )
        )
        rank = RawSQL(  # noqa: S611
            f"ts_rank({TEXT_VECTOR}, websearch_to_tsquery('english', %s))",
            [q],
            output_field=FloatField(),
        )
        qs.count()
        list(qs.annotate(rank=rank).order_by("-rank", "repo_id")[:size])
        latencies.append((time.perf_counter() - started) * 1000)
    return _summary(latencies, 2)


def run(n_models: int, per_model: int, n_requests: int, database_url: str) -> dict:
    _setup(database_url)
    from bench._catalogue_data import seed_portal

    seed_portal(n_models, per_model)

    from django.contrib.auth import get_user_model
    from django.test import Client

    from zoo.models import CatalogModel, ModelVersion

    user = get_user_model().objects.get(username="bench-steward")
    client = Client()
    client.force_login(user)
    rng = random.Random(11)
    asked = queries(n_models, n_requests)
    search = {kind: [{"q": q} for q in qs] for kind, qs in asked.items() if kind != "tag"}
    depth = 50
    deep_models = _deep_cursors(client, "/api/models/", {}, depth)
    deep_versions = _deep_cursors(client, "/api/versions/", {}, depth)
    sample = list(CatalogModel.objects.order_by("?").values_list("repo_id", flat=True)[:50])
    for params in search["one word, common"][:5]:  # warm caches and connections
        client.get("/catalogue/", params)

    rows: dict[str, dict] = {}
    rows["catalogue page, one word (common)"] = _time(
        client, "/catalogue/", search["one word, common"]
    )
    # The same searches again: what a search costs once someone has made it (the ranked
    # ids are cached until the catalogue changes); the row above pays for first searches.
    rows["catalogue page, one word (common), again"] = _time(
        client, "/catalogue/", search["one word, common"]
    )
    rows["catalogue page, one word (rare)"] = _time(client, "/catalogue/", search["one word, rare"])
    rows["catalogue page, two words"] = _time(client, "/catalogue/", search["two words"])
    rows["catalogue page, typo in a name"] = _time(client, "/catalogue/", search["typo in a name"])
    rows["catalogue page, search + modality"] = _time(
        client,
        "/catalogue/",
        [{**p, "modality": rng.choice(MODALITIES)} for p in search["one word, common"]],
    )
    rows["catalogue page, first page"] = _time(client, "/catalogue/", [{}] * n_requests)
    rows["models API, one word (common)"] = _time(
        client, "/api/models/", search["one word, common"]
    )
    rows["models API, tag filter"] = _time(
        client, "/api/models/", [{"domain": t} for t in asked["tag"]]
    )
    rows["models API, first page"] = _time(client, "/api/models/", [{}] * n_requests)
    rows[f"models API, page {depth}"] = _time(
        client, "/api/models/", [{"cursor": deep_models}] * n_requests
    )
    rows["versions API, first page"] = _time(client, "/api/versions/", [{}] * n_requests)
    rows[f"versions API, page {depth}"] = _time(
        client, "/api/versions/", [{"cursor": deep_versions}] * n_requests
    )
    rows["model page"] = _model_pages(client, sample, n_requests)

    baselines = {
        "baseline: one word (common), rank over all text + exact count": _full_vector_baseline(
            user, [p["q"] for p in search["one word, common"]], 20
        ),
        "baseline: OFFSET + exact count, models page 1": _offset_baseline(
            user, "models", [{"page": 1}] * n_requests, 50
        ),
        f"baseline: OFFSET + exact count, models page {depth}": _offset_baseline(
            user, "models", [{"page": depth}] * n_requests, 50
        ),
        f"baseline: OFFSET + exact count, versions page {depth}": _offset_baseline(
            user, "versions", [{"page": depth}] * n_requests, 50
        ),
    }
    return {
        "models": CatalogModel.objects.count(),
        "versions": ModelVersion.objects.count(),
        "requests": n_requests,
        "rows": rows,
        "baselines": baselines,
    }


def _model_pages(client, repo_ids: list[str], n_requests: int) -> dict:
    return _timed(
        client, [(f"/catalogue/{repo_ids[i % len(repo_ids)]}/", {}) for i in range(n_requests)]
    )


def _print(result: dict) -> None:
    print(
        f"catalogue: {result['models']:,} models, {result['versions']:,} versions; "
        f"{result['requests']} requests per row"
    )
    print(f"{'':62} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}")
    for name, row in {**result["rows"], **result["baselines"]}.items():
        print(f"{name:62} {row['p50']:8.1f} {row['p95']:8.1f} {row['queries']:8d}")
    rows, base = result["rows"], result["baselines"]
    deep = next(k for k in rows if k.startswith("models API, page"))
    vdeep = next(k for k in rows if k.startswith("versions API, page"))
    print("ratios (baseline p50 / portal p50):")
    pairs = [
        ("one word, common", "catalogue page, one word (common)", next(iter(base))),
        ("models, first page", "models API, first page", list(base)[1]),
        ("models, deep page", deep, list(base)[2]),
        ("versions, deep page", vdeep, list(base)[3]),
    ]
    for label, ours, theirs in pairs:
        print(f"  {label:24} {base[theirs]['p50'] / rows[ours]['p50']:6.1f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=20_000)
    parser.add_argument("--versions-per-model", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sizes", default="", help="comma-separated model counts, e.g. 2500,20000")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.models < 1000:
        parser.error("--models must be at least 1,000")
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    if not args.sizes:
        result = run(args.models, args.versions_per_model, args.requests, url)
        print(json.dumps(result)) if args.json else _print(result)
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    results = []
    for size in sizes:
        done = subprocess.run(
            [
                sys.executable, __file__, "--json", "--models", str(size),
                "--versions-per-model", str(args.versions_per_model),
                "--requests", str(args.requests),
            ],
            env={**os.environ, "BENCH_DATABASE_URL": f"{url}_{size}"},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        _print(results[-1])
        print()
    small, large = results[0], results[-1]
    growth = large["versions"] / small["versions"]
    print(
        f"growth from {small['versions']:,} to {large['versions']:,} versions "
        f"({growth:.0f}x the data), p95 large / p95 small:"
    )
    for name in small["rows"]:
        if name in large["rows"]:
            ratio = large["rows"][name]["p95"] / small["rows"][name]["p95"]
            print(f"  {name:44} {ratio:5.2f}x")


if __name__ == "__main__":
    main()
