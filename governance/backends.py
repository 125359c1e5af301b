"""Django authentication backends: passwords (switchable off) and OpenID Connect single sign-on.

Both only decide *whether* a credential is good; the rules live in the services
(governance.services.signin for passwords, governance.services.sso for the
account and its roles).
"""

from __future__ import annotations

import jwt
import requests
from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from governance.services.signin import password_allowed
from governance.services.sso import sso_sign_in
from portal.errors import PortalError


class PasswordBackend(ModelBackend):
    """Django's password backend on every door (page, API, admin), held to password_allowed."""

    def user_can_authenticate(self, user) -> bool:
        return super().user_can_authenticate(user) and password_allowed(user)


class SsoRefused(PortalError):
    """The provider's answer did not prove who is signing in."""

    status_code = 403
    code = "sso_refused"


class SsoBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's code flow; the ID token checked in full, the account from sso_sign_in.

    The library checks the signature (RS256, key from the provider's JWKS) and the
    nonce but not the audience or issuer; here ``jwt.decode`` checks signature,
    ``aud`` (this client), ``iss`` (OIDC_ISSUER), ``exp`` and ``iat`` together,
    with OIDC_LEEWAY_S of clock skew. Claims come from the signed ID token only
    (not the userinfo endpoint), so the groups are bound to this client too.
    Every refusal is an SsoRefused with a message for the person signing in.
    """

    def authenticate(self, request, **kwargs):
        # Only the callback view passes a nonce; a password sign-in never reaches the provider.
        if not settings.OIDC_ENABLED or "nonce" not in kwargs or "password" in kwargs:
            return None
        return super().authenticate(request, **kwargs)

    def get_token(self, payload):
        try:
            return super().get_token(payload)
        except requests.HTTPError:
            raise SsoRefused(
                "The sign-in provider would not exchange the sign-in code (it may have been "
                "used already or have expired); sign in again."
            ) from None
        except (requests.RequestException, ValueError):
            raise SsoRefused(
                "The sign-in provider could not be reached; try again in a minute."
            ) from None

    def verify_token(self, token, **kwargs):
        if not isinstance(token, str) or token.count(".") != 2:
            raise SsoRefused("The sign-in provider sent no ID token.")
        try:
            key = self.retrieve_matching_jwk(token)
        except SuspiciousOperation:
            raise SsoRefused(
                "The ID token is signed with a key the sign-in provider does not publish."
            ) from None
        except (requests.RequestException, ValueError, KeyError, jwt.PyJWTError):
            raise SsoRefused(
                "The sign-in provider's signing keys could not be read; try again in a minute."
            ) from None
        payload = self._verify_jws(token, key)
        if kwargs.get("nonce") is None or payload.get("nonce") != kwargs["nonce"]:
            raise SsoRefused(
                "The ID token was not issued for this sign-in (its nonce does not match); "
                "sign in again."
            )
        return payload

    def _verify_jws(self, payload, key):
        try:
            claims = jwt.decode(
                payload,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=settings.OIDC_ISSUER,
                leeway=settings.OIDC_LEEWAY_S,
                options={"require": ["iss", "aud", "sub", "exp", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise SsoRefused(
                "The ID token has expired; sign in again (if this repeats, the portal's and "
                "the provider's clocks disagree)."
            ) from None
        except jwt.InvalidAudienceError:
            raise SsoRefused(
                "The ID token was issued for another application, not this portal."
            ) from None
        except jwt.InvalidIssuerError:
            raise SsoRefused(
                "The ID token comes from another issuer than this portal trusts."
            ) from None
        except jwt.InvalidSignatureError:
            raise SsoRefused("The ID token's signature does not verify.") from None
        except jwt.InvalidAlgorithmError:
            raise SsoRefused(f"The ID token is not signed with {self.OIDC_RP_SIGN_ALGO}.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise SsoRefused(f"The ID token lacks the {exc.claim!r} claim.") from None
        except jwt.PyJWTError:
            raise SsoRefused("The ID token is not valid.") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.OIDC_RP_CLIENT_ID:
            raise SsoRefused("The ID token was issued for another application, not this portal.")
        return claims

    def get_or_create_user(self, access_token, id_token, payload):
        return sso_sign_in(issuer=settings.OIDC_ISSUER, claims=payload)
