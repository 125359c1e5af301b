"""The privileges of the role the portal runs as, granted after every migration.

Migrations run as the schema's owner; the web server and the workers connect
as ``settings.DATABASE_APP_ROLE``, which may read and write the portal's
tables but only INSERT and SELECT audit events and migration records. Owning
nothing and being no superuser, it cannot TRUNCATE, ALTER or DROP a table,
disable or drop the append-only trigger, or set session_replication_role, so
the portal's own credentials cannot rewrite its history.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connections

# Tables the portal appends to and never changes.
APPEND_ONLY = ("governance_auditevent", "django_migrations")


def grant_app_role(using: str = "default", **kwargs) -> None:
    """GRANT the app role its rights on every table now in the schema; idempotent."""
    role = settings.DATABASE_APP_ROLE
    connection = connections[using]
    if not role or connection.vendor != "postgresql":
        return
    from psycopg import sql

    me = connection.settings_dict["USER"]
    if me == role:
        raise RuntimeError(
            f"migrate is connected as {role}, the app role itself: run it as the schema owner"
        )
    app = sql.Identifier(role)
    statements = [
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(app),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(
            app
        ),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(app),
        sql.SQL(
            "REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public FROM {}"
        ).format(app),
    ]
    statements += [
        sql.SQL("REVOKE UPDATE, DELETE ON {} FROM {}").format(sql.Identifier(table), app)
        for table in APPEND_ONLY
    ]
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
