"""Site-wide pages: the dashboard and the health endpoint."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from governance.roles import DESCRIPTIONS, user_roles
from jobs.models import Job
from jobs.selectors import jobs_visible_to
from portal.health import check_broker, check_database


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
        },
    )


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """JSON for load balancers and operators: 200 when the database and broker answer."""
    db_error = check_database()
    broker_error = check_broker()
    ok = db_error is None and broker_error is None
    body = {
        "status": "ok" if ok else "unavailable",
        "database": "ok" if db_error is None else db_error,
        "broker": "ok" if broker_error is None else broker_error,
    }
    return JsonResponse(body, status=200 if ok else 503)
