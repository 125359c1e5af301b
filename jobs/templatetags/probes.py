"""Numbers of the probe page in the units people read: percent, percentage points, megabytes."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def pct(value, digits: int = 1) -> str:
    """0.625 -> '62.5%'; a dash when there is no value."""
    if value is None:
        return "—"
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def pts(value) -> str:
    """An accuracy difference in signed percentage points: 0.031 -> '+3.1'.

    Negative values get a true minus sign (U+2212), which lines up with '+' in a table.
    """
    if value is None:
        return "—"
    points = float(value) * 100
    if abs(points) < 0.05:
        return "0.0"
    return f"+{points:.1f}" if points > 0 else f"\u2212{-points:.1f}"


@register.filter
def megabytes(value) -> str:
    """Bytes as MB (10^6, as model files are usually quoted), or GB from 10^9 on."""
    if value is None:
        return "—"
    n = float(value)
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB"


@register.filter
def milliseconds(value) -> str:
    """A latency with three significant digits: '0.412 ms', '12.3 ms', '1,250 ms'."""
    if value is None:
        return "—"
    n = float(value)
    return f"{n:,.0f} ms" if n >= 1000 else f"{n:.3g} ms"
