"""REST framework pieces shared by every app's API."""

from __future__ import annotations

from rest_framework.pagination import BasePagination, PageNumberPagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from portal.errors import NotFound
from portal.pagination import COUNT_CAP, keyset_page

# PostgreSQL's bigint: a larger id cannot name a row.
_MAX_ID = 2**63 - 1


class Pagination(PageNumberPagination):
    """Pages of 50 by default; clients may ask for up to 200 with ``page_size``."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def object_id(raw) -> int:
    """The id in a URL as an int; anything else names no object (404, not a 500)."""
    text = str(raw)
    if not (text.isascii() and text.isdigit()) or int(text) > _MAX_ID:
        raise NotFound("No such object.")
    return int(text)


class KeysetPagination(BasePagination):
    """Cursor pages for the long lists (models, versions): see ``portal.pagination``.

    The view names its order with ``keyset_order()``, and may set
    ``known_count`` when its filtering counted already, ``keyset_prefix`` and
    ``keyset_candidates`` (see ``portal.pagination.keyset_page``). ``count`` stops at
    1,000; ``count_capped`` says when there are more.
    """

    page_size = 50
    max_page_size = 200
    cursor_query_param = "cursor"
    page_size_query_param = "page_size"

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.page = keyset_page(
            queryset,
            view.keyset_order(),
            request.query_params.get(self.cursor_query_param) or None,
            self._size(request),
            count=getattr(view, "known_count", None),
            prefix=getattr(view, "keyset_prefix", None),
            candidates=getattr(view, "keyset_candidates", None),
        )
        return self.page.items

    def _size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param, "")
        if raw.isascii() and raw.isdigit() and int(raw) > 0:
            return min(int(raw), self.max_page_size)
        return self.page_size

    def _link(self, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        url = self.request.build_absolute_uri()
        return replace_query_param(url, self.cursor_query_param, cursor)

    def get_paginated_response(self, data):
        return Response(
            {
                "count": self.page.count,
                "count_capped": self.page.count_capped,
                "next": self._link(self.page.next_cursor),
                "previous": self._link(self.page.previous_cursor),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["count", "count_capped", "results"],
            "properties": {
                "count": {"type": "integer", "maximum": COUNT_CAP, "example": 123},
                "count_capped": {
                    "type": "boolean",
                    "description": f"True when there are more than {COUNT_CAP} rows.",
                },
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "The page after (or before) another: take it from `next` or "
                "`previous`.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Rows per page, at most {self.max_page_size}.",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]
