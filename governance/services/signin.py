"""Signing in with a password, held to one throttle for the sign-in page and the API.

Failures are counted in the shared cache (Redis in production, so every web
process sees the same counts) per account and per client address, in a fixed
window of ``SIGNIN_WINDOW_S`` seconds that starts at the first failure. Once an
account has ``SIGNIN_MAX_FAILURES`` failures, or an address
``SIGNIN_MAX_FAILURES_PER_CLIENT``, every attempt is refused until the window
ends, the right password included: that is what stops guessing. A success
clears the account's count (not the address's: one good login from a guessing
host does not buy it more guesses). Reaching a limit writes one
``auth.throttled`` event; the refusals after it write none, so a flood of
attempts cannot flood the audit log.

With single sign-on, production may switch passwords off (``LOCAL_SIGNIN_ENABLED``
false): then only superusers, the break-glass administrators for a provider
outage, still sign in with one, on every door (the page, POST /api/auth/token/,
the Django admin: ``password_allowed`` is also asked by governance.backends).
Everyone else gets the same refusal whether the password was right or not, so
the answer says nothing about the password, and the try still counts.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.db import transaction

from governance.audit import audit_record
from portal.errors import Forbidden, PortalError, TooManyAttempts

WRONG_CREDENTIALS = "Wrong username or password."


def password_off_message() -> str:
    return (
        "Password sign-in is switched off here: use "
        f'"Sign in with {settings.OIDC_PROVIDER_NAME}". Only break-glass '
        "administrator accounts still take a password."
    )


def password_allowed(user) -> bool:
    """May this account sign in with a password? Everyone, or only superusers when switched off."""
    return settings.LOCAL_SIGNIN_ENABLED or bool(user.is_superuser)


def _key(kind: str, value: str) -> str:
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"signin:{kind}:{digest}"


def _counters(username: str, client: str) -> list[tuple[str, str, int]]:
    return [
        ("account", _key("account", username.strip().casefold()), settings.SIGNIN_MAX_FAILURES),
        ("client", _key("client", client), settings.SIGNIN_MAX_FAILURES_PER_CLIENT),
    ]


def _retry_after(key: str) -> int:
    started = cache.get(f"{key}:since")
    window = settings.SIGNIN_WINDOW_S
    if started is None:
        return window
    return max(1, math.ceil(started + window - time.time()))


def _refusal(kind: str, key: str) -> TooManyAttempts:
    retry_after = _retry_after(key)
    minutes = max(1, math.ceil(retry_after / 60))
    whose = "this account" if kind == "account" else "your address"
    return TooManyAttempts(
        f"Too many failed sign-ins for {whose}. Try again in {minutes} "
        f"minute{'s' if minutes != 1 else ''}.",
        retry_after=retry_after,
    )


def _throttled(username: str, client: str) -> TooManyAttempts | None:
    for kind, key, limit in _counters(username, client):
        if (cache.get(key) or 0) >= limit:
            return _refusal(kind, key)
    return None


def _count_failure(username: str, client: str, via: str) -> None:
    window = settings.SIGNIN_WINDOW_S
    for kind, key, limit in _counters(username, client):
        # add() only where the window has not started: the window is fixed, not sliding.
        # Whole seconds: the cache keeps integers as they are (anything else it pickles).
        cache.add(f"{key}:since", int(time.time()), window)
        cache.add(key, 0, window)
        try:
            failures = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, window)
            failures = 1
        if failures == limit:
            with transaction.atomic():
                audit_record(
                    actor=None,
                    verb="auth.throttled",
                    payload={
                        "limit": kind,
                        "username": username[:150],
                        "client": client,
                        "via": via,
                        "failures": failures,
                        "window_s": window,
                    },
                )


def sign_in(*, username: str, password: str, client: str, request=None, via: str = "page"):
    """The active user these credentials name; refuses when throttled or wrong.

    ``client`` is the caller's address (``REMOTE_ADDR``); ``via`` says which door
    ("page" or "api") for the audit event.
    """
    username = username or ""
    refusal = _throttled(username, client)
    if refusal is not None:
        raise refusal
    user = authenticate(request, username=username, password=password or "")
    if user is None or not user.is_active:
        _count_failure(username, client, via)
        refusal = _throttled(username, client)
        if refusal is not None:
            raise refusal
        if not settings.LOCAL_SIGNIN_ENABLED:
            raise Forbidden(password_off_message())
        raise PortalError(WRONG_CREDENTIALS)
    account = _counters(username, client)[0][1]
    cache.delete_many([account, f"{account}:since"])
    return user


def client_address(request) -> str:
    """The address a request came from.

    ``REMOTE_ADDR``, unless ``TRUSTED_PROXIES`` says how many proxies of ours
    stand in front: then the address the outermost of them saw, read from the
    right of ``X-Forwarded-For`` (entries further left are the client's to forge).
    """
    if request is None:
        return "local"
    remote = request.META.get("REMOTE_ADDR") or "unknown"
    hops = settings.TRUSTED_PROXIES
    if hops:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= hops:
            remote = forwarded[-hops]
    return remote[:64]
