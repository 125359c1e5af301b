"""Domain errors to answers, in one place: API responses, error pages, form errors, messages.

A ``Forbidden`` refusal is recorded in the audit log wherever it is turned
into an answer, so every refused authorization leaves a trace whichever way
the person came in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler

from governance.audit import audit_refusal
from portal.errors import Forbidden, PortalError, TooManyAttempts


def record_refusal(request: HttpRequest, exc: Exception) -> None:
    """Write the ``access.refused`` event for a refusal answered to ``request``."""
    audit_refusal(
        actor=getattr(request, "user", None),
        method=request.method or "",
        path=request.path,
        reason=str(getattr(exc, "message", None) or getattr(exc, "detail", exc)),
    )


@dataclass
class Attempt:
    """What became of a service call run under ``shown_to``."""

    error: PortalError | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None


@contextmanager
def shown_to(request: HttpRequest, form=None) -> Iterator[Attempt]:
    """Run a service call for an HTML view; a domain error becomes what the person sees.

    With a form, the error goes on the field it names (or the form as a whole),
    and a ``Forbidden`` is recorded as a refusal. Without a form, an error
    becomes a message for the next page, except a ``Forbidden``, which goes on
    to the middleware: a 403 page, recorded there. Anything that is not a
    ``PortalError`` propagates: a bug is not a message.
    """
    attempt = Attempt()
    try:
        yield attempt
    except Forbidden as exc:
        if form is None:
            raise
        attempt.error = exc
        record_refusal(request, exc)
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
    except PortalError as exc:
        attempt.error = exc
        if form is not None:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.error(request, exc.message)


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler for the whole API: one JSON shape, ``{"detail", "code"[, "field"]}``."""
    if isinstance(exc, Forbidden | PermissionDenied) and context.get("request") is not None:
        record_refusal(context["request"], exc)
    if isinstance(exc, PortalError):
        body = {"detail": exc.message, "code": exc.code}
        if exc.field:
            body["field"] = exc.field
        response = Response(body, status=exc.status_code)
        if isinstance(exc, TooManyAttempts):
            response["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, ValidationError):
        return Response(_validation_body(exc.detail), status=400)
    return exception_handler(exc, context)


def _validation_body(detail) -> dict:
    """DRF's field errors, plus the one-line ``detail`` and ``field`` every other error has."""
    if isinstance(detail, dict) and detail:
        field, errors = next(iter(detail.items()))
        first = errors[0] if isinstance(errors, list) and errors else errors
        if isinstance(first, dict):  # a nested serializer's errors
            first = next(iter(first.values()), "")
        message = f"{field}: {first}" if field != "non_field_errors" else str(first)
        body = {"detail": message, "code": "invalid", "errors": detail}
        if field != "non_field_errors":
            body["field"] = field
        return body
    errors = detail if isinstance(detail, list) else [detail]
    return {"detail": " ".join(str(m) for m in errors), "code": "invalid", "errors": errors}


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
        back = _same_site_referer(request)
        if request.method == "POST" and back and not request.headers.get("HX-Request"):
            # A refused button press: the message goes on the page the person was on.
            messages.error(request, exc.message)
            return redirect(back)
        return render(
            request,
            "portal/error.html",
            {"message": exc.message, "status": exc.status_code, "back": back},
            status=exc.status_code,
        )


def _same_site_referer(request: HttpRequest) -> str:
    """The path of the page a request came from, when that page is this site's."""
    referer = request.headers.get("Referer", "")
    if not referer:
        return ""
    parts = urlsplit(referer)
    if parts.netloc != request.get_host() or not parts.path.startswith("/"):
        return ""
    if parts.path == request.path:
        return ""
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return path if url_has_allowed_host_and_scheme(path, allowed_hosts=None) else ""
