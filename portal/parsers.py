"""The API's JSON parser: a clear 400 for JSON the database could not hold.

Python's json module accepts what PostgreSQL refuses to store (a NUL
character, half of a surrogate pair, both only expressible as ``\\u`` escapes)
and recurses without bound into nested arrays; each of those would surface
as a database error or a RecursionError, i.e. a 500, after work was done.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 64


def _bad_text(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def unstorable(data: Any) -> str | None:
    """Why ``data`` cannot be stored (naming where), or None; walks without recursion."""
    stack: list[tuple[Any, str, int]] = [(data, "the body", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"{where} is nested more than {MAX_DEPTH} levels deep"
        if isinstance(value, str) and _bad_text(value):
            return f"{where} holds a NUL character or half of a surrogate pair"
        if isinstance(value, dict):
            for key, item in value.items():
                if _bad_text(key):
                    return f"a key in {where} holds a NUL character or half of a surrogate pair"
                stack.append((item, f"'{key[:40]}'", depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
    return None


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels") from exc
        problem = unstorable(data)
        if problem:
            raise ParseError(f"The request cannot be stored: {problem}.")
        return data
