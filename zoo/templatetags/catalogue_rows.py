"""The catalogue page's result rows, written in Python.

Twenty rows through the template engine (a variable lookup, a filter chain and
an ``if`` per field) cost more than the search that found them, and so does
``format_html`` per value (its lazy-string wrappers). The rows are built with
f-strings and ``html.escape``, which is what Django's ``escape`` calls: every
value from the database goes through ``_e``, nothing else is interpolated.
"""

from __future__ import annotations

from html import escape

from django import template
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

from zoo.templatetags.humanize_extra import params

register = template.Library()

MAX_TAGS = 6
SUMMARY_WORDS = 40
_OVERDUE = (
    '<span class="badge" title="A version\'s owner has not re-attested it in time">'
    "re-review overdue</span>"
)


def _e(value) -> str:
    return escape(str(value), quote=True)


def _details(model) -> str:
    """Modality, task, architecture, size and the first tags: the row's muted line."""
    line = _e(model.get_modality_display())
    if model.task:
        line += f" · {_e(model.task)}"
    if model.architecture:
        line += f" · {_e(model.architecture)}"
    if model.parameter_count:
        line += f" · {_e(params(model.parameter_count))} parameters"
    for tag in (model.domain_tags or [])[:MAX_TAGS]:
        line += f' <span class="tag">{_e(tag)}</span>'
    return line


def _row(model) -> str:
    category = _e(model.license_category or "unknown")
    summary = Truncator(model.summary or model.title).words(SUMMARY_WORDS, truncate=" …")
    overdue = _OVERDUE if getattr(model, "rereview_overdue", False) else ""
    return (
        '<article class="card model-row">'
        f'<div class="model-row-head"><h2><a href="{_e(model.get_absolute_url())}">'
        f"{_e(model.repo_id)}</a></h2><div>"
        f'<span class="badge license license-{category}" title="{category}">'
        f"{_e(model.license_spdx or 'no license')}</span> "
        f'<span class="status status-model-{_e(model.status)}">'
        f"{_e(model.get_status_display())}</span>{overdue}</div></div>"
        f"<p>{_e(summary)}</p>"
        f'<p class="muted small">{_details(model)}</p>'
        "</article>\n"
    )


@register.simple_tag
def catalogue_rows(models) -> SafeString:
    """One ``article.model-row`` per model (annotated by ``with_latest_license``)."""
    # Safe: every value in the rows went through ``_e`` (see the module's docstring).
    return mark_safe("".join(_row(m) for m in models))  # noqa: S308
