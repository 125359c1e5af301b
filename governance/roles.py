"""The portal's roles, held as Django groups (created by a data migration)."""

from __future__ import annotations

ML_ENGINEERS = "ml-engineers"
STEWARDS = "stewards"
LEGAL = "legal"
SECURITY = "security"
COMPLIANCE = "compliance"

REVIEW_ROLES = (LEGAL, SECURITY, COMPLIANCE)
ALL_ROLES = (ML_ENGINEERS, STEWARDS, *REVIEW_ROLES)
# Not a group: single sign-on may give the staff flag (Django admin, policy tables),
# never superuser.
STAFF = "staff"
SSO_ROLES = (*ALL_ROLES, STAFF)

DESCRIPTIONS = {
    ML_ENGINEERS: "may launch fine-tunes on models approved for them",
    STEWARDS: "import and publish models, edit metadata, manage licenses and risks",
    LEGAL: "reviews reuse requests for license and contract terms",
    SECURITY: "reviews reuse requests for security exposure",
    COMPLIANCE: "reviews reuse requests for data protection and policy",
}


def user_roles(user) -> set[str]:
    """Role names the user holds; empty for anonymous users."""
    if not getattr(user, "is_authenticated", False):
        return set()
    cached = getattr(user, "_portal_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
        user._portal_roles = cached
    return cached


def has_role(user, role: str) -> bool:
    return role in user_roles(user)


def roles_read(user) -> bool:
    """Whether ``user_roles`` has read this user's roles already (this request's user object)."""
    return getattr(user, "_portal_roles", None) is not None


def holds_role_in_sql(user, role: str):
    """``has_role`` as an SQL condition (``Exists``), for a filter that depends on a role.

    The database then decides in the query it runs anyway, where asking first
    costs a query of its own on every request that had no other use for the roles.
    """
    from django.contrib.auth.models import Group
    from django.db.models import Exists

    return Exists(Group.objects.filter(name=role, user=user.pk))


def is_steward(user) -> bool:
    """Stewards (and superusers) keep the catalogue: import, publish, edit, see drafts."""
    if not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_superuser or has_role(user, STEWARDS))


def is_reviewer(user) -> bool:
    """Holds a legal, security or compliance review role."""
    return bool(user_roles(user) & set(REVIEW_ROLES))
