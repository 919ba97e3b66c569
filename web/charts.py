"""Server-rendered charts: the numbers a template needs to draw an inline SVG (no script, no
inline style: the template uses classes from portal.css and SVG presentation attributes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT, PAD = 640, 240, 40


def move_in_words(symbol: str, point: float) -> str:
    """-0.15 -> "AAPL down 15 %" (the scenario a client reads)."""
    pct = abs(point) * 100
    shown = f"{pct:.0f}" if abs(pct - round(pct)) < 0.05 else f"{pct:.1f}"
    if abs(point) < 1e-9:
        return f"{symbol} unchanged"
    return f"{symbol} {'down' if point < 0 else 'up'} {shown} %"


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    point: float
    pnl: float
    loss: bool
    worst: bool
    label: str


@dataclass
class RiskArrayChart:
    """P&L at each valuation point of one class group, as bars around a zero line."""

    class_group: str
    bars: list[Bar]
    zero_y: float
    worst: Bar | None
    worst_words: str
    width: int = WIDTH
    height: int = HEIGHT


def risk_array_chart(class_group: str, points: Sequence[float], pnl: Sequence[float]
                     ) -> RiskArrayChart:
    values = [float(v) for v in pnl]
    top, bottom = max([0.0, *values]), min([0.0, *values])
    span = (top - bottom) or 1.0
    inner_h, inner_w = HEIGHT - 2 * PAD, WIDTH - 2 * PAD
    step = inner_w / max(len(values), 1)

    def y_of(v: float) -> float:
        return PAD + (top - v) / span * inner_h

    zero_y = y_of(0.0)
    worst_index = min(range(len(values)), key=values.__getitem__) if values else None
    if worst_index is not None and values[worst_index] >= 0:
        worst_index = None  # no scenario loses: nothing to mark
    bars = []
    for k, (point, value) in enumerate(zip(points, values, strict=False)):
        y = min(y_of(value), zero_y)
        bars.append(Bar(x=round(PAD + k * step + step * 0.15, 1), y=round(y, 1),
                        width=round(step * 0.7, 1),
                        height=round(max(abs(y_of(value) - zero_y), 1.0), 1),
                        point=float(point), pnl=value, loss=value < 0, worst=k == worst_index,
                        label=move_in_words(class_group, float(point))))
    worst = bars[worst_index] if worst_index is not None else None
    return RiskArrayChart(class_group=class_group, bars=bars, zero_y=round(zero_y, 1),
                          worst=worst, worst_words=worst.label if worst else "")


@dataclass
class Series:
    name: str
    css: str
    path: str


@dataclass
class HistoryChart:
    series: list[Series]
    rows: list[tuple]
    top: float = 0.0
    bottom: float = 0.0
    width: int = WIDTH
    height: int = HEIGHT


def history_chart(rows: Sequence[tuple]) -> HistoryChart:
    """Equity against requirement over time: rows of (time, equity, requirement), oldest first."""
    if not rows:
        return HistoryChart(series=[], rows=[])
    values = [float(v) for _, e, r in rows for v in (e, r)]
    top, bottom = max([0.0, *values]), min([0.0, *values])
    span = (top - bottom) or 1.0
    inner_h, inner_w = HEIGHT - 2 * PAD, WIDTH - 2 * PAD
    step = inner_w / max(len(rows) - 1, 1)

    def path(column: int) -> str:
        return " ".join(f"{PAD + k * step:.1f},{PAD + (top - float(row[column])) / span * inner_h:.1f}"
                        for k, row in enumerate(rows))

    return HistoryChart(series=[Series("Equity", "equity", path(1)),
                                Series("Requirement", "requirement", path(2))], rows=list(rows),
                        top=top, bottom=bottom)


@dataclass
class HorizontalBar:
    label: str
    value: float
    x: float
    y: float
    width: float
    negative: bool


@dataclass
class BarChart:
    """Values by label as horizontal bars from a zero line (the firm risk page's concentration
    and the simulator's deficits); the template prints the same rows as a table beside it."""

    bars: list[HorizontalBar]
    zero_x: float
    bar_height: float
    width: int
    height: int
    label_width: int


def bar_chart(rows: Sequence[tuple[str, float]], *, width: int = WIDTH,
              label_width: int = 150) -> BarChart:
    values = [float(v) for _, v in rows]
    top, bottom = max([0.0, *values]), min([0.0, *values])
    span = (top - bottom) or 1.0
    inner_w = width - label_width - PAD
    bar_h, gap = 22.0, 8.0

    def x_of(v: float) -> float:
        return label_width + (v - bottom) / span * inner_w

    zero_x = x_of(0.0)
    bars = [HorizontalBar(label=label, value=value, x=round(min(x_of(value), zero_x), 1),
                          y=round(PAD / 2 + k * (bar_h + gap), 1),
                          width=round(max(abs(x_of(value) - zero_x), 1.0), 1),
                          negative=value < 0)
            for k, (label, value) in enumerate(zip((r[0] for r in rows), values, strict=True))]
    return BarChart(bars=bars, zero_x=round(zero_x, 1), bar_height=bar_h, width=width,
                    height=int(PAD + len(rows) * (bar_h + gap)), label_width=label_width)
