"""Single sign-on sessions go back to the provider every few minutes, so roles follow the directory.

Without this a session would keep the roles it signed in with for the session's
whole life (two weeks by default). mozilla-django-oidc's SessionRefresh sends a
session signed in through the provider back to it once
``OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS`` have passed, silently (``prompt=none``,
with a fresh state, nonce and PKCE challenge); the callback signs the person in
again through governance.services.sso, which brings the roles up to date, or,
if the provider no longer signs them in, signs them out with a message.
Password sessions are never sent.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.deprecation import MiddlewareMixin
from mozilla_django_oidc.middleware import SessionRefresh

# Token-only or machine routes, and the sign-in and sign-out pages themselves.
_NEVER = ("/api/", "/hf/", "/static/", "/media/", "/healthz", "/metrics", "/accounts/", "/oidc/")


def _setting(name: str, default):
    return property(lambda self: getattr(settings, name, default))


class SsoSessionRefresh(SessionRefresh):
    """SessionRefresh reading its settings per request, leaving htmx and machine routes alone."""

    # The library reads these once at start-up; as properties they follow the settings.
    OIDC_EXEMPT_URLS = _setting("OIDC_EXEMPT_URLS", [])
    OIDC_OP_AUTHORIZATION_ENDPOINT = _setting("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
    OIDC_RP_CLIENT_ID = _setting("OIDC_RP_CLIENT_ID", "")
    OIDC_STATE_SIZE = _setting("OIDC_STATE_SIZE", 32)
    OIDC_AUTHENTICATION_CALLBACK_URL = _setting(
        "OIDC_AUTHENTICATION_CALLBACK_URL", "oidc_authentication_callback"
    )
    OIDC_RP_SCOPES = _setting("OIDC_RP_SCOPES", "openid email")
    OIDC_USE_NONCE = _setting("OIDC_USE_NONCE", True)
    OIDC_NONCE_SIZE = _setting("OIDC_NONCE_SIZE", 32)

    def __init__(self, get_response):
        MiddlewareMixin.__init__(self, get_response)

    @property
    def exempt_urls(self) -> set[str]:
        # The library's list names its own logout route, which the portal does not use;
        # _NEVER covers the sign-in routes.
        return set()

    def is_refreshable_url(self, request) -> bool:
        return (
            settings.OIDC_ENABLED
            # An htmx fragment cannot follow a redirect to the provider; the next page will.
            and not request.headers.get("HX-Request")
            and not request.path.startswith(_NEVER)
            and super().is_refreshable_url(request)
        )
