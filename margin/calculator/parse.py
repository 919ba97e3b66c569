"""Strict parsing of a calculator request (CALCULATOR.md) into a normalised `Portfolio`.

Every error that can be found is collected before anything is refused, each named by its
request path (``positions[3].strike``, ``underlyings.IBM.price``) with a stable code:

==========================  ==============================================================
code                        meaning
==========================  ==============================================================
``malformed_json``          the body is not UTF-8 JSON (field ``""``)
``invalid``                 wrong JSON type or shape (a string for a number, a list of 15)
``required``                a required field is missing
``unknown_field``           a field the contract does not define (a typo never drops data)
``duplicate_field``         the same key twice in one object (JSON would keep the last)
``duplicate_id``            two positions with the same ``id``
``not_finite``              ``NaN``, ``Infinity`` or a number beyond float range
``not_positive``            must be > 0 (prices, strikes, multipliers, volatilities)
``negative``                must be >= 0 (option marks, times to expiry, scan ranges)
``out_of_range``            outside its documented range (ticks, uint sizes, fractions)
``invalid_date``            not an ISO date / datetime, or an impossible one (2026-02-30)
``expired``                 an expiry before the valuation date
``invalid_choice``          not one of the documented values (methods, kinds, classes...)
``undeclared_underlying``   a symbol not declared in ``underlyings``
``undeclared_product_group``an ``offsets`` key no underlying belongs to
``mixed_product_classes``   a class group mixing product classes (a future may join one)
``mixed_grids``             a product group whose class groups have different valuation grids
``conflicting_fields``      two fields that exclude each other (``price`` and ``oracle``)
``too_short``               a price history shorter than the parameter set's minimum
``unequal_lengths``         price histories of different lengths
``oracle_<check>``          an oracle round rejected by ``check_round`` (METHODOLOGY.md s. 6)
==========================  ==============================================================

The body is decoded with ``parse_int=int`` (integers stay exact at any size), with the
``NaN``/``Infinity`` literals Python's json accepts turned into a marker reported as
``not_finite`` at its path, and with duplicate keys recorded rather than silently collapsed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from margin.engine.defi.oracles import MAX_DECIMALS as MAX_ORACLE_DECIMALS
from margin.engine.defi.oracles import check_round
from margin.engine.errors import EngineInputError
from margin.engine.parameters import ParameterSet, load_parameter_set
from margin.engine.portfolio import (
    PRODUCT_CLASSES,
    UNDERLYING_TYPES,
    LPPosition,
    Portfolio,
    Position,
    StressScenario,
    Underlying,
)

METHODS = ("portfolio_margin", "reg_t", "span", "var", "collateral")
NAMED_STRESS = ("1987-10-19", "2008-10", "2020-03-16", "2022-05", "2022-11")
RIGHTS = ("call", "put")
EXERCISES = ("american", "european")
DAYS_PER_YEAR = 365.0
OPTION_MULTIPLIER = 100.0
RISK_ARRAY_LENGTH = 16

DEFAULT_TYPE = {
    "equity": "stock",
    "narrow_index": "index",
    "broad_index_high_cap": "index",
    "broad_index": "index",
    "future": "future",
    "crypto": "token",
    "stablecoin": "token",
}
EUROPEAN_TYPES = ("index", "token")  # cash-settled index and crypto options
FUTURE_CLASS = "future"

# Uniswap v3 bounds (v3-core TickMath): int24 ticks, uint128 liquidity, uint160 sqrt prices.
MIN_TICK, MAX_TICK = -887272, 887272
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342
UINT128 = 2**128
MAX_UNIX_SECONDS = 253402300800  # 10000-01-01: beyond it datetime cannot hold the time
UINT256 = 2**256

TOP_FIELDS = (
    "valuation_date", "valuation_time", "rate", "underlyings", "positions", "methods", "house",
    "offsets", "span_parameters", "history", "stress",
)
UNDERLYING_FIELDS = (
    "price", "oracle", "reference_price", "product_class", "type", "dividend_yield", "leverage",
    "volatility", "class_group", "product_group",
)
ORACLE_FIELDS = (
    "round_id", "answer", "decimals", "started_at", "updated_at", "answered_in_round",
    "heartbeat_s", "previous_answer",
)
OPTION_FIELDS = (
    "underlying", "right", "strike", "expiry", "time_to_expiry", "multiplier", "exercise",
    "price", "implied_vol",
)
LP_SCALARS = (
    "tokens_owed0", "tokens_owed1", "fee_growth_inside_last0", "fee_growth_inside_last1",
    "fee_growth_global0", "fee_growth_global1",
)
LP_FIELDS = (
    "token0", "token1", "decimals0", "decimals1", "liquidity", "tick_lower", "tick_upper",
    *LP_SCALARS, "fee_growth_outside_lower", "fee_growth_outside_upper", "tick_current",
    "sqrt_price_x96",
)
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "stock": ("symbol", "quantity"),
    "option": (*OPTION_FIELDS, "quantity"),
    "future": ("underlying", "expiry", "quantity", "multiplier", "price", "risk_array"),
    "future_option": (*OPTION_FIELDS, "quantity", "risk_array"),
    "crypto": ("symbol", "quantity"),
    "perpetual": ("symbol", "quantity", "entry_price", "funding_accrued"),
    "uniswap_v3_lp": LP_FIELDS,
}
HOUSE_FIELDS = ("vol_shift", "concentration", "stress_range", "overrides")
CONCENTRATION_FIELDS = ("top_class_groups", "top_move", "other_move")
OVERRIDE_FIELDS = ("min_price_for_pm", "naked_short_fraction", "ineligible_range", "symbols")
SYMBOL_OVERRIDE_FIELDS = ("range", "down", "up", "eligible", "naked_short_fraction")
SPAN_FIELDS = (
    "price_scan", "vol_scan", "extreme_multiplier", "extreme_coverage", "short_option_minimum",
    "intra_spread_charge", "inter_spreads",
)
INTER_SPREAD_FIELDS = ("legs", "credit")
STRESS_FIELDS = ("name", "moves")

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?$"
)
_DECIMAL_INT = re.compile(r"^-?\d+$")


class CalculatorError(Exception):
    """Bad input: every error found, each ``{"field", "code", "message"}``."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


# --------------------------------------------------------------------------- JSON decoding


@dataclass(frozen=True)
class NonFinite:
    """Stands in for a NaN/Infinity literal (or an overflowing number) until it is reported."""

    literal: str


class JSONObject(dict):
    """A decoded object that remembers keys given more than once."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> JSONObject:
    obj = JSONObject()
    duplicates = []
    for key, value in pairs:
        if key in obj:
            duplicates.append(key)
        obj[key] = value
    if duplicates:
        obj.duplicates = tuple(duplicates)
    return obj


def _parse_float(text: str) -> float | NonFinite:
    value = float(text)
    return value if math.isfinite(value) else NonFinite(text)


def decode(raw: bytes | str) -> Any:
    """The JSON document, ints exact, non-finite literals marked; raises CalculatorError."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        return json.loads(text, parse_int=int, parse_float=_parse_float,
                          parse_constant=NonFinite, object_pairs_hook=_object_pairs)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CalculatorError([_error("", "malformed_json", f"the body is not valid JSON: {exc}")]) from None


# --------------------------------------------------------------------------- error collection


def _error(field: str, code: str, message: str) -> dict[str, str]:
    return {"field": field, "code": code, "message": message}


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, code: str, message: str) -> None:
        self.items.append(_error(field, code, message))

    def __len__(self) -> int:
        return len(self.items)


_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string"}


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return _TYPE_NAMES.get(type(value), _TYPE_NAMES.get(type(value).__mro__[1], "a value"))


# --------------------------------------------------------------------------- value readers
# Each reader takes the value and its path, reports what is wrong and returns None for a bad
# value, so that callers carry on and report the rest.


def read_number(value: Any, path: str, errors: Errors, *, lower: float | None = None,
                strict: bool = False, upper: float | None = None) -> float | None:
    """A finite float; ``lower`` is exclusive when ``strict`` (``not_positive`` at 0)."""
    if isinstance(value, NonFinite):
        errors.add(path, "not_finite", f"{value.literal} is not a finite number")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.add(path, "invalid", f"must be a number, not {_kind_of(value)}")
        return None
    try:
        number = float(value)
    except OverflowError:
        errors.add(path, "not_finite", "the number is beyond the range of a float")
        return None
    if lower is not None and (number < lower or (strict and number == lower)):
        if strict and lower == 0:
            errors.add(path, "not_positive", f"must be greater than 0, got {value}")
        elif lower == 0:
            errors.add(path, "negative", f"must not be negative, got {value}")
        else:
            op = ">" if strict else ">="
            errors.add(path, "out_of_range", f"must be {op} {lower}, got {value}")
        return None
    if upper is not None and number > upper:
        errors.add(path, "out_of_range", f"must be <= {upper}, got {value}")
        return None
    return 0.0 if number == 0 else number  # no -0.0 reaches the engine


def read_int(value: Any, path: str, errors: Errors, *, lower: int | None = None,
             upper_exclusive: int | None = None, allow_string: bool = True) -> int | None:
    """An exact integer from a JSON integer or (``allow_string``) a decimal string."""
    if isinstance(value, NonFinite):
        errors.add(path, "not_finite", f"{value.literal} is not a finite number")
        return None
    if isinstance(value, str) and allow_string and _DECIMAL_INT.match(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        what = "an integer or a decimal string" if allow_string else "an integer"
        errors.add(path, "invalid", f"must be {what}, not {_kind_of(value)}")
        return None
    if (lower is not None and value < lower) or (
            upper_exclusive is not None and value >= upper_exclusive):
        errors.add(path, "out_of_range",
                   f"must be in [{lower}, {upper_exclusive}), got {value}")
        return None
    return value


def read_string(value: Any, path: str, errors: Errors,
                choices: Iterable[str] | None = None) -> str | None:
    if not isinstance(value, str) or not value:
        errors.add(path, "invalid", f"must be a non-empty string, not {_kind_of(value)}")
        return None
    if choices is not None and value not in choices:
        allowed = ", ".join(choices)
        errors.add(path, "invalid_choice", f"{value!r} is not one of: {allowed}")
        return None
    return value


def read_bool(value: Any, path: str, errors: Errors) -> bool | None:
    if not isinstance(value, bool):
        errors.add(path, "invalid", f"must be true or false, not {_kind_of(value)}")
        return None
    return value


def read_date(value: Any, path: str, errors: Errors) -> date | None:
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        errors.add(path, "invalid_date", "must be an ISO date, YYYY-MM-DD")
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        errors.add(path, "invalid_date", f"{value!r} is not a date: {exc}")
        return None


def read_datetime(value: Any, path: str, errors: Errors) -> datetime | None:
    """An ISO datetime in UTC; a naive one is taken as UTC, an offset one converted to UTC."""
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        errors.add(path, "invalid_date",
                   "must be an ISO datetime in UTC, e.g. 2026-11-24T12:00:00Z")
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        errors.add(path, "invalid_date", f"{value!r} is not a datetime: {exc}")
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def read_object(value: Any, path: str, errors: Errors) -> dict | None:
    if not isinstance(value, dict):
        errors.add(path, "invalid", f"must be an object, not {_kind_of(value)}")
        return None
    for key in getattr(value, "duplicates", ()):
        errors.add(join(path, key), "duplicate_field", "given more than once")
    return value


def read_list(value: Any, path: str, errors: Errors) -> list | None:
    if not isinstance(value, list):
        errors.add(path, "invalid", f"must be a list, not {_kind_of(value)}")
        return None
    return value


class Fields:
    """An object's fields: unknown ones reported at once, the rest read by name."""

    def __init__(self, obj: dict, path: str, errors: Errors, allowed: Iterable[str]) -> None:
        self.obj = obj
        self.path = path
        self.errors = errors
        allowed = set(allowed)
        for key in obj:
            if key not in allowed:
                errors.add(join(path, key), "unknown_field", f"unknown field {key!r}")

    def at(self, key: str) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.obj

    def _present(self, key: str, required: bool) -> bool:
        if key in self.obj:
            return True
        if required:
            self.errors.add(self.at(key), "required", "this field is required")
        return False

    def number(self, key: str, *, required: bool = False, default: float | None = None,
               **bounds: Any) -> float | None:
        if not self._present(key, required):
            return default
        return read_number(self.obj[key], self.at(key), self.errors, **bounds)

    def integer(self, key: str, *, required: bool = False, default: int | None = None,
                **bounds: Any) -> int | None:
        if not self._present(key, required):
            return default
        return read_int(self.obj[key], self.at(key), self.errors, **bounds)

    def string(self, key: str, *, required: bool = False, default: str | None = None,
               choices: Iterable[str] | None = None) -> str | None:
        if not self._present(key, required):
            return default
        return read_string(self.obj[key], self.at(key), self.errors, choices)

    def date(self, key: str, *, required: bool = False) -> date | None:
        if not self._present(key, required):
            return None
        return read_date(self.obj[key], self.at(key), self.errors)

    def datetime(self, key: str, *, required: bool = False) -> datetime | None:
        if not self._present(key, required):
            return None
        return read_datetime(self.obj[key], self.at(key), self.errors)

    def object(self, key: str, *, required: bool = False) -> dict | None:
        if not self._present(key, required):
            return None
        return read_object(self.obj[key], self.at(key), self.errors)

    def list(self, key: str, *, required: bool = False) -> list | None:
        if not self._present(key, required):
            return None
        return read_list(self.obj[key], self.at(key), self.errors)


def fields_of(value: Any, path: str, errors: Errors, allowed: Iterable[str]) -> Fields | None:
    obj = read_object(value, path, errors)
    return None if obj is None else Fields(obj, path, errors, allowed)


# --------------------------------------------------------------------------- underlyings


@dataclass
class UnderlyingDraft:
    """An underlying before its oracle round (if any) is checked."""

    fields: dict[str, Any]
    oracle: dict[str, Any] | None = None
    oracle_path: str = ""
    valid: bool = True


def parse_oracle_round(value: Any, path: str, errors: Errors) -> dict[str, Any] | None:
    """The round's structure; its content (positive, complete, fresh...) is check_round's."""
    f = fields_of(value, path, errors, ORACLE_FIELDS)
    if f is None:
        return None
    before = len(errors)
    round_ = {
        "round_id": f.integer("round_id", required=True, lower=0),
        "answer": f.integer("answer", required=True),
        "decimals": f.integer("decimals", required=True, lower=0,
                              upper_exclusive=MAX_ORACLE_DECIMALS + 1, allow_string=False),
        "started_at": _round_time(f, "started_at"),
        "updated_at": _round_time(f, "updated_at", required=True),
        "answered_in_round": f.integer("answered_in_round", required=True, lower=0),
        "heartbeat_s": f.integer("heartbeat_s", required=True, lower=1, allow_string=False),
        "previous_answer": f.integer("previous_answer", required=True),
    }
    return round_ if len(errors) == before else None


def _round_time(f: Fields, key: str, *, required: bool = False) -> datetime | None:
    """An ISO datetime or unix seconds; null or 0 means unset (an unanswered Chainlink round)."""
    if not f.has(key):
        return f.datetime(key, required=required)
    value = f.obj[key]
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = read_int(value, f.at(key), f.errors, lower=0,
                           upper_exclusive=MAX_UNIX_SECONDS, allow_string=False)
        if not seconds:
            return None
        return datetime.fromtimestamp(seconds, tz=UTC)
    return read_datetime(value, f.at(key), f.errors)


def parse_underlying(symbol: str, value: Any, errors: Errors) -> UnderlyingDraft | None:
    path = join("underlyings", symbol)
    f = fields_of(value, path, errors, UNDERLYING_FIELDS)
    if f is None:
        return None
    before = len(errors)
    product_class = f.string("product_class", required=True, choices=PRODUCT_CLASSES)
    default_type = DEFAULT_TYPE.get(product_class or "", None)
    draft = UnderlyingDraft(fields={
        "symbol": symbol,
        "product_class": product_class,
        "type": f.string("type", default=default_type, choices=UNDERLYING_TYPES),
        "dividend_yield": f.number("dividend_yield", default=0.0),
        "leverage": f.number("leverage", default=1.0, lower=0, strict=True),
        "volatility": f.number("volatility", lower=0, strict=True),
        "class_group": f.string("class_group", default=symbol),
    })
    draft.fields["product_group"] = f.string("product_group",
                                             default=draft.fields["class_group"])
    _parse_price_source(f, draft, errors)
    draft.valid = len(errors) == before
    return draft


def _parse_price_source(f: Fields, draft: UnderlyingDraft, errors: Errors) -> None:
    if f.has("price") and f.has("oracle"):
        errors.add(f.at("oracle"), "conflicting_fields", "give either price or oracle, not both")
        return
    if f.has("oracle"):
        draft.oracle_path = f.at("oracle")
        draft.oracle = parse_oracle_round(f.obj["oracle"], draft.oracle_path, errors)
        draft.fields["reference_price"] = f.number("reference_price", lower=0, strict=True)
        return
    if f.has("reference_price"):
        errors.add(f.at("reference_price"), "conflicting_fields",
                   "reference_price only applies to an oracle round")
    draft.fields["price"] = f.number("price", required=True, lower=0, strict=True)


def check_class_groups(drafts: dict[str, UnderlyingDraft], params: ParameterSet,
                       errors: Errors) -> None:
    """One product class per class group; one valuation grid per product group.

    A ``future`` may join another class's group (METHODOLOGY.md section 1: index futures follow
    their index's class when held with it); any other mix is an error.
    """
    members: dict[str, list[tuple[str, str]]] = {}
    for symbol, draft in drafts.items():
        cls = draft.fields["product_class"]
        if cls is not None:
            members.setdefault(draft.fields["class_group"], []).append((symbol, cls))
    effective: dict[str, str] = {}
    for group, entries in members.items():
        first = next(((s, c) for s, c in entries if c != FUTURE_CLASS), entries[0])
        effective[group] = first[1]
        for symbol, cls in entries:
            if cls not in (first[1], FUTURE_CLASS):
                errors.add(join(join("underlyings", symbol), "class_group"),
                           "mixed_product_classes",
                           f"class group {group!r} mixes {first[1]} ({first[0]}) and {cls} "
                           f"({symbol})")
    _check_product_group_grids(drafts, effective, params, errors)


def _check_product_group_grids(drafts: dict[str, UnderlyingDraft], effective: dict[str, str],
                               params: ParameterSet, errors: Errors) -> None:
    """Points align by index across a product group's class groups, so grids must agree."""
    grids = params.portfolio_margin.points
    first_of_group: dict[str, tuple[tuple[float, ...], str]] = {}
    for symbol, draft in drafts.items():
        cls = effective.get(draft.fields["class_group"])
        if cls is None or draft.fields["product_class"] is None:
            continue
        group = draft.fields["product_group"]
        grid = tuple(grids.get(cls, ()))
        first = first_of_group.setdefault(group, (grid, symbol))
        if first[0] != grid:
            errors.add(join(join("underlyings", symbol), "product_group"), "mixed_grids",
                       f"product group {group!r} mixes valuation grids ({first[1]} and "
                       f"{symbol}): the points of its class groups must align")


def resolve_oracles(drafts: dict[str, UnderlyingDraft], valuation_time: datetime | None,
                    params: ParameterSet, errors: Errors) -> None:
    """Checks each oracle round (METHODOLOGY.md section 6); the validated price goes on."""
    for symbol, draft in drafts.items():
        if draft.oracle is None or not draft.valid or valuation_time is None:
            continue
        try:
            price = check_round(symbol, draft.oracle, valuation_time,
                                draft.fields.get("reference_price"), params, draft.oracle_path)
        except EngineInputError as exc:
            errors.add(exc.field or draft.oracle_path, exc.code, exc.message)
            continue
        draft.fields["price"] = float(price)


# --------------------------------------------------------------------------- positions


@dataclass
class Context:
    """What positions are checked against."""

    valuation_date: date | None
    drafts: dict[str, UnderlyingDraft]
    errors: Errors


def _declared(ctx: Context, f: Fields, key: str) -> str | None:
    symbol = f.string(key, required=True)
    if symbol is not None and symbol not in ctx.drafts:
        ctx.errors.add(f.at(key), "undeclared_underlying",
                       f"{symbol!r} is not declared in underlyings")
        return None
    return symbol


def _expiry(ctx: Context, f: Fields, *, allow_time: bool) -> tuple[date | None, float | None]:
    """Expiry date and years to it (calendar days / 365), or a given ``time_to_expiry``."""
    if allow_time and f.has("time_to_expiry"):
        if f.has("expiry"):
            ctx.errors.add(f.at("time_to_expiry"), "conflicting_fields",
                           "give either expiry or time_to_expiry, not both")
            return None, None
        return None, f.number("time_to_expiry", lower=0)
    expiry = f.date("expiry", required=True)
    if expiry is None or ctx.valuation_date is None:
        return expiry, None
    days = (expiry - ctx.valuation_date).days
    if days < 0:
        ctx.errors.add(f.at("expiry"), "expired",
                       f"expiry {expiry.isoformat()} is before the valuation date "
                       f"{ctx.valuation_date.isoformat()}")
        return None, None
    return expiry, days / DAYS_PER_YEAR


def _risk_array(f: Fields) -> tuple[float, ...] | None:
    values = f.list("risk_array")
    if values is None:
        return None
    if len(values) != RISK_ARRAY_LENGTH:
        f.errors.add(f.at("risk_array"), "invalid",
                     f"must hold {RISK_ARRAY_LENGTH} scenario values, got {len(values)}")
        return None
    numbers = [read_number(v, join(f.at("risk_array"), i), f.errors) for i, v in enumerate(values)]
    return None if None in numbers else tuple(numbers)  # type: ignore[arg-type]


def _option_fields(ctx: Context, f: Fields, kind: str) -> dict[str, Any]:
    underlying = _declared(ctx, f, "underlying")
    right = f.string("right", required=True, choices=RIGHTS)
    strike = f.number("strike", required=True, lower=0, strict=True)
    expiry, years = _expiry(ctx, f, allow_time=True)
    draft = ctx.drafts.get(underlying or "")
    exercise_default = None
    if draft is not None and draft.fields["type"] is not None:
        exercise_default = "european" if draft.fields["type"] in EUROPEAN_TYPES else "american"
    fields = {
        "underlying": underlying,
        "right": right,
        "strike": strike,
        "expiry": expiry,
        "time_to_expiry": years,
        "multiplier": f.number("multiplier", required=kind == "future_option",
                               default=OPTION_MULTIPLIER, lower=0, strict=True),
        "exercise": f.string("exercise", default=exercise_default, choices=EXERCISES),
        "price": f.number("price", lower=0),
        "implied_vol": f.number("implied_vol", lower=0, strict=True),
    }
    has_vol = draft is not None and draft.fields.get("volatility") is not None
    checkable = draft is not None and draft.valid
    if checkable and not (f.has("price") or f.has("implied_vol") or has_vol):
        ctx.errors.add(f.at("price"), "required",
                       "an option needs a price, an implied_vol or its underlying's volatility")
    if kind == "future_option":
        fields["risk_array"] = _risk_array(f)
    return fields


def _future_fields(ctx: Context, f: Fields) -> dict[str, Any]:
    expiry, years = _expiry(ctx, f, allow_time=False)
    return {
        "underlying": _declared(ctx, f, "underlying"),
        "expiry": expiry,
        "time_to_expiry": years,
        "multiplier": f.number("multiplier", required=True, lower=0, strict=True),
        "price": f.number("price", required=True, lower=0, strict=True),
        "risk_array": _risk_array(f),
    }


def _perpetual_fields(ctx: Context, f: Fields) -> dict[str, Any]:
    return {
        "symbol": _declared(ctx, f, "symbol"),
        "entry_price": f.number("entry_price", required=True, lower=0, strict=True),
        "funding_accrued": f.number("funding_accrued", default=0.0),
    }


def _uint(f: Fields, key: str, bound: int, *, required: bool = False) -> int | None:
    return f.integer(key, required=required, lower=0, upper_exclusive=bound)


def _tick(f: Fields, key: str, *, required: bool = False) -> int | None:
    return f.integer(key, required=required, lower=MIN_TICK, upper_exclusive=MAX_TICK + 1)


def _pair(f: Fields, key: str) -> tuple[int, int] | None:
    values = f.list(key)
    if values is None:
        return None
    if len(values) != 2:
        f.errors.add(f.at(key), "invalid", "must be a pair [token0, token1]")
        return None
    pair = [read_int(v, join(f.at(key), i), f.errors, lower=0, upper_exclusive=UINT256)
            for i, v in enumerate(values)]
    return None if None in pair else (pair[0], pair[1])  # type: ignore[return-value]


def _lp_fields(ctx: Context, f: Fields) -> dict[str, Any]:
    before = len(ctx.errors)
    lp = {
        "token0": _declared(ctx, f, "token0"),
        "token1": _declared(ctx, f, "token1"),
        "decimals0": f.integer("decimals0", required=True, lower=0, upper_exclusive=256),
        "decimals1": f.integer("decimals1", required=True, lower=0, upper_exclusive=256),
        "liquidity": _uint(f, "liquidity", UINT128, required=True),
        "tick_lower": _tick(f, "tick_lower", required=True),
        "tick_upper": _tick(f, "tick_upper", required=True),
        "tokens_owed0": _uint(f, "tokens_owed0", UINT128) or 0,
        "tokens_owed1": _uint(f, "tokens_owed1", UINT128) or 0,
        **{key: _uint(f, key, UINT256) for key in LP_SCALARS[2:]},
        "fee_growth_outside_lower": _pair(f, "fee_growth_outside_lower"),
        "fee_growth_outside_upper": _pair(f, "fee_growth_outside_upper"),
        "tick_current": _tick(f, "tick_current"),
        "sqrt_price_x96": f.integer("sqrt_price_x96", lower=MIN_SQRT_RATIO,
                                    upper_exclusive=MAX_SQRT_RATIO),
    }
    _check_lp(f, lp)
    if len(ctx.errors) != before:
        return {}
    return {"lp": LPPosition(**lp), "quantity": 1.0}


def _check_lp(f: Fields, lp: dict[str, Any]) -> None:
    if lp["token0"] is not None and lp["token0"] == lp["token1"]:
        f.errors.add(f.at("token1"), "invalid", "token1 must differ from token0")
    lower, upper = lp["tick_lower"], lp["tick_upper"]
    if lower is not None and upper is not None and lower >= upper:
        f.errors.add(f.at("tick_upper"), "out_of_range", "tick_upper must exceed tick_lower")
    # Fees since the checkpoint need, per token, both the position's last and the global growth.
    for token in ("0", "1"):
        pair = (f"fee_growth_inside_last{token}", f"fee_growth_global{token}")
        given = [f.has(k) for k in pair]
        if any(given) and not all(given):
            missing = pair[given.index(False)]
            f.errors.add(f.at(missing), "required",
                         f"{missing} is required with {pair[given.index(True)]}")


def parse_position(index: int, value: Any, ctx: Context) -> Position | None:
    path = join("positions", index)
    obj = read_object(value, path, ctx.errors)
    if obj is None:
        return None
    if "kind" not in obj:
        ctx.errors.add(join(path, "kind"), "required", "this field is required")
        return None
    kind = read_string(obj["kind"], join(path, "kind"), ctx.errors, KIND_FIELDS)
    if kind is None:
        return None
    f = Fields(obj, path, ctx.errors, ("id", "kind", *KIND_FIELDS[kind]))
    before = len(ctx.errors)
    fields: dict[str, Any] = {
        "index": index,
        "id": f.string("id", default=f"#{index}"),
        "kind": kind,
    }
    if kind != "uniswap_v3_lp":
        fields["quantity"] = f.number("quantity", required=True)
    fields.update(_kind_fields(ctx, f, kind))
    if len(ctx.errors) != before:
        return None
    return Position(**fields)


def _kind_fields(ctx: Context, f: Fields, kind: str) -> dict[str, Any]:
    if kind in ("stock", "crypto"):
        return {"symbol": _declared(ctx, f, "symbol")}
    if kind in ("option", "future_option"):
        return _option_fields(ctx, f, kind)
    if kind == "future":
        return _future_fields(ctx, f)
    if kind == "perpetual":
        return _perpetual_fields(ctx, f)
    return _lp_fields(ctx, f)


def check_ids(positions: list[Position], errors: Errors) -> None:
    seen: set[str] = set()
    for position in positions:
        if position.id in seen:
            errors.add(join(join("positions", position.index), "id"), "duplicate_id",
                       f"id {position.id!r} names another position already")
        seen.add(position.id)


# --------------------------------------------------------------------------- request options


def parse_methods(f: Fields) -> tuple[str, ...]:
    values = f.list("methods")
    if values is None:
        return METHODS if not f.has("methods") else ()
    chosen = {read_string(v, join(f.at("methods"), i), f.errors, METHODS)
              for i, v in enumerate(values)}
    return tuple(m for m in METHODS if m in chosen)


def parse_house(f: Fields, drafts: dict[str, UnderlyingDraft]) -> dict[str, Any] | None:
    """The house layer asked for, validated; ``margin.engine.house`` resolves its defaults.

    ``{"vol_shift": 0.25, "concentration": true, "stress_range": 0.25, "overrides": {...}}``:
    ``true`` takes the parameter set's value, a number or an object replaces or overlays it,
    ``false`` switches the component off (as absence does).
    """
    h = fields_of(f.obj["house"], f.at("house"), f.errors, HOUSE_FIELDS) if f.has("house") \
        else None
    if h is None:
        return None
    readers = {
        "vol_shift": lambda v, p: read_number(v, p, h.errors, lower=0, strict=True, upper=1),
        "stress_range": lambda v, p: read_number(v, p, h.errors, lower=0, strict=True),
        "concentration": lambda v, p: _concentration(v, p, h.errors),
        "overrides": lambda v, p: _overrides(v, p, h.errors, drafts),
    }
    house: dict[str, Any] = {}
    for key, read in readers.items():
        if not h.has(key):
            continue
        value = h.obj[key]
        house[key] = value if isinstance(value, bool) else read(value, h.at(key))
    return house


def _concentration(value: Any, path: str, errors: Errors) -> dict | None:
    c = fields_of(value, path, errors, CONCENTRATION_FIELDS)
    if c is None:
        return None
    settings = {
        "top_class_groups": c.integer("top_class_groups", lower=1, allow_string=False),
        "top_move": c.number("top_move", lower=0, strict=True, upper=1),
        "other_move": c.number("other_move", lower=0, upper=1),
    }
    return {k: v for k, v in settings.items() if c.has(k)}


def _overrides(value: Any, path: str, errors: Errors,
               drafts: dict[str, UnderlyingDraft]) -> dict | None:
    o = fields_of(value, path, errors, OVERRIDE_FIELDS)
    if o is None:
        return None
    settings: dict[str, Any] = {
        "min_price_for_pm": o.number("min_price_for_pm", lower=0),
        "naked_short_fraction": o.number("naked_short_fraction", lower=0, upper=1),
        "ineligible_range": o.number("ineligible_range", lower=0, strict=True),
    }
    settings = {k: v for k, v in settings.items() if o.has(k)}
    if o.has("symbols"):
        settings["symbols"] = _symbol_overrides(o, drafts)
    return settings


def _symbol_overrides(o: Fields, drafts: dict[str, UnderlyingDraft]) -> dict[str, dict]:
    symbols: dict[str, dict] = {}
    for symbol, spec in (o.object("symbols") or {}).items():
        path = join(o.at("symbols"), symbol)
        if symbol not in drafts:
            o.errors.add(path, "undeclared_underlying", f"{symbol!r} is not declared")
            continue
        s = fields_of(spec, path, o.errors, SYMBOL_OVERRIDE_FIELDS)
        if s is None:
            continue
        entry: dict[str, Any] = {key: s.number(key, lower=0, strict=True)
                                 for key in ("range", "down", "up") if s.has(key)}
        if s.has("naked_short_fraction"):
            entry["naked_short_fraction"] = s.number("naked_short_fraction", lower=0, upper=1)
        if s.has("eligible"):
            entry["eligible"] = read_bool(s.obj["eligible"], s.at("eligible"), o.errors)
        symbols[symbol] = entry
    return symbols


def parse_offsets(f: Fields, drafts: dict[str, UnderlyingDraft]) -> dict[str, float]:
    offsets = f.object("offsets")
    if offsets is None:
        return {}
    groups = {d.fields["product_group"] for d in drafts.values()}
    result: dict[str, float] = {}
    for group, value in offsets.items():
        path = join(f.at("offsets"), group)
        if group not in groups:
            f.errors.add(path, "undeclared_product_group",
                         f"no underlying belongs to product group {group!r}")
            continue
        number = read_number(value, path, f.errors, lower=0, upper=1)
        if number is not None:
            result[group] = number
    return result


def parse_span_parameters(f: Fields, params: ParameterSet,
                          drafts: dict[str, UnderlyingDraft]) -> dict[str, dict]:
    """Per combined commodity, with CALCULATOR.md's defaults from the parameter set filled in."""
    given = f.object("span_parameters")
    if given is None:
        return {}
    defaults = params.span
    result: dict[str, dict] = {}
    for commodity, value in given.items():
        path = join(f.at("span_parameters"), commodity)
        if commodity not in drafts:
            f.errors.add(path, "undeclared_underlying", f"{commodity!r} is not declared")
            continue
        s = fields_of(value, path, f.errors, SPAN_FIELDS)
        if s is None:
            continue
        entry = {
            "price_scan": s.number("price_scan", lower=0, strict=True),
            "vol_scan": s.number("vol_scan", default=defaults.vol_scan, lower=0),
            "extreme_multiplier": s.number("extreme_multiplier",
                                           default=defaults.extreme_multiplier, lower=0,
                                           strict=True),
            "extreme_coverage": s.number("extreme_coverage",
                                         default=defaults.extreme_coverage, lower=0, upper=1),
            "short_option_minimum": s.number("short_option_minimum",
                                             default=defaults.short_option_minimum, lower=0),
            "intra_spread_charge": s.number("intra_spread_charge", default=0.0, lower=0),
            "inter_spreads": _inter_spreads(s, drafts),
        }
        result[commodity] = {k: v for k, v in entry.items() if v is not None}
    return result


def _inter_spreads(s: Fields, drafts: dict[str, UnderlyingDraft]) -> list[dict]:
    spreads = []
    for i, value in enumerate(s.list("inter_spreads") or []):
        sp = fields_of(value, join(s.at("inter_spreads"), i), s.errors, INTER_SPREAD_FIELDS)
        if sp is None:
            continue
        legs: dict[str, float] = {}
        for symbol, ratio in (sp.object("legs", required=True) or {}).items():
            path = join(sp.at("legs"), symbol)
            if symbol not in drafts:
                s.errors.add(path, "undeclared_underlying", f"{symbol!r} is not declared")
                continue
            number = read_number(ratio, path, s.errors, lower=0, strict=True)
            if number is not None:
                legs[symbol] = number
        credit = sp.number("credit", required=True, lower=0, upper=1)
        spreads.append({"legs": legs, "credit": credit})
    return spreads


def _symbol_or_group(symbol: str, drafts: dict[str, UnderlyingDraft]) -> bool:
    """A declared underlying, or a class group's name (it stands for every member)."""
    return symbol in drafts or any(d.fields["class_group"] == symbol for d in drafts.values())


def parse_history(f: Fields, params: ParameterSet, drafts: dict[str, UnderlyingDraft],
                  ) -> dict[str, tuple[float, ...]] | None:
    """Daily closes per underlying (or per class group, which its members then follow)."""
    given = f.object("history")
    if given is None:
        return None
    minimum = params.var.min_history
    history: dict[str, tuple[float, ...]] = {}
    lengths: dict[int, str] = {}
    for symbol, values in given.items():
        path = join(f.at("history"), symbol)
        if not _symbol_or_group(symbol, drafts):
            f.errors.add(path, "undeclared_underlying",
                         f"{symbol!r} is neither a declared underlying nor a class group")
            continue
        closes = read_list(values, path, f.errors)
        if closes is None:
            continue
        if len(closes) < minimum:
            f.errors.add(path, "too_short",
                         f"needs at least {minimum} daily closes, got {len(closes)}")
        numbers = [read_number(v, join(path, i), f.errors, lower=0, strict=True)
                   for i, v in enumerate(closes)]
        first = lengths.setdefault(len(closes), symbol)
        if len(lengths) > 1 and first == symbol:
            f.errors.add(path, "unequal_lengths", "every history must have the same length")
        if None not in numbers:
            history[symbol] = tuple(numbers)  # type: ignore[arg-type]
    return history


def check_history_covers(history: dict[str, tuple[float, ...]] | None,
                         positions: list[Position], drafts: dict[str, UnderlyingDraft],
                         errors: Errors) -> None:
    """Historical VaR moves every held underlying by its own closes or its class group's."""
    if history is None:
        return
    reported: set[str] = set()
    for position in positions:
        roots = (position.lp.token0, position.lp.token1) if position.lp else (position.root,)
        for symbol in roots:
            if symbol is None or symbol in history or symbol in reported:
                continue
            group = drafts[symbol].fields["class_group"] if symbol in drafts else None
            if group in history:
                continue
            reported.add(symbol)
            errors.add(join("history", symbol), "required",
                       f"position {position.id!r} needs the history of {symbol!r} "
                       f"or of its class group {group!r}")


def parse_stress(f: Fields, drafts: dict[str, UnderlyingDraft]) -> tuple[StressScenario, ...]:
    """Named scenarios carry no moves here (the engine ships their data); custom ones do.

    A custom move is keyed by an underlying or a class group (moving every member without a
    move of its own), and is >= -1 (-1: the price goes to zero).
    """
    scenarios = []
    for i, value in enumerate(f.list("stress") or []):
        path = join(f.at("stress"), i)
        if isinstance(value, str):
            name = read_string(value, path, f.errors, NAMED_STRESS)
            if name is not None:
                scenarios.append(StressScenario(name=name, moves={}))
            continue
        s = fields_of(value, path, f.errors, STRESS_FIELDS)
        if s is None:
            continue
        name = s.string("name", required=True)
        moves = _stress_moves(s, drafts)
        if name is not None and moves:
            scenarios.append(StressScenario(name=name, moves=moves))
    return tuple(scenarios)


def _stress_moves(s: Fields, drafts: dict[str, UnderlyingDraft]) -> dict[str, float]:
    given = s.object("moves", required=True)
    if given is None:
        return {}
    if not given:
        s.errors.add(s.at("moves"), "invalid", "a custom scenario moves at least one symbol")
    moves: dict[str, float] = {}
    for symbol, move in given.items():
        path = join(s.at("moves"), symbol)
        if not _symbol_or_group(symbol, drafts):
            s.errors.add(path, "undeclared_underlying",
                         f"{symbol!r} is neither a declared underlying nor a class group")
            continue
        number = read_number(move, path, s.errors, lower=-1)
        if number is not None:
            moves[symbol] = number
    return moves


# --------------------------------------------------------------------------- the request


def parse_request(raw: bytes | str, params: ParameterSet | None = None) -> Portfolio:
    """The validated, defaulted `Portfolio` of a request; raises CalculatorError otherwise."""
    params = load_parameter_set() if params is None else params
    errors = Errors()
    f = fields_of(decode(raw), "", errors, TOP_FIELDS)
    if f is None:
        raise CalculatorError(errors.items)
    valuation_date = f.date("valuation_date", required=True)
    valuation_time = f.datetime("valuation_time")
    rate = f.number("rate", default=0.0)
    drafts = _parse_underlyings(f, errors)
    check_class_groups(drafts, params, errors)
    _require_valuation_time(f, drafts, valuation_time, errors)
    ctx = Context(valuation_date, drafts, errors)
    positions = _parse_positions(f, ctx)
    check_ids(positions, errors)
    methods = parse_methods(f)
    house = parse_house(f, drafts)
    offsets = parse_offsets(f, drafts)
    span_parameters = parse_span_parameters(f, params, drafts)
    history = parse_history(f, params, drafts)
    if "var" in methods:
        check_history_covers(history, positions, drafts, errors)
    stress = parse_stress(f, drafts)
    resolve_oracles(drafts, valuation_time, params, errors)
    if errors:
        raise CalculatorError(errors.items)
    return Portfolio(
        valuation_date=valuation_date,  # type: ignore[arg-type]
        underlyings={s: Underlying(**d.fields) for s, d in drafts.items()},
        positions=tuple(positions),
        rate=rate,  # type: ignore[arg-type]
        valuation_time=valuation_time,
        methods=methods,
        house=house,
        offsets=offsets,
        span_parameters=span_parameters,
        history=history,
        stress=stress,
    )


def _parse_underlyings(f: Fields, errors: Errors) -> dict[str, UnderlyingDraft]:
    underlyings = f.object("underlyings", required=True) or {}
    drafts: dict[str, UnderlyingDraft] = {}
    for symbol, value in underlyings.items():
        if not symbol:
            errors.add("underlyings", "invalid", "a symbol must be a non-empty string")
            continue
        draft = parse_underlying(symbol, value, errors)
        # A bad one stays declared, so that positions on it are not also reported undeclared.
        drafts[symbol] = draft or UnderlyingDraft(
            fields={"symbol": symbol, "type": None, "product_class": None,
                    "class_group": symbol, "product_group": symbol}, valid=False)
    return drafts


def _require_valuation_time(f: Fields, drafts: dict[str, UnderlyingDraft],
                            valuation_time: datetime | None, errors: Errors) -> None:
    if f.has("valuation_time"):
        return
    oracles = [s for s, d in drafts.items() if d.oracle_path]
    if oracles:
        errors.add("valuation_time", "required",
                   f"required with an oracle round (underlyings {', '.join(oracles)}): "
                   "staleness is judged against it")


def _parse_positions(f: Fields, ctx: Context) -> list[Position]:
    positions = []
    for index, value in enumerate(f.list("positions", required=True) or []):
        position = parse_position(index, value, ctx)
        if position is not None:
            positions.append(position)
    return positions
