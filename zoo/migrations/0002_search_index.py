"""Full-text search over the catalogue on PostgreSQL.

A stored generated tsvector column over ``search_document`` with a GIN index.
Django does not model the column: queries reach it through ``zoo.selectors``.
Other databases (SQLite for ``make run``) fall back to substring search.
"""

from django.db import migrations

FORWARD = """
ALTER TABLE zoo_catalogmodel
  ADD COLUMN search_vector tsvector
  GENERATED ALWAYS AS (to_tsvector('english', coalesce(search_document, ''))) STORED;
CREATE INDEX zoo_catalogmodel_search ON zoo_catalogmodel USING GIN (search_vector);
"""
BACKWARD = """
DROP INDEX IF EXISTS zoo_catalogmodel_search;
ALTER TABLE zoo_catalogmodel DROP COLUMN IF EXISTS search_vector;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("zoo", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
