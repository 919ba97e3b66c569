"""Oracle round checks (METHODOLOGY.md section 6): judged at the valuation time, never the
wall clock; each failure names the feed, the check and the numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from margin.engine.defi.oracles import (
    CHECKS,
    OracleRound,
    check_parsed_round,
    check_round,
    parse_round,
)
from margin.engine.errors import EngineInputError, OracleRejected
from margin.engine.parameters import load_parameter_set

PARAMS = load_parameter_set()
AT = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
FIELD = "underlyings.ETH.oracle"


def eth_round(**changes) -> dict:
    """The CALCULATOR.md example round: ETH at 3000.00000000, 12 s old."""
    base = {
        "round_id": "92233720368547771158",
        "answer": "300000000000",
        "decimals": 8,
        "started_at": "2026-11-24T11:59:48Z",
        "updated_at": "2026-11-24T11:59:48Z",
        "answered_in_round": "92233720368547771158",
        "heartbeat_s": 3600,
        "previous_answer": "299100000000",
    }
    base.update(changes)
    return base


def reject(round_: dict, reference: float | None = None, feed: str = "ETH",
           at: datetime = AT, params: dict = PARAMS) -> OracleRejected:
    with pytest.raises(OracleRejected) as info:
        check_round(feed, round_, at, reference, params, FIELD)
    return info.value


def test_good_round_gives_the_price() -> None:
    assert check_round("ETH", eth_round(), AT, 2995.0, PARAMS, FIELD) == 3000.0
    # integers as JSON numbers work the same as decimal strings
    numeric = eth_round(answer=300000000000, round_id=7, answered_in_round=7,
                        previous_answer=299100000000)
    assert check_round("ETH", numeric, AT, None, PARAMS, FIELD) == 3000.0


def test_the_price_is_answer_over_ten_to_decimals() -> None:
    price = check_round("X", eth_round(answer="123456789", previous_answer="123456789",
                                       decimals=18), AT, None, PARAMS, FIELD)
    assert price == 123456789 / 10 ** 18


def test_mango_style_pump_is_rejected_by_the_jump_check() -> None:
    # Oct 2022: MNGO's oracle price went from about $0.038 to $0.91 within minutes on thin
    # markets. A 20x round against its previous round fails the 50 % jump limit.
    pump = eth_round(answer=str(3820000 * 20), previous_answer="3820000")
    error = reject(pump, feed="MNGO/USD")
    assert error.check == "jump" and error.code == "oracle_jump"
    assert error.feed == "MNGO/USD" and error.field == FIELD
    assert "MNGO/USD" in str(error) and "jump" in error.message
    assert "76400000" in error.message and "3820000" in error.message
    assert "1900 %" in error.message and "50 %" in error.message


def test_mango_style_pump_walked_up_is_caught_by_the_reference_band() -> None:
    # The same pump walked up over several rounds, each within the jump limit: the last round
    # (+40 % on its previous) passes the jump check, but the independent TWAP still says $0.04.
    walked = eth_round(answer="76400000", previous_answer="54571429")
    error = reject(walked, reference=0.04, feed="MNGO/USD")
    assert error.check == "reference_band"
    assert "0.764" in error.message and "0.04" in error.message and "5 %" in error.message


def test_stale_feed() -> None:
    old = eth_round(updated_at="2026-11-24T09:59:59Z", started_at="2026-11-24T09:59:59Z")
    error = reject(old)
    assert error.check == "stale"
    assert "7201 s" in error.message and "heartbeat 3600 s" in error.message
    # exactly one heartbeat old is still fresh
    edge = eth_round(updated_at="2026-11-24T11:00:00Z", started_at="2026-11-24T11:00:00Z")
    assert check_round("ETH", edge, AT, None, PARAMS, FIELD) == 3000.0


def test_reference_band_breach() -> None:
    error = reject(eth_round(), reference=2840.0)  # 5.63 % away
    assert error.check == "reference_band"
    assert "3000" in error.message and "2840" in error.message
    # the band is inclusive and compared exactly: 3150 against 3000 is 5 % and passes
    assert check_round("ETH", eth_round(answer="315000000000", previous_answer="300000000000"),
                       AT, 3000.0, PARAMS, FIELD) == 3150.0


def test_incomplete_round() -> None:
    carried = eth_round(answered_in_round="92233720368547771157")
    error = reject(carried)
    assert error.check == "incomplete" and "92233720368547771157" in error.message
    for unset in (None, 0, "0", ""):
        assert reject(eth_round(updated_at=unset, started_at=None)).check == "incomplete"


@pytest.mark.parametrize("answer", ["-300000000000", "0", -1])
def test_non_positive_answer(answer) -> None:
    error = reject(eth_round(answer=answer))
    assert error.check == "non_positive" and str(answer) in error.message


def test_round_after_the_valuation_time() -> None:
    later = eth_round(updated_at="2026-11-24T12:00:30Z", started_at="2026-11-24T12:00:30Z")
    error = reject(later)
    assert error.check == "future" and "30 s after" in error.message


def test_judged_at_the_valuation_time_not_the_wall_clock() -> None:
    # a round from 2031 is fine at a 2031 valuation time, and one from 2019 at a 2019 one
    for year in (2019, 2031):
        stamp = f"{year}-05-01T00:00:00Z"
        at = datetime(year, 5, 1, 0, 10, tzinfo=UTC)
        assert check_round("ETH", eth_round(updated_at=stamp, started_at=stamp), at, None,
                           PARAMS, FIELD) == 3000.0
    # and the same 2019 round is stale at the 2026 valuation time
    assert reject(eth_round(updated_at="2019-05-01T00:00:00Z", started_at=None)).check == "stale"


def test_timestamps_as_unix_seconds_and_naive_valuation_time() -> None:
    stamp = int((AT - timedelta(seconds=30)).timestamp())
    assert check_round("ETH", eth_round(updated_at=stamp, started_at=str(stamp)),
                       AT.replace(tzinfo=None), None, PARAMS, FIELD) == 3000.0


def test_checks_come_from_the_parameter_set() -> None:
    tight = PARAMS.with_overrides({"defi": {"oracle": {"max_jump": 0.001, "reference_band": 0.5}}})
    assert reject(eth_round(), params=tight).check == "jump"  # +0.3 % over 0.1 %
    steady = eth_round(previous_answer="300000000000")
    assert check_round("ETH", steady, AT, 2000.0, tight, FIELD) == 3000.0  # 50 % band
    assert reject(steady, reference=2000.0).check == "reference_band"  # default 5 % band


def test_non_positive_previous_answer_cannot_bound_the_jump() -> None:
    assert reject(eth_round(previous_answer="0")).check == "jump"


def test_order_of_checks_reports_the_first_failure() -> None:
    assert CHECKS == ("non_positive", "incomplete", "future", "stale", "jump", "reference_band")
    worst = eth_round(answer="-5", answered_in_round="1", updated_at="2020-01-01T00:00:00Z",
                      started_at=None)
    assert reject(worst, reference=1.0).check == "non_positive"


@pytest.mark.parametrize("changes, bad_field, code", [
    ({"answer": "3000.5"}, "answer", "invalid"),
    ({"answer": 3e20}, "answer", "invalid"),  # beyond 2**53 as a JSON float: not exact
    ({"round_id": True}, "round_id", "invalid"),
    ({"decimals": -1}, "decimals", "invalid"),
    ({"heartbeat_s": 0}, "heartbeat_s", "invalid"),
    ({"updated_at": "yesterday"}, "updated_at", "invalid"),
    ({"started_at": "2026-11-24T11:59:50Z"}, "started_at", "invalid"),  # after updated_at
    ({"extra": 1}, "extra", "unknown_field"),
])
def test_malformed_rounds_name_the_field(changes: dict, bad_field: str, code: str) -> None:
    with pytest.raises(EngineInputError) as info:
        check_round("ETH", eth_round(**changes), AT, None, PARAMS, FIELD)
    assert not isinstance(info.value, OracleRejected)
    assert info.value.field == f"{FIELD}.{bad_field}" and info.value.code == code


@pytest.mark.parametrize("missing", ["round_id", "answer", "decimals", "updated_at",
                                     "answered_in_round", "heartbeat_s", "previous_answer"])
def test_required_fields(missing: str) -> None:
    round_ = eth_round()
    del round_[missing]
    with pytest.raises(EngineInputError) as info:
        check_round("ETH", round_, AT, None, PARAMS, FIELD)
    assert info.value.code == "required" and info.value.field == f"{FIELD}.{missing}"


def test_bad_reference_or_valuation_time() -> None:
    with pytest.raises(EngineInputError) as info:
        check_round("ETH", eth_round(), AT, float("nan"), PARAMS, FIELD)
    assert info.value.field == f"{FIELD}.reference_price"
    with pytest.raises(EngineInputError) as info:
        check_round("ETH", eth_round(), None, None, PARAMS, FIELD)  # type: ignore[arg-type]
    assert info.value.field == "valuation_time"


def test_parsing_is_shared_and_exact() -> None:
    parsed = parse_round(eth_round(), FIELD)
    assert isinstance(parsed, OracleRound)
    assert parsed.round_id == 92233720368547771158  # beyond 2**64, kept exact
    assert parsed.updated_at == datetime(2026, 11, 24, 11, 59, 48, tzinfo=UTC)
    assert parsed.price == 3000.0
    # a price-load path can check rounds it parsed itself, with the same checks
    assert check_parsed_round("ETH", parsed, AT, None, PARAMS, FIELD) == 3000.0
    assert check_round("ETH", parsed, AT, None, PARAMS, FIELD) == 3000.0


def test_rejection_is_an_engine_input_error_for_the_calculator() -> None:
    error = reject(eth_round(updated_at="2026-11-24T08:00:00Z", started_at=None))
    assert isinstance(error, EngineInputError)
    assert error.as_dict() == {"field": FIELD, "code": "oracle_stale",
                               "message": error.message}
    assert error.message.startswith("oracle feed ETH: stale:")
