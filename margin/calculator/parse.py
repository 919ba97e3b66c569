"""Strict parsing of a calculator request (CALCULATOR.md) into a normalised `Portfolio`.

The parser checks the JSON's shape and types (unknown fields, wrong types, missing fields,
dates, non-finite literals), builds the `Portfolio` and hands it to the engine's one validator
(``margin.engine.validation``), which checks every domain bound (positive prices, declared
underlyings, expiries, class groups, LP ticks...). Its problems come back named by their
portfolio path, mapped here to the request's (an LP position's ``lp.`` fields are flat in the
request, a stress scenario is numbered as the request numbers it), and merged with the
parser's in document order. Every error that can be found is collected before anything is
refused, each named by its request path (``positions[3].strike``, ``underlyings.IBM.price``)
with a stable code:

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from margin.engine.defi.oracles import MAX_DECIMALS as MAX_ORACLE_DECIMALS
from margin.engine.defi.oracles import check_round
from margin.engine.errors import EngineInputError, Path, render_path
from margin.engine.parameters import ParameterSet, load_parameter_set
from margin.engine.portfolio import (
    DAYS_PER_YEAR,
    DEFAULT_TYPE,
    EUROPEAN_TYPES,
    EXERCISES,
    METHODS,
    OPTION_MULTIPLIER,
    PRODUCT_CLASSES,
    RIGHTS,
    RISK_ARRAY_LENGTH,
    UNDERLYING_TYPES,
    LPPosition,
    Portfolio,
    Position,
    StressScenario,
    Underlying,
)
from margin.engine.validation import portfolio_problems

MAX_UNIX_SECONDS = 253402300800  # 10000-01-01: beyond it datetime cannot hold the time

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
LP_REQUIRED_INTS = ("decimals0", "decimals1", "liquidity", "tick_lower", "tick_upper")
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


def read_number(value: Any, path: str, errors: Errors) -> float | None:
    """A finite float (its bounds are the validator's)."""
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


def _of_json_type(value: Any, path: str, errors: Errors, json_type: type, what: str) -> Any:
    """`value` if it is of `json_type`, else None and an error saying it must be `what`."""
    if not isinstance(value, json_type):
        errors.add(path, "invalid", f"must be {what}, not {_kind_of(value)}")
        return None
    return value


def read_bool(value: Any, path: str, errors: Errors) -> bool | None:
    return _of_json_type(value, path, errors, bool, "true or false")


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
    if _of_json_type(value, path, errors, dict, "an object") is None:
        return None
    for key in getattr(value, "duplicates", ()):
        errors.add(join(path, key), "duplicate_field", "given more than once")
    return value


def read_list(value: Any, path: str, errors: Errors) -> list | None:
    return _of_json_type(value, path, errors, list, "a list")


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

    def _read(self, key: str, required: bool, default: Any, reader: Callable[..., Any],
              *args: Any, **kwargs: Any) -> Any:
        """Absent: `default` (and an error if `required`); present: `reader` at its path."""
        if not self._present(key, required):
            return default
        return reader(self.obj[key], self.at(key), self.errors, *args, **kwargs)

    def number(self, key: str, *, required: bool = False,
               default: float | None = None) -> float | None:
        return self._read(key, required, default, read_number)

    def integer(self, key: str, *, required: bool = False, default: int | None = None,
                **bounds: Any) -> int | None:
        return self._read(key, required, default, read_int, **bounds)

    def string(self, key: str, *, required: bool = False, default: str | None = None,
               choices: Iterable[str] | None = None) -> str | None:
        return self._read(key, required, default, read_string, choices)

    def date(self, key: str, *, required: bool = False) -> date | None:
        return self._read(key, required, None, read_date)

    def datetime(self, key: str, *, required: bool = False) -> datetime | None:
        return self._read(key, required, None, read_datetime)

    def object(self, key: str, *, required: bool = False) -> dict | None:
        return self._read(key, required, None, read_object)

    def list(self, key: str, *, required: bool = False) -> list | None:
        return self._read(key, required, None, read_list)


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
        "leverage": f.number("leverage", default=1.0),
        "volatility": f.number("volatility"),
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
        draft.fields["reference_price"] = f.number("reference_price")
        return
    if f.has("reference_price"):
        errors.add(f.at("reference_price"), "conflicting_fields",
                   "reference_price only applies to an oracle round")
    draft.fields["price"] = f.number("price", required=True)


def resolve_oracles(drafts: dict[str, UnderlyingDraft], valuation_time: datetime | None,
                    params: ParameterSet, errors: Errors) -> None:
    """Checks each oracle round (METHODOLOGY.md section 6); the validated price goes on."""
    for symbol, draft in drafts.items():
        if draft.oracle is None or not draft.valid or valuation_time is None:
            continue
        reference = draft.fields.get("reference_price")
        if reference is not None and not reference > 0:
            continue  # no band to check against: the validator refuses it (not_positive)
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


def _expiry(ctx: Context, f: Fields, *, allow_time: bool) -> tuple[date | None, float | None]:
    """Expiry date and years to it (calendar days / 365), or a given ``time_to_expiry``."""
    if allow_time and f.has("time_to_expiry"):
        if f.has("expiry"):
            ctx.errors.add(f.at("time_to_expiry"), "conflicting_fields",
                           "give either expiry or time_to_expiry, not both")
            return None, None
        return None, f.number("time_to_expiry")
    expiry = f.date("expiry", required=True)
    if expiry is None or ctx.valuation_date is None:
        return expiry, None
    return expiry, (expiry - ctx.valuation_date).days / DAYS_PER_YEAR


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
    underlying = f.string("underlying", required=True)
    right = f.string("right", required=True, choices=RIGHTS)
    strike = f.number("strike", required=True)
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
                               default=OPTION_MULTIPLIER),
        "exercise": f.string("exercise", default=exercise_default, choices=EXERCISES),
        "price": f.number("price"),
        "implied_vol": f.number("implied_vol"),
    }
    if kind == "future_option":
        fields["risk_array"] = _risk_array(f)
    return fields


def _future_fields(ctx: Context, f: Fields) -> dict[str, Any]:
    expiry, years = _expiry(ctx, f, allow_time=False)
    return {
        "underlying": f.string("underlying", required=True),
        "expiry": expiry,
        "time_to_expiry": years,
        "multiplier": f.number("multiplier", required=True),
        "price": f.number("price", required=True),
        "risk_array": _risk_array(f),
    }


def _perpetual_fields(ctx: Context, f: Fields) -> dict[str, Any]:
    return {
        "symbol": f.string("symbol", required=True),
        "entry_price": f.number("entry_price", required=True),
        "funding_accrued": f.number("funding_accrued", default=0.0),
    }


def _pair(f: Fields, key: str) -> tuple[int, int] | None:
    values = f.list(key)
    if values is None:
        return None
    if len(values) != 2:
        f.errors.add(f.at(key), "invalid", "must be a pair [token0, token1]")
        return None
    pair = [read_int(v, join(f.at(key), i), f.errors) for i, v in enumerate(values)]
    return None if None in pair else (pair[0], pair[1])  # type: ignore[return-value]


def _lp_fields(ctx: Context, f: Fields) -> dict[str, Any]:
    before = len(ctx.errors)
    lp = {
        "token0": f.string("token0", required=True),
        "token1": f.string("token1", required=True),
        **{key: f.integer(key, required=True) for key in LP_REQUIRED_INTS},
        "tokens_owed0": f.integer("tokens_owed0", default=0),
        "tokens_owed1": f.integer("tokens_owed1", default=0),
        **{key: f.integer(key) for key in LP_SCALARS[2:]},
        "fee_growth_outside_lower": _pair(f, "fee_growth_outside_lower"),
        "fee_growth_outside_upper": _pair(f, "fee_growth_outside_upper"),
        "tick_current": f.integer("tick_current"),
        "sqrt_price_x96": f.integer("sqrt_price_x96"),
    }
    if len(ctx.errors) != before:
        return {}
    return {"lp": LPPosition(**lp), "quantity": 1.0}


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
        return {"symbol": f.string("symbol", required=True)}
    if kind in ("option", "future_option"):
        return _option_fields(ctx, f, kind)
    if kind == "future":
        return _future_fields(ctx, f)
    if kind == "perpetual":
        return _perpetual_fields(ctx, f)
    return _lp_fields(ctx, f)


# --------------------------------------------------------------------------- request options


def parse_methods(f: Fields) -> tuple[str, ...]:
    values = f.list("methods")
    if values is None:
        return METHODS if not f.has("methods") else ()
    chosen = {read_string(v, join(f.at("methods"), i), f.errors, METHODS)
              for i, v in enumerate(values)}
    return tuple(m for m in METHODS if m in chosen)


def parse_house(f: Fields) -> dict[str, Any] | None:
    """The house layer asked for; ``margin.engine.house`` resolves its defaults.

    ``{"vol_shift": 0.25, "concentration": true, "stress_range": 0.25, "overrides": {...}}``:
    ``true`` takes the parameter set's value, a number or an object replaces or overlays it,
    ``false`` switches the component off (as absence does).
    """
    h = fields_of(f.obj["house"], f.at("house"), f.errors, HOUSE_FIELDS) if f.has("house") \
        else None
    if h is None:
        return None
    readers = {
        "vol_shift": lambda v, p: read_number(v, p, h.errors),
        "stress_range": lambda v, p: read_number(v, p, h.errors),
        "concentration": lambda v, p: _concentration(v, p, h.errors),
        "overrides": lambda v, p: _overrides(v, p, h.errors),
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
        "top_class_groups": c.integer("top_class_groups", allow_string=False),
        "top_move": c.number("top_move"),
        "other_move": c.number("other_move"),
    }
    return {k: v for k, v in settings.items() if c.has(k)}


def _overrides(value: Any, path: str, errors: Errors) -> dict | None:
    o = fields_of(value, path, errors, OVERRIDE_FIELDS)
    if o is None:
        return None
    settings: dict[str, Any] = {key: o.number(key) for key in OVERRIDE_FIELDS[:3] if o.has(key)}
    if o.has("symbols"):
        settings["symbols"] = _symbol_overrides(o)
    return settings


def _symbol_overrides(o: Fields) -> dict[str, dict]:
    symbols: dict[str, dict] = {}
    for symbol, spec in (o.object("symbols") or {}).items():
        s = fields_of(spec, join(o.at("symbols"), symbol), o.errors, SYMBOL_OVERRIDE_FIELDS)
        if s is None:
            continue
        entry: dict[str, Any] = {key: s.number(key)
                                 for key in ("range", "down", "up", "naked_short_fraction")
                                 if s.has(key)}
        if s.has("eligible"):
            entry["eligible"] = read_bool(s.obj["eligible"], s.at("eligible"), o.errors)
        symbols[symbol] = entry
    return symbols


def parse_offsets(f: Fields) -> dict[str, float]:
    offsets = f.object("offsets")
    if offsets is None:
        return {}
    result: dict[str, float] = {}
    for group, value in offsets.items():
        number = read_number(value, join(f.at("offsets"), group), f.errors)
        if number is not None:
            result[group] = number
    return result


def parse_span_parameters(f: Fields, params: ParameterSet) -> dict[str, dict]:
    """Per combined commodity, with CALCULATOR.md's defaults from the parameter set filled in."""
    given = f.object("span_parameters")
    if given is None:
        return {}
    defaults = params.span
    result: dict[str, dict] = {}
    for commodity, value in given.items():
        s = fields_of(value, join(f.at("span_parameters"), commodity), f.errors, SPAN_FIELDS)
        if s is None:
            continue
        entry = {
            "price_scan": s.number("price_scan"),
            "vol_scan": s.number("vol_scan", default=defaults.vol_scan),
            "extreme_multiplier": s.number("extreme_multiplier",
                                           default=defaults.extreme_multiplier),
            "extreme_coverage": s.number("extreme_coverage", default=defaults.extreme_coverage),
            "short_option_minimum": s.number("short_option_minimum",
                                             default=defaults.short_option_minimum),
            "intra_spread_charge": s.number("intra_spread_charge", default=0.0),
            "inter_spreads": _inter_spreads(s),
        }
        result[commodity] = {k: v for k, v in entry.items() if v is not None}
    return result


def _inter_spreads(s: Fields) -> list[dict]:
    spreads = []
    for i, value in enumerate(s.list("inter_spreads") or []):
        sp = fields_of(value, join(s.at("inter_spreads"), i), s.errors, INTER_SPREAD_FIELDS)
        if sp is None:
            continue
        legs: dict[str, float] = {}
        for symbol, ratio in (sp.object("legs", required=True) or {}).items():
            number = read_number(ratio, join(sp.at("legs"), symbol), s.errors)
            if number is not None:
                legs[symbol] = number
        spreads.append({"legs": legs, "credit": sp.number("credit", required=True)})
    return spreads


def parse_history(f: Fields) -> dict[str, tuple[float, ...]] | None:
    """Daily closes per underlying (or per class group, which its members then follow)."""
    given = f.object("history")
    if given is None:
        return None
    history: dict[str, tuple[float, ...]] = {}
    for symbol, values in given.items():
        path = join(f.at("history"), symbol)
        closes = read_list(values, path, f.errors)
        if closes is None:
            continue
        numbers = [read_number(v, join(path, i), f.errors) for i, v in enumerate(closes)]
        if None not in numbers:
            history[symbol] = tuple(numbers)  # type: ignore[arg-type]
    return history


def parse_stress(f: Fields) -> tuple[tuple[StressScenario, ...], tuple[int, ...]]:
    """The scenarios and their indices in the request. Named scenarios carry no moves here
    (the engine ships their data); custom ones are keyed by an underlying or a class group
    (moving every member without a move of its own)."""
    scenarios: list[StressScenario] = []
    indices: list[int] = []
    for i, value in enumerate(f.list("stress") or []):
        path = join(f.at("stress"), i)
        if isinstance(value, str):
            name = read_string(value, path, f.errors)
            moves: dict[str, float] | None = {}
        else:
            s = fields_of(value, path, f.errors, STRESS_FIELDS)
            if s is None:
                continue
            name, moves = s.string("name", required=True), _stress_moves(s)
        if name is not None and moves is not None:
            scenarios.append(StressScenario(name=name, moves=moves))
            indices.append(i)
    return tuple(scenarios), tuple(indices)


def _stress_moves(s: Fields) -> dict[str, float] | None:
    given = s.object("moves", required=True)
    if given is None:
        return None
    if not given:
        s.errors.add(s.at("moves"), "invalid", "a custom scenario moves at least one symbol")
        return None
    moves = {symbol: read_number(move, join(s.at("moves"), symbol), s.errors)
             for symbol, move in given.items()}
    return None if None in moves.values() else moves  # type: ignore[return-value]


# --------------------------------------------------------------------------- the request


def parse_request(raw: bytes | str, params: ParameterSet | None = None) -> Portfolio:
    """The validated, defaulted `Portfolio` of a request; raises CalculatorError otherwise."""
    params = load_parameter_set() if params is None else params
    errors = Errors()
    document = decode(raw)
    f = fields_of(document, "", errors, TOP_FIELDS)
    if f is None:
        raise CalculatorError(errors.items)
    valuation_date = f.date("valuation_date", required=True)
    valuation_time = f.datetime("valuation_time")
    rate = f.number("rate", default=0.0)
    drafts = _parse_underlyings(f, errors)
    _require_valuation_time(f, drafts, valuation_time, errors)
    positions = _parse_positions(f, Context(valuation_date, drafts, errors))
    methods = parse_methods(f)
    house = parse_house(f)
    offsets = parse_offsets(f)
    span_parameters = parse_span_parameters(f, params)
    history = parse_history(f)
    stress, stress_indices = parse_stress(f)
    rejected = Errors()  # oracle rounds are judged last and reported last
    resolve_oracles(drafts, valuation_time, params, rejected)
    underlyings = {s: Underlying(**d.fields) for s, d in drafts.items()
                   if d.valid and d.fields.get("price") is not None}
    portfolio = Portfolio(
        # without a valuation date (already reported) nothing is expired
        valuation_date=valuation_date or date.min,
        underlyings=underlyings,
        positions=tuple(positions),
        rate=0.0 if rate is None else rate,
        valuation_time=valuation_time,
        methods=methods,
        house=house,
        offsets=offsets,
        span_parameters=span_parameters,
        history=history,
        stress=stress,
    )
    refused = {s: d.fields for s, d in drafts.items() if s not in underlyings}
    problems = portfolio_problems(portfolio, params, refused)
    found = _merged(document, errors.items,
                    [_request_error(p, stress_indices) for p in problems]) + rejected.items
    if found:
        raise CalculatorError(found)
    return portfolio


def _request_error(problem: EngineInputError, stress_indices: tuple[int, ...]
                   ) -> dict[str, str]:
    """The validator's problem named by its request path: an LP position's fields are flat in
    the request (``positions[0].tick_upper``), stress scenarios numbered as the request does."""
    path: Path = problem.path or ()
    if len(path) > 3 and path[0] == "positions" and path[2] == "lp":
        path = (*path[:2], *path[3:])
    if len(path) > 1 and path[0] == "stress" and isinstance(path[1], int):
        path = ("stress", stress_indices[path[1]], *path[2:])
    return _error(render_path(path), problem.code, problem.message)


def _merged(document: Any, parsed: list[dict[str, str]], validated: list[dict[str, str]]
            ) -> list[dict[str, str]]:
    """The parser's errors and the validator's, merged in document order: each list keeps its
    own order, a validator error goes before the first parser error found further on in the
    document (a missing top-level field has no place in it: it is passed over)."""
    validated = sorted(validated, key=lambda e: _document_key(document, e["field"]))
    out: list[dict[str, str]] = []
    i = 0
    for error in parsed:
        key = _document_key(document, error["field"])
        while (i < len(validated) and key[0] != _AFTER
               and _document_key(document, validated[i]["field"]) < key):
            out.append(validated[i])
            i += 1
        out.append(error)
    return out + validated[i:]


_AFTER = 1 << 62  # the position of a field the document does not hold: after its siblings


def _document_key(document: Any, field: str) -> tuple[int, ...]:
    """Positions of ``field``'s keys and indices in the decoded document, outermost first.

    Keys may hold dots (``BRK.B``), so at each object the longest key that starts the rest of
    the path (followed by ``.``, ``[`` or the end) is taken.
    """
    key: list[int] = []
    node, rest = document, field
    while rest:
        if isinstance(node, list) and rest.startswith("["):
            index, _, rest = rest[1:].partition("]")
            if not index.isdigit() or int(index) >= len(node):
                return (*key, _AFTER)
            key.append(int(index))
            node = node[int(index)]
        elif isinstance(node, dict):
            names = [k for k in node if rest == k or rest.startswith((f"{k}.", f"{k}["))]
            if not names:
                return (*key, _AFTER)
            name = max(names, key=len)
            key.append(list(node).index(name))
            node, rest = node[name], rest[len(name):]
        else:
            return (*key, _AFTER)
        rest = rest.removeprefix(".")
    return tuple(key)


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
