from django import template

register = template.Library()


@register.filter
def params(value) -> str:
    """22713216 -> '22.7M'."""
    try:
        n = float(value)
    except (TypeError, ValueError):
        return ""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))
