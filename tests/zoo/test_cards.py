from __future__ import annotations

import pytest

from zoo.cards import CardError, parse_card, render_markdown


def test_card_yaml_maps_to_fields():
    card = parse_card(
        "---\nlicense: Apache-2.0\nbase_model: acme/base\ndatasets: [imdb, sst2]\n"
        "language: en\npipeline_tag: image-classification\nlibrary_name: timm\ntags: [x]\n---\n"
        "# Title\n\nFirst paragraph of prose\nspanning lines.\n\nMore."
    )
    assert card.license == "apache-2.0"
    assert card.base_models == ["acme/base"]
    assert card.datasets == ["imdb", "sst2"]
    assert card.languages == ["en"]
    assert card.modality == "vision"
    assert card.library_name == "timm"
    assert card.summary == "First paragraph of prose spanning lines."


def test_a_card_without_header_has_no_metadata():
    card = parse_card("# Just text")
    assert card.metadata == {}
    assert card.license is None
    assert card.body == "# Just text"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\nlicense: [unclosed\n---\nbody", "malformed"),
        ("---\n- a\n- list\n---\nbody", "must be a mapping"),
        ("---\nlicense: mit\nno end", "never ends"),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(text, message):
    with pytest.raises(CardError, match=message):
        parse_card(text)


def test_hostile_markdown_is_rendered_harmless():
    hostile = (
        "# Hi\n\n<script>alert(1)</script>\n\n"
        "[click](javascript:alert(2))\n\n"
        '<img src="x" onerror="alert(3)">\n\n'
        '<a href="https://example.com" onclick="steal()">ok link</a>\n\n'
        "<iframe src='https://evil.example'></iframe>\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    html = render_markdown(hostile)
    assert "<script" not in html
    assert "javascript:" not in html
    assert "onerror" not in html
    assert "onclick" not in html
    assert "<iframe" not in html
    assert '<a href="https://example.com" rel="noopener noreferrer nofollow">ok link</a>' in html
    assert "<table>" in html
    assert "<h1>Hi</h1>" in html


def test_summary_skips_headings_code_and_unwraps_links():
    card = parse_card(
        "# all-MiniLM-L6-v2\nThis is a [sentence-transformers](https://www.SBERT.net) model: "
        "it maps sentences.\n\n## Usage\n\n```\npip install x\n```\n"
    )
    assert card.summary == "This is a sentence-transformers model: it maps sentences."
