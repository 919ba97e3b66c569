"""Daily closes for historical VaR: a validated CSV loader and the synthetic demo history.

CSV format (one close per row, long format)::

    # comment lines start with '#'
    date,symbol,close
    2024-01-02,SPX,4742.83
    2024-01-02,AAPL,185.64
    ...

``load_closes_csv(path)`` checks every row (ISO date, non-empty symbol, finite positive close),
that each symbol's dates strictly increase in file order, that no (date, symbol) repeats, and
that every symbol has a close on the same dates (so returns line up across symbols). Problems
raise ``HistoryError`` naming the file and row (line number, comments and header included).

The request field ``history`` wants ``{"SYM": [p0, p1, ...]}`` oldest first:
``DailyCloses.as_history(symbols, last)`` gives exactly that.

The demo history is SYNTHETIC: ``synthetic_closes()`` draws a seeded geometric Brownian motion
with Student-t innovations (fat tails) and factor correlation (an equity factor, a crypto
factor; SPY tracks SPX / 10) for the symbols the demo uses. ``write_synthetic_csv()`` wrote the
shipped file ``data/history/SYNTHETIC-daily-closes.csv`` once; the demo seed loads it into the
stored history as source ``synthetic`` (``margin.market_history.load_synthetic_demo_history``),
so every snapshot whose VaR uses it is flagged. It is NOT market data and must never feed a
real requirement unlabelled.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from .errors import EngineInputError

HISTORY_DIR = Path(__file__).with_name("data") / "history"
SYNTHETIC_CSV = HISTORY_DIR / "SYNTHETIC-daily-closes.csv"
HEADER = ("date", "symbol", "close")

# The synthetic generator's model (documented constants of a demo data generator, not margin
# parameters): start price, annual drift, annual vol, loading on its factor, factor name.
SYNTHETIC_SEED = 20260101
SYNTHETIC_DAYS = 600
SYNTHETIC_START = date(2023, 8, 1)
SYNTHETIC_T_DOF = 5.0  # Student-t degrees of freedom of the innovations (fat tails)
SYNTHETIC_MODEL: dict[str, tuple[float, float, float, float, str]] = {
    "SPX": (4500.0, 0.07, 0.17, 0.98, "equity"),
    "QQQ": (370.0, 0.09, 0.22, 0.92, "equity"),
    "AAPL": (190.0, 0.10, 0.27, 0.65, "equity"),
    "MSFT": (330.0, 0.10, 0.25, 0.68, "equity"),
    "IBM": (145.0, 0.05, 0.22, 0.50, "equity"),
    "BTC": (29000.0, 0.30, 0.55, 0.90, "crypto"),
    "ETH": (1850.0, 0.25, 0.70, 0.85, "crypto"),
}
SYNTHETIC_SPY_RATIO = 0.1  # SPY ~ SPX / 10 with a small tracking error
SYNTHETIC_SPY_TRACKING_VOL = 0.002  # annual
SYNTHETIC_USDC_DAILY_SD = 0.0004  # deviation from par, mean-reverting
SYNTHETIC_USDC_REVERSION = 0.3
SYNTHETIC_SYMBOLS = ("SPX", "SPY", "AAPL", "MSFT", "IBM", "QQQ", "ETH", "BTC", "USDC")
TRADING_DAYS = 252


class HistoryError(EngineInputError):
    """A history file row the loader refuses; ``field`` is ``FILE:LINE``."""

    def __init__(self, source: str, line: int | None, code: str, message: str) -> None:
        where = source if line is None else f"{source}:{line}"
        super().__init__(where, code, message)
        self.source = source
        self.line = line


@dataclass(frozen=True)
class DailyCloses:
    """Aligned daily closes: ``closes[symbol]`` is a float64 array over ``dates``."""

    dates: tuple[date, ...]
    closes: dict[str, np.ndarray]

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self.closes)

    def __len__(self) -> int:
        return len(self.dates)

    def as_history(self, symbols: Iterable[str] | None = None,
                   last: int | None = None) -> dict[str, tuple[float, ...]]:
        """The request's ``history`` field: ``{SYM: (p0, p1, ...)}``, oldest first."""
        names = list(self.closes) if symbols is None else list(symbols)
        out: dict[str, tuple[float, ...]] = {}
        for sym in names:
            if sym not in self.closes:
                raise KeyError(f"no history for {sym!r}")
            series = self.closes[sym]
            if last is not None:
                series = series[-last:]
            out[sym] = tuple(float(x) for x in series)
        return out


# --------------------------------------------------------------------------- loading


def _lines(source: str | Path | io.TextIOBase) -> tuple[str, list[str]]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        return str(path), path.read_text(encoding="utf-8").splitlines()
    name = getattr(source, "name", "<stream>")
    return str(name), source.read().splitlines()


def load_closes_csv(source: str | Path | io.TextIOBase) -> DailyCloses:
    """Read and validate a ``date,symbol,close`` CSV (see the module docstring)."""
    name, lines = _lines(source)
    rows = _read_rows(name, lines)
    per_symbol = _by_symbol(name, rows)
    ref_dates = _aligned_dates(name, per_symbol)
    closes = {sym: np.array([c for _, _, c in series], dtype=np.float64)
              for sym, series in per_symbol.items()}
    return DailyCloses(tuple(ref_dates), closes)


Row = tuple[int, date, str, float]  # line number, date, symbol, close


def _read_rows(name: str, lines: list[str]) -> list[Row]:
    """The data rows after the header; comments and blank lines skipped."""
    rows: list[Row] = []
    header_seen = False
    for lineno, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        fields = [f.strip() for f in next(csv.reader([text]))]
        if not header_seen:
            if tuple(f.lower() for f in fields) != HEADER:
                raise HistoryError(name, lineno, "bad_header",
                                   f"expected header 'date,symbol,close', got {text!r}")
            header_seen = True
            continue
        rows.append(_read_row(name, lineno, fields))
    if not header_seen:
        raise HistoryError(name, None, "empty", "no header 'date,symbol,close' found")
    if not rows:
        raise HistoryError(name, None, "empty", "no rows")
    return rows


def _read_row(name: str, lineno: int, fields: list[str]) -> Row:
    if len(fields) != 3:
        raise HistoryError(name, lineno, "bad_row",
                           f"expected 3 fields (date,symbol,close), got {len(fields)}")
    d_text, sym, c_text = fields
    try:
        d = date.fromisoformat(d_text)
    except ValueError:
        raise HistoryError(name, lineno, "bad_date",
                           f"date {d_text!r} is not an ISO date (YYYY-MM-DD)") from None
    if not sym:
        raise HistoryError(name, lineno, "bad_symbol", "empty symbol")
    try:
        close = float(c_text)
    except ValueError:
        raise HistoryError(name, lineno, "bad_close",
                           f"close {c_text!r} of {sym} is not a number") from None
    if not math.isfinite(close):
        raise HistoryError(name, lineno, "bad_close", f"close of {sym} is not finite")
    if close <= 0:
        raise HistoryError(name, lineno, "bad_close",
                           f"close {c_text} of {sym} on {d} is not positive")
    return lineno, d, sym, close


def _by_symbol(name: str, rows: list[Row]) -> dict[str, list[tuple[int, date, float]]]:
    """Each symbol's (line, date, close) in file order, dates strictly increasing."""
    per_symbol: dict[str, list[tuple[int, date, float]]] = {}
    for lineno, d, sym, close in rows:
        series = per_symbol.setdefault(sym, [])
        if series and d <= series[-1][1]:
            what = "repeats" if d == series[-1][1] else "is before"
            raise HistoryError(name, lineno, "dates_not_increasing",
                               f"{sym}: date {d} {what} the previous {sym} date "
                               f"{series[-1][1]} (line {series[-1][0]})")
        series.append((lineno, d, close))
    return per_symbol


def _aligned_dates(name: str, per_symbol: dict[str, list[tuple[int, date, float]]]
                   ) -> list[date]:
    """The first symbol's dates, which every other symbol must have exactly."""
    symbols = list(per_symbol)
    first = symbols[0]
    ref_dates = [d for _, d, _ in per_symbol[first]]
    for sym in symbols[1:]:
        series = per_symbol[sym]
        if len(series) != len(ref_dates):
            raise HistoryError(name, series[-1][0], "unequal_lengths",
                               f"{sym} has {len(series)} closes, {first} has {len(ref_dates)}")
        for (lineno, d, _), ref in zip(series, ref_dates, strict=True):
            if d != ref:
                raise HistoryError(name, lineno, "dates_mismatch",
                                   f"{sym} has a close on {d} where {first} has {ref}")
    return ref_dates


def write_closes_csv(path: str | Path, closes: DailyCloses, comment: Sequence[str] = (),
                     digits: int = 6) -> None:
    """Write ``closes`` as ``date,symbol,close`` (date-major), with ``# comment`` lines first."""
    out = io.StringIO()
    for line in comment:
        out.write(f"# {line}\n")
    out.write(",".join(HEADER) + "\n")
    for k, d in enumerate(closes.dates):
        for sym, series in closes.closes.items():
            out.write(f"{d.isoformat()},{sym},{float(series[k]):.{digits}g}\n")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(out.getvalue(), encoding="utf-8")


# --------------------------------------------------------------------------- synthetic demo


def business_days(start: date, n: int) -> tuple[date, ...]:
    """``n`` weekdays from ``start`` on (no holiday calendar: synthetic data)."""
    out: list[date] = []
    d = start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return tuple(out)


def synthetic_closes(seed: int = SYNTHETIC_SEED, n_days: int = SYNTHETIC_DAYS,
                     start: date = SYNTHETIC_START) -> DailyCloses:
    """SYNTHETIC daily closes: seeded fat-tailed correlated GBM (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_ret = n_days - 1
    dof = SYNTHETIC_T_DOF
    t_scale = math.sqrt((dof - 2.0) / dof)  # unit-variance Student-t

    def shocks(size: int | tuple[int, ...]) -> np.ndarray:
        return rng.standard_t(dof, size=size) * t_scale

    factors = {"equity": shocks(n_ret), "crypto": shocks(n_ret)}
    # crypto partly loads on equities (risk-on / risk-off)
    factors["crypto"] = 0.35 * factors["equity"] + math.sqrt(1 - 0.35 ** 2) * factors["crypto"]
    dt = 1.0 / TRADING_DAYS
    closes: dict[str, np.ndarray] = {}
    for sym, (p0, mu, sigma, beta, factor) in SYNTHETIC_MODEL.items():
        z = beta * factors[factor] + math.sqrt(1.0 - beta * beta) * shocks(n_ret)
        log_ret = (mu - 0.5 * sigma * sigma) * dt + sigma * math.sqrt(dt) * z
        closes[sym] = p0 * np.exp(np.r_[0.0, np.cumsum(log_ret)])
    track = SYNTHETIC_SPY_TRACKING_VOL * math.sqrt(dt) * rng.standard_normal(n_days)
    closes["SPY"] = closes["SPX"] * SYNTHETIC_SPY_RATIO * np.exp(track)
    dev = np.zeros(n_days)
    eps = rng.standard_normal(n_days) * SYNTHETIC_USDC_DAILY_SD
    for k in range(1, n_days):
        dev[k] = (1.0 - SYNTHETIC_USDC_REVERSION) * dev[k - 1] + eps[k]
    closes["USDC"] = 1.0 + dev
    ordered = {sym: np.round(closes[sym], 6 if sym == "USDC" else 4)
               for sym in SYNTHETIC_SYMBOLS}
    return DailyCloses(business_days(start, n_days), ordered)


def write_synthetic_csv(path: str | Path = SYNTHETIC_CSV, seed: int = SYNTHETIC_SEED,
                        n_days: int = SYNTHETIC_DAYS) -> Path:
    """(Re)write the shipped SYNTHETIC demo history (run once; the CSV is versioned)."""
    data = synthetic_closes(seed, n_days)
    write_closes_csv(path, data, comment=(
        "SYNTHETIC DATA - NOT MARKET PRICES. For demos and tests only; never for real margin.",
        f"Generated by margin.engine.history.write_synthetic_csv(seed={seed}, "
        f"n_days={n_days}): seeded GBM with Student-t({SYNTHETIC_T_DOF:g}) innovations, an "
        "equity and a crypto factor, SPY = SPX/10 with tracking noise, USDC mean-reverting "
        "around 1, weekdays only.",
    ))
    return Path(path)


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    print(write_synthetic_csv())
