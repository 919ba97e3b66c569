"""Parameter sets: every range, offset, minimum and haircut the engine uses is data.

The platform default ships with the code (``data/default-2026.1.json``) so the calculator
never reads a database; a firm's versioned parameter set is that JSON with the firm's
overrides merged over it (``overlay``). JSON mappings are the storage shape only: the engine
reads a typed, frozen `ParameterSet` built once from the merged mapping
(`ParameterSet.from_mapping`), which refuses a missing or unknown field, a wrong type, a
non-finite number, a negative one outside the shock grids, a fraction above 1 and badly
ordered haircut tiers, naming the path. Engine code then reads attributes
(``params.reg_t.minimum_equity``), never ``float(params[..][..])``.
"""

from __future__ import annotations

import copy
import json
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

DEFAULT_PARAMETER_SET = "default-2026.1"
_DATA = Path(__file__).with_name("data")


class ParameterSetError(ValueError):
    """A parameter set that cannot be used: every problem as (dotted path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))
        self.problems = problems


# --------------------------------------------------------------------------- the typed set


@dataclass(frozen=True)
class PortfolioMarginParameters:
    """The regulatory layer: FINRA 4210(g) / Cboe Rule 10.4 valuation points and minimums."""

    points: Mapping[str, tuple[float, ...]]  # product class -> relative moves, ascending
    minimum_per_contract: float  # $0.375 per contract (Cboe Rule 10.4)
    offsets_by_product_class: Mapping[str, float]
    offsets: Mapping[str, float]  # named product groups

    def offset_for(self, product_group: str, product_class: str,
                   request_offsets: Mapping[str, float] | None = None) -> float:
        """Product-group offset: the request's, else the named group's, else by class, else 0."""
        if request_offsets and product_group in request_offsets:
            return float(request_offsets[product_group])
        if product_group in self.offsets:
            return self.offsets[product_group]
        return self.offsets_by_product_class.get(product_class, 0.0)


@dataclass(frozen=True)
class ConcentrationParameters:
    top_class_groups: int
    top_move: float
    other_move: float


@dataclass(frozen=True)
class SymbolOverride:
    """A per-symbol house range, PM eligibility or naked-short fraction (absent: None)."""

    range: float | None = None
    down: float | None = None
    up: float | None = None
    eligible: bool | None = None
    naked_short_fraction: float | None = None


@dataclass(frozen=True)
class HouseOverrides:
    min_price_for_pm: float | None = None
    naked_short_fraction: float = 0.0
    ineligible_range: float = 1.0  # an ineligible position is stressed by its whole value
    symbols: Mapping[str, SymbolOverride] = field(default_factory=lambda: _frozen({}))

    def overlaid(self, changes: Mapping[str, Any]) -> HouseOverrides:
        """These overrides with a request's ``house.overrides`` deep-merged over them."""
        problems: list[tuple[str, str]] = []
        merged = _build(HouseOverrides, overlay(_as_json(self), changes),
                        ("house", "overrides"), problems)
        if problems:
            raise ParameterSetError(problems)
        return merged


@dataclass(frozen=True)
class SnapshotComponents:
    """Which house components a firm's live snapshots apply."""

    vol_shift: bool
    concentration: bool
    stress_range: bool

    def as_house_request(self) -> dict[str, bool]:
        """The same switches as a calculator request's ``house`` (``true``: the set's value)."""
        return {"vol_shift": self.vol_shift, "concentration": self.concentration,
                "stress_range": self.stress_range}


@dataclass(frozen=True)
class HouseParameters:
    """The house layer a broker adds on top of the regulatory one (METHODOLOGY.md s. 2)."""

    vol_shift: float
    concentration: ConcentrationParameters
    stress_range: float
    overrides: HouseOverrides
    snapshot_components: SnapshotComponents


@dataclass(frozen=True)
class RegTParameters:
    """Strategy-based percentages: FINRA 4210(c) and the Cboe Margin Manual."""

    long_stock_initial: float
    long_stock_maintenance: float
    short_stock_initial: float
    short_stock_maintenance: float
    short_stock_maintenance_per_share: float
    short_stock_low_price: float
    short_stock_low_price_maintenance: float
    short_stock_low_price_per_share: float
    long_option_loan_months: int
    long_option_loan_value: float
    uncovered_equity: float
    uncovered_broad_index: float
    uncovered_minimum: float
    minimum_equity: float


@dataclass(frozen=True)
class SpanParameters:
    """CME SPAN defaults; a request's ``span_parameters`` of a commodity override them."""

    extreme_multiplier: float
    extreme_coverage: float
    vol_scan: float
    short_option_minimum: float
    price_scan: float | None = None  # else the widest valuation point of the class


@dataclass(frozen=True)
class PerpMargin:
    initial: float
    maintenance: float


@dataclass(frozen=True)
class OracleParameters:
    max_jump: float
    reference_band: float


@dataclass(frozen=True)
class DefiParameters:
    """Crypto collateral, perpetuals and LP positions (METHODOLOGY.md section 6)."""

    crypto_grid: tuple[float, ...]
    depeg_grid: tuple[float, ...]
    large_caps: tuple[str, ...]
    mid_caps: tuple[str, ...]
    # per table: ascending [size cap in USD (None: open), marginal haircut] brackets
    haircut_tiers: Mapping[str, tuple[tuple[float | None, float], ...]]
    perp_margin: Mapping[str, PerpMargin]  # per tier: large_cap, mid_cap, long_tail
    perp_profit_haircut: float
    max_ltv: float
    advance_rate: float
    liquidation_threshold: Mapping[str, float]
    oracle: OracleParameters

    def tier_of(self, symbol: str) -> str:
        """Perpetual / liquidation tier: ``large_cap``, ``mid_cap`` or ``long_tail``."""
        if symbol in self.large_caps:
            return "large_cap"
        if symbol in self.mid_caps:
            return "mid_cap"
        return "long_tail"


@dataclass(frozen=True)
class VarParameters:
    confidence: float
    es_confidence: float
    horizons: tuple[int, ...]
    min_history: int
    #: daily returns a live snapshot's VaR uses per underlying (METHODOLOGY.md section 5)
    window: int


@dataclass(frozen=True)
class SnapshotSettings:
    """What a firm's live snapshots compute: methods and named stress scenarios."""

    methods: tuple[str, ...]
    stress: tuple[str, ...]


@dataclass(frozen=True)
class ParameterSet:
    """One parameter set, typed and validated; build it with `from_mapping`."""

    name: str
    about: str
    portfolio_margin: PortfolioMarginParameters
    house: HouseParameters
    reg_t: RegTParameters
    span: SpanParameters
    defi: DefiParameters
    var: VarParameters
    snapshots: SnapshotSettings
    # the JSON mapping it was built from (the storage shape firm overrides merge over)
    source: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> ParameterSet:
        """The typed set of a JSON mapping; raises `ParameterSetError` naming every problem."""
        problems: list[tuple[str, str]] = []
        if isinstance(mapping, Mapping):
            _check_leafs(dict(mapping), (), problems, signed=_SIGNED_IN_SET)
            tiers = mapping.get("defi", {})
            for tier, table in (tiers.get("haircut_tiers", {}) if isinstance(tiers, Mapping)
                                else {}).items():
                _check_tiers(table, ("defi", "haircut_tiers", tier), problems)
        built = _build(cls, mapping, (), problems, skip=("source",))
        if problems:
            raise ParameterSetError(problems)
        return _replace_source(built, copy.deepcopy(dict(mapping)))

    def as_mapping(self) -> dict[str, Any]:
        """A fresh copy of the JSON mapping this set was built from (to overlay changes on)."""
        return copy.deepcopy(dict(self.source))

    def with_overrides(self, changes: Mapping[str, Any]) -> ParameterSet:
        """This set with ``changes`` deep-merged over its mapping, typed again."""
        return ParameterSet.from_mapping(overlay(self.as_mapping(), changes))


def _replace_source(built: ParameterSet, source: dict[str, Any]) -> ParameterSet:
    object.__setattr__(built, "source", _frozen(source))
    return built


# --------------------------------------------------------------------------- loading


@lru_cache(maxsize=8)
def _load(name: str) -> str:
    path = _DATA / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"unknown parameter set {name!r}")
    return path.read_text()


def load_parameter_mapping(name: str = DEFAULT_PARAMETER_SET) -> dict[str, Any]:
    """A fresh copy of a shipped parameter set's JSON mapping (to overlay a firm's changes)."""
    return json.loads(_load(name))


@lru_cache(maxsize=8)
def load_parameter_set(name: str = DEFAULT_PARAMETER_SET) -> ParameterSet:
    """A shipped parameter set, typed and validated (built once per name: it is frozen)."""
    return ParameterSet.from_mapping(load_parameter_mapping(name))


def overlay(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``changes`` over ``base`` without touching either (firm overrides)."""
    merged = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = overlay(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# --------------------------------------------------------------------------- typed reading
# One reader for every section: a field's type hint says how its JSON value is read.


def _frozen(mapping: dict[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(mapping)


def _as_json(value: Any) -> Any:
    """A typed value back in its JSON shape (fields left at None are left out)."""
    if is_dataclass(value):
        return {f.name: _as_json(getattr(value, f.name)) for f in fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, Mapping):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_as_json(v) for v in value]
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _build(cls: type, value: Any, path: tuple[str, ...], problems: list[tuple[str, str]],
           skip: tuple[str, ...] = ()) -> Any:
    """``cls`` from a JSON object: every field read by its hint; None after a problem."""
    start = len(problems)
    if not isinstance(value, Mapping):
        problems.append((".".join(path), "must be an object"))
        return None
    hints = _hints(cls)
    own = [f for f in fields(cls) if f.name not in skip]
    for key in value:
        if key not in {f.name for f in own}:
            problems.append((".".join((*path, str(key))), f"unknown field '{key}'"))
    kwargs: dict[str, Any] = {}
    for f in own:
        if f.name in value:
            kwargs[f.name] = _read(hints[f.name], value[f.name], (*path, f.name), problems)
        elif f.default is f.default_factory:  # both MISSING: a required field
            problems.append((".".join((*path, f.name)), "is required"))
    return cls(**kwargs) if len(problems) == start else None


def _read(hint: Any, value: Any, path: tuple[str, ...], problems: list[tuple[str, str]]) -> Any:
    dotted = ".".join(path)
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _read(inner, value, path, problems)
    if is_dataclass(hint):
        return _build(hint, value, path, problems)
    if origin is tuple:
        return _read_tuple(args, value, path, problems)
    if origin is Mapping:
        if not isinstance(value, Mapping):
            problems.append((dotted, "must be an object"))
            return None
        return _frozen({str(k): _read(args[1], v, (*path, str(k)), problems)
                        for k, v in value.items()})
    return _read_scalar(hint, value, dotted, problems)


def _read_tuple(args: tuple[Any, ...], value: Any, path: tuple[str, ...],
                problems: list[tuple[str, str]]) -> tuple[Any, ...] | None:
    dotted = ".".join(path)
    if not isinstance(value, list | tuple):
        problems.append((dotted, "must be a list"))
        return None
    item_hints = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
    if len(item_hints) != len(value):
        problems.append((dotted, f"must hold {len(item_hints)} values"))
        return None
    return tuple(_read(h, v, (*path[:-1], f"{path[-1]}[{i}]"), problems)
                 for i, (h, v) in enumerate(zip(item_hints, value, strict=True)))


def _read_scalar(hint: Any, value: Any, dotted: str, problems: list[tuple[str, str]]) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            problems.append((dotted, "must be true or false"))
        return value
    if hint is str:
        if not isinstance(value, str):
            problems.append((dotted, "must be a string"))
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append((dotted, "must be an integer"))
            return None
        return value
    if hint is float:
        if not _is_number(value):
            problems.append((dotted, "must be a number"))
            return None
        return float(value)
    raise TypeError(f"no reader for {hint!r} at {dotted}")  # pragma: no cover - a coding slip


# --------------------------------------------------------------------------- firm overrides
#: Sections a firm may override in its own parameter set. ``portfolio_margin`` and ``reg_t``
#: are the regulatory layer (FINRA 4210(g), Cboe Rule 10.4, FINRA 4210(c)): valuation points,
#: offsets and minimums a firm may not loosen; a firm adds conservatism through ``house``
#: (METHODOLOGY.md section 2), which max(regulatory, house) always applies on top.
FIRM_SECTIONS = ("house", "span", "defi", "var", "snapshots")
#: fields the engine reads when present but the default set leaves out (value: their type)
_OPTIONAL_FIELDS: dict[str, Any] = {"house": {"overrides": {"ineligible_range": 1.0,
                                                            "symbols": {}}},
                                    "span": {"price_scan": 0.0}}
#: maps whose keys are free (symbols), not field names, and the fields of each entry
_OPEN_MAPS = {("house", "overrides", "symbols"): {"range": 0.0, "down": 0.0, "up": 0.0,
                                                  "eligible": True,
                                                  "naked_short_fraction": 0.0}}
#: paths (prefixes) whose numbers may be negative: the shock grids
_SIGNED = {("defi", "crypto_grid"), ("defi", "depeg_grid")}
#: in a whole set the regulatory valuation points are shock grids too
_SIGNED_IN_SET = _SIGNED | {("portfolio_margin", "points")}
#: paths (prefixes) whose numbers are fractions in [0, 1]
_FRACTIONS = {("defi", "perp_margin"), ("defi", "perp_profit_haircut"), ("defi", "max_ltv"),
              ("defi", "advance_rate"), ("defi", "liquidation_threshold"), ("defi", "oracle"),
              ("var", "confidence"), ("var", "es_confidence"), ("span", "extreme_coverage"),
              ("house", "overrides", "naked_short_fraction"),
              # moves down: a price falls to zero at most (the portfolio validator's bound)
              ("house", "stress_range"), ("house", "overrides", "ineligible_range")}
_FRACTION_LEAVES = {"naked_short_fraction", "range", "down"}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _under(path: tuple[str, ...], prefixes: set[tuple[str, ...]]) -> bool:
    return any(path[:len(p)] == p for p in prefixes)


def check_overrides(base: ParameterSet | Mapping[str, Any], changes: Any
                    ) -> list[tuple[str, str]]:
    """Every problem of a firm's ``changes`` to ``base`` as (dotted path, message); [] if none.

    A change may only name fields the base set has (a typo must not be silently ignored), in
    the sections a firm may change (``FIRM_SECTIONS``), with the base field's type; numbers are
    finite, non-negative (grids excepted) and fractions within [0, 1]; haircut tiers are
    ascending size caps ending in an open tier, with haircuts in [0, 1] that never fall as the
    holding grows (METHODOLOGY.md section 6).
    """
    if isinstance(base, ParameterSet):
        base = base.as_mapping()
    if not isinstance(changes, dict):
        return [("", "the overrides must be a JSON object")]
    errors: list[tuple[str, str]] = []
    for section, value in changes.items():
        if section not in FIRM_SECTIONS:
            reason = ("is the regulatory layer: a firm adds conservatism through 'house'"
                      if section in ("portfolio_margin", "reg_t") else "is not a field")
            errors.append((section, f"'{section}' {reason}; a firm may change "
                                    f"{', '.join(FIRM_SECTIONS)}"))
            continue
        schema = overlay(base, _OPTIONAL_FIELDS)
        _check_node(schema.get(section), value, (section,), errors)
    if not errors and "defi" in changes:
        merged = overlay(base, changes)["defi"]
        for tier, table in merged.get("haircut_tiers", {}).items():
            _check_tiers(table, ("defi", "haircut_tiers", tier), errors)
    if not errors:
        try:  # the merged set must also build: it is what the firm's snapshots will read
            ParameterSet.from_mapping(overlay(base, changes))
        except ParameterSetError as exc:
            errors.extend(exc.problems)
    return errors


def _check_node(base: Any, value: Any, path: tuple[str, ...], errors: list[tuple[str, str]]
                ) -> None:
    dotted = ".".join(path)
    if isinstance(base, dict):
        if not isinstance(value, dict):
            errors.append((dotted, "must be an object"))
            return
        for key, item in value.items():
            if path in _OPEN_MAPS:
                _check_node(_OPEN_MAPS[path], item, (*path, str(key)), errors)
            elif key not in base:
                errors.append((f"{dotted}.{key}", f"unknown field '{key}' in {dotted}"))
            else:
                _check_node(base[key], item, (*path, key), errors)
        return
    if _is_number(base) and not _is_number(value):
        errors.append((dotted, "must be a number"))
    elif isinstance(base, bool) and not isinstance(value, bool):
        errors.append((dotted, "must be true or false"))
    elif isinstance(base, list) and not isinstance(value, list):
        errors.append((dotted, "must be a list"))
    elif isinstance(base, str) and not isinstance(value, str):
        errors.append((dotted, "must be a string"))
    else:
        _check_leafs(value, path, errors)


def _check_leafs(value: Any, path: tuple[str, ...], errors: list[tuple[str, str]],
                 signed: set[tuple[str, ...]] = _SIGNED) -> None:
    """Numbers anywhere under ``value``: finite, signed only on grids, fractions in [0, 1]."""
    dotted = ".".join(path)
    if isinstance(value, dict):
        for key, item in value.items():
            _check_leafs(item, (*path, str(key)), errors, signed)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_leafs(item, (*path[:-1], f"{path[-1]}[{i}]"), errors, signed)
    elif _is_number(value):
        plain = tuple(p.split("[")[0] for p in path)
        if not math.isfinite(value):
            errors.append((dotted, "must be a finite number"))
        elif value < 0 and not _under(plain, signed):
            errors.append((dotted, "must not be negative"))
        elif value > 1 and (_under(plain, _FRACTIONS) or plain[-1] in _FRACTION_LEAVES):
            errors.append((dotted, "is a fraction: at most 1"))


def _check_tiers(table: Any, path: tuple[str, ...], errors: list[tuple[str, str]]) -> None:
    dotted = ".".join(path)
    rows = table if isinstance(table, list) else []
    if not rows or not all(isinstance(r, list) and len(r) == 2 for r in rows):
        errors.append((dotted, "must be a list of [size cap in USD or null, haircut] pairs"))
        return
    caps = [r[0] for r in rows]
    if caps[-1] is not None or any(c is None for c in caps[:-1]):
        errors.append((dotted, "only the last tier is open-ended (cap null)"))
    elif any(not _is_number(c) or c <= 0 for c in caps[:-1]) or caps[:-1] != sorted(
            set(caps[:-1])):
        errors.append((dotted, "size caps must be positive and strictly ascending"))
    cuts = [r[1] for r in rows]
    if not all(_is_number(c) and 0 <= c <= 1 for c in cuts):
        errors.append((dotted, "haircuts must be numbers in [0, 1]"))
    elif cuts != sorted(cuts):
        errors.append((dotted, "haircuts must not fall as the holding grows"))
