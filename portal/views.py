"""Site-wide pages: the dashboard (the health endpoint lives in ``portal.health``)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static

from governance.roles import DESCRIPTIONS, user_roles
from governance.selectors import review_queue
from jobs.models import Job
from jobs.selectors import jobs_visible_to


@login_required
def home(request: HttpRequest) -> HttpResponse:
    mine = jobs_visible_to(request.user).filter(requested_by=request.user)
    counts = dict(mine.values_list("status").annotate(n=Count("id")).order_by())
    roles = sorted(user_roles(request.user))
    return render(
        request,
        "portal/home.html",
        {
            "recent_jobs": mine[:5],
            "active_jobs": sum(counts.get(s, 0) for s in Job.ACTIVE),
            "failed_jobs": counts.get(Job.Status.FAILED, 0),
            "succeeded_jobs": counts.get(Job.Status.SUCCEEDED, 0),
            "roles": [(r, DESCRIPTIONS[r]) for r in roles],
            "review_inbox": review_queue(request.user)[:8],
        },
    )


def favicon(request: HttpRequest) -> HttpResponse:
    """Pages without the base template (the admin's, DRF's) ask for /favicon.ico."""
    return redirect(static("favicon.svg"), permanent=True)
