"""Single sign-on: the account an OpenID Connect sign-in lands on, and the roles it gets.

Who someone is comes from the provider: the account is found by the ID token's
issuer and subject (``SsoIdentity``), never by username or e-mail, so a local
account that happens to share a name is not taken over; a new person gets a new
account (``preferred_username``, with ``-2``, ``-3``… when a local one has it)
with no usable password. Name and e-mail follow the directory at each sign-in.

Roles follow the directory's group claim (``OIDC_GROUPS_CLAIM``, mapped by
``OIDC_ROLE_MAP``) at every sign-in:

- a mapped role the account lacks is given, and remembered as given by single
  sign-on (``SsoIdentity.roles``);
- a role single sign-on gave is taken away at the first sign-in whose claim no
  longer maps to it: leaving the group in the directory ends the role;
- a role given locally (admin, a management command) is the local
  administrator's to take away, not the directory's: single sign-on neither
  takes it nor claims it, and each sign-in's audit event lists such roles under
  ``roles_local`` so a review can see them;
- ``staff`` is the admin flag and follows the same rules; superuser is never
  given or taken by single sign-on (break-glass administrators are local
  superusers who sign in with a password, see governance.services.signin);
- an account an administrator switched off stays off: its sign-in is refused.
"""

from __future__ import annotations

import hashlib
import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.audit import audit_record
from governance.models import SsoIdentity
from governance.roles import ALL_ROLES, STAFF
from portal.errors import Conflict, Forbidden, PortalError

_USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")
_USERNAME_MAX = 150


def _text_claim(claims: dict, name: str, limit: int) -> str:
    value = claims.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def directory_groups(claims: dict) -> list[str]:
    """The group names in the configured claim; a provider may send a list or one string."""
    name = settings.OIDC_GROUPS_CLAIM
    value = claims.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise PortalError(
            f"The provider's {name!r} claim is not a list of group names; ask the "
            "directory team to send groups as a list of strings."
        )
    return value


def roles_for_groups(groups: list[str]) -> set[str]:
    """The portal roles OIDC_ROLE_MAP gives these directory groups (unmapped groups give none)."""
    return {settings.OIDC_ROLE_MAP[g] for g in groups if g in settings.OIDC_ROLE_MAP}


def _held_roles(user) -> set[str]:
    held = set(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
    if user.is_staff:
        held.add(STAFF)
    return held


def _free_username(claims: dict, subject: str) -> str:
    User = get_user_model()
    email = _text_claim(claims, "email", 254)
    wanted = (
        _text_claim(claims, "preferred_username", _USERNAME_MAX)
        or email.partition("@")[0]
        or "sso-" + hashlib.sha256(subject.encode()).hexdigest()[:12]
    )
    base = _USERNAME_UNSAFE.sub("-", wanted)[: _USERNAME_MAX - 4] or "sso-user"
    candidate, n = base, 1
    while User.objects.filter(username__iexact=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _apply_roles(user, *, add: set[str], remove: set[str]) -> None:
    groups = {g.name: g for g in Group.objects.filter(name__in=ALL_ROLES)}
    for name in (add | remove) - {STAFF} - set(groups):
        groups[name] = Group.objects.get_or_create(name=name)[0]
    if to_add := [groups[r] for r in sorted(add - {STAFF})]:
        user.groups.add(*to_add)
    if to_remove := [groups[r] for r in sorted(remove - {STAFF})]:
        user.groups.remove(*to_remove)
    if STAFF in add:
        user.is_staff = True
    if STAFF in remove:
        user.is_staff = False
    user._portal_roles = None  # governance.roles caches what the user held


def _identity_for(issuer: str, subject: str, claims: dict) -> tuple[SsoIdentity, bool]:
    identity = (
        SsoIdentity.objects.select_for_update()
        .select_related("user")
        .filter(issuer=issuer, subject=subject)
        .first()
    )
    if identity is not None:
        return identity, False
    User = get_user_model()
    try:
        with transaction.atomic():
            user = User(username=_free_username(claims, subject))
            user.set_unusable_password()
            user.save()
            identity = SsoIdentity.objects.create(
                user=user, issuer=issuer, subject=subject, last_sign_in_at=timezone.now()
            )
    except IntegrityError:
        # Two first sign-ins of one person at once, or a name taken between look and write.
        raise Conflict("Another sign-in for this account is under way; sign in again.") from None
    return identity, True


def sso_sign_in(*, issuer: str, claims: dict):
    """The active account for these verified ID-token claims, its roles brought up to date.

    ``claims`` must come from an ID token whose signature, issuer, audience,
    expiry and nonce were checked (governance.backends.SsoBackend does).
    Writes one ``auth.sso_signin`` event with the roles added and removed.
    """
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > 255:
        raise PortalError("The provider's ID token names nobody (no usable 'sub' claim).")
    groups = directory_groups(claims)
    wanted = roles_for_groups(groups)
    with transaction.atomic():
        identity, created = _identity_for(issuer, subject, claims)
        user = identity.user
        if not user.is_active:
            raise Forbidden(
                "Your portal account is switched off; ask a portal administrator to restore it."
            )
        held = _held_roles(user)
        given_by_sso = set(identity.roles) & held
        add = wanted - held
        remove = given_by_sso - wanted
        _apply_roles(user, add=add, remove=remove)
        user.email = _text_claim(claims, "email", 254) or user.email
        user.first_name = _text_claim(claims, "given_name", 150) or user.first_name
        user.last_name = _text_claim(claims, "family_name", 150) or user.last_name
        user.save()
        identity.roles = sorted((given_by_sso & wanted) | add)
        identity.last_sign_in_at = timezone.now()
        identity.save(update_fields=["roles", "last_sign_in_at"])
        audit_record(
            actor=user,
            verb="auth.sso_signin",
            target=user,
            payload={
                "issuer": issuer,
                "subject": subject,
                "created": created,
                "groups": groups[:100],
                "roles_added": sorted(add),
                "roles_removed": sorted(remove),
                "roles_local": sorted(held - given_by_sso),
            },
        )
    return user
