"""Catalogue search and list API at scale: 20,000 models with 100,000 versions on PostgreSQL.

Prints p50/p95 latency of the catalogue page with a search, of the models list
API with and without a search, and the SQL queries per request, through the
full Django stack (test client, no network). Two baselines run in the same
process on the same data:

- search with the substring fallback (what SQLite uses) instead of the
  indexed full-text search, to show what the GIN index buys;
- the list API at page size 10 against page size 100, to show that the query
  count does not grow with the page.

Usage: .venv/bin/python bench/catalogue.py [--models 20000] [--versions-per-model 5]
Needs PostgreSQL at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/portal_bench);
the database is created and seeded on the first run and reused afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = [
    "sentence",
    "encoder",
    "vision",
    "transformer",
    "invoice",
    "receipt",
    "legal",
    "contract",
    "fraud",
    "support",
    "ticket",
    "routing",
    "sentiment",
    "review",
    "medical",
    "radiology",
    "satellite",
    "retail",
    "product",
    "search",
    "ranking",
    "speech",
    "audio",
    "keyword",
    "spotting",
    "tabular",
    "churn",
    "credit",
    "risk",
    "finance",
    "german",
    "french",
    "multilingual",
    "code",
    "summarisation",
    "translation",
    "embedding",
    "retrieval",
    "classification",
    "detection",
    "segmentation",
    "ocr",
    "document",
    "layout",
    "table",
    "question",
    "answering",
    "chat",
    "safety",
    "toxicity",
    "moderation",
    "spam",
    "email",
]
MODALITIES = ["text", "vision", "audio", "tabular", "multimodal"]
TASKS = [
    "feature-extraction",
    "text-classification",
    "image-classification",
    "token-classification",
]
# Card text draws on a large synthetic vocabulary, so a query matches a realistic
# share of the catalogue rather than every entry.
_SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "zu", "an", "el", "or", "in"]
FILLER = sorted({a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in _SYLLABLES})
LICENSES = ["apache-2.0", "mit", "cc-by-4.0", "cc-by-nc-4.0", "llama3", "openrail", "unknown"]


def _setup(database_url: str) -> None:
    os.environ.update(
        DATABASE_URL=database_url,
        DEBUG="0",
        SECRET_KEY="bench-only-secret-key-that-is-long-enough-0123456789abcdefghijkl",  # noqa: S106
        ALLOWED_HOSTS="testserver",
        SECURE_SSL_REDIRECT="false",
        CELERY_BROKER_URL="memory://",
        LOG_LEVEL="WARNING",
        STATIC_ROOT=str(Path(tempfile.gettempdir()) / "portal-bench-static"),
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import psycopg

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    with psycopg.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username or "postgres",
        password=parts.password, dbname="postgres", autocommit=True,
    ) as conn:  # fmt: skip
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    # Production settings serve hashed static files: build the manifest they read.
    call_command("collectstatic", interactive=False, verbosity=0)


def _seed(n_models: int, per_model: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from governance.models import License
    from zoo.models import CatalogModel, ModelVersion

    if ModelVersion.objects.count() == n_models * per_model:
        return
    print(f"seeding {n_models:,} models x {per_model} versions ...", flush=True)
    rng = random.Random(7)
    licenses = {lic.spdx_id: lic for lic in License.objects.filter(spdx_id__in=LICENSES)}
    user, _ = get_user_model().objects.get_or_create(username="bench-steward")
    started = time.perf_counter()
    with transaction.atomic():
        ModelVersion.objects.all().delete()
        CatalogModel.objects.all().delete()
        batch = []
        for i in range(n_models):
            words = rng.sample(WORDS, 6)
            summary = f"A {words[0]} {words[1]} model for {words[2]} and {words[3]} {words[4]}."
            tags = rng.sample(WORDS, 3)
            repo_id = f"org{i % 200}/{words[0]}-{words[1]}-{i}"
            card = " ".join(rng.choice(FILLER) for _ in range(150))
            batch.append(
                CatalogModel(
                    repo_id=repo_id,
                    title=f"{words[0].title()} {words[1]} {i}",
                    summary=summary,
                    modality=rng.choice(MODALITIES),
                    task=rng.choice(TASKS),
                    architecture="BertModel",
                    parameter_count=rng.randint(10**6, 10**9),
                    domain_tags=tags,
                    owner=user,
                    status="available",
                    search_document="\n".join([repo_id.replace("/", " "), summary, *tags, card]),
                )
            )
        models = CatalogModel.objects.bulk_create(batch, batch_size=2000)
        versions = []
        for model in models:
            for v in range(per_model):
                versions.append(
                    ModelVersion(
                        model=model,
                        revision=f"{rng.getrandbits(160):040x}",
                        label=f"v{v + 1}",
                        kind="base",
                        license=licenses[rng.choice(LICENSES)],
                        source="hub",
                        total_size=rng.randint(10**6, 10**10),
                        file_count=rng.randint(3, 20),
                        created_by=user,
                    )
                )
        ModelVersion.objects.bulk_create(versions, batch_size=5000)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"seeded in {time.perf_counter() - started:.1f}s", flush=True)


def _time(client, url: str, params_list: list[dict], *, count_queries: bool = True):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    latencies, queries = [], []
    for params in params_list:
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            response = client.get(url, params)
            latencies.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, params, response.status_code)
        queries.append(len(ctx.captured_queries))
    latencies.sort()
    p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
    return statistics.median(latencies), p95, max(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=20_000)
    parser.add_argument("--versions-per-model", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    _setup(os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal_bench"))
    _seed(args.models, args.versions_per_model)

    from django.contrib.auth import get_user_model
    from django.test import Client

    from zoo.models import CatalogModel, ModelVersion
    from zoo.selectors import catalogue as selectors

    user = get_user_model().objects.get(username="bench-steward")
    client = Client()
    client.force_login(user)
    rng = random.Random(11)
    searches = [{"q": " ".join(rng.sample(WORDS, 2))} for _ in range(args.requests)]
    plain = [{"page": rng.randint(1, 50)} for _ in range(args.requests)]
    print(
        f"catalogue: {CatalogModel.objects.count():,} models, "
        f"{ModelVersion.objects.count():,} versions; {args.requests} requests per row"
    )
    for params in searches[:5]:  # warm caches and connections
        client.get("/catalogue/", params)

    rows = []
    rows.append(("catalogue page, full-text search", *_time(client, "/catalogue/", searches)))
    fts_p50 = rows[-1][1]
    # Baseline: the substring search SQLite uses, forced on PostgreSQL.
    original = selectors._use_full_text
    selectors._use_full_text = lambda: False
    try:
        rows.append(("  baseline: substring search", *_time(client, "/catalogue/", searches)))
    finally:
        selectors._use_full_text = original
    base_p50 = rows[-1][1]
    rows.append(("list API, page of 50", *_time(client, "/api/models/", plain)))
    rows.append(("list API, search", *_time(client, "/api/models/", searches)))
    api_small = _time(client, "/api/models/", [{"page_size": 10, **p} for p in plain[:50]])
    api_big = _time(client, "/api/models/", [{"page_size": 100, **p} for p in plain[:50]])
    rows.append(("list API, page_size=10", *api_small))
    rows.append(("list API, page_size=100", *api_big))
    rows.append(("version list API", *_time(client, "/api/versions/", plain)))

    print(f"{'':38} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}")
    for name, p50, p95, queries in rows:
        print(f"{name:38} {p50:8.1f} {p95:8.1f} {queries:8d}")
    print(f"full-text search vs substring baseline: {base_p50 / fts_p50:.1f}x faster at p50")
    print(f"queries at page_size 100 / page_size 10: {api_big[2]} / {api_small[2]}")


if __name__ == "__main__":
    main()
