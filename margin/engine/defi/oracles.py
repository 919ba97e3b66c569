"""Chainlink-style oracle rounds: parse, check, and turn into a price (METHODOLOGY.md s. 6).

A round is the tuple AggregatorV3Interface.latestRoundData returns plus what the checks need:
``round_id``, ``answer``, ``decimals``, ``started_at``, ``updated_at``, ``answered_in_round``,
``heartbeat_s`` (the feed's own heartbeat) and ``previous_answer`` (the previous round's
answer). Integers may be JSON numbers or decimal strings (round ids exceed 2**53); timestamps
are ISO-8601 strings, datetimes or unix seconds (``0`` / empty means not set, as Chainlink
reports an unfinished round).

Checks, in this order (the first failure is reported), all judged at ``valuation_time`` and
never at the wall clock, so the same request gives the same answer at any time:

- ``non_positive``: the answer must be > 0;
- ``incomplete``: ``answered_in_round >= round_id`` and ``updated_at`` set;
- ``future``: ``updated_at`` not after the valuation time;
- ``stale``: age at the valuation time <= ``heartbeat_s``;
- ``jump``: ``|answer / previous_answer - 1| <= defi.oracle.max_jump`` (a 20x pump of a thin
  token in one round, the Mango Markets pattern, fails here);
- ``reference_band``: ``|price / reference - 1| <= defi.oracle.reference_band`` when an
  independent reference (a TWAP or second source) is given (a pump walked up over several
  rounds, each under the jump limit, fails here).

A failure raises ``OracleRejected(field, feed, check, message)``; malformed input raises
``EngineInputError``. ``parse_round`` and ``check_parsed_round`` are separate so that a
price-load path (the Django side) can call the same code on rounds it reads elsewhere.
Ratios are compared exactly (rational arithmetic on the raw integers), limits inclusive.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ..errors import EngineInputError, OracleRejected
from ..parameters import ParameterSet

ROUND_FIELDS = (
    "round_id", "answer", "decimals", "started_at", "updated_at", "answered_in_round",
    "heartbeat_s", "previous_answer",
)
REQUIRED_FIELDS = (
    "round_id", "answer", "decimals", "updated_at", "answered_in_round", "heartbeat_s",
    "previous_answer",
)
CHECKS = ("non_positive", "incomplete", "future", "stale", "jump", "reference_band")

MAX_DECIMALS = 36
_INT_RE = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class OracleRound:
    """A parsed round: exact integers, timezone-aware UTC datetimes (None = not set)."""

    round_id: int
    answer: int
    decimals: int
    started_at: datetime | None
    updated_at: datetime | None
    answered_in_round: int
    heartbeat_s: int
    previous_answer: int

    @property
    def price(self) -> float:
        """answer / 10**decimals, correctly rounded to a float."""
        return self.answer / 10 ** self.decimals

    @property
    def exact_price(self) -> Fraction:
        return Fraction(self.answer, 10 ** self.decimals)


def _bad(field: str, code: str, message: str) -> EngineInputError:
    return EngineInputError(field, code, message)


def parse_int(value: Any, field: str, *, minimum: int | None = None) -> int:
    """An integer given as a JSON number or a decimal string ("300000000000")."""
    if isinstance(value, bool):
        raise _bad(field, "invalid", f"{value!r} is not an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        # JSON numbers are exact only up to 2**53; anything larger must come as a string
        if not value.is_integer() or abs(value) > 2 ** 53:
            raise _bad(field, "invalid",
                       f"{value!r} is not an exact integer (send large integers as strings)")
        number = int(value)
    elif isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise _bad(field, "invalid", f"{value!r} is not an integer")
        number = int(value)
    elif isinstance(value, str) and _INT_RE.match(value.strip()):
        number = int(value.strip())
    else:
        raise _bad(field, "invalid", f"{value!r} is not an integer")
    if minimum is not None and number < minimum:
        raise _bad(field, "invalid", f"{number} is below the minimum {minimum}")
    return number


def parse_timestamp(value: Any, field: str) -> datetime | None:
    """An ISO-8601 string, a datetime or unix seconds, as an aware UTC datetime.

    ``None``, ``""`` and ``0`` mean "not set" (Chainlink reports updatedAt = 0 for a round
    that has not been answered). Naive datetimes are taken as UTC.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, bool):
        raise _bad(field, "invalid", f"{value!r} is not a timestamp")
    elif isinstance(value, int | float) or (isinstance(value, str) and _INT_RE.match(value.strip())):
        seconds = parse_int(value, field, minimum=0)
        if seconds == 0:
            return None
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise _bad(field, "invalid", f"{value!r} is not a valid unix time") from exc
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise _bad(field, "invalid", f"{value!r} is not an ISO-8601 datetime") from exc
    else:
        raise _bad(field, "invalid", f"{value!r} is not a timestamp")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_round(round: Mapping[str, Any] | OracleRound, field: str) -> OracleRound:
    """Validate the shape of a round (not its checks); errors name ``field.<key>``."""
    if isinstance(round, OracleRound):
        return round
    if not isinstance(round, Mapping):
        raise _bad(field, "invalid", "an oracle round must be an object")
    unknown = [key for key in round if key not in ROUND_FIELDS]
    if unknown:
        raise _bad(f"{field}.{unknown[0]}", "unknown_field",
                   f"unknown oracle round fields {sorted(map(str, unknown))}")
    for key in REQUIRED_FIELDS:
        if key not in round:
            raise _bad(f"{field}.{key}", "required", f"oracle round field {key} is required")
    parsed = OracleRound(
        round_id=parse_int(round["round_id"], f"{field}.round_id", minimum=0),
        answer=parse_int(round["answer"], f"{field}.answer"),
        decimals=parse_int(round["decimals"], f"{field}.decimals", minimum=0),
        started_at=parse_timestamp(round.get("started_at"), f"{field}.started_at"),
        updated_at=parse_timestamp(round["updated_at"], f"{field}.updated_at"),
        answered_in_round=parse_int(round["answered_in_round"], f"{field}.answered_in_round",
                                    minimum=0),
        heartbeat_s=parse_int(round["heartbeat_s"], f"{field}.heartbeat_s", minimum=1),
        previous_answer=parse_int(round["previous_answer"], f"{field}.previous_answer"),
    )
    if parsed.decimals > MAX_DECIMALS:
        raise _bad(f"{field}.decimals", "invalid",
                   f"{parsed.decimals} decimals is more than {MAX_DECIMALS}")
    if (parsed.started_at is not None and parsed.updated_at is not None
            and parsed.started_at > parsed.updated_at):
        raise _bad(f"{field}.started_at", "invalid",
                   f"started_at {parsed.started_at.isoformat()} is after updated_at "
                   f"{parsed.updated_at.isoformat()}")
    return parsed


def _ratio(value: float | int | Fraction | Decimal) -> Fraction:
    """A parameter or reference price as an exact rational (floats via their repr)."""
    if isinstance(value, float):
        return Fraction(Decimal(repr(value)))
    return Fraction(value)


def _fmt(value: Fraction) -> str:
    return f"{float(value):.6g}"


def check_parsed_round(feed: str, parsed: OracleRound, valuation_time: datetime,
                       reference_price: float | None, params: ParameterSet,
                       field: str) -> float:
    """Run every check on a parsed round; the validated price, or ``OracleRejected``."""

    def reject(check: str, message: str) -> OracleRejected:
        return OracleRejected(field, feed, check, f"{check}: {message}")

    max_jump = _ratio(params.defi.oracle.max_jump)
    band = _ratio(params.defi.oracle.reference_band)
    at = _aware(valuation_time)
    scale = 10 ** parsed.decimals

    if parsed.answer <= 0:
        raise reject("non_positive",
                     f"round {parsed.round_id} answered {parsed.answer} (must be > 0)")
    if parsed.updated_at is None:
        raise reject("incomplete", f"round {parsed.round_id} has no updated_at (not answered)")
    if parsed.answered_in_round < parsed.round_id:
        raise reject("incomplete",
                     f"answered_in_round {parsed.answered_in_round} < round_id "
                     f"{parsed.round_id} (the answer is carried over from an earlier round)")
    if parsed.updated_at > at:
        ahead = (parsed.updated_at - at).total_seconds()
        raise reject("future",
                     f"round {parsed.round_id} updated at {parsed.updated_at.isoformat()}, "
                     f"{ahead:g} s after the valuation time {at.isoformat()}")
    age = (at - parsed.updated_at).total_seconds()
    if age > parsed.heartbeat_s:
        raise reject("stale",
                     f"round {parsed.round_id} updated at {parsed.updated_at.isoformat()}, "
                     f"{age:g} s before the valuation time {at.isoformat()}, heartbeat "
                     f"{parsed.heartbeat_s} s")
    if parsed.previous_answer <= 0:
        raise reject("jump",
                     f"previous answer {parsed.previous_answer} is not positive, the move of "
                     f"answer {parsed.answer} cannot be bounded")
    move = abs(Fraction(parsed.answer, parsed.previous_answer) - 1)
    if move > max_jump:
        raise reject("jump",
                     f"answer {parsed.answer} is {_fmt(move * 100)} % away from the previous "
                     f"answer {parsed.previous_answer} (limit {_fmt(max_jump * 100)} %)")
    price = Fraction(parsed.answer, scale)
    if reference_price is not None:
        if (isinstance(reference_price, bool)
                or not isinstance(reference_price, int | float | Decimal | Fraction)
                or not (float(reference_price) > 0 and float(reference_price) < float("inf"))):
            raise EngineInputError(f"{field}.reference_price" if field else "reference_price",
                                   "invalid",
                                   f"reference price {reference_price!r} must be a positive number")
        reference = _ratio(reference_price)
        deviation = abs(price / reference - 1)
        if deviation > band:
            raise reject("reference_band",
                         f"price {_fmt(price)} is {_fmt(deviation * 100)} % away from the "
                         f"reference {_fmt(reference)} (band {_fmt(band * 100)} %)")
    return parsed.answer / scale


def check_round(feed: str, round: Mapping[str, Any] | OracleRound, valuation_time: datetime,
                reference_price: float | None, params: ParameterSet, field: str) -> float:
    """Parse and check a Chainlink-style round; returns ``answer / 10**decimals`` as a float.

    ``feed`` names the feed in messages (e.g. the symbol), ``field`` is the request path the
    errors carry (e.g. ``underlyings.ETH.oracle``). Raises ``OracleRejected`` when a check
    fails, ``EngineInputError`` when the round is malformed.
    """
    if not isinstance(valuation_time, datetime):
        raise EngineInputError("valuation_time", "required",
                               "a valuation time is needed to judge an oracle round")
    parsed = parse_round(round, field)
    return check_parsed_round(feed, parsed, valuation_time, reference_price, params, field)
