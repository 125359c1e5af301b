"""Small helpers for text shown to people."""

from __future__ import annotations


def and_list(items) -> str:
    """["legal", "security", "compliance"] → "legal, security and compliance"."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"
