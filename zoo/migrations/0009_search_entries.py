"""Catalogue search in its own table, ranked by field, on PostgreSQL and on SQLite.

PostgreSQL: a GIN index on the tsvector of all three fields (an expression
index: no stored vector that a scan would have to unpack row by row; the
function is declared costly, which it is, so the planner never prefers
computing it for every row over the index, however common the word, and
parallel-unsafe, since a worker pool costs more than these queries), the
same over the name alone (the top tiers, searched first), a
generated ``head`` tsvector (name A, meta B) to rank by, and a trigram GIN
index (pg_trgm) on the words of names, which misspelt searches are corrected to. SQLite: an FTS5 table
over the same three columns, kept in step by triggers. Existing models get
their entry from their current fields and latest card.
"""

import re

import django.db.models.deletion
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models

POSTGRES_FORWARD = """
ALTER TABLE zoo_catalogsearch
  ADD COLUMN head tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', name), 'A')
    || setweight(to_tsvector('english', meta), 'B')
  ) STORED;
CREATE FUNCTION zoo_search_text(name text, meta text, card text) RETURNS tsvector
  LANGUAGE plpgsql IMMUTABLE PARALLEL UNSAFE COST 1000
  AS $$ BEGIN RETURN to_tsvector('english', name || ' ' || meta || ' ' || card); END $$;
CREATE INDEX zoo_catalogsearch_text ON zoo_catalogsearch
  USING GIN (zoo_search_text(name, meta, card));
CREATE FUNCTION zoo_search_name(name text) RETURNS tsvector
  LANGUAGE plpgsql IMMUTABLE PARALLEL UNSAFE COST 1000
  AS $$ BEGIN RETURN to_tsvector('english', name); END $$;
CREATE INDEX zoo_catalogsearch_name ON zoo_catalogsearch USING GIN (zoo_search_name(name));
CREATE INDEX zoo_searchword_trgm ON zoo_searchword USING GIN (word gin_trgm_ops);
"""
POSTGRES_BACKWARD = """
DROP INDEX IF EXISTS zoo_searchword_trgm;
DROP INDEX IF EXISTS zoo_catalogsearch_name;
DROP FUNCTION IF EXISTS zoo_search_name(text);
DROP INDEX IF EXISTS zoo_catalogsearch_text;
DROP FUNCTION IF EXISTS zoo_search_text(text, text, text);
ALTER TABLE zoo_catalogsearch DROP COLUMN IF EXISTS head;
"""
# External-content FTS5: the text lives once, in zoo_catalogsearch.
SQLITE_FORWARD = [
    """CREATE VIRTUAL TABLE zoo_catalogsearch_fts USING fts5(
        name, meta, card, content='zoo_catalogsearch', content_rowid='model_id',
        tokenize='porter unicode61')""",
    """CREATE TRIGGER zoo_catalogsearch_ai AFTER INSERT ON zoo_catalogsearch BEGIN
        INSERT INTO zoo_catalogsearch_fts(rowid, name, meta, card)
        VALUES (new.model_id, new.name, new.meta, new.card);
    END""",
    """CREATE TRIGGER zoo_catalogsearch_ad AFTER DELETE ON zoo_catalogsearch BEGIN
        INSERT INTO zoo_catalogsearch_fts(zoo_catalogsearch_fts, rowid, name, meta, card)
        VALUES ('delete', old.model_id, old.name, old.meta, old.card);
    END""",
    """CREATE TRIGGER zoo_catalogsearch_au AFTER UPDATE ON zoo_catalogsearch BEGIN
        INSERT INTO zoo_catalogsearch_fts(zoo_catalogsearch_fts, rowid, name, meta, card)
        VALUES ('delete', old.model_id, old.name, old.meta, old.card);
        INSERT INTO zoo_catalogsearch_fts(rowid, name, meta, card)
        VALUES (new.model_id, new.name, new.meta, new.card);
    END""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS zoo_catalogsearch_au",
    "DROP TRIGGER IF EXISTS zoo_catalogsearch_ad",
    "DROP TRIGGER IF EXISTS zoo_catalogsearch_ai",
    "DROP TABLE IF EXISTS zoo_catalogsearch_fts",
]


def drop_old_vector(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP INDEX IF EXISTS zoo_catalogmodel_search; "
            "ALTER TABLE zoo_catalogmodel DROP COLUMN IF EXISTS search_vector;"
        )


def restore_old_vector(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER TABLE zoo_catalogmodel ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
            "(to_tsvector('english', coalesce(search_document, ''))) STORED; "
            "CREATE INDEX zoo_catalogmodel_search ON zoo_catalogmodel USING GIN (search_vector);"
        )


def add_search_indexes(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)


def drop_search_indexes(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD)
    elif vendor == "sqlite":
        for statement in SQLITE_BACKWARD:
            schema_editor.execute(statement)


def fill_entries(apps, schema_editor):
    """An entry for every model, as ``zoo.services.catalogue.search_fields`` builds it."""
    CatalogModel = apps.get_model("zoo", "CatalogModel")
    ModelVersion = apps.get_model("zoo", "ModelVersion")
    SearchEntry = apps.get_model("zoo", "SearchEntry")
    SearchWord = apps.get_model("zoo", "SearchWord")
    words = set()
    for model in CatalogModel.objects.iterator():
        latest = ModelVersion.objects.filter(model=model).order_by("-created_at", "-id").first()
        meta = [
            model.summary,
            model.task,
            model.architecture,
            " ".join(map(str, model.domain_tags)),
        ]
        SearchEntry.objects.create(
            model=model,
            name=f"{model.repo_id} {model.repo_id.replace('/', ' ')} {model.title}",
            meta="\n".join(p for p in meta if p),
            card=(latest.card_markdown if latest else "")[:20_000],
        )
        words.update(
            w for w in re.findall(r"\w+", f"{model.repo_id} {model.title}".lower())
            if 3 <= len(w) <= 100 and not w.isdigit()
        )  # fmt: skip
    SearchWord.objects.bulk_create([SearchWord(word=w) for w in words], ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [("zoo", "0008_conversion")]

    operations = [
        TrigramExtension(),
        migrations.RunPython(drop_old_vector, restore_old_vector),
        migrations.RemoveField(model_name="catalogmodel", name="search_document"),
        migrations.CreateModel(
            name="SearchEntry",
            fields=[
                (
                    "model",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="search_entry",
                        serialize=False,
                        to="zoo.catalogmodel",
                    ),
                ),
                ("name", models.TextField()),
                ("meta", models.TextField(blank=True)),
                ("card", models.TextField(blank=True)),
            ],
            options={"db_table": "zoo_catalogsearch"},
        ),
        migrations.CreateModel(
            name="SearchWord",
            fields=[("word", models.CharField(max_length=100, primary_key=True, serialize=False))],
            options={"db_table": "zoo_searchword"},
        ),
        migrations.RunPython(add_search_indexes, drop_search_indexes),
        migrations.RunPython(fill_entries, migrations.RunPython.noop),
    ]
