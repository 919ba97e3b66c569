"""Parser: every class of bad input is a 400 naming the field and code; defaults per contract."""

from __future__ import annotations

import json
from datetime import date

import pytest

from margin.calculator.parse import CalculatorError, parse_request
from margin.engine.portfolio import LPPosition

from .requests import BASE, ETH_ROUND, base, body, errors_of


def _option(**changes):
    option = dict(BASE["positions"][1])
    option.update(changes)
    return option


def _with_option(**changes):
    request = base()
    request["positions"][1] = _option(**changes)
    return request


def _with_underlying(symbol, **fields):
    request = base()
    request["underlyings"][symbol] = fields
    return request


def _crypto(**extra):
    return {
        "valuation_date": "2026-11-24",
        "valuation_time": "2026-11-24T12:00:00Z",
        "underlyings": {
            "ETH": {"product_class": "crypto", "oracle": dict(ETH_ROUND), "reference_price": 2995.0},
            "USDC": {"price": 1.0, "product_class": "stablecoin"},
        },
        "positions": [{"id": "eth", "kind": "crypto", "symbol": "ETH", "quantity": 2}],
        "methods": ["collateral"],
        **extra,
    }


def _lp(**fields):
    lp = {"kind": "uniswap_v3_lp", "token0": "ETH", "token1": "USDC", "decimals0": 18,
          "decimals1": 6, "liquidity": 1000, "tick_lower": -200000, "tick_upper": -190000}
    lp.update(fields)
    return lp


# --------------------------------------------------------------------------- bad input classes

BAD = {
    # malformed bodies
    "empty body": (b"", [("", "malformed_json")]),
    "truncated json": ('{"valuation_date": "2007-02-23"', [("", "malformed_json")]),
    "not utf-8": (b'{"valuation_date": "\xff"}', [("", "malformed_json")]),
    "top level list": ("[]", [("", "invalid")]),
    # unknown fields anywhere
    "typo at top level": (base(method=["reg_t"]), [("method", "unknown_field")]),
    "typo in an underlying": (
        _with_underlying("IBM", price=97.73, product_class="equity", dividend_yeild=0.01),
        [("underlyings.IBM.dividend_yeild", "unknown_field")]),
    "field of another kind": (
        base(positions=[{"kind": "stock", "symbol": "IBM", "quantity": 1, "strike": 5}]),
        [("positions[0].strike", "unknown_field")]),
    "duplicate key": ('{"valuation_date": "2007-02-23", "valuation_date": "2007-02-24", '
                      '"underlyings": {}, "positions": []}',
                      [("valuation_date", "duplicate_field")]),
    # wrong types
    "strike as a string": (_with_option(strike="100"), [("positions[1].strike", "invalid")]),
    "quantity as a boolean": (_with_option(quantity=True), [("positions[1].quantity", "invalid")]),
    "positions not a list": (base(positions={"a": 1}), [("positions", "invalid")]),
    "position not an object": (base(positions=[5]), [("positions[0]", "invalid")]),
    "underlying not an object": (base(underlyings={"IBM": 97.73}),
                                 [("underlyings.IBM", "invalid")]),
    # NaN / Infinity literals and overflowing numbers
    "NaN price": (json.dumps(base()).replace("97.73", "NaN"),
                  [("underlyings.IBM.price", "not_finite")]),
    "Infinity strike": (json.dumps(base()).replace('"strike": 100', '"strike": Infinity'),
                        [("positions[1].strike", "not_finite")]),
    "-Infinity rate": (json.dumps(base()).replace("0.0525", "-Infinity"),
                       [("rate", "not_finite")]),
    "overflowing float": (json.dumps(base()).replace("1.68", "1e999"),
                          [("positions[1].price", "not_finite")]),
    # prices and sizes
    "negative underlying price": (_with_underlying("IBM", price=-97.73, product_class="equity"),
                                  [("underlyings.IBM.price", "not_positive")]),
    "zero underlying price": (_with_underlying("IBM", price=0, product_class="equity"),
                              [("underlyings.IBM.price", "not_positive")]),
    "missing underlying price": (_with_underlying("IBM", product_class="equity"),
                                 [("underlyings.IBM.price", "required")]),
    "negative option mark": (_with_option(price=-1.68), [("positions[1].price", "negative")]),
    "negative strike": (_with_option(strike=-100), [("positions[1].strike", "not_positive")]),
    "zero multiplier": (_with_option(multiplier=0), [("positions[1].multiplier", "not_positive")]),
    "zero implied vol": (_with_option(implied_vol=0), [("positions[1].implied_vol", "not_positive")]),
    "negative time to expiry": (
        base(positions=[{k: v for k, v in _option(time_to_expiry=-0.1).items() if k != "expiry"}]),
        [("positions[0].time_to_expiry", "negative")]),
    # dates
    "expiry before the valuation date": (_with_option(expiry="2007-02-22"),
                                         [("positions[1].expiry", "expired")]),
    "impossible expiry": (_with_option(expiry="2007-02-30"),
                          [("positions[1].expiry", "invalid_date")]),
    "impossible valuation date": (base(valuation_date="2007-13-01"),
                                  [("valuation_date", "invalid_date")]),
    "non-ISO date": (base(valuation_date="02/23/2007"), [("valuation_date", "invalid_date")]),
    "missing valuation date": ({k: v for k, v in BASE.items() if k != "valuation_date"},
                               [("valuation_date", "required")]),
    "expiry and time_to_expiry": (_with_option(time_to_expiry=0.2),
                                  [("positions[1].time_to_expiry", "conflicting_fields")]),
    # references
    "option on an undeclared underlying": (_with_option(underlying="IMB"),
                                           [("positions[1].underlying", "undeclared_underlying")]),
    "stock of an undeclared symbol": (
        base(positions=[{"kind": "stock", "symbol": "MSFT", "quantity": 1}]),
        [("positions[0].symbol", "undeclared_underlying")]),
    "class group mixing product classes": (
        _with_underlying("QQQ", price=400, product_class="narrow_index", class_group="SPX"),
        [("underlyings.QQQ.class_group", "mixed_product_classes")]),
    "product group mixing grids": (
        _with_underlying("BTC", price=60000, product_class="crypto", product_group="IBM"),
        [("underlyings.BTC.product_group", "mixed_grids")]),
    "offset for no product group": (base(offsets={"IBN": 0.5}),
                                    [("offsets.IBN", "undeclared_product_group")]),
    "duplicate position id": (
        base(positions=[{"id": "a", "kind": "stock", "symbol": "IBM", "quantity": 1},
                        {"id": "a", "kind": "stock", "symbol": "IBM", "quantity": 2}]),
        [("positions[1].id", "duplicate_id")]),
    # choices
    "unknown method": (base(methods=["reg_t", "portfolio-margin"]),
                       [("methods[1]", "invalid_choice")]),
    "unknown product class": (_with_underlying("IBM", price=97.73, product_class="equities"),
                              [("underlyings.IBM.product_class", "invalid_choice")]),
    "unknown underlying type": (
        _with_underlying("IBM", price=97.73, product_class="equity", type="share"),
        [("underlyings.IBM.type", "invalid_choice")]),
    "unknown kind": (base(positions=[{"kind": "swap", "quantity": 1}]),
                     [("positions[0].kind", "invalid_choice")]),
    "missing kind": (base(positions=[{"symbol": "IBM", "quantity": 1}]),
                     [("positions[0].kind", "required")]),
    "unknown right": (_with_option(right="c"), [("positions[1].right", "invalid_choice")]),
    "unknown exercise": (_with_option(exercise="bermudan"),
                         [("positions[1].exercise", "invalid_choice")]),
    "unknown stress scenario": (base(stress=["1929-10-29"]), [("stress[0]", "invalid_choice")]),
    # SPAN risk arrays
    "risk array of 15": (
        base(underlyings={"SP": {"price": 400.0, "product_class": "future"}},
             positions=[{"kind": "future", "underlying": "SP", "expiry": "2007-12-21",
                         "quantity": 1, "multiplier": 250, "price": 400.0,
                         "risk_array": [0.0] * 15}], methods=["span"]),
        [("positions[0].risk_array", "invalid")]),
    "future without multiplier": (
        base(underlyings={"SP": {"price": 400.0, "product_class": "future"}},
             positions=[{"kind": "future", "underlying": "SP", "expiry": "2007-12-21",
                         "quantity": 1, "price": 400.0}], methods=["span"]),
        [("positions[0].multiplier", "required")]),
    # history
    "history too short": (base(history={"IBM": [100.0] * 10}, methods=["var"]),
                          [("history.IBM", "too_short")]),
    # integers of LP positions
    "liquidity as a float": (_crypto(positions=[_lp(liquidity=1e30)]),
                             [("positions[0].liquidity", "invalid")]),
    "liquidity not decimal": (_crypto(positions=[_lp(liquidity="12e3")]),
                              [("positions[0].liquidity", "invalid")]),
    "negative liquidity": (_crypto(positions=[_lp(liquidity="-1")]),
                           [("positions[0].liquidity", "out_of_range")]),
    "liquidity beyond uint128": (_crypto(positions=[_lp(liquidity=str(2**128))]),
                                 [("positions[0].liquidity", "out_of_range")]),
    "tick beyond the bounds": (_crypto(positions=[_lp(tick_upper=887273)]),
                               [("positions[0].tick_upper", "out_of_range")]),
    "LP on an undeclared token": (_crypto(positions=[_lp(token1="DAI")]),
                                  [("positions[0].token1", "undeclared_underlying")]),
    # oracle rounds
    "oracle without valuation_time": (
        {k: v for k, v in _crypto().items() if k != "valuation_time"},
        [("valuation_time", "required")]),
    "price and oracle": (
        _crypto(underlyings={"ETH": {"product_class": "crypto", "price": 3000.0,
                                     "oracle": dict(ETH_ROUND)}}),
        [("underlyings.ETH.oracle", "conflicting_fields")]),
    "oracle round field typo": (
        _crypto(underlyings={"ETH": {"product_class": "crypto",
                                     "oracle": {**ETH_ROUND, "heartbeat": 3600}}}),
        [("underlyings.ETH.oracle.heartbeat", "unknown_field")]),
}


@pytest.mark.parametrize("request_, expected", BAD.values(), ids=list(BAD))
def test_bad_input_names_field_and_code(request_, expected):
    found = errors_of(request_)
    for pair in expected:
        assert pair in found, found


def test_typo_in_a_field_name_never_drops_it_silently():
    request = base()
    request["positions"][1]["strik"] = request["positions"][1].pop("strike")
    assert errors_of(request) == [("positions[1].strik", "unknown_field"),
                                  ("positions[1].strike", "required")]


def test_all_errors_are_collected_in_document_order():
    request = base(rate="high", methods=["var", "magic"])
    request["underlyings"]["IBM"]["price"] = -1
    request["positions"][1].update(strike=0, expiry="2007-01-19", multiplier=0)
    assert errors_of(request) == [
        ("rate", "invalid"),
        ("underlyings.IBM.price", "not_positive"),
        ("positions[1].strike", "not_positive"),
        ("positions[1].expiry", "expired"),
        ("positions[1].multiplier", "not_positive"),
        ("methods[1]", "invalid_choice"),
    ]


def test_oracle_round_rejected_names_the_check_and_the_feed():
    stale = _crypto(valuation_time="2026-11-24T14:00:00Z")
    found = errors_of(stale)
    assert found == [("underlyings.ETH.oracle", "oracle_stale")]
    outside_band = _crypto()
    outside_band["underlyings"]["ETH"]["reference_price"] = 2500.0
    assert errors_of(outside_band) == [("underlyings.ETH.oracle", "oracle_reference_band")]


def test_oracle_round_validated_price_goes_on_the_underlying():
    portfolio = parse_request(body(_crypto()))
    eth = portfolio.underlyings["ETH"]
    assert eth.price == 3000.0
    assert eth.reference_price == 2995.0


def test_option_expiring_on_the_valuation_date_is_valid():
    portfolio = parse_request(body(_with_option(expiry="2007-02-23")))
    assert portfolio.positions[1].time_to_expiry == 0.0


def test_big_integers_stay_exact_as_numbers_or_strings():
    big = 2**100 + 1
    as_number = json.dumps(_crypto(positions=[_lp(liquidity=big, fee_growth_global0=str(2**255),
                                                  fee_growth_inside_last0=0)]))
    lp = parse_request(as_number).positions[0].lp
    assert isinstance(lp, LPPosition)
    assert lp.liquidity == big and lp.fee_growth_global0 == 2**255
    as_string = parse_request(body(_crypto(positions=[_lp(liquidity=str(big))])))
    assert as_string.positions[0].lp.liquidity == big


def test_defaults_follow_the_contract():
    request = base(underlyings={
        "IBM": {"price": 97.73, "product_class": "equity"},
        "SPX": {"price": 1451.19, "product_class": "broad_index_high_cap"},
        "SPY": {"price": 145.30, "product_class": "broad_index_high_cap", "type": "etf",
                "class_group": "SPX"},
        "ES": {"price": 1450.0, "product_class": "future"},
        "ETH": {"price": 3000.0, "product_class": "crypto"},
        "USDC": {"price": 1.0, "product_class": "stablecoin"},
        "IWM": {"price": 80.0, "product_class": "broad_index"},
    }, positions=[
        {"kind": "stock", "symbol": "IBM", "quantity": 100},
        {"kind": "option", "underlying": "IBM", "right": "put", "strike": 95,
         "expiry": "2007-04-20", "quantity": 1, "price": 2.0},
        {"kind": "option", "underlying": "SPX", "right": "put", "strike": 1400,
         "expiry": "2007-04-20", "quantity": 1, "price": 10.0},
        {"kind": "option", "underlying": "SPY", "right": "put", "strike": 140,
         "expiry": "2007-04-20", "quantity": 1, "price": 1.0},
        {"kind": "option", "underlying": "ETH", "right": "call", "strike": 3500,
         "expiry": "2007-04-20", "quantity": 1, "price": 50.0, "multiplier": 1},
    ])
    del request["rate"], request["methods"]
    portfolio = parse_request(body(request))
    und = portfolio.underlyings
    assert [und[s].type for s in ("IBM", "SPX", "SPY", "ES", "ETH", "USDC", "IWM")] == [
        "stock", "index", "etf", "future", "token", "token", "index"]
    assert (und["SPY"].class_group, und["SPY"].product_group) == ("SPX", "SPX")
    assert (und["IBM"].class_group, und["IBM"].product_group) == ("IBM", "IBM")
    assert und["IBM"].dividend_yield == 0.0 and und["IBM"].leverage == 1.0
    assert portfolio.rate == 0.0
    assert portfolio.methods == ("portfolio_margin", "reg_t", "span", "var", "collateral")
    positions = portfolio.positions
    assert [p.id for p in positions] == ["#0", "#1", "#2", "#3", "#4"]
    assert [p.exercise for p in positions[1:]] == ["american", "european", "american",
                                                   "european"]
    assert positions[0].multiplier == 1.0
    assert positions[1].multiplier == 100.0 and positions[4].multiplier == 1.0
    assert positions[1].expiry == date(2007, 4, 20)
    assert positions[1].time_to_expiry == 56 / 365
    assert portfolio.house is None and portfolio.offsets == {} and portfolio.stress == ()


def test_parse_errors_are_a_calculator_error_listing_every_entry():
    with pytest.raises(CalculatorError) as caught:
        parse_request("{")
    assert caught.value.errors[0]["field"] == ""
    assert caught.value.errors[0]["code"] == "malformed_json"


def test_the_validators_paths_are_the_requests_paths():
    """The engine validator names portfolio paths; a 400 names the request's: an LP field flat
    under its position, a stress scenario by its place in the request."""
    request = _crypto(positions=[_lp(tick_lower=-190000, tick_upper=-200000)],
                      stress=[{"name": "no moves"}, {"name": "crash", "moves": {"ETH": -1.5}}])
    assert errors_of(request) == [("positions[0].tick_upper", "out_of_range"),
                                  ("stress[0].moves", "required"),
                                  ("stress[1].moves.ETH", "out_of_range")]
