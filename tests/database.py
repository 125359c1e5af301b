"""The suite's two database roles: it migrates as the owner and tests as the app role.

``make test`` points DATABASE_URL at the schema owner (who may create the
test database) and DATABASE_APP_ROLE at the role the portal runs as in
production. Once the test database is migrated, every connection switches to
the app role, so each test meets the privileges production has; the flush
between transactional tests, a DBA's chore, runs as the owner.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connections

_owner: dict[str, str] = {}


def remember_owner() -> dict[str, str]:
    """Note who made the test database (the owner) before the tests switch away."""
    _owner.update(credentials())
    return dict(_owner)


def owner_credentials() -> dict[str, str]:
    return dict(_owner)


def owner_connection():
    """A psycopg connection to the test database as its owner (a DBA, not the portal)."""
    import psycopg

    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        dbname=db["NAME"],
        user=_owner["USER"] or None,
        password=_owner["PASSWORD"] or None,
        autocommit=True,
    )


def credentials() -> dict[str, str]:
    """Who the default connection logs in as now."""
    db = settings.DATABASES["default"]
    return {"USER": db["USER"], "PASSWORD": db["PASSWORD"]}


def app_credentials() -> dict[str, str]:
    return {
        "USER": settings.DATABASE_APP_ROLE,
        "PASSWORD": os.environ.get("DATABASE_APP_PASSWORD", ""),
    }


def switch_to(creds: dict[str, str]) -> None:
    """Close every connection and log in as ``creds`` from the next query on."""
    for connection in connections.all(initialized_only=True):
        connection.close()
    for alias in connections:
        connections[alias].settings_dict.update(creds)


@contextmanager
def connected_as(creds: dict[str, str]) -> Iterator[None]:
    before = credentials()
    switch_to(creds)
    try:
        yield
    finally:
        switch_to(before)
