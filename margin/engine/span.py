"""Step 5 of the engine: the ``span`` block, CME SPAN-style scanning (METHODOLOGY.md section 4).

A *combined commodity* is the underlying symbol of the futures and futures options held. Each
position contributes a risk array: 16 values per long contract, profit positive, in SPAN
scenario order (``SCENARIOS``)::

     1: price 0,     vol up       2: price 0,     vol down
     3: price +1/3,  vol up       4: price +1/3,  vol down
     5: price -1/3,  vol up       6: price -1/3,  vol down
     7: price +2/3,  vol up       8: price +2/3,  vol down
     9: price -2/3,  vol up      10: price -2/3,  vol down
    11: price +3/3,  vol up      12: price +3/3,  vol down
    13: price -3/3,  vol up      14: price -3/3,  vol down
    15: price +extreme x range, vol unchanged, x extreme coverage
    16: price -extreme x range, vol unchanged, x extreme coverage

Futures: the price move times one contract (``price_scan`` is money per contract). Futures
options: Black-76 on the future of the same underlying and expiry (``valuation.position_spot``),
revalued at the valuation date (no time decay, no look-ahead) with the option's own implied vol
shifted by +/- ``vol_scan`` (absolute), the P&L taken against the model value at the current
price and vol. A position's own ``risk_array`` (exchange file) is used as given.

Per combined commodity: scan risk = the worst scenario loss of the commodity total (>= 0);
intra-commodity (calendar) spread charge; inter-commodity spread credit; short option minimum =
rate x short option contracts; requirement = max(scan + intra - inter, short option minimum).
The block requirement = sum of the requirements less the net option value (long option value
minus short option value), never below zero.

Parameters (``portfolio.span_parameters[COMMODITY]``, else ``params.span``):

- ``price_scan``: money per contract; a number, or a mapping from a contract *period* to money
  for tiered scan ranges. A period is an expiry month ``"YYYY-MM"`` or an inclusive range of
  months ``"YYYY-MM/YYYY-MM"`` (a tier); an exact month wins over a range. Without one, the
  fallback is ``params.span.price_scan`` and then the widest valuation point of the
  underlying's product class (``portfolio_margin.points``) x price x multiplier.
- ``vol_scan`` (absolute vol), ``extreme_multiplier``, ``extreme_coverage``,
  ``short_option_minimum`` (money per short option).
- ``intra_spread_charge``: a number (money per spread; spreads = the smaller of the long and
  the short futures-equivalent deltas over the commodity's months) or a list of month/tier pairs
  in priority order, ``[{"legs": ["2026-03", "2026-06"], "charge": 200}, ...]``: each pair forms
  spreads from the deltas still unspread in its two periods, long one and short the other.
- ``inter_spreads``: ``[{"legs": {"C": 2, "S": 1}, "credit": 0.55}, ...]`` in priority order
  (an entry may sit under any of its commodities; duplicates count once). With all ratios
  positive the first leg is one side and the others the opposite side; signed ratios name the
  sides. Spreads = the smallest remaining |net delta| / |ratio| over the legs (either
  orientation), consuming the deltas; each leg is credited ``credit x spreads x |ratio| x
  weighted futures price risk`` (CME "WPR": the commodity's price risk per unit of net delta;
  price risk = scan risk less time risk (mean loss of scenarios 1-2) less volatility risk (half
  the difference between the worst scenario and its vol pair)).

Deltas are composite deltas: per contract, the weighted average of the deltas at the seven
scan prices, read off the risk array by finite differences (central inside, one-sided at the
ends) in units of one futures contract of the position's period, weighted equally (an
exchange's seven weights can be passed to ``composite_delta``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np

from .errors import EngineInputError
from .parameters import ParameterSet
from .portfolio import RISK_ARRAY_LENGTH, SPAN_KINDS, Portfolio, Position

N_SCENARIOS = RISK_ARRAY_LENGTH

# (price move as a fraction of the scan range, vol direction); None = the extreme move
SCENARIOS: tuple[tuple[float | None, int], ...] = (
    (0.0, 1), (0.0, -1),
    (1 / 3, 1), (1 / 3, -1),
    (-1 / 3, 1), (-1 / 3, -1),
    (2 / 3, 1), (2 / 3, -1),
    (-2 / 3, 1), (-2 / 3, -1),
    (1.0, 1), (1.0, -1),
    (-1.0, 1), (-1.0, -1),
    (None, 1), (None, -1),
)
# the seven price levels -3/3 .. +3/3 and the two scenarios (vol up, vol down) at each
PRICE_LEVELS = np.array([-1.0, -2 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0])
LEVEL_SCENARIOS = np.array([[12, 13], [8, 9], [4, 5], [0, 1], [2, 3], [6, 7], [10, 11]])

VOL_FLOOR = 1e-6  # numerical floor of a shifted-down implied vol (not a risk parameter)
SPOT_FLOOR_FRACTION = 1e-9  # a futures price moved below zero is floored at this x price


# --------------------------------------------------------------------------- parameters


def scenario_moves(extreme_multiplier: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per scenario: price move in scan ranges, vol direction (+1/-1/0), extreme flag."""
    price = np.array([extreme_multiplier * (1 if vd > 0 else -1) if f is None else f
                      for f, vd in SCENARIOS], dtype=np.float64)
    extreme = np.array([f is None for f, _ in SCENARIOS])
    vol = np.array([0 if f is None else vd for f, vd in SCENARIOS], dtype=np.float64)
    return price, vol, extreme


def _month(d: date) -> tuple[int, int]:
    return d.year, d.month


def _parse_month(text: str, where: str) -> tuple[int, int]:
    try:
        parts = text.strip().split("-")
        year, month = int(parts[0]), int(parts[1])
        if len(parts) not in (2, 3) or not 1 <= month <= 12:
            raise ValueError
        return year, month
    except (ValueError, IndexError):
        raise EngineInputError(where, "invalid",
                               f"period {text!r} is not a month 'YYYY-MM'") from None


@dataclass(frozen=True)
class Period:
    """A month or an inclusive range of months (a tier)."""

    first: tuple[int, int]
    last: tuple[int, int]
    text: str

    @classmethod
    def parse(cls, text: str, where: str) -> Period:
        if not isinstance(text, str):
            raise EngineInputError(where, "invalid", f"period {text!r} is not a string")
        a, sep, b = text.partition("/")
        first = _parse_month(a, where)
        last = _parse_month(b, where) if sep else first
        if last < first:
            raise EngineInputError(where, "invalid", f"period {text!r} ends before it starts")
        return cls(first, last, text)

    @property
    def is_month(self) -> bool:
        return self.first == self.last

    def contains(self, month: tuple[int, int]) -> bool:
        return self.first <= month <= self.last


def month_text(month: tuple[int, int]) -> str:
    return f"{month[0]:04d}-{month[1]:02d}"


@dataclass
class CommodityParameters:
    commodity: str
    price_scan: float | list[tuple[Period, float]] | None
    vol_scan: float
    extreme_multiplier: float
    extreme_coverage: float
    short_option_minimum: float
    intra: float | list[tuple[Period, Period, float]]
    inter_spreads: list[dict[str, Any]] = field(default_factory=list)

    def price_scan_for(self, month: tuple[int, int]) -> float | None:
        ps = self.price_scan
        if ps is None or isinstance(ps, float):
            return ps
        exact = [v for p, v in ps if p.is_month and p.contains(month)]
        if exact:
            return exact[0]
        ranged = [v for p, v in ps if p.contains(month)]
        if ranged:
            return ranged[0]
        raise EngineInputError(
            f"span_parameters.{self.commodity}.price_scan", "missing_period",
            f"no price scan range covers the contract month {month_text(month)}")


def _number(value: Any, where: str, minimum: float | None = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EngineInputError(where, "invalid", f"{value!r} is not a number")
    x = float(value)
    if not math.isfinite(x) or (minimum is not None and x < minimum):
        raise EngineInputError(where, "invalid", f"{value!r} is out of range")
    return x


def commodity_parameters(portfolio: Portfolio, params: ParameterSet,
                         commodity: str) -> CommodityParameters:
    """The request's ``span_parameters`` of a combined commodity over the parameter set's."""
    base = params.span
    own = portfolio.span_parameters.get(commodity, {}) or {}
    where = f"span_parameters.{commodity}"

    def pick(name: str, default: Any) -> Any:
        return own[name] if name in own else default

    raw_scan = pick("price_scan", base.price_scan)
    price_scan: float | list[tuple[Period, float]] | None
    if raw_scan is None:
        price_scan = None
    elif isinstance(raw_scan, Mapping):
        price_scan = [(Period.parse(k, f"{where}.price_scan"),
                       _number(v, f"{where}.price_scan.{k}")) for k, v in raw_scan.items()]
    else:
        price_scan = _number(raw_scan, f"{where}.price_scan")

    raw_intra = pick("intra_spread_charge", 0.0)  # a request-only field
    intra: float | list[tuple[Period, Period, float]]
    if isinstance(raw_intra, Sequence) and not isinstance(raw_intra, str):
        intra = []
        for j, entry in enumerate(raw_intra):
            w = f"{where}.intra_spread_charge[{j}]"
            legs = entry.get("legs") if isinstance(entry, Mapping) else None
            if not isinstance(legs, Sequence) or isinstance(legs, str) or len(legs) != 2:
                raise EngineInputError(w, "invalid", "an intra spread needs two period legs")
            intra.append((Period.parse(legs[0], f"{w}.legs[0]"),
                          Period.parse(legs[1], f"{w}.legs[1]"),
                          _number(entry.get("charge"), f"{w}.charge")))
    else:
        intra = _number(raw_intra, f"{where}.intra_spread_charge")

    inter = own.get("inter_spreads", [])
    if not isinstance(inter, Sequence) or isinstance(inter, str):
        raise EngineInputError(f"{where}.inter_spreads", "invalid", "expected a list")

    vol_scan = _number(pick("vol_scan", base.vol_scan), f"{where}.vol_scan")
    mult = _number(pick("extreme_multiplier", base.extreme_multiplier),
                   f"{where}.extreme_multiplier")
    cov = _number(pick("extreme_coverage", base.extreme_coverage), f"{where}.extreme_coverage")
    som = _number(pick("short_option_minimum", base.short_option_minimum),
                  f"{where}.short_option_minimum")
    return CommodityParameters(commodity, price_scan, vol_scan, mult, cov, som, intra,
                               list(inter))


# --------------------------------------------------------------------------- positions


def contract_month(portfolio: Portfolio, position: Position) -> tuple[int, int]:
    """The month of the futures contract a position is on (its expiry month)."""
    if position.expiry is not None:
        return _month(position.expiry)
    days = round(float(position.time_to_expiry or 0.0) * 365.0)
    return _month(portfolio.valuation_date + timedelta(days=days))


def _futures_price(portfolio: Portfolio, position: Position) -> float:
    from .valuation import position_spot

    return float(position_spot(portfolio, position))


def _fallback_price_scan(portfolio: Portfolio, params: ParameterSet, position: Position,
                         spot: float) -> float:
    und = portfolio.underlyings[position.root]
    points = params.portfolio_margin.points.get(und.product_class)
    if not points:
        raise EngineInputError(f"span_parameters.{position.root}.price_scan", "required",
                               f"no price scan range for {position.root}")
    return max(abs(float(x)) for x in points) * spot * float(position.multiplier)


@dataclass
class SpanLine:
    """One position's contribution: risk array per long contract, its period and delta."""

    position: Position
    month: tuple[int, int]
    price_scan: float  # money per futures contract of its month
    risk_array: np.ndarray  # (16,) per long contract, profit positive
    delta: float = 0.0  # composite delta per contract (futures equivalents)
    option_value: float = 0.0  # per contract (options), money


def composite_delta(risk_array: np.ndarray, price_scan: float,
                    weights: Sequence[float] | None = None) -> float:
    """Weighted average of the deltas at the seven scan prices of a per-contract risk array.

    In futures contracts: the slope of the (vol-averaged) array per ``price_scan / 3`` of
    price move, so a long future is exactly 1.
    """
    ra = np.asarray(risk_array, dtype=np.float64)
    if price_scan <= 0:
        return 0.0
    values = ra[LEVEL_SCENARIOS].mean(axis=1)  # (7,) value at each price level
    step = price_scan / 3.0
    deltas = np.gradient(values, step)
    w = np.ones(7) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (7,) or w.sum() <= 0:
        raise EngineInputError("parameters.span.composite_delta_weights", "invalid",
                               "expected seven non-negative weights")
    return float(np.dot(w, deltas) / w.sum())


def _option_vols(portfolio: Portfolio, lines: list[tuple[Position, float]]) -> np.ndarray:
    """Implied vol per option: given, else implied from the mark (Black-76), else default."""
    from . import pricing

    vols = np.full(len(lines), np.nan)
    need: list[int] = []
    for j, (p, _) in enumerate(lines):
        if p.implied_vol is not None:
            vols[j] = float(p.implied_vol)
        elif p.price is not None and (p.time_to_expiry or 0.0) > 0:
            need.append(j)
    if need:
        k = np.asarray(need)
        pos = [lines[j][0] for j in need]
        iv = pricing.implied_vol(
            pricing.BLACK76,
            np.array([float(p.price) for p in pos]),
            np.array([lines[j][1] for j in need]),
            np.array([float(p.strike) for p in pos]),
            np.array([float(p.time_to_expiry) for p in pos]),
            float(portfolio.rate), 0.0,
            np.array([p.is_call for p in pos], dtype=bool))
        vols[k] = np.asarray(iv, dtype=np.float64)
    for j, (p, _) in enumerate(lines):
        if np.isnan(vols[j]) and (p.time_to_expiry or 0.0) > 0:
            und_vol = portfolio.underlyings[p.root].volatility
            if p.price is not None:
                raise EngineInputError(f"positions[{p.index}].price",
                                       "outside_no_arbitrage_bounds",
                                       f"mark {p.price} admits no Black-76 implied volatility")
            if und_vol is None:
                raise EngineInputError(
                    f"positions[{p.index}].price", "required",
                    "a futures option needs a price, an implied_vol or its underlying's "
                    "volatility")
            vols[j] = float(und_vol)
    return vols


def _black76(spot: np.ndarray, strike: np.ndarray, t: np.ndarray, rate: float,
             vol: np.ndarray, is_call: np.ndarray) -> np.ndarray:
    """Black-76 values (broadcast); intrinsic where ``t <= 0``."""
    from . import pricing

    spot, strike, t, vol, is_call = np.broadcast_arrays(spot, strike, t, vol, is_call)
    live = t > 0
    out = np.where(is_call, np.maximum(spot - strike, 0.0), np.maximum(strike - spot, 0.0))
    if live.any():
        v = pricing.option_value(pricing.BLACK76, spot[live], strike[live], t[live], rate, 0.0,
                                 vol[live], is_call[live])
        out = out.astype(np.float64, copy=True)
        out[live] = np.asarray(v, dtype=np.float64)
    return out


def span_lines(portfolio: Portfolio, params: ParameterSet,
               cparams: dict[str, CommodityParameters] | None = None) -> dict[str, list[SpanLine]]:
    """Risk arrays per long contract of every future / future option, by combined commodity."""
    positions = portfolio.positions_of(*SPAN_KINDS)
    cparams = {} if cparams is None else cparams
    out: dict[str, list[SpanLine]] = {}
    opts: list[tuple[SpanLine, float]] = []  # lines needing a model, with their futures price
    for p in positions:
        comm = p.underlying
        cp = cparams.get(comm)
        if cp is None:
            cp = cparams[comm] = commodity_parameters(portfolio, params, comm)
        month = contract_month(portfolio, p)
        spot = _futures_price(portfolio, p)
        try:
            scan = cp.price_scan_for(month)
        except EngineInputError:
            if p.risk_array is None:
                raise
            scan = None  # an exchange array needs the range only to scale its delta
        if scan is None:
            scan = params.span.price_scan
            if scan is None:
                scan = _fallback_price_scan(portfolio, params, p, spot)
        line = SpanLine(p, month, float(scan), np.zeros(N_SCENARIOS))
        if p.risk_array is not None:
            line.risk_array = np.asarray(p.risk_array, dtype=np.float64)
        elif p.kind == "future":
            price, _, extreme = scenario_moves(cp.extreme_multiplier)
            line.risk_array = price * scan * np.where(extreme, cp.extreme_coverage, 1.0)
        if p.kind == "future_option":
            opts.append((line, spot))
        out.setdefault(comm, []).append(line)

    if opts:
        _value_options(portfolio, opts, cparams)
    for lines in out.values():
        for line in lines:
            line.delta = composite_delta(line.risk_array, line.price_scan)
    return out


def _value_options(portfolio: Portfolio, opts: list[tuple[SpanLine, float]],
                   cparams: dict[str, CommodityParameters]) -> None:
    """Black-76 risk arrays (where not given) and option values, one vectorised call.

    A position carrying both its own risk array and a mark needs no model at all.
    """
    for line, _ in opts:
        p = line.position
        if p.price is not None:
            line.option_value = float(p.price) * float(p.multiplier)
    opts = [(line, spot) for line, spot in opts
            if line.position.risk_array is None or line.position.price is None]
    if not opts:
        return
    rate = float(portfolio.rate)
    pos = [line.position for line, _ in opts]
    vols = _option_vols(portfolio, [(p, spot) for p, (_, spot) in zip(pos, opts, strict=True)])
    spot = np.array([s for _, s in opts])
    strike = np.array([float(p.strike) for p in pos])
    t = np.array([max(float(p.time_to_expiry or 0.0), 0.0) for p in pos])
    is_call = np.array([p.is_call for p in pos], dtype=bool)
    mult = np.array([float(p.multiplier) for p in pos])
    scan = np.array([line.price_scan for line, _ in opts])
    vol_scan = np.array([cparams[p.underlying].vol_scan for p in pos])
    xm = np.array([cparams[p.underlying].extreme_multiplier for p in pos])
    cov = np.array([cparams[p.underlying].extreme_coverage for p in pos])
    vol0 = np.where(np.isnan(vols), 0.0, vols)
    base = _black76(spot, strike, t, rate, vol0, is_call)

    price, vol_dir, extreme = scenario_moves(1.0)
    frac = np.where(extreme[None, :], price[None, :] * xm[:, None], price[None, :])
    moved = spot[:, None] + frac * (scan / mult)[:, None]  # (n, 16) futures prices
    moved = np.maximum(moved, spot[:, None] * SPOT_FLOOR_FRACTION)
    shifted_vol = np.maximum(vol0[:, None] + vol_dir[None, :] * vol_scan[:, None], VOL_FLOOR)
    vals = _black76(moved, strike[:, None], t[:, None], rate, shifted_vol, is_call[:, None])
    ra = (vals - base[:, None]) * mult[:, None]
    ra = np.where(extreme[None, :], ra * cov[:, None], ra)
    for j, (line, _) in enumerate(opts):
        p = line.position
        if p.risk_array is None:
            line.risk_array = ra[j]
        if p.price is None:
            line.option_value = float(base[j] * mult[j])


# --------------------------------------------------------------------------- risk measures


def scan_risk(risk_array: np.ndarray) -> float:
    """The worst scenario loss of a (profit positive) risk array, never below zero."""
    return max(0.0, -float(np.min(risk_array)))


def price_risk(risk_array: np.ndarray) -> float:
    """Scan risk less time risk and volatility risk (CME's split of the scan risk)."""
    loss = -np.asarray(risk_array, dtype=np.float64)
    scan = scan_risk(risk_array)
    if scan <= 0:
        return 0.0
    active = int(np.argmax(loss))
    time_risk = 0.5 * (loss[0] + loss[1])
    if active < 14:
        pair = active + 1 if active % 2 == 0 else active - 1
        vol_risk = 0.5 * (loss[active] - loss[pair])
    else:
        vol_risk = 0.0
    return max(0.0, scan - time_risk - vol_risk)


def _intra_charge(cp: CommodityParameters, deltas: dict[tuple[int, int], float]) -> float:
    if isinstance(cp.intra, float):
        longs = sum(d for d in deltas.values() if d > 0)
        shorts = -sum(d for d in deltas.values() if d < 0)
        return cp.intra * min(longs, shorts)
    remaining = dict(deltas)
    charge = 0.0
    for leg_a, leg_b, rate in cp.intra:
        for side in (1.0, -1.0):  # long A / short B, then short A / long B
            a_months = [m for m in remaining if leg_a.contains(m) and side * remaining[m] > 0]
            b_months = [m for m in remaining if leg_b.contains(m) and -side * remaining[m] > 0]
            avail_a = sum(abs(remaining[m]) for m in a_months)
            avail_b = sum(abs(remaining[m]) for m in b_months)
            n = min(avail_a, avail_b)
            if n <= 0:
                continue
            charge += n * rate
            for months, need in ((sorted(a_months), n), (sorted(b_months), n)):
                for m in months:
                    take = min(abs(remaining[m]), need)
                    remaining[m] -= math.copysign(take, remaining[m])
                    need -= take
                    if need <= 0:
                        break
    return charge


def _inter_credits(spreads: list[dict[str, Any]], net_delta: dict[str, float],
                   wfpr: dict[str, float]) -> dict[str, float]:
    credits = dict.fromkeys(net_delta, 0.0)
    remaining = dict(net_delta)
    for j, spread in enumerate(spreads):
        where = f"span_parameters.inter_spreads[{j}]"
        legs = spread.get("legs") if isinstance(spread, Mapping) else None
        if not isinstance(legs, Mapping) or len(legs) < 2:
            raise EngineInputError(where, "invalid", "an inter spread needs two or more legs")
        rate = _number(spread.get("credit"), f"{where}.credit")
        ratios = {c: _number(r, f"{where}.legs.{c}", None) for c, r in legs.items()}
        if any(r == 0 for r in ratios.values()):
            raise EngineInputError(where, "invalid", "a leg ratio is zero")
        if not all(c in remaining for c in ratios):
            continue
        names = list(ratios)
        if all(r > 0 for r in ratios.values()):
            side = {c: (1.0 if k == 0 else -1.0) for k, c in enumerate(names)}
        else:
            side = {c: math.copysign(1.0, r) for c, r in ratios.items()}
        for orient in (1.0, -1.0):
            if not all(orient * side[c] * remaining[c] > 0 for c in names):
                continue
            n = min(abs(remaining[c]) / abs(ratios[c]) for c in names)
            for c in names:
                used = n * abs(ratios[c])
                credits[c] += rate * used * wfpr[c]
                remaining[c] -= math.copysign(used, remaining[c])
    return credits


def _spread_key(spread: Any) -> str:
    return json.dumps(spread, sort_keys=True, default=str)


def composite_deltas(portfolio: Portfolio, params: ParameterSet) -> dict[str, float]:
    """Net composite delta (futures equivalents) of each combined commodity."""
    lines = span_lines(portfolio, params)
    return {c: float(sum(ln.delta * float(ln.position.quantity) for ln in ls))
            for c, ls in lines.items()}


def calculate_block(portfolio: Portfolio, params: ParameterSet) -> dict | None:
    """The ``span`` block (CALCULATOR.md key order, raw floats), or None without futures."""
    if not portfolio.positions_of(*SPAN_KINDS):
        return None
    cparams: dict[str, CommodityParameters] = {}
    lines = span_lines(portfolio, params, cparams)

    rows: dict[str, dict[str, Any]] = {}
    net_delta: dict[str, float] = {}
    wfpr: dict[str, float] = {}
    for comm, ls in lines.items():
        cp = cparams[comm]
        total = np.zeros(N_SCENARIOS)
        month_delta: dict[tuple[int, int], float] = {}
        nov = 0.0
        shorts = 0.0
        for ln in ls:
            q = float(ln.position.quantity)
            total += q * ln.risk_array
            month_delta[ln.month] = month_delta.get(ln.month, 0.0) + q * ln.delta
            if ln.position.kind == "future_option":
                nov += q * ln.option_value
                if q < 0:
                    shorts += -q
        scan = scan_risk(total)
        nd = float(sum(month_delta.values()))
        net_delta[comm] = nd
        wfpr[comm] = price_risk(total) / abs(nd) if abs(nd) > 0 else 0.0
        rows[comm] = {
            "commodity": comm,
            "risk_array": [float(x) for x in total],
            "scan_risk": scan,
            "intra_spread_charge": _intra_charge(cp, month_delta),
            "inter_spread_credit": 0.0,
            "short_option_minimum": cp.short_option_minimum * shorts,
            "net_option_value": nov,
            "requirement": 0.0,
        }

    spreads: list[dict[str, Any]] = []
    seen: set[str] = set()
    for src in (cparams[c].inter_spreads for c in lines):
        for spread in src:
            key = _spread_key(spread)
            if key not in seen:
                seen.add(key)
                spreads.append(spread)
    credits = _inter_credits(spreads, net_delta, wfpr) if spreads else {}

    total_req = 0.0
    total_nov = 0.0
    for comm, row in rows.items():
        row["inter_spread_credit"] = credits.get(comm, 0.0)
        row["requirement"] = max(
            row["scan_risk"] + row["intra_spread_charge"] - row["inter_spread_credit"],
            row["short_option_minimum"])
        total_req += row["requirement"]
        total_nov += row["net_option_value"]
    return {"requirement": max(0.0, total_req - total_nov),
            "combined_commodities": list(rows.values())}
