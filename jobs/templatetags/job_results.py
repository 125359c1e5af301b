"""A job's result in words: lists as lists, mappings as "key: value", never Python repr."""

from __future__ import annotations

from django import template
from django.utils.html import format_html, format_html_join

register = template.Library()


@register.filter
def readable(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, list):
        return format_html(
            "<ul class='plain'>{}</ul>",
            format_html_join("", "<li>{}</li>", ((readable(v),) for v in value)),
        )
    if isinstance(value, dict):
        return format_html(
            "<ul class='plain'>{}</ul>",
            format_html_join("", "<li>{}: {}</li>", ((k, readable(v)) for k, v in value.items())),
        )
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@register.filter
def label(key: str) -> str:
    """``block_reasons`` → "Block reasons"."""
    return str(key).replace("_", " ").capitalize()
