from __future__ import annotations

import csv
import json

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render

from governance import selectors
from governance.forms import AuditFilterForm
from portal.errors import Forbidden

CSV_COLUMNS = [
    "id", "created_at", "actor_name", "verb", "target_type", "target_id", "target_repr",
    "payload", "request_id", "prev_hash", "hash",
]  # fmt: skip


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_cell(value: str) -> str:
    # Spreadsheets run cells starting with these as formulas.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    if not selectors.can_read_audit(request.user):
        raise Forbidden("The audit log is for staff, stewards and reviewers.")
    form = AuditFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    events = selectors.audit_events(**{k: v for k, v in filters.items() if v})
    if request.GET.get("format") == "csv":
        writer = csv.writer(_Echo())

        def rows():
            yield writer.writerow(CSV_COLUMNS)
            for e in events.iterator(chunk_size=2000):
                values = [getattr(e, c) for c in CSV_COLUMNS]
                values[CSV_COLUMNS.index("payload")] = json.dumps(e.payload, sort_keys=True)
                values[CSV_COLUMNS.index("created_at")] = e.created_at.isoformat()
                yield writer.writerow([_csv_cell(str(v)) for v in values])

        response = StreamingHttpResponse(rows(), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
        return response
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    return render(
        request,
        "governance/audit.html",
        {
            "form": form if form.is_bound else AuditFilterForm(),
            "page": page,
            "query": params.urlencode(),
        },
    )
