"""Template helpers for offering fine-tunes on the model and probe pages."""

from django import template

register = template.Library()


@register.simple_tag
def can_finetune(user, version) -> bool:
    """Whether to show "Fine-tune" for a version (the launch service checks again)."""
    from jobs.selectors import can_finetune as allowed

    return bool(version is not None and allowed(user, version))


@register.simple_tag
def may_launch_finetunes(user) -> bool:
    from jobs.selectors import may_launch_finetunes as allowed

    return allowed(user)
