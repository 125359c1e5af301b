"""Shared by the benchmarks: a database of their own, created if missing and migrated."""

from __future__ import annotations

from urllib.parse import urlsplit


def create_and_migrate(database_url: str) -> None:
    """Create the benchmark's database when it does not exist, then set Django up and migrate.

    DJANGO_SETTINGS_MODULE and DATABASE_URL must already be in the environment.
    """
    import psycopg

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    with psycopg.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username or "postgres",
        password=parts.password, dbname="postgres", autocommit=True,
    ) as conn:  # fmt: skip
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
