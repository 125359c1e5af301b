"""Shared fixtures: named personas, the real services, a real Celery worker.

The suite needs PostgreSQL and Redis. When either is unreachable it stops at
once with a message saying which and how to point at it; nothing is skipped.
The pure tests (the ML code, the file-format readers, the code's shape) need
neither, so a run that selects only them goes ahead without: e.g.
``pytest tests/jobs/ml tests/zoo/test_safety.py`` on a laptop.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.conf import settings

from tests.factories import UserFactory
from tests.oidc_provider.harness import oidc_provider  # noqa: F401 (a fixture)

# Tests that touch no database, broker or server; pytest-django refuses them a database anyway.
PURE = (
    "tests/jobs/ml/",
    "tests/zoo/test_safety.py",
    "tests/zoo/test_scanning.py",
    "tests/zoo/test_dataset_files.py",
    "tests/zoo/test_cards.py",
    "tests/test_architecture.py",
    "tests/jobs/test_finetune_settings.py",
)


def _is_pure(item: pytest.Item) -> bool:
    path = item.path.relative_to(item.config.rootpath).as_posix()
    return path.startswith(PURE)


def pytest_collection_finish(session: pytest.Session) -> None:
    if all(_is_pure(item) for item in session.items):
        return
    _require_services()


def _require_services() -> None:
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.exit(
            "The suite runs against PostgreSQL. Run `make test`, or set "
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal (and DEBUG=1).",
            returncode=3,
        )
    broker = urlsplit(settings.CELERY_BROKER_URL)
    if broker.scheme != "redis":
        pytest.exit(
            "The suite runs its workers against Redis. Run `make test`, or set "
            "CELERY_BROKER_URL=redis://127.0.0.1:6379/15.",
            returncode=3,
        )
    if not settings.CACHE_URL:
        pytest.exit(
            "The suite counts sign-ins in Redis as production does. Run `make test`, or set "
            "CACHE_URL=redis://127.0.0.1:6379/12.",
            returncode=3,
        )
    import psycopg
    import redis

    try:
        psycopg.connect(
            host=db["HOST"] or None,
            port=db["PORT"] or None,
            user=db["USER"] or None,
            password=db["PASSWORD"] or None,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg.Error as exc:
        pytest.exit(
            f"PostgreSQL is unreachable at {db['HOST'] or 'the local socket'}:{db['PORT'] or 5432} "
            f"({str(exc).strip().splitlines()[0]}). Start it, or set TEST_DATABASE_URL.",
            returncode=3,
        )
    _require_app_role(db)
    try:
        for url in (settings.CELERY_BROKER_URL, settings.CACHE_URL):
            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.exit(
            f"Redis is unreachable at {broker.hostname}:{broker.port or 6379} ({exc}). "
            "Start it, or set TEST_BROKER_URL.",
            returncode=3,
        )


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database is made and migrated as the owner; the tests run as the app role."""
    from django.core.management.commands import flush

    from tests import database

    owner = database.remember_owner()
    plain_flush = flush.Command.handle

    def flush_as_owner(self, *args, **options):
        with database.connected_as(owner):
            return plain_flush(self, *args, **options)

    flush.Command.handle = flush_as_owner
    database.switch_to(database.app_credentials())
    try:
        yield
    finally:
        database.switch_to(owner)
        flush.Command.handle = plain_flush


def _require_app_role(db) -> None:
    """The tests run as the portal's own role: it must exist and be no superuser."""
    import psycopg

    role = settings.DATABASE_APP_ROLE
    how = (
        "Create the roles with `psql -U postgres -v owner=portal_owner -v app=portal_app "
        "-v db=portal -f deploy/postgres-roles.sql` and run `make test`."
    )
    if not role:
        pytest.exit(f"DATABASE_APP_ROLE is not set: the suite tests as the app role. {how}", 3)
    with psycopg.connect(
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        dbname="postgres",
        connect_timeout=3,
    ) as conn:
        found = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role]).fetchone()
    if found is None:
        pytest.exit(f"The app role {role!r} does not exist. {how}", 3)
    if found[0]:
        pytest.exit(f"The app role {role!r} is a superuser; it must not be. {how}", 3)


def _reseed() -> None:
    """Re-run the data migrations' seeds (roles, licenses, policy tables) with the live registry."""
    import importlib

    from django.apps import apps

    for module, func in [
        ("governance.migrations.0001_roles", "create_roles"),
        ("governance.migrations.0003_seed_licenses", "seed"),
        ("governance.migrations.0007_seed_policy", "seed"),
        ("governance.migrations.0009_seed_risk_rules", "seed"),
        ("governance.migrations.0014_seed_review_intervals", "seed"),
        ("zoo.migrations.0011_card_revisions", "seed"),
    ]:
        getattr(importlib.import_module(module), func)(apps, None)


@pytest.fixture(autouse=True)
def _seed_rows_after_flush(request):
    """Transactional tests flush every table afterwards, seeded rows included; put them back."""
    marker = request.node.get_closest_marker("django_db")
    transactional = bool(marker and marker.kwargs.get("transaction")) or any(
        name in request.fixturenames
        for name in ("transactional_db", "live_server", "celery_worker")
    )
    if transactional:
        request.getfixturevalue("transactional_db")
        _reseed()


@pytest.fixture(autouse=True)
def _private_storage(settings, tmp_path):
    """Each test stores artifacts and staging files in its own folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IMPORT_STAGING_DIR = tmp_path / "staging"
    settings.IMPORT_ROOTS = [tmp_path / "imports"]
    settings.MODEL_CACHE_DIR = tmp_path / "model-cache"
    settings.WORK_DIR = tmp_path / "work"
    settings.AUDIT_ANCHOR_FILE = tmp_path / "audit" / "anchors.jsonl"
    (tmp_path / "imports").mkdir()
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def alice(db):
    """An ML engineer: launches probes and fine-tunes."""
    return UserFactory(username="alice", roles=["ml-engineers"])


@pytest.fixture
def bob(db):
    """A signed-in user with no role."""
    return UserFactory(username="bob")


@pytest.fixture
def sam(db):
    """A steward: imports, publishes and edits catalogue entries."""
    return UserFactory(username="sam", roles=["stewards"])


@pytest.fixture
def lena(db):
    """A legal reviewer."""
    return UserFactory(username="lena", roles=["legal"])


@pytest.fixture
def sean(db):
    """A security reviewer."""
    return UserFactory(username="sean", roles=["security"])


@pytest.fixture
def cora(db):
    """A compliance reviewer."""
    return UserFactory(username="cora", roles=["compliance"])


@pytest.fixture
def admin_user(db):
    """Staff and superuser: the admin, the policy tables, every job."""
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def people(alice, bob, sam, lena, sean, cora, admin_user):
    """Every persona by name, for tests that go through several of them."""
    return {
        "alice": alice,
        "bob": bob,
        "sam": sam,
        "lena": lena,
        "sean": sean,
        "cora": cora,
        "admin": admin_user,
    }


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker, in a thread of this process, consuming from Redis.

    Tests using it need committed data (transactional_db) because the worker
    reads through its own database connection.
    """
    from celery.contrib.testing.worker import start_worker

    from portal.celery import app
    from tests.builders.processes import empty_broker

    empty_broker()
    with start_worker(
        app,
        pool="solo",
        concurrency=1,
        perform_ping_check=False,
        queues=["default", "gpu"],
        shutdown_timeout=30,
    ) as worker:
        yield worker
