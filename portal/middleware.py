"""Request-scoped context for the audit log, and the headers every response carries."""

from __future__ import annotations

import re
import uuid

from django.conf import settings

from governance.audit import current_request_id

_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Tag each request with an id (a proxy's X-Request-ID if sane) that audit events carry."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


class ContentSecurityPolicyMiddleware:
    """Send ``settings.CONTENT_SECURITY_POLICY`` with every response that has none.

    Pages load only the portal's own scripts and styles (htmx and Chart.js are
    vendored, nothing is inline), so a script that slipped into stored text
    could not run. The API's own pages (DRF's browsable API, Swagger UI) set
    style attributes as they draw, so under /api/ inline style is allowed;
    scripts stay the portal's own everywhere. A view with stricter needs
    (files served from /hf/) sets its own header, which is left alone.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.policy = settings.CONTENT_SECURITY_POLICY
        self.api_policy = self.policy.replace(
            "style-src 'self'", "style-src 'self' 'unsafe-inline'"
        )

    def __call__(self, request):
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            api = request.path.startswith("/api/")
            response["Content-Security-Policy"] = self.api_policy if api else self.policy
        return response
