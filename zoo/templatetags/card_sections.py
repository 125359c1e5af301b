"""What the model page asks of a card: the sections it still needs before publishing."""

from __future__ import annotations

from django import template

from zoo.selectors.cards import card_missing_sections

register = template.Library()


@register.simple_tag
def sections_missing_to_publish(version) -> list[str]:
    """The Publish button's list; ``catalog_model_set_status`` asks the same rule and decides."""
    return card_missing_sections(version) if version is not None else []
