"""Template context shared by every page."""

from __future__ import annotations

from django.urls import NoReverseMatch, reverse

from governance.roles import is_reviewer, is_steward, user_roles
from governance.selectors import (
    can_read_audit,
    may_handle_incidents,
    may_see_compliance,
    unread_count,
)

# (label, url name, who sees it). A section appears once its URL exists, so the
# bar never links to a page that is not there.
NAV = (
    ("Catalogue", "zoo:catalogue", "user"),
    ("Datasets", "datasets:list", "user"),
    ("Probes", "probes:list", "user"),
    ("Fine-tunes", "finetunes:list", "user"),
    ("Jobs", "jobs:list", "user"),
    ("My access", "governance:my_access", "user"),
    ("Reviews", "governance:reviews", "reviewer"),
    ("Steward queue", "governance:steward_queue", "steward"),
    ("Incidents", "governance:incidents", "handler"),
    ("Compliance", "governance:compliance", "compliance"),
    ("Audit", "governance:audit", "auditor"),
    ("Status", "jobs:status", "staff"),
    ("Admin", "admin:index", "staff"),
)


def _visible(user, who: str) -> bool:
    if who == "staff":
        return user.is_staff
    if who == "auditor":
        return can_read_audit(user)
    if who == "reviewer":
        return user.is_superuser or is_reviewer(user)
    if who == "steward":
        return user.is_staff or is_steward(user)
    if who == "handler":
        return may_handle_incidents(user)
    if who == "compliance":
        return may_see_compliance(user)
    return True


def navigation(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": [], "user_roles": [], "inbox_unread": 0}
    items = []
    for label, name, who in NAV:
        if not _visible(user, who):
            continue
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        items.append({"label": label, "url": url, "active": request.path.startswith(url)})
    return {
        "nav_items": items,
        "user_roles": sorted(user_roles(user)),
        "inbox_unread": unread_count(user),
    }
