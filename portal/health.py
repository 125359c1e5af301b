"""Reachability checks behind /healthz and the test suite's preflight, and /healthz itself."""

from __future__ import annotations

import socket

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from portal.celery import app as celery_app


def _reason(exc: Exception) -> str:
    """The exception's type and first line: enough to act on, short enough for JSON."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}".strip()


def check_database() -> str | None:
    """None when a query round-trips, else a short reason."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return _reason(exc)
    return None


def check_broker(timeout: float = 2.0) -> str | None:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
    except Exception as exc:
        return _reason(exc)
    return None


def check_storage() -> str | None:
    """None when the object storage bucket answers (or there is none: the local folder)."""
    from django.core.files.storage import default_storage

    ping = getattr(default_storage, "ping", None)
    if ping is None:
        return None
    try:
        return ping()
    except Exception as exc:
        return _reason(exc)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """JSON for load balancers and operators: 200 when the database, broker and bucket answer.

    Each node answers for itself (``node`` names it), so a load balancer takes
    out only the replica that has lost its way to a shared service.
    """
    db_error = check_database()
    broker_error = check_broker()
    storage_error = check_storage()
    ok = db_error is None and broker_error is None and storage_error is None
    body = {
        "status": "ok" if ok else "unavailable",
        "node": socket.gethostname(),
        "database": "ok" if db_error is None else db_error,
        "broker": "ok" if broker_error is None else broker_error,
        "storage": (
            ("bucket" if settings.STORAGE_URL else "local")
            if storage_error is None
            else storage_error
        ),
    }
    return JsonResponse(body, status=200 if ok else 503)


class HealthzMiddleware:
    """Answer /healthz ahead of host validation and HTTPS redirects.

    Container and load-balancer probes reach the server by its internal
    address, which is rightly absent from ALLOWED_HOSTS; the health answer
    carries nothing that host checking protects.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/healthz":
            return healthz(request)
        return self.get_response(request)
