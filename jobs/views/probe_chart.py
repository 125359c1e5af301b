"""The probe page's trade-off charts: accuracy against size and against CPU latency, as SVG.

The geometry is computed here and drawn by ``templates/jobs/_probe_tradeoff.html``
as inline SVG: a dozen points need no chart library and no script, the
drawing is there before any JavaScript runs (and under the page's strict
Content-Security-Policy), and the template escapes every name it writes.
Plain Python over the result rows; nothing here queries the database.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

WIDTH = 560
HEIGHT = 300
LEFT, RIGHT, TOP, BOTTOM = 58, 18, 22, 46
INSET = 12  # px between the accuracy range and the top and bottom of the plot
LABEL_HEIGHT = 13  # px between two label baselines that would otherwise overlap
CHAR_WIDTH = 6.4  # px per character of the 11 px label font, near enough to avoid overlap


@dataclass
class Point:
    """One candidate on one chart, with where its label goes."""

    name: str
    x: float
    y: float
    label_x: float
    label_y: float
    anchor: str
    front: bool
    pick: bool
    over: bool
    hover: str


@dataclass
class Tradeoff:
    """One chart: its axes, its points, the Pareto front and the budget line."""

    key: str
    title: str
    desc: str
    x_label: str
    points: list[Point]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    front_path: str
    front_names: list[str]
    limit_x: float | None = None
    limit_label: str = ""
    left_out: list[str] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    plot_top: int = TOP
    plot_bottom: int = HEIGHT - BOTTOM

    # Sizes the template needs and cannot compute (no arithmetic in Django templates).
    @property
    def plot_width(self) -> int:
        return self.plot_right - self.plot_left

    @property
    def plot_height(self) -> int:
        return self.plot_bottom - self.plot_top

    @property
    def x_mid(self) -> float:
        return (self.plot_left + self.plot_right) / 2

    @property
    def y_mid(self) -> float:
        return (self.plot_top + self.plot_bottom) / 2

    @property
    def over_width(self) -> float:
        """Width of the shaded over-budget band, right of the limit line."""
        return max(0.0, self.plot_right - (self.limit_x or self.plot_right))


def tradeoff_charts(results: Sequence, run) -> list[Tradeoff]:
    """Accuracy against parameters (log scale) and against CPU latency, for the scored results.

    A chart is left out when no candidate has both of its numbers (a probe
    from before these were measured, or one still running).
    """
    scored = [r for r in results if r.rank is not None and r.linear_probe_accuracy is not None]
    pick = getattr(run, "budget_choice_id", None)
    charts = [
        _chart(
            scored,
            key="parameters",
            value=lambda r: r.parameters,
            limit=run.max_parameters,
            log=True,
            x_label="Parameters (log scale)",
            title="Linear-probe accuracy against model size",
            fmt=_count,
            pick=pick,
        ),
        _chart(
            scored,
            key="latency",
            value=lambda r: r.latency_ms,
            limit=run.max_latency_ms,
            log=False,
            x_label="CPU latency per example (ms)",
            title="Linear-probe accuracy against CPU latency",
            fmt=_ms,
            pick=pick,
        ),
    ]
    return [chart for chart in charts if chart is not None]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: smaller-or-equal x and higher-or-equal y.

    A point is dominated when another is at least as good on both and better
    on one; equal points are all on the front. Lower x (size, latency) and
    higher y (accuracy) are better.
    """
    front = []
    for i, (xi, yi) in enumerate(points):
        dominated = any(
            xj <= xi and yj >= yi and (xj < xi or yj > yi)
            for j, (xj, yj) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def _chart(
    results: Sequence,
    *,
    key: str,
    value: Callable,
    limit: float | None,
    log: bool,
    x_label: str,
    title: str,
    fmt: Callable[[float], str],
    pick: int | None,
) -> Tradeoff | None:
    plotted = [r for r in results if value(r) is not None and (not log or value(r) > 0)]
    if not plotted:
        return None
    left_out = [_name(r) for r in results if r not in plotted]
    xs = [float(value(r)) for r in plotted]
    ys = [float(r.linear_probe_accuracy) for r in plotted]
    x_scale, x_ticks = (_log_axis if log else _linear_axis)(xs + ([limit] if limit else []), fmt)
    y_scale, y_ticks = _accuracy_axis(ys)
    front = set(pareto_front(list(zip(xs, ys, strict=True))))
    points = [
        Point(
            name=_name(r),
            x=x_scale(x),
            y=y_scale(y),
            label_x=0.0,
            label_y=0.0,
            anchor="start",
            front=i in front,
            pick=pick is not None and r.pk == pick,
            over=bool(r.budget_misses),
            hover=f"{_name(r)}: {fmt(x)}, linear-probe accuracy {y:.1%}"
            + (" — on the Pareto front" if i in front else ""),
        )
        for i, (r, x, y) in enumerate(zip(plotted, xs, ys, strict=True))
    ]
    _place_labels(points)
    front_points = sorted((p for p in points if p.front), key=lambda p: (p.x, -p.y))
    front_names = [p.name for p in sorted(front_points, key=lambda p: p.x)]
    chart = Tradeoff(
        key=key,
        title=title,
        desc="",
        x_label=x_label,
        points=points,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        front_path=_staircase(front_points),
        front_names=front_names,
        left_out=left_out,
    )
    if limit:
        chart.limit_x = x_scale(float(limit))
        chart.limit_label = f"limit {fmt(float(limit))}"
    chart.desc = _describe(chart, plotted, xs, ys, fmt, limit)
    return chart


def _describe(chart: Tradeoff, plotted, xs, ys, fmt, limit) -> str:
    """What a screen reader hears instead of the picture: every point, the front, the limit."""
    parts = [
        f"{_name(r)}: {fmt(x)}, accuracy {y:.1%}" for r, x, y in zip(plotted, xs, ys, strict=True)
    ]
    text = f"{chart.x_label} on the horizontal axis, linear-probe accuracy up. " + "; ".join(parts)
    text += ". Pareto front (no other candidate both smaller or faster and more accurate): "
    text += ", ".join(chart.front_names) + "."
    if limit:
        text += f" Budget {chart.limit_label}."
    if chart.left_out:
        text += " Not measured: " + ", ".join(chart.left_out) + "."
    return text


def _name(result) -> str:
    return f"{result.version.model.repo_id} {result.version.label}"


# --------------------------------------------------------------------------- axes


def _log_axis(values: list[float], fmt) -> tuple[Callable[[float], float], list]:
    """A log10 scale over the values with some room either side, ticks at 1, 2 and 5 x 10^k."""
    low = math.log10(min(values)) - 0.25
    high = math.log10(max(values)) + 0.25
    if high - low < 1.0:  # one model size, or several alike: show a decade around them
        middle = (low + high) / 2
        low, high = middle - 0.5, middle + 0.5
    left, right = LEFT, WIDTH - RIGHT

    def scale(value: float) -> float:
        return left + (math.log10(value) - low) / (high - low) * (right - left)

    steps = (1,) if high - low > 3 else (1, 2, 5)
    ticks = []
    for exponent in range(math.floor(low), math.ceil(high) + 1):
        for step in steps:
            tick = step * 10.0**exponent
            if low <= math.log10(tick) <= high:
                ticks.append((round(scale(tick), 1), fmt(tick)))
    return scale, ticks


def _linear_axis(values: list[float], fmt) -> tuple[Callable[[float], float], list]:
    """A linear scale from 0 to a little past the largest value, about five round ticks."""
    top = max(values) * 1.15 or 1.0
    step = _nice_step(top / 5)
    top = math.ceil(top / step) * step
    left, right = LEFT, WIDTH - RIGHT

    def scale(value: float) -> float:
        return left + value / top * (right - left)

    count = round(top / step)
    ticks = [(round(scale(i * step), 1), fmt(i * step)) for i in range(count + 1)]
    return scale, ticks


def _accuracy_axis(values: list[float]) -> tuple[Callable[[float], float], list]:
    """Accuracy from a round value below the lowest point to one above the highest, in %."""
    step = 0.05 if max(values) - min(values) <= 0.3 else 0.1
    low = max(0.0, math.floor((min(values) - 0.02) / step) * step)
    high = min(1.0, math.ceil((max(values) + 0.02) / step) * step)
    while high - low < 2 * step:  # keep at least three gridlines
        low, high = max(0.0, low - step), min(1.0, high + step)
    # Points at 100% or at the floor stay clear of the frame, where labels would be cut.
    top, bottom = TOP + INSET, HEIGHT - BOTTOM - INSET

    def scale(value: float) -> float:
        return bottom - (value - low) / (high - low) * (bottom - top)

    count = round((high - low) / step)
    ticks = [
        (round(scale(low + i * step), 1), f"{(low + i * step) * 100:.0f}%")
        for i in range(count + 1)
    ]
    return scale, ticks


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw``."""
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power


def _count(value: float) -> str:
    """Parameter counts as the portal writes them, without a needless '.0': 1M, 2.5M, 110M."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def _ms(value: float) -> str:
    return f"{value:.3g} ms"


# --------------------------------------------------------------------------- drawing


def _place_labels(points: list[Point]) -> None:
    """Each label beside its point, flipped left near the right edge, nudged apart vertically."""
    placed: list[tuple[float, float, float]] = []  # (left, right, baseline) of labels so far
    for point in sorted(points, key=lambda p: (p.y, p.x)):
        width = len(point.name) * CHAR_WIDTH
        if point.x + 9 + width > WIDTH - RIGHT:
            point.anchor, left, right = "end", point.x - 9 - width, point.x - 9
            point.label_x = point.x - 9
        else:
            point.anchor, left, right = "start", point.x + 9, point.x + 9 + width
            point.label_x = point.x + 9
        baseline = point.y + 4
        while any(
            left < other_right and other_left < right and abs(baseline - other) < LABEL_HEIGHT
            for other_left, other_right, other in placed
        ):
            baseline += LABEL_HEIGHT
        point.label_y = min(baseline, HEIGHT - BOTTOM - 2)
        placed.append((left, right, point.label_y))


def _staircase(front: list[Point]) -> str:
    """SVG path through the front, left to right: along to the next point, then up to it."""
    if len(front) < 2:
        return ""
    path = [f"M{front[0].x:.1f},{front[0].y:.1f}"]
    for previous, point in pairwise(front):
        path.append(f"H{point.x:.1f}")
        if point.y != previous.y:
            path.append(f"V{point.y:.1f}")
    return " ".join(path)
