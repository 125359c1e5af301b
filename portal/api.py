"""REST framework pieces shared by every app's API."""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination

from portal.errors import NotFound

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
