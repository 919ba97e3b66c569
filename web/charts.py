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
class EffectBar:
    x: float
    y: float
    width: float
    height: float
    css: str  # "before", "plan" or "greedy"
    pnl: float
    label: str


@dataclass
class EffectChart:
    """A liquidation plan's effect on one class group: at each valuation point, the P&L before
    the trades, after the plan and after the greedy alternative, as grouped bars."""

    class_group: str
    bars: list[EffectBar]
    ticks: list[tuple[float, str]]  # (x, move in words) under each group of bars
    zero_y: float
    width: int = WIDTH
    height: int = HEIGHT


EFFECT_SERIES = (("before", "before"), ("plan", "after the plan"),
                 ("greedy", "after the greedy alternative"))


def effect_chart(class_group: str, points: Sequence) -> EffectChart:
    """`points`: objects with ``point``, ``before``, ``plan`` and ``greedy`` (P&L in dollars)."""
    values = [float(getattr(p, name)) for p in points for name, _ in EFFECT_SERIES]
    top, bottom = max([0.0, *values]), min([0.0, *values])
    span = (top - bottom) or 1.0
    inner_h, inner_w = HEIGHT - 2 * PAD, WIDTH - 2 * PAD
    step = inner_w / max(len(points), 1)
    bar_w = step * 0.8 / len(EFFECT_SERIES)

    def y_of(v: float) -> float:
        return PAD + (top - v) / span * inner_h

    zero_y = y_of(0.0)
    bars, ticks = [], []
    for k, p in enumerate(points):
        words = move_in_words(class_group, float(p.point))
        ticks.append((round(PAD + k * step + step / 2, 1), f"{float(p.point) * 100:+.0f}%"))
        for s, (name, said) in enumerate(EFFECT_SERIES):
            value = float(getattr(p, name))
            bars.append(EffectBar(x=round(PAD + k * step + step * 0.1 + s * bar_w, 1),
                                  y=round(min(y_of(value), zero_y), 1), width=round(bar_w, 1),
                                  height=round(max(abs(y_of(value) - zero_y), 1.0), 1),
                                  css=name, pnl=value, label=f"{words}, {said}"))
    return EffectChart(class_group=class_group, bars=bars, ticks=ticks, zero_y=round(zero_y, 1))


@dataclass
class Sparkline:
    """A small line of one figure over recent snapshots (the call list's excess trend)."""

    path: str
    zero_y: float | None  # where excess crosses zero, when the range spans it
    last_x: float
    last_y: float
    first: float
    last: float
    width: int = 120
    height: int = 28


def sparkline(values: Sequence, width: int = 120, height: int = 28) -> Sparkline | None:
    """`values` oldest first; None for fewer than two (no trend to draw)."""
    numbers = [float(v) for v in values]
    if len(numbers) < 2:
        return None
    top, bottom = max(numbers), min(numbers)
    span = (top - bottom) or 1.0
    pad = 3.0
    step = (width - 2 * pad) / (len(numbers) - 1)

    def y_of(v: float) -> float:
        return pad + (top - v) / span * (height - 2 * pad)

    coords = [(pad + k * step, y_of(v)) for k, v in enumerate(numbers)]
    return Sparkline(path=" ".join(f"{x:.1f},{y:.1f}" for x, y in coords),
                     zero_y=round(y_of(0.0), 1) if bottom < 0 < top else None,
                     last_x=round(coords[-1][0], 1), last_y=round(coords[-1][1], 1),
                     first=numbers[0], last=numbers[-1], width=width, height=height)


def move_percent(move: float, digits: int = 1) -> str:
    """-0.234 -> "−23.4 %" (a real minus sign), 0.05 -> "+5.0 %"."""
    text = f"{move * 100:+.{digits}f} %"
    return text.replace("-", "\u2212")


@dataclass
class Marker:
    x: float
    y: float
    move: float
    label: str


@dataclass
class ExcessChart:
    """The excess (equity - requirement) of the book revalued at each whole-market move, as a
    line against the move, with the zero line (below it: a call) and the crossings marked."""

    path: str
    points: list[tuple[float, float]]  # (move, excess), lowest move first: the table
    zero_y: float
    x_ticks: list[tuple[float, str]]
    markers: list[Marker]
    top: float
    bottom: float
    selected: Marker | None = None
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def table(self) -> list[tuple[str, float]]:
        """The points as the table alternative reads them: ("−2.5 %", excess)."""
        return [(move_percent(m), e) for m, e in self.points]


def excess_chart(points: Sequence[tuple[float, float]], crossings: Sequence[float],
                 selected: tuple[float, float] | None = None) -> ExcessChart:
    """``points``: (move, excess) pairs in any order; ``crossings``: the moves where the excess
    reaches zero (marked); ``selected``: the preset move picked, with its excess."""
    rows = sorted({round(float(m), 6): float(e) for m, e in points}.items())
    if selected is not None:
        rows = sorted({**dict(rows), round(float(selected[0]), 6): float(selected[1])}.items())
    if not rows:
        return ExcessChart("", [], 0.0, [], [], 0.0, 0.0)
    values = [e for _, e in rows]
    top, bottom = max([0.0, *values]), min([0.0, *values])
    span = (top - bottom) or 1.0
    low, high = rows[0][0], rows[-1][0]
    width_moves = (high - low) or 1.0
    inner_h, inner_w = HEIGHT - 2 * PAD, WIDTH - 2 * PAD

    def x_of(move: float) -> float:
        return round(PAD + (move - low) / width_moves * inner_w, 1)

    def y_of(value: float) -> float:
        return round(PAD + (top - value) / span * inner_h, 1)

    path = " ".join(f"{x_of(m)},{y_of(e)}" for m, e in rows)
    ticks = [(x_of(m), move_percent(m, 0)) for m in (low, low / 2, 0.0, high / 2, high)
             if low <= m <= high]
    markers = [Marker(x_of(m), y_of(0.0), m, move_percent(m)) for m in crossings
               if low <= m <= high]
    chosen = Marker(x_of(selected[0]), y_of(selected[1]), selected[0],
                    move_percent(selected[0], 0)) if selected is not None else None
    return ExcessChart(path, rows, y_of(0.0), ticks, markers, top, bottom, chosen)


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
