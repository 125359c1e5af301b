"""One domain error type, mapped to HTTP in one place.

Services raise ``PortalError`` subclasses with a message meant for the person
at the keyboard; the API handler and the HTML middleware below turn them into
responses, so no view needs its own try/except and no user sees a traceback.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.response import Response
from rest_framework.views import exception_handler


class PortalError(Exception):
    """A refusal or failure with a message fit to show the user."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(PortalError):
    """Missing, or not visible to this user: the two answer alike so ids leak nothing."""

    status_code = 404
    code = "not_found"


class Forbidden(PortalError):
    status_code = 403
    code = "forbidden"


class Conflict(PortalError):
    """The object is no longer in the state the action needs (someone else acted first)."""

    status_code = 409
    code = "conflict"


def record_refusal(request, exc: Exception) -> None:
    """Refused authorizations are part of the audit trail too."""
    from django.db import transaction

    from governance.audit import audit_record

    user = getattr(request, "user", None)
    with transaction.atomic():
        audit_record(
            actor=user,
            verb="access.refused",
            payload={
                "method": request.method,
                "path": request.path[:500],
                "reason": str(getattr(exc, "message", None) or getattr(exc, "detail", exc)),
            },
        )


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    from rest_framework.exceptions import PermissionDenied, ValidationError

    if isinstance(exc, Forbidden | PermissionDenied) and context.get("request") is not None:
        record_refusal(context["request"], exc)
    if isinstance(exc, PortalError):
        body = {"detail": exc.message, "code": exc.code}
        if exc.field:
            body["field"] = exc.field
        return Response(body, status=exc.status_code)
    if isinstance(exc, ValidationError):
        return Response(_validation_body(exc.detail), status=400)
    return exception_handler(exc, context)


def _validation_body(detail) -> dict:
    """DRF's field errors, plus the one-line ``detail`` and ``field`` every other error has."""
    if isinstance(detail, dict) and detail:
        field, messages = next(iter(detail.items()))
        first = messages[0] if isinstance(messages, list) and messages else messages
        if isinstance(first, dict):  # a nested serializer's errors
            first = next(iter(first.values()), "")
        message = f"{field}: {first}" if field != "non_field_errors" else str(first)
        body = {"detail": message, "code": "invalid", "errors": detail}
        if field != "non_field_errors":
            body["field"] = field
        return body
    messages = detail if isinstance(detail, list) else [detail]
    return {"detail": " ".join(str(m) for m in messages), "code": "invalid", "errors": messages}


class PortalErrorMiddleware:
    """Render a PortalError raised by an HTML view as a page with the right status."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not isinstance(exc, PortalError):
            return None
        if isinstance(exc, Forbidden):
            record_refusal(request, exc)
        return render(
            request,
            "portal/error.html",
            {"message": exc.message, "status": exc.status_code},
            status=exc.status_code,
        )
