"""Keyset (cursor) pages for long lists, shared by the HTML pages and the API.

A page is found by the sort key of the row before it, never by an offset, so
the hundredth page costs what the first does and rows added meanwhile do not
shift what the reader sees. Totals are counted up to ``COUNT_CAP`` only: past
that the page says "1,000+" instead of scanning everything to be exact.

The order must end in a unique key (the repo id, or the id) so that rows with
equal sort values still have one place each.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from portal.errors import PortalError

COUNT_CAP = 1000


class BadCursor(PortalError):
    """A page link that was not made by this paginator (or no longer fits its list)."""


@dataclass(frozen=True)
class Candidates:
    """The sort keys of every row a list may show, in the list's order, found once and cached.

    A superset: ``keys`` may name rows the viewer may not see or the filters
    leave out, since it is kept for everyone alike; a page takes its rows from
    ``rows`` (the list itself, unordered) by primary key, so nothing leaks and
    a row gone since the keys were found is skipped. ``complete`` says whether
    the keys run to the end of the list; past their end a page reads the list.
    """

    rows: QuerySet
    order: tuple[str, ...]  # the list's order, as keyset_page takes it
    pks: list
    keys: list[tuple]  # the values of the order's fields, one tuple per pk
    complete: bool


# A walk through candidates that finds too few visible rows hands over to the
# query: a filter that keeps one row in a thousand is better served by its index.
CANDIDATE_ROUNDS = 4
CANDIDATE_CHUNK_MAX = 2000


@dataclass
class KeysetPage:
    items: list
    count: int
    count_capped: bool
    next_cursor: str | None = None
    previous_cursor: str | None = None
    order: tuple[str, ...] = field(default=())

    @property
    def count_label(self) -> str:
        return f"{COUNT_CAP:,}+" if self.count_capped else f"{self.count:,}"

    @property
    def has_other_pages(self) -> bool:
        return bool(self.next_cursor or self.previous_cursor)


def _encode_value(value):
    if isinstance(value, dt.datetime):
        return {"t": value.isoformat()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot page by a {type(value).__name__}")


def _decode_value(raw):
    if isinstance(raw, dict):
        try:
            return dt.datetime.fromisoformat(raw["t"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadCursor("This page link is not valid.") from exc
    if raw is None or isinstance(raw, bool | int | float | str):
        return raw
    raise BadCursor("This page link is not valid.")


def encode_cursor(values: list, *, backwards: bool) -> str:
    payload = json.dumps({"k": [_encode_value(v) for v in values], "b": backwards})
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, width: int) -> tuple[list, bool]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        values, backwards = raw["k"], raw["b"]
    except (binascii.Error, ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise BadCursor("This page link is not valid.") from exc
    if not isinstance(values, list) or len(values) != width or not isinstance(backwards, bool):
        raise BadCursor("This page link does not fit this list; start again from the first page.")
    return [_decode_value(v) for v in values], backwards


def _after(order: tuple[str, ...], values: list, *, backwards: bool) -> Q:
    """Rows after ``values`` in ``order`` (before them when ``backwards``), as one condition."""
    condition = Q()
    for i, key in enumerate(order):
        name = key.lstrip("-")
        descending = key.startswith("-")
        lookup = "lt" if descending != backwards else "gt"
        ties = Q(**{k.lstrip("-"): v for k, v in zip(order[:i], values[:i], strict=True)})
        condition |= ties & Q(**{f"{name}__{lookup}": values[i]})
    return condition


def _rows(qs: QuerySet, order, values, backwards: bool, size: int) -> list:
    """Up to ``size + 1`` rows after (or before) the cursor's ``values``, in ``order``."""
    try:
        if values is not None:
            qs = qs.filter(_after(order, values, backwards=backwards))
        qs = qs.order_by(*(_reversed(order) if backwards else order))
        return list(qs[: size + 1])
    except (TypeError, ValueError, ValidationError) as exc:  # a value of the wrong type
        raise BadCursor("This page link is not valid.") from exc


def _reversed(order: tuple[str, ...]) -> list[str]:
    return [k[1:] if k.startswith("-") else f"-{k}" for k in order]


def _from_candidates(candidates: Candidates, values, backwards: bool, size: int) -> list | None:
    """Up to ``size + 1`` rows after (before) ``values``, walking the candidates in chunks.

    ``None`` when the candidates cannot answer: the cursor names a row they do
    not hold (they were found again since), they end before the page does, or
    the rows they name are mostly hidden from this viewer.
    """
    keys, pks = candidates.keys, candidates.pks
    if values is None:
        start = 0
    else:
        try:
            at = keys.index(tuple(values))
        except ValueError:
            return None
        start = at - 1 if backwards else at + 1
    step = -1 if backwards else 1
    found: list = []
    chunk = size + 1
    position = start
    for _ in range(CANDIDATE_ROUNDS):
        if backwards:
            taken = list(range(position, max(position - chunk, -1), -1))
        else:
            taken = list(range(position, min(position + chunk, len(pks))))
        if not taken:
            break
        rows = candidates.rows.order_by().in_bulk([pks[i] for i in taken])
        for i in taken:
            row = rows.get(pks[i])
            if row is not None:
                found.append((i, row))
        if len(found) > size:
            break
        position = taken[-1] + step
        # Read enough for the rest of the page at the share of rows this viewer has
        # seen so far (filters may keep one in five), with room to spare.
        share = max(len(found), 1) / (abs(position - start) or 1)
        chunk = min(int((size + 1 - len(found)) / share * 1.5) + 1, CANDIDATE_CHUNK_MAX)
    else:
        if len(found) <= size:
            return None
    if len(found) <= size and not backwards and not candidates.complete:
        return None  # the list goes on past the keys held
    return [_with_keys(row, candidates, i) for i, row in found[: size + 1]]


def _with_keys(row, candidates: Candidates, index: int):
    """The row with the sort values the candidates hold (what its cursor will name)."""
    for name, value in zip(candidates.order, candidates.keys[index], strict=True):
        setattr(row, name.lstrip("-"), value)
    return row


def keyset_page(
    qs: QuerySet,
    order: tuple[str, ...],
    cursor: str | None,
    size: int,
    *,
    count: int | None = None,
    prefix: tuple[QuerySet, object] | None = None,
    candidates: Candidates | None = None,
) -> KeysetPage:
    """One page of ``qs`` in ``order`` (field or annotation names, ``-`` for descending).

    ``cursor`` is a value from an earlier page's ``next_cursor`` or
    ``previous_cursor``; ``None`` is the first page. A cursor from another
    list, or tampered with, raises ``BadCursor``: it filters nothing else.
    ``count`` is the caller's capped count when it has one already.

    ``prefix`` is ``(rows, bound)``: the rows of ``qs`` whose first sort
    key is at most ``bound``, which the caller can find cheaply (through an
    index of their own). A page that lies within them is read from them
    alone, without sorting the whole list.

    ``candidates`` (see ``Candidates``), when given, are the list's sort keys
    in order: a page is then read by primary key from the rows they name.
    """
    if count is None:
        count = qs.order_by().values("pk")[: COUNT_CAP + 1].count()
    backwards, values = False, None
    if cursor:
        values, backwards = decode_cursor(cursor, len(order))
    items = None
    if candidates is not None and candidates.order == order:
        items = _from_candidates(candidates, values, backwards, size)
    if items is None and prefix is not None and not order[0].startswith("-"):
        rows, bound = prefix
        within = values is None or (isinstance(values[0], int | float) and values[0] <= bound)
        if within:
            # Backwards from inside the prefix, every earlier row is in it too.
            items = _rows(rows, order, values, backwards, size)
            if not backwards and len(items) <= size:
                items = None  # the page runs past the prefix
    if items is None:
        items = _rows(qs, order, values, backwards, size)
    more = len(items) > size
    items = items[:size]
    if backwards:
        items.reverse()
    page = KeysetPage(
        items=items, count=min(count, COUNT_CAP), count_capped=count > COUNT_CAP, order=order
    )
    if items:
        first = [getattr(items[0], k.lstrip("-")) for k in order]
        last = [getattr(items[-1], k.lstrip("-")) for k in order]
        has_before = more if backwards else bool(cursor)
        has_after = True if backwards else more
        if has_after:
            page.next_cursor = encode_cursor(last, backwards=False)
        if has_before:
            page.previous_cursor = encode_cursor(first, backwards=True)
    return page
