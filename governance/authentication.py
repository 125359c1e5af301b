"""REST API authentication by the portal's own API tokens (``zoo_api_…``).

``Authorization: Token zoo_api_…`` (the scheme DRF clients already send) or
``Bearer zoo_api_…``. A header with either scheme is answered, never skipped:
an unknown, expired or revoked token, or a download token (``zoo_pat_…``) meant
for the Hugging Face endpoint, is a 401 that says which and where to get the
right one. Anything else falls through to the session.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from governance.models import ACCESS_TOKEN_PREFIX, API_TOKEN_PREFIX, AccessToken
from governance.selectors import user_for_token

_SCHEMES = ("token", "bearer")


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        scheme, _, raw = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() not in _SCHEMES:
            return None
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed(
                "The Authorization header names no token: send `Token zoo_api_…`."
            )
        if raw.startswith(ACCESS_TOKEN_PREFIX):
            raise exceptions.AuthenticationFailed(
                f"This is a download token ({ACCESS_TOKEN_PREFIX}…) for the Hugging Face "
                f"endpoint; the API takes an API token ({API_TOKEN_PREFIX}…) from "
                "POST /api/auth/token/ or /account/tokens/."
            )
        if not raw.startswith(API_TOKEN_PREFIX):
            raise exceptions.AuthenticationFailed(
                f"The API takes only the portal's API tokens ({API_TOKEN_PREFIX}…): get one "
                "from POST /api/auth/token/ or /account/tokens/."
            )
        user = user_for_token(raw, AccessToken.Scope.API)
        if user is None:
            raise exceptions.AuthenticationFailed(
                "The API token is unknown, expired or revoked: get a new one from "
                "POST /api/auth/token/ or /account/tokens/."
            )
        return user, raw

    def authenticate_header(self, request):
        return self.keyword


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema names the token header."""

    target_class = ApiTokenAuthentication
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"`Token {API_TOKEN_PREFIX}…`, from POST /api/auth/token/ or "
            "/account/tokens/.",
        }
