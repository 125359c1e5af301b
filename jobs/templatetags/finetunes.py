"""Template helpers for offering fine-tunes on the model, dataset and probe pages."""

from django import template

from governance import access

register = template.Library()


@register.simple_tag
def can_finetune(user, version) -> bool:
    """Whether to show "Fine-tune" for a version (the launch service asks the same rule)."""
    return bool(version is not None and access.can_finetune(user, version))


@register.simple_tag
def may_launch_finetunes(user) -> bool:
    return access.may_launch_finetunes(user)
