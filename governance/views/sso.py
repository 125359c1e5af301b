"""The two single sign-on pages: off to the provider, and back from it.

mozilla-django-oidc's views, wrapped so that every way a sign-in can fail
(tampered or replayed state, a refused token, a switched-off account) lands
on the sign-in page with a message, signed out, instead of a bare 400 or 500.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib import auth, messages
from django.core.exceptions import SuspiciousOperation
from django.shortcuts import redirect
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from portal.errors import NotFound, PortalError

_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")
_NOT_OURS = (
    "This sign-in answer does not belong to a sign-in started in this browser "
    "(unknown or reused state); start again."
)


def _require_sso() -> None:
    if not settings.OIDC_ENABLED:
        raise NotFound("Single sign-on is not set up on this portal; sign in with a password.")


class SsoStartView(OIDCAuthenticationRequestView):
    """Off to the provider, with a fresh state, nonce and PKCE code challenge in the session."""

    def get(self, request):
        _require_sso()
        return super().get(request)


class SsoCallbackView(OIDCAuthenticationCallbackView):
    """Back from the provider: the library checks state, swaps the code; we explain failures."""

    failure_message = ""

    def get(self, request):
        _require_sso()
        error = request.GET.get("error", "")
        if error:
            # Only a known-shaped code is echoed: the rest of the URL is the sender's to write.
            shown = f" ({error})" if _ERROR_CODE.match(error) else ""
            self.failure_message = f"The sign-in provider did not sign you in{shown}."
        elif "oidc_states" not in request.session:
            self.failure_message = _NOT_OURS
        try:
            return super().get(request)
        except SuspiciousOperation:
            self.failure_message = _NOT_OURS
        except PortalError as exc:
            self.failure_message = exc.message
        return self.login_failure()

    def login_failure(self):
        if self.request.user.is_authenticated:
            auth.logout(self.request)
        messages.error(
            self.request,
            self.failure_message
            or f"Signing in with {settings.OIDC_PROVIDER_NAME} did not complete; start again.",
        )
        return redirect(settings.LOGIN_URL)
