"""Reachability checks behind /healthz and the test suite's preflight, and /healthz itself."""

from __future__ import annotations

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


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """JSON for load balancers and operators: 200 when the database and broker answer."""
    db_error = check_database()
    broker_error = check_broker()
    ok = db_error is None and broker_error is None
    body = {
        "status": "ok" if ok else "unavailable",
        "database": "ok" if db_error is None else db_error,
        "broker": "ok" if broker_error is None else broker_error,
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
