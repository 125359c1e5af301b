"""The operator's page: workers per queue, beat's ticks, waiting and stale jobs (HTML and JSON)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from jobs.selectors import operations_status
from portal.errors import Forbidden


def _staff(request: HttpRequest) -> None:
    if not request.user.is_staff:
        raise Forbidden("The operations status is for staff.")


@never_cache
@login_required
def status_page(request: HttpRequest) -> HttpResponse:
    _staff(request)
    return render(request, "jobs/status.html", {"status": operations_status()})


@never_cache
@login_required
def status_json(request: HttpRequest) -> JsonResponse:
    _staff(request)
    status = operations_status()
    return JsonResponse(status, encoder=DjangoJSONEncoder, status=200 if status["healthy"] else 503)
