"""Personal tokens: read tokens for the Hugging Face endpoint, API tokens for the REST API."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from governance.audit import audit_record
from governance.models import (
    ACCESS_TOKEN_DEFAULT_DAYS,
    ACCESS_TOKEN_MAX_DAYS,
    ACCESS_TOKEN_SHOWN_CHARS,
    AccessToken,
    access_token_digest,
)
from governance.services.signin import sign_in
from portal.errors import Conflict, Forbidden, PortalError

# More than this many live tokens per person is a sign of tokens being made and forgotten.
ACCESS_TOKEN_MAX_LIVE = 50


def access_token_create(
    *, user, name: str, days: int = ACCESS_TOKEN_DEFAULT_DAYS, scope: str = AccessToken.Scope.READ
):
    """Issue a token of ``scope``; returns (row, plaintext). The plaintext exists only here."""
    name = (name or "").strip()
    if not user.is_authenticated or not user.is_active:
        raise Forbidden("Only active, signed-in users get access tokens.")
    if not name:
        raise PortalError("Give the token a name, e.g. the machine it is for.", field="name")
    if len(name) > 100:
        raise PortalError("A token name has at most 100 characters.", field="name")
    if isinstance(days, bool) or not isinstance(days, int) or not 0 < days <= ACCESS_TOKEN_MAX_DAYS:
        raise PortalError(
            f"A token lasts between 1 and {ACCESS_TOKEN_MAX_DAYS} days.", field="days"
        )
    if scope not in AccessToken.Scope.values:
        raise PortalError(
            "A token is for Hugging Face downloads or for the REST API.", field="scope"
        )
    prefix = AccessToken.Scope(scope).prefix
    secret = secrets.token_urlsafe(32)
    plaintext = prefix + secret
    now = timezone.now()
    with transaction.atomic():
        live = AccessToken.objects.filter(
            user=user, revoked_at__isnull=True, expires_at__gt=now
        ).count()
        if live >= ACCESS_TOKEN_MAX_LIVE:
            raise PortalError(
                f"You already have {live} live tokens; revoke the ones you no longer use."
            )
        token = AccessToken.objects.create(
            user=user,
            name=name,
            prefix=prefix + secret[:ACCESS_TOKEN_SHOWN_CHARS],
            digest=access_token_digest(plaintext),
            scope=scope,
            expires_at=now + timedelta(days=days),
        )
        # Name, display prefix and dates only: never the secret or its digest.
        audit_record(
            actor=user,
            verb="token.create",
            target=token,
            payload={
                "name": name,
                "prefix": token.prefix,
                "scope": token.scope,
                "expires_at": token.expires_at.isoformat(),
            },
        )
    return token, plaintext


def access_token_revoke(*, token: AccessToken, actor) -> AccessToken:
    """Revoke a token at once; its owner or staff may."""
    if not actor.is_authenticated or (actor.pk != token.user_id and not actor.is_staff):
        raise Forbidden("Only the token's owner or an administrator may revoke it.")
    with transaction.atomic():
        now = timezone.now()
        moved = AccessToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=now
        )
        if not moved:
            raise Conflict("This token is already revoked.")
        audit_record(
            actor=actor,
            verb="token.revoke",
            target=token,
            payload={"name": token.name, "prefix": token.prefix, "owner": token.user_id},
        )
    token.refresh_from_db()
    return token


def api_token_issue(*, username: str, password: str, client: str, request=None):
    """Sign in with a password and get an API token (``settings.API_TOKEN_DAYS`` long).

    Held to the same throttle as the sign-in page, so a script cannot guess
    passwords faster than a browser; returns (row, plaintext).
    """
    user = sign_in(username=username, password=password, client=client, request=request, via="api")
    return access_token_create(
        user=user,
        name=f"API, issued to {client}"[:100],
        days=settings.API_TOKEN_DAYS,
        scope=AccessToken.Scope.API,
    )
