"""The drift chart: PSI (class, confidence) and the MMD p-value per uploaded batch, as SVG.

Drawn like the probe page's trade-off charts (``jobs/views/probe_chart.py``):
the geometry is computed here and ``templates/jobs/_drift.html`` writes it as
inline SVG, so it needs no script and shows under the strict CSP. PSI is on the
left axis with its bands shaded (stable < 0.1, watch to 0.25, retrain above);
the MMD permutation p-value is on the right axis, from 0 to 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WIDTH = 560
HEIGHT = 280
LEFT, RIGHT, TOP, BOTTOM = 52, 52, 18, 44
WATCH, RETRAIN = 0.1, 0.25


@dataclass
class Series:
    """One line: its name, the class its stroke takes, its points (x, y, hover text)."""

    key: str
    name: str
    points: list[tuple[float, float, str]]

    @property
    def path(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in self.points)


@dataclass
class DriftChart:
    """The chart's axes, band rectangles and lines; positions in SVG pixels."""

    series: list[Series]
    x_ticks: list[tuple[float, str]]
    psi_ticks: list[tuple[float, str]]
    p_ticks: list[tuple[float, str]]
    bands: list[dict] = field(default_factory=list)
    desc: str = ""
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    plot_top: int = TOP
    plot_bottom: int = HEIGHT - BOTTOM

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
    def right_label_x(self) -> int:
        return self.width - 12


def drift_chart(batches) -> DriftChart | None:
    """The chart over the batches whose check finished with figures; None when there are none."""
    rows = [
        (b, b.release_check.result)
        for b in batches
        if b.release_check is not None
        and b.release_check.status in ("passed", "failed")
        and "psi_class" in (b.release_check.result or {})
    ]
    if not rows:
        return None
    top = max(0.5, *(max(r["psi_class"], r["psi_confidence"]) for _, r in rows)) * 1.1
    span = HEIGHT - BOTTOM - TOP

    def y_psi(v: float) -> float:
        return HEIGHT - BOTTOM - span * min(v, top) / top

    def y_p(v: float) -> float:
        return HEIGHT - BOTTOM - span * v

    n = len(rows)
    step = (WIDTH - LEFT - RIGHT) / max(n, 1)

    def x_of(i: int) -> float:
        return LEFT + step * (i + 0.5)

    series = [
        Series("psi-class", "PSI, predicted classes", []),
        Series("psi-confidence", "PSI, confidence", []),
        Series("mmd-p", "MMD p-value (right axis)", []),
    ]
    for i, (b, r) in enumerate(rows):
        when = f"batch #{b.pk}, {b.created_at:%Y-%m-%d %H:%M}"
        series[0].points.append((x_of(i), y_psi(r["psi_class"]), f"{when}: {r['psi_class']:.3f}"))
        series[1].points.append(
            (x_of(i), y_psi(r["psi_confidence"]), f"{when}: {r['psi_confidence']:.3f}")
        )
        p = r["mmd"]["p_value"]
        series[2].points.append((x_of(i), y_p(p), f"{when}: p = {p:.3f}"))
    bands = [
        {"name": "stable", "y": y_psi(WATCH), "height": y_psi(0) - y_psi(WATCH)},
        {"name": "watch", "y": y_psi(RETRAIN), "height": y_psi(WATCH) - y_psi(RETRAIN)},
        {"name": "retrain", "y": TOP, "height": y_psi(RETRAIN) - TOP},
    ]
    psi_ticks = [(y_psi(v), f"{v:g}") for v in (0, WATCH, RETRAIN, 0.5, 1.0, 2.0) if v <= top]
    p_ticks = [(y_p(v), f"{v:g}") for v in (0, 0.05, 0.5, 1.0)]
    every = max(1, n // 10)
    x_ticks = [(x_of(i), f"#{b.pk}") for i, (b, _) in enumerate(rows) if i % every == 0]
    last = rows[-1][1]
    desc = (
        f"{n} batch{'es' if n != 1 else ''}; the newest has PSI {last['psi_class']:.3f} on the "
        f"predicted classes ({last['band']}), {last['psi_confidence']:.3f} on the confidence, "
        f"and an MMD p-value of {last['mmd']['p_value']:.3f}."
    )
    return DriftChart(
        series=series,
        x_ticks=x_ticks,
        psi_ticks=psi_ticks,
        p_ticks=p_ticks,
        bands=bands,
        desc=desc,
    )
