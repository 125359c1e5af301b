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


@register.filter
def get_item(mapping, key):
    """``row|get_item:column`` for dicts whose keys are not identifiers (column names)."""
    try:
        return mapping.get(key, "")
    except AttributeError:
        return ""


@register.filter
def score(value, digits: int = 3) -> str:
    """A score with a fixed number of decimals, or a dash when there is none."""
    if value is None:
        return "—"
    try:
        return f"{float(value):.{int(digits)}f}"
    except (TypeError, ValueError):
        return "—"


@register.filter
def intcomma(value) -> str:
    """1000000 -> '1,000,000'; anything else as it is."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return value
