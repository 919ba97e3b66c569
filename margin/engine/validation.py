"""The one validator of a normalised `Portfolio`: every domain bound, checked once.

Both doors build a `Portfolio` and hand it here: the calculator after checking the request's
JSON shape and types (``margin.calculator.parse``), the live path from the book
(``margin.book.build_portfolio``). ``portfolio_problems`` lists every problem found, each an
`EngineInputError` with a stable code and its path in the portfolio (``positions[3].strike``,
``underlyings.IBM.price``, ``positions[0].lp.tick_upper``: the request's paths, except that an
LP position's fields sit under ``lp``); ``validate_portfolio`` raises `InvalidPortfolio` with
all of them. The bounds:

- prices, strikes, multipliers, leverage, volatilities, entry prices: finite and > 0
  (``not_positive``); option marks, times to expiry, scan ranges: >= 0 (``negative``);
  fractions (offsets, credits, coverage, naked-short fractions, house moves) within [0, 1],
  a house move down included (a price falls to zero at most; ``up`` alone is open);
  every number finite (``not_finite``);
- names from the contract's lists (``portfolio.PRODUCT_CLASSES``, ``POSITION_KINDS``,
  ``RIGHTS``, ``EXERCISES``, ``NAMED_STRESS``...; ``invalid_choice``);
- an expiry before the valuation date (``expired``); an option without a price, an implied vol
  or its underlying's volatility (``required``); two positions with one id (``duplicate_id``);
- every symbol a position, override, SPAN commodity, history or stress move names is declared
  (``undeclared_underlying``), every offset names a product group (``undeclared_product_group``);
- one product class per class group, a future excepted (``mixed_product_classes``), one
  valuation grid per product group (``mixed_grids``; METHODOLOGY.md section 1);
- Uniswap v3 positions within v3-core's TickMath bounds: int24 ticks, uint128 liquidity and
  owed tokens, uint256 fee growth, uint160 sqrt prices; tick_lower < tick_upper, two distinct
  tokens, fee growth given in pairs (``out_of_range``, ``invalid``, ``required``);
- price histories at least ``params.var.min_history`` closes (``too_short``), all of one length
  (``unequal_lengths``), positive; with VaR asked, one for every held symbol or its class group.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .defi.uniswap_v3 import MAX_SQRT_RATIO, MAX_TICK, MIN_SQRT_RATIO, MIN_TICK
from .errors import EngineInputError, InvalidPortfolio, Path, render_path
from .parameters import ParameterSet
from .portfolio import (
    EXERCISES,
    FUTURE_CLASS,
    METHODS,
    NAMED_STRESS,
    OPTION_KINDS,
    POSITION_KINDS,
    PRODUCT_CLASSES,
    RIGHTS,
    UNDERLYING_TYPES,
    LPPosition,
    Portfolio,
    Position,
)

UINT128 = 2**128
UINT256 = 2**256
TOKEN_DECIMALS_LIMIT = 256  # uint8
STRESS_MOVE_FLOOR = -1.0  # a price can fall to zero, not below
#: the two fields of each fee-growth checkpoint: the position's last inside growth needs the
#: pool's global growth to give the fees since (v3-core Position.update)
FEE_GROWTH_PAIRS = (("fee_growth_inside_last0", "fee_growth_global0"),
                    ("fee_growth_inside_last1", "fee_growth_global1"))


class Problems:
    """The problems found so far, each an `EngineInputError` carrying its path."""

    def __init__(self) -> None:
        self.items: list[EngineInputError] = []

    def add(self, path: Path, code: str, message: str) -> None:
        self.items.append(EngineInputError(render_path(path), code, message, path))

    def number(self, value: Any, path: Path, *, lower: float | None = None,
               strict: bool = False, upper: float | None = None) -> None:
        """A finite number within its bounds; ``lower`` is exclusive when ``strict``."""
        if value is None:
            return
        number = float(value)
        if not math.isfinite(number):
            self.add(path, "not_finite", f"{value} is not a finite number")
        elif lower is not None and (number < lower or (strict and number == lower)):
            if strict and lower == 0:
                self.add(path, "not_positive", f"must be greater than 0, got {_shown(value)}")
            elif lower == 0:
                self.add(path, "negative", f"must not be negative, got {_shown(value)}")
            else:
                op = ">" if strict else ">="
                self.add(path, "out_of_range", f"must be {op} {_shown(lower)}, got "
                                               f"{_shown(value)}")
        elif upper is not None and number > upper:
            self.add(path, "out_of_range", f"must be <= {_shown(upper)}, got {_shown(value)}")

    def integer(self, value: int | None, path: Path, lower: int, upper_exclusive: int) -> None:
        if value is not None and not lower <= value < upper_exclusive:
            self.add(path, "out_of_range",
                     f"must be in [{lower}, {upper_exclusive}), got {value}")

    def choice(self, value: str | None, path: Path, choices: Sequence[str]) -> None:
        if value is not None and value not in choices:
            self.add(path, "invalid_choice", f"{value!r} is not one of: {', '.join(choices)}")


def _shown(value: float) -> str:
    """A number as the request wrote it: 0, not 0.0."""
    number = float(value)
    return str(int(number)) if number.is_integer() and abs(number) < 1e16 else repr(number)


# --------------------------------------------------------------------------- the validator


def portfolio_problems(portfolio: Portfolio, params: ParameterSet,
                       refused: Mapping[str, Mapping[str, Any]] | None = None,
                       ) -> list[EngineInputError]:
    """Every problem of ``portfolio``, in portfolio order (underlyings, positions, the rest).

    ``refused``: underlyings the caller declared but could not build (a field of the wrong
    type, an oracle round it rejected; it has reported why), as the fields it could read. They
    stay declared, so positions on them are not reported again as undeclared, and the fields
    read are checked like a built underlying's.
    """
    problems = Problems()
    declared = _Declared(portfolio, refused or {})
    for symbol, fields in declared.fields.items():
        _check_underlying(symbol, fields, problems)
    check_class_groups(
        [(symbol, f["class_group"], f["product_group"], f["product_class"])
         for symbol, f in declared.fields.items()
         if f.get("product_class") is not None and f.get("class_group") is not None],
        params, problems)
    _check_positions(portfolio, declared.symbols, problems)
    _check_methods(portfolio, problems)
    _check_house(portfolio.house, declared.symbols, problems)
    _check_offsets(portfolio, declared, problems)
    _check_span_parameters(portfolio.span_parameters, declared.symbols, problems)
    _check_history(portfolio, params, declared, problems)
    _check_stress(portfolio, declared, problems)
    return problems.items


class _Declared:
    """Every declared underlying's fields, built or refused, in declaration order."""

    def __init__(self, portfolio: Portfolio, refused: Mapping[str, Mapping[str, Any]]) -> None:
        self.fields: dict[str, Mapping[str, Any]] = {
            symbol: vars(u) for symbol, u in portfolio.underlyings.items()}
        self.fields.update(refused)
        self.symbols = set(self.fields)
        self.class_groups = {f.get("class_group") for f in self.fields.values()}
        self.product_groups = {f.get("product_group") for f in self.fields.values()}

    def symbol_or_group(self, name: str) -> bool:
        """A declared underlying, or a class group's name (it stands for every member)."""
        return name in self.symbols or name in self.class_groups


def validate_portfolio(portfolio: Portfolio, params: ParameterSet) -> Portfolio:
    """``portfolio`` unchanged when it is valid; raises `InvalidPortfolio` listing every
    problem otherwise."""
    problems = portfolio_problems(portfolio, params)
    if problems:
        raise InvalidPortfolio(problems)
    return portfolio


# --------------------------------------------------------------------------- underlyings


def _check_underlying(symbol: str, u: Mapping[str, Any], problems: Problems) -> None:
    """An `Underlying`'s fields (or those read of a refused one)."""
    at: Callable[[str], Path] = lambda name: ("underlyings", symbol, name)  # noqa: E731
    problems.number(u.get("price"), at("price"), lower=0, strict=True)
    problems.choice(u.get("product_class"), at("product_class"), PRODUCT_CLASSES)
    problems.choice(u.get("type"), at("type"), UNDERLYING_TYPES)
    problems.number(u.get("dividend_yield"), at("dividend_yield"))
    for name in ("leverage", "volatility", "reference_price"):
        problems.number(u.get(name), at(name), lower=0, strict=True)


def effective_class(classes: Iterable[str]) -> str | None:
    """A class group's product class: its first non-future class (a future may join another
    class's group: index futures follow their index, METHODOLOGY.md section 1)."""
    classes = list(classes)
    return next((c for c in classes if c != FUTURE_CLASS), classes[0] if classes else None)


def check_class_groups(members: Sequence[tuple[str, str, str, str]], params: ParameterSet,
                       problems: Problems) -> None:
    """One product class per class group; one valuation grid per product group.

    ``members``: (symbol, class_group, product_group, product_class) in declaration order.
    Points align by index across a product group's class groups, so their grids must agree.
    """
    by_group: dict[str, list[tuple[str, str]]] = {}
    for symbol, group, _, cls in members:
        by_group.setdefault(group, []).append((symbol, cls))
    effective: dict[str, str] = {}
    for group, entries in by_group.items():
        first = next(((s, c) for s, c in entries if c != FUTURE_CLASS), entries[0])
        effective[group] = first[1]
        for symbol, cls in entries:
            if cls not in (first[1], FUTURE_CLASS):
                problems.add(("underlyings", symbol, "class_group"), "mixed_product_classes",
                             f"class group {group!r} mixes {first[1]} ({first[0]}) and {cls} "
                             f"({symbol})")
    grids = params.portfolio_margin.points
    first_of_group: dict[str, tuple[tuple[float, ...], str]] = {}
    for symbol, group, product_group, _ in members:
        grid = tuple(grids.get(effective[group], ()))
        first = first_of_group.setdefault(product_group, (grid, symbol))
        if first[0] != grid:
            problems.add(("underlyings", symbol, "product_group"), "mixed_grids",
                         f"product group {product_group!r} mixes valuation grids ({first[1]} "
                         f"and {symbol}): the points of its class groups must align")


# --------------------------------------------------------------------------- positions


def _check_positions(portfolio: Portfolio, declared: set[str], problems: Problems) -> None:
    """Each position's fields; ids unique."""
    seen: set[str] = set()
    for p in portfolio.positions:
        problems.choice(p.kind, ("positions", p.index, "kind"), POSITION_KINDS)
        problems.number(p.quantity, ("positions", p.index, "quantity"))
        if p.lp is not None:
            _check_lp(p.index, p.lp, declared, problems)
        else:
            _check_contract(portfolio, p, declared, problems)
        if p.id in seen:
            problems.add(("positions", p.index, "id"), "duplicate_id",
                         f"id {p.id!r} names another position already")
        seen.add(p.id)


def _declared(symbol: str | None, path: Path, declared: set[str], problems: Problems) -> None:
    if symbol is not None and symbol not in declared:
        problems.add(path, "undeclared_underlying", f"{symbol!r} is not declared in underlyings")


def _check_contract(portfolio: Portfolio, p: Position, declared: set[str],
                    problems: Problems) -> None:
    """Stock, crypto, perpetual, futures and options: the fields their kind uses."""
    at: Callable[[str], Path] = lambda name: ("positions", p.index, name)  # noqa: E731
    _declared(p.symbol, at("symbol"), declared, problems)
    _declared(p.underlying, at("underlying"), declared, problems)
    if p.kind in OPTION_KINDS:
        problems.choice(p.right, at("right"), RIGHTS)
        problems.number(p.strike, at("strike"), lower=0, strict=True)
    _check_expiry(portfolio, p, problems)
    problems.number(p.multiplier, at("multiplier"), lower=0, strict=True)
    problems.choice(p.exercise, at("exercise"), EXERCISES)
    # a future's price is the contract's, > 0; an option's mark may be 0 (worthless)
    problems.number(p.price, at("price"), lower=0, strict=p.kind == "future")
    problems.number(p.implied_vol, at("implied_vol"), lower=0, strict=True)
    for i, value in enumerate(p.risk_array or ()):
        problems.number(value, ("positions", p.index, "risk_array", i))
    problems.number(p.entry_price, at("entry_price"), lower=0, strict=True)
    problems.number(p.funding_accrued, at("funding_accrued"))
    und = portfolio.underlyings.get(p.underlying or "")
    if (p.kind in OPTION_KINDS and und is not None and p.price is None
            and p.implied_vol is None and und.volatility is None):
        problems.add(at("price"), "required",
                     "an option needs a price, an implied_vol or its underlying's volatility")


def _check_expiry(portfolio: Portfolio, p: Position, problems: Problems) -> None:
    if p.expiry is not None:
        if p.expiry < portfolio.valuation_date:
            problems.add(("positions", p.index, "expiry"), "expired",
                         f"expiry {p.expiry.isoformat()} is before the valuation date "
                         f"{portfolio.valuation_date.isoformat()}")
    else:
        problems.number(p.time_to_expiry, ("positions", p.index, "time_to_expiry"), lower=0)


def _check_lp(index: int, lp: LPPosition, declared: set[str], problems: Problems) -> None:
    """A Uniswap v3 position within v3-core's bounds (TickMath, uint sizes)."""
    at: Callable[[str], Path] = lambda name: ("positions", index, "lp", name)  # noqa: E731
    _declared(lp.token0, at("token0"), declared, problems)
    _declared(lp.token1, at("token1"), declared, problems)
    for name in ("decimals0", "decimals1", "liquidity", "tick_lower", "tick_upper"):
        if getattr(lp, name) is None:  # a book's instrument may lack one
            problems.add(at(name), "required", f"a Uniswap v3 position needs its {name}")
    problems.integer(lp.decimals0, at("decimals0"), 0, TOKEN_DECIMALS_LIMIT)
    problems.integer(lp.decimals1, at("decimals1"), 0, TOKEN_DECIMALS_LIMIT)
    problems.integer(lp.liquidity, at("liquidity"), 0, UINT128)
    for name in ("tick_lower", "tick_upper", "tick_current"):
        problems.integer(getattr(lp, name), at(name), MIN_TICK, MAX_TICK + 1)
    for name in ("tokens_owed0", "tokens_owed1"):
        problems.integer(getattr(lp, name), at(name), 0, UINT128)
    for name in (n for pair in FEE_GROWTH_PAIRS for n in pair):
        problems.integer(getattr(lp, name), at(name), 0, UINT256)
    for name in ("fee_growth_outside_lower", "fee_growth_outside_upper"):
        for i, value in enumerate(getattr(lp, name) or ()):
            problems.integer(value, ("positions", index, "lp", name, i), 0, UINT256)
    problems.integer(lp.sqrt_price_x96, at("sqrt_price_x96"), MIN_SQRT_RATIO, MAX_SQRT_RATIO)
    if lp.token0 == lp.token1:
        problems.add(at("token1"), "invalid", "token1 must differ from token0")
    ticks_in_range = all(t is not None and MIN_TICK <= t <= MAX_TICK
                         for t in (lp.tick_lower, lp.tick_upper))
    if ticks_in_range and lp.tick_lower >= lp.tick_upper:
        problems.add(at("tick_upper"), "out_of_range", "tick_upper must exceed tick_lower")
    for pair in FEE_GROWTH_PAIRS:
        given = [getattr(lp, name) is not None for name in pair]
        if any(given) and not all(given):
            missing = pair[given.index(False)]
            problems.add(at(missing), "required",
                         f"{missing} is required with {pair[given.index(True)]}")


# --------------------------------------------------------------------------- request options


def _check_methods(portfolio: Portfolio, problems: Problems) -> None:
    for i, method in enumerate(portfolio.methods):
        problems.choice(method, ("methods", i), METHODS)


def _check_house(house: Mapping[str, Any] | None, declared: set[str],
                 problems: Problems) -> None:
    """The house layer a request asks for (``true``/``false`` take or drop the set's value)."""
    if not house:
        return
    value = house.get("vol_shift")
    if not isinstance(value, bool):
        problems.number(value, ("house", "vol_shift"), lower=0, strict=True, upper=1)
    value = house.get("stress_range")
    if not isinstance(value, bool):  # +/- the range: a price falls to zero at most
        problems.number(value, ("house", "stress_range"), lower=0, strict=True,
                        upper=-STRESS_MOVE_FLOOR)
    concentration = house.get("concentration")
    if isinstance(concentration, Mapping):
        at: Path = ("house", "concentration")
        problems.number(concentration.get("top_class_groups"), (*at, "top_class_groups"),
                        lower=1)
        problems.number(concentration.get("top_move"), (*at, "top_move"), lower=0,
                        strict=True, upper=1)
        problems.number(concentration.get("other_move"), (*at, "other_move"), lower=0,
                        upper=1)
    overrides = house.get("overrides")
    if isinstance(overrides, Mapping):
        _check_house_overrides(overrides, declared, problems)


def _check_house_overrides(overrides: Mapping[str, Any], declared: set[str],
                           problems: Problems) -> None:
    at: Path = ("house", "overrides")
    problems.number(overrides.get("min_price_for_pm"), (*at, "min_price_for_pm"), lower=0)
    problems.number(overrides.get("naked_short_fraction"), (*at, "naked_short_fraction"),
                    lower=0, upper=1)
    problems.number(overrides.get("ineligible_range"), (*at, "ineligible_range"), lower=0,
                    strict=True, upper=-STRESS_MOVE_FLOOR)
    for symbol, entry in (overrides.get("symbols") or {}).items():
        path: Path = (*at, "symbols", symbol)
        if symbol not in declared:
            problems.add(path, "undeclared_underlying", f"{symbol!r} is not declared")
            continue
        # A move down (``range`` is down and up) takes a price to zero at most; up is open.
        for key, upper in (("range", -STRESS_MOVE_FLOOR), ("down", -STRESS_MOVE_FLOOR),
                           ("up", None)):
            problems.number(entry.get(key), (*path, key), lower=0, strict=True, upper=upper)
        problems.number(entry.get("naked_short_fraction"), (*path, "naked_short_fraction"),
                        lower=0, upper=1)


def _check_offsets(portfolio: Portfolio, declared: _Declared, problems: Problems) -> None:
    for group, value in portfolio.offsets.items():
        if group not in declared.product_groups:
            problems.add(("offsets", group), "undeclared_product_group",
                         f"no underlying belongs to product group {group!r}")
        else:
            problems.number(value, ("offsets", group), lower=0, upper=1)


def _check_span_parameters(span_parameters: Mapping[str, Mapping[str, Any]],
                           declared: set[str], problems: Problems) -> None:
    """A request's SPAN parameters per combined commodity (CME SPAN: money per contract)."""
    for commodity, entry in span_parameters.items():
        at: Path = ("span_parameters", commodity)
        if commodity not in declared:
            problems.add(at, "undeclared_underlying", f"{commodity!r} is not declared")
            continue
        scan = entry.get("price_scan")
        if not isinstance(scan, Mapping):  # a per-period table is checked as the engine reads it
            problems.number(scan, (*at, "price_scan"), lower=0, strict=True)
        problems.number(entry.get("vol_scan"), (*at, "vol_scan"), lower=0)
        problems.number(entry.get("extreme_multiplier"), (*at, "extreme_multiplier"), lower=0,
                        strict=True)
        problems.number(entry.get("extreme_coverage"), (*at, "extreme_coverage"), lower=0,
                        upper=1)
        problems.number(entry.get("short_option_minimum"), (*at, "short_option_minimum"),
                        lower=0)
        intra = entry.get("intra_spread_charge")
        if not isinstance(intra, list):  # month/tier pairs are checked as the engine reads them
            problems.number(intra, (*at, "intra_spread_charge"), lower=0)
        for i, spread in enumerate(entry.get("inter_spreads") or ()):
            _check_inter_spread(spread, (*at, "inter_spreads", i), declared, problems)


def _check_inter_spread(spread: Mapping[str, Any], at: Path, declared: set[str],
                        problems: Problems) -> None:
    for symbol, ratio in (spread.get("legs") or {}).items():
        if symbol not in declared:
            problems.add((*at, "legs", symbol), "undeclared_underlying",
                         f"{symbol!r} is not declared")
        else:
            problems.number(ratio, (*at, "legs", symbol), lower=0, strict=True)
    problems.number(spread.get("credit"), (*at, "credit"), lower=0, upper=1)


def _check_history(portfolio: Portfolio, params: ParameterSet, declared: _Declared,
                   problems: Problems) -> None:
    """Daily closes per underlying (or class group): long enough, one length, positive."""
    if portfolio.history is None:
        return
    minimum = params.var.min_history
    lengths: dict[int, str] = {}
    for symbol, closes in portfolio.history.items():
        at: Path = ("history", symbol)
        if not declared.symbol_or_group(symbol):
            problems.add(at, "undeclared_underlying",
                         f"{symbol!r} is neither a declared underlying nor a class group")
            continue
        if len(closes) < minimum:
            problems.add(at, "too_short",
                         f"needs at least {minimum} daily closes, got {len(closes)}")
        for i, close in enumerate(closes):
            problems.number(close, (*at, i), lower=0, strict=True)
        first = lengths.setdefault(len(closes), symbol)
        if len(lengths) > 1 and first == symbol:
            problems.add(at, "unequal_lengths", "every history must have the same length")
    if "var" in portfolio.methods:
        _check_history_covers(portfolio, portfolio.history, declared, problems)


def _check_history_covers(portfolio: Portfolio, history: Mapping[str, Any],
                          declared: _Declared, problems: Problems) -> None:
    """Historical VaR moves every held underlying by its own closes or its class group's
    (an undeclared one is reported as such, not again here)."""
    reported: set[str] = set()
    for p in portfolio.positions:
        roots = (p.lp.token0, p.lp.token1) if p.lp else (p.root,)
        for symbol in roots:
            if (symbol is None or symbol in history or symbol in reported
                    or symbol not in declared.symbols):
                continue
            und = portfolio.underlyings.get(symbol)
            group = und.class_group if und is not None else None
            if group in history:
                continue
            reported.add(symbol)
            problems.add(("history", symbol), "required",
                         f"position {p.id!r} needs the history of {symbol!r} "
                         f"or of its class group {group!r}")


def _check_stress(portfolio: Portfolio, declared: _Declared, problems: Problems) -> None:
    """Named scenarios carry no moves (the engine ships them); custom moves are >= -1."""
    for i, scenario in enumerate(portfolio.stress):
        if not scenario.moves:
            problems.choice(scenario.name, ("stress", i), NAMED_STRESS)
            continue
        for symbol, move in scenario.moves.items():
            at: Path = ("stress", i, "moves", symbol)
            if not declared.symbol_or_group(symbol):
                problems.add(at, "undeclared_underlying",
                             f"{symbol!r} is neither a declared underlying nor a class group")
            else:
                problems.number(move, at, lower=STRESS_MOVE_FLOOR)
