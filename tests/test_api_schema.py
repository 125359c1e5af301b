"""Every API operation, fed generated requests, answers within its own OpenAPI schema.

Schemathesis reads /api/schema/ and sends each operation bounded, schema-shaped
and random requests through the WSGI application, as a steward and as a
signed-in user with no role. Any 5xx, any response body the schema does not
describe and any undeclared content type fails. Statuses the schema does not
list (403, 404, 400 for bad input) are allowed: refusing is the point.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from governance.models import AccessToken
from governance.services.tokens import access_token_create
from portal.wsgi import application
from tests.builders.processes import empty_broker
from tests.factories import ArtifactFactory, catalogue_entry

pytestmark = pytest.mark.django_db

# Bounded: a few examples per operation and persona keeps the whole run to a few minutes.
EXAMPLES = 12


def _schema():
    """The schema /api/schema/ serves, made without a request; calls go to the WSGI app."""
    loaded = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    loaded.app = application
    return loaded


schema = _schema()


@pytest.fixture(autouse=True)
def _connection_kept_open():
    """The requests run in the test's transaction: like Django's test client, they leave the
    connection open instead of closing it when each request ends."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def catalogue(db):
    """Something to find, so detail routes meet real rows as well as missing ones."""
    for repo_id in ("acme/router", "acme/classifier"):
        ArtifactFactory(version=catalogue_entry(repo_id))


@pytest.fixture
def broker_left_clean():
    """Launches send real messages; none may reach a later test's worker."""
    yield
    empty_broker()


def _token(user) -> dict[str, str]:
    _, plaintext = access_token_create(user=user, name="schemathesis", scope=AccessToken.Scope.API)
    return {"Authorization": f"Token {plaintext}"}


@pytest.fixture
def as_steward(sam):
    """One API token for all of an operation's examples (a user holds at most 50)."""
    return _token(sam)


@pytest.fixture
def as_user(bob):
    return _token(bob)


CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
BOUNDS = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@BOUNDS
def test_the_api_answers_a_steward_within_its_schema(
    case, as_steward, catalogue, broker_left_clean
):
    case.call_and_validate(headers=as_steward, checks=CHECKS)


@schema.parametrize()
@BOUNDS
def test_the_api_answers_a_user_without_a_role_within_its_schema(
    case, as_user, catalogue, broker_left_clean
):
    case.call_and_validate(headers=as_user, checks=CHECKS)
