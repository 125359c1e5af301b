"""Catalogue search on the embedded default (SQLite, FTS5): the same ranking as PostgreSQL.

Runs in a subprocess against a fresh SQLite file, as ``make run`` would,
so the FTS5 table, its triggers and the typo function are the real ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json
from django.contrib.auth import get_user_model
from tests.factories import catalogue_entry
from zoo.models import CatalogModel
from zoo.selectors.catalogue import CatalogueQuery, catalogue_page
from zoo.services.catalogue import catalog_model_update

catalogue_entry("hf-internal/tiny-random-bert", summary="A tiny random BERT.",
                card="Smaller than MiniLM; random weights. " * 20)
catalogue_entry("acme/ticket-router", summary="Routes tickets past zebras.", domain_tags=["minilm"])
catalogue_entry("sentence-transformers/all-MiniLM-L6-v2", summary="Sentence embeddings.")
catalogue_entry("acme/minilm", summary="The plain one.")
catalogue_entry("google/efficientnet-lite0", summary="Mobile image classifier.")
for i in range(7):
    catalogue_entry(f"bulk/encoder-{i}", summary="A bulk encoder.")
steward = get_user_model().objects.create_user("sam", is_superuser=True)
out = {}
for q in ["MiniLM", "minlm", "efficentnet", "classifiers mobile", "nothing-like-this",
          '"', "minilm AND OR NOT (", "sentence-transformers/all-MiniLM-L6-v2"]:
    page, _ = catalogue_page(steward, CatalogueQuery(q=q), size=50)
    out[q] = [m.repo_id for m in page.items]
# Keyset pages over a ranked search: every match once.
seen, cursor = [], None
while True:
    page, _ = catalogue_page(steward, CatalogueQuery(q="bulk encoder"), cursor=cursor, size=3)
    seen += [m.repo_id for m in page.items]
    cursor = page.next_cursor
    if not cursor:
        break
out["paged"] = seen
# An edit reaches the index through the triggers.
model = CatalogModel.objects.get(repo_id="acme/ticket-router")
catalog_model_update(model=model, actor=steward, summary="Sorts invoices.", domain_tags=[])
def ids(q):
    return [m.repo_id for m in catalogue_page(steward, CatalogueQuery(q=q))[0].items]
out["after edit"] = ids("invoices")
out["old words"] = ids("zebras")
out["corrected"] = catalogue_page(steward, CatalogueQuery(q="minlm"))[1]
print("RESULT " + json.dumps(out))
"""


def test_sqlite_search_ranks_like_postgresql(tmp_path):
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CELERY_"))}
    env = {
        **keep,
        "DEBUG": "1",
        "PORTAL_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/portal.sqlite3",
        "CELERY_BROKER_URL": "memory://",
    }

    def manage(*args):
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    manage("migrate", "--noinput")
    line = next(x for x in manage("shell", "-c", SCRIPT).splitlines() if x.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    assert out["MiniLM"] == [
        "acme/minilm",
        "sentence-transformers/all-MiniLM-L6-v2",
        "acme/ticket-router",
        "hf-internal/tiny-random-bert",
    ]
    assert out["minlm"][:2] == ["acme/minilm", "sentence-transformers/all-MiniLM-L6-v2"]
    assert out["efficentnet"] == ["google/efficientnet-lite0"]
    assert out["classifiers mobile"] == ["google/efficientnet-lite0"]  # stemmed, any order
    assert out["nothing-like-this"] == []
    assert out['"'] == []
    assert out["sentence-transformers/all-MiniLM-L6-v2"][0] == (
        "sentence-transformers/all-MiniLM-L6-v2"
    )
    assert sorted(out["paged"]) == [f"bulk/encoder-{i}" for i in range(7)]
    assert out["after edit"] == ["acme/ticket-router"]
    assert "acme/ticket-router" not in out["old words"]
    assert out["corrected"] == "minilm"
