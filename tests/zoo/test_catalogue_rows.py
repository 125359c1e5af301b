"""The catalogue page's rows and filter widgets, drawn cheaply, say what the templates said."""

from __future__ import annotations

import re

import pytest
from django.template import Context, Template

from tests.factories import CatalogModelFactory, catalogue_entry
from zoo.forms import FILTER_WIDGETS, CatalogueFilterForm
from zoo.models import CatalogModel
from zoo.selectors.catalogue import with_latest_license
from zoo.templatetags.catalogue_rows import catalogue_rows

pytestmark = pytest.mark.django_db

# The rows as catalogue.html drew them through the template engine.
TEMPLATE_ROWS = """{% load humanize_extra %}{% for m in models %}
<article class="card model-row">
  <div class="model-row-head">
    <h2><a href="{{ m.get_absolute_url }}">{{ m.repo_id }}</a></h2>
    <div>
      <span class="badge license license-{{ m.license_category|default:'unknown' }}" title="{{ m.license_category|default:'unknown' }}">{{ m.license_spdx|default:"no license" }}</span>
      <span class="status status-model-{{ m.status }}">{{ m.get_status_display }}</span>
      {% if m.rereview_overdue %}<span class="badge" title="A version's owner has not re-attested it in time">re-review overdue</span>{% endif %}
    </div>
  </div>
  <p>{{ m.summary|default:m.title|truncatewords:40 }}</p>
  <p class="muted small">
    {{ m.get_modality_display }}{% if m.task %} · {{ m.task }}{% endif %}{% if m.architecture %} · {{ m.architecture }}{% endif %}{% if m.parameter_count %} · {{ m.parameter_count|params }} parameters{% endif %}
    {% for tag in m.domain_tags|slice:":6" %} <span class="tag">{{ tag }}</span>{% endfor %}
  </p>
</article>
{% endfor %}"""  # noqa: E501


def _squeeze(html: str) -> str:
    """Whitespace between tags, or opening or closing a paragraph, changes nothing shown."""
    html = re.sub(r"(<p[^>]*>)\s+|\s+(</p>)", r"\1\2", re.sub(r">\s+<", "><", html))
    return re.sub(r"\s+", " ", html).strip()


def test_rows_match_the_template_with_every_branch():
    catalogue_entry(
        "acme/bold",
        title="<b>bold</b>",
        summary="<script>alert(1)</script> " + " ".join(f"word{i}" for i in range(60)),
        domain_tags=["legal", "<i>x</i>", "a&b", "t4", "t5", "t6", "seventh"],
        parameter_count=22_713_216,
        architecture="BertModel",
        license="cc-by-nc-4.0",
    )
    catalogue_entry(
        "acme/plain", summary="", title='Plain "quoted" title', task="", status="blocked"
    )
    CatalogModelFactory(repo_id="acme/no-version", domain_tags=[])  # no license at all
    models = list(with_latest_license(CatalogModel.objects.all()).order_by("repo_id"))
    assert len(models) == 3
    for overdue in (False, True):
        for m in models:
            m.rereview_overdue = overdue
        expected = Template(TEMPLATE_ROWS).render(Context({"models": models}))
        assert _squeeze(catalogue_rows(models)) == _squeeze(expected)
    html = catalogue_rows(models)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "<i>x</i>" not in html
    assert "seventh" not in html
    assert "word38 …" in html
    assert "word39" not in html
    assert "22.7M parameters" in html
    assert "no license" in html


def test_the_catalogue_page_shows_rows_and_says_when_nothing_matches(client, bob):
    catalogue_entry("acme/quokka", summary="A quokka classifier.")
    client.force_login(bob)
    page = client.get("/catalogue/", {"q": "quokka"}).content.decode()
    assert page.count('class="card model-row"') == 1
    assert "acme/quokka" in page
    assert "No models match" not in page
    empty = client.get("/catalogue/", {"q": "zzzz"}).content.decode()
    assert "No models match “zzzz”" in empty
    assert "model-row" not in empty


@pytest.mark.parametrize(
    "data",
    [
        None,
        {},
        {"q": "bert", "modality": "vision", "sort": "recent", "approved": "on"},
        {"modality": "no-such", "commercial": "maybe", "status": "draft", "approved": "false"},
        {"license_category": "copyleft", "sort": "<b>x</b>"},
        {"status": "x" * 500},
    ],
)
def test_remembered_filter_widgets_are_what_the_form_draws(data):
    form = CatalogueFilterForm(data)
    form.is_valid()
    drawn = form.widgets_html()
    assert set(drawn) == set(FILTER_WIDGETS)
    for name in FILTER_WIDGETS:
        assert drawn[name] == str(form[name])
    if data and data.get("modality") == "vision":
        assert 'value="vision" selected' in drawn["modality"]
        assert "checked" in drawn["approved"]
    if data and data.get("modality") == "no-such":
        assert 'aria-invalid="true"' in drawn["modality"]


def test_a_long_hand_typed_value_is_drawn_but_not_remembered():
    from zoo.forms import _filter_widget

    CatalogueFilterForm({"status": "x" * 41}).widgets_html()  # the short ones remembered now
    before = _filter_widget.cache_info().currsize
    drawn = CatalogueFilterForm({"status": "y" * 41}).widgets_html()
    assert 'aria-invalid="true"' in drawn["status"]
    assert _filter_widget.cache_info().currsize == before
