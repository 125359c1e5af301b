"""Shared checks for the API's mutating endpoints, in the spirit of NetBox's API test mixins.

A ``Mutation`` names one endpoint, the persona who may call it and the personas
who may not, and the audit verb the call writes. ``assert_mutation`` calls it
as each refused persona (anonymous included) and checks the refusal: 401 for
nobody, 403 or 404 for the rest, no audit event of the endpoint's verb, the
object left as it was, and for a 403 an ``access.refused`` event naming that
persona and path. Then it calls it as the persona who may, and checks the 2xx
and the audit event, by that persona.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rest_framework.test import APIClient

from governance.models import AuditEvent

ANONYMOUS = None


def client_for(user) -> APIClient:
    api = APIClient()
    if user is not None:
        api.force_authenticate(user)
    return api


@dataclass(frozen=True)
class Mutation:
    """One mutating endpoint of the API and who may call it."""

    route: str  # "<router basename>.<action>", as listed by ``mutating_routes``
    method: str
    path: Callable[[dict], str]  # from the objects ``setup`` made
    allowed: str
    refused: tuple[str | None, ...]
    verb: str
    setup: Callable[[dict, Any], dict]  # (people, tmp_path) -> objects
    body: Callable[[dict], dict] = field(default=lambda objects: {})
    format: str = "json"
    # Something that must stay as it was while the refused personas call.
    state: Callable[[dict], Any] = field(default=lambda objects: None)


def _call(mutation: Mutation, user, objects: dict):
    api = client_for(user)
    send = getattr(api, mutation.method)
    return send(mutation.path(objects), mutation.body(objects), format=mutation.format)


def assert_mutation(mutation: Mutation, people: dict, tmp_path) -> None:
    objects = mutation.setup(people, tmp_path)
    path = mutation.path(objects)
    before = mutation.state(objects)
    for name in mutation.refused:
        user = people[name] if name is not ANONYMOUS else None
        written = AuditEvent.objects.filter(verb=mutation.verb).count()
        response = _call(mutation, user, objects)
        expected = {401} if user is None else {403, 404}
        assert response.status_code in expected, (mutation.route, name, response.content)
        assert AuditEvent.objects.filter(verb=mutation.verb).count() == written, (
            mutation.route,
            name,
        )
        assert mutation.state(objects) == before, (mutation.route, name)
        if response.status_code == 403:
            refusal = AuditEvent.objects.filter(
                verb="access.refused", actor=user, payload__path=path
            )
            assert refusal.exists(), (mutation.route, name)
    allowed = people[mutation.allowed]
    response = _call(mutation, allowed, objects)
    assert 200 <= response.status_code < 300, (mutation.route, response.content)
    assert AuditEvent.objects.filter(verb=mutation.verb, actor=allowed).exists(), mutation.route


def mutating_routes() -> set[str]:
    """Every (basename.action) of the API router that changes something."""
    from portal.urls import router

    routes = set()
    for _prefix, viewset, basename in router.registry:
        for action in ("create", "update", "partial_update", "destroy"):
            if hasattr(viewset, action):
                routes.add(f"{basename}.{action}")
        for extra in viewset.get_extra_actions():
            if set(extra.mapping) - {"get", "head", "options"}:
                routes.add(f"{basename}.{extra.__name__}")
    return routes
