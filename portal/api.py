"""REST framework pieces shared by every app's API."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.conf import settings
from django.db import models
from django.utils import timezone
from rest_framework import fields as drf_fields
from rest_framework import relations, serializers
from rest_framework.pagination import BasePagination, PageNumberPagination
from rest_framework.response import Response
from rest_framework.settings import api_settings
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


# Fields whose value a plain row reads straight off the instance and converts with the
# field's own ``to_representation``: none of them looks at the request or the context.
_PLAIN_FIELDS = (
    drf_fields.BooleanField,
    drf_fields.CharField,
    drf_fields.ChoiceField,
    drf_fields.FloatField,
    drf_fields.IntegerField,
    drf_fields.JSONField,
    drf_fields.ListField,
    drf_fields.ReadOnlyField,
)


def _iso_datetime(value: dt.datetime):
    """DRF's ISO 8601 form of a datetime in the current time zone, without its per-call checks."""
    if isinstance(value, str):
        return value
    text = value.astimezone(timezone.get_current_timezone()).isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def _plain_step(model, field) -> tuple[str, Callable] | None:
    """(attribute, conversion) for one field of a plain row, or None if it needs DRF's path."""
    source = field.source
    if source == "*":
        return None
    if "." in source:
        # A plain field of a related row (``model.repo_id``): the row must be joined in.
        return (source, field.to_representation) if isinstance(field, _PLAIN_FIELDS) else None
    if isinstance(field, serializers.BaseSerializer):
        return (source, field.to_representation) if isinstance(field, PlainRows) else None
    if isinstance(field, relations.PrimaryKeyRelatedField):
        column = model._meta.get_field(source) if model is not None else None
        if field.pk_field is None and isinstance(column, models.ForeignKey):
            return column.attname, lambda pk: pk  # the id column: no related row read
        return None
    if type(field) is drf_fields.DateTimeField:
        if not settings.USE_TZ:
            return None
        if getattr(field, "format", api_settings.DATETIME_FORMAT) != drf_fields.ISO_8601:
            return None
        if getattr(field, "timezone", None) is not None:
            return None
        return source, _iso_datetime
    if isinstance(field, _PLAIN_FIELDS):
        return source, field.to_representation
    return None


_MISSING = object()


def _read(instance, source: str):
    """``instance.a.b``, stopping at a None on the way as DRF does; ``_MISSING`` if absent."""
    for attribute in source.split("."):
        if instance is None:
            return None
        instance = getattr(instance, attribute, _MISSING)
        if instance is _MISSING:
            return _MISSING
    return instance


class PlainRows:
    """Serializer mixin for read-only rows: each row a dict built in one pass over a fixed plan.

    DRF's generic path walks every field's source, checks for callables and
    ``SkipField`` and converts time zones with extra checks, which for a page of
    fifty rows costs more than the query. The plan (attribute, conversion) per
    field is worked out once per serializer class (so its fields must not depend
    on the request); a field the plan cannot serve (a hyperlink, a list of rows,
    a method as source) sends the whole serializer down DRF's own path, so the
    output never differs.
    """

    _plans: dict[type, list | None] = {}

    @classmethod
    def _plain_plan(cls):
        if cls not in PlainRows._plans:
            probe = cls()
            model = getattr(getattr(cls, "Meta", None), "model", None)
            plan = []
            for name, field in probe.fields.items():
                if field.write_only:
                    continue
                step = _plain_step(model, field)
                if step is None:
                    plan = None
                    break
                plan.append((name, *step))
            PlainRows._plans[cls] = plan
        return PlainRows._plans[cls]

    def to_representation(self, instance):
        plan = self._plain_plan()
        if plan is None:
            return super().to_representation(instance)
        row = {}
        for name, attribute, convert in plan:
            value = _read(instance, attribute)
            if value is _MISSING or callable(value):
                # DRF leaves a missing attribute out and calls a method: its own path decides.
                return super().to_representation(instance)
            row[name] = None if value is None else convert(value)
        return row
