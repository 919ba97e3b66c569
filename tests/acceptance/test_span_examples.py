"""The CME spread examples and the request cases of ../shared/vectors/span.json, through
``margin.engine.span`` directly. Every number is read from the vectors file (``load_vectors``),
never copied here; the calculator suite runs the request cases end to end separately."""

from __future__ import annotations

import re
from datetime import date

import pytest

from margin.engine import span
from margin.engine.parameters import load_parameter_set
from margin.engine.portfolio import Portfolio, Position, Underlying
from tests.engine.test_span import portfolio_from_request
from tests.vectors import dig, load_vectors

V = load_vectors("span.json")
EX = V["cme_spread_examples"]
PARAMS = load_parameter_set()
VD = date(2026, 1, 2)
LEG = re.compile(r"^\s*([+-]?\d+)\s+M(\d+)\s*$")
TOL = 1e-6


def _month(k: int) -> date:
    """Contract month Mk: the k-th month after the valuation date's (expiry on the 15th)."""
    y, m = divmod(VD.month - 1 + k, 12)
    return date(VD.year + y, m + 1, 15)


def _period(k: int) -> str:
    d = _month(k)
    return f"{d.year:04d}-{d.month:02d}"


def _legs(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split("/"):
        m = LEG.match(part)
        assert m, f"unreadable leg {part!r}"
        out.append((int(m.group(1)), int(m.group(2))))
    return out


def _intra_table() -> tuple[dict[str, float], list[dict]]:
    """One parameter table for all the intra examples: outright (price scan) per month and
    the charge per month pair, each read from the examples."""
    scans: dict[str, float] = {}
    pairs: list[dict] = []
    for ex in EX["intra"]:
        legs = _legs(ex["legs"])
        for (_, k), outright in zip(legs, ex["outrights"], strict=True):
            assert scans.setdefault(_period(k), float(outright)) == float(outright)
        pairs.append({"legs": [_period(legs[0][1]), _period(legs[1][1])],
                      "charge": float(ex["intra_charge"])})
    return scans, pairs


def _futures_pf(holdings: list[tuple[str, float, date]], span_parameters: dict) -> Portfolio:
    unds = {sym: Underlying(sym, 100.0, "future", "future", sym, sym)
            for sym, _, _ in holdings}
    positions = tuple(
        Position(index=i, id=f"f{i}", kind="future", quantity=float(q), underlying=sym,
                 expiry=exp, time_to_expiry=(exp - VD).days / 365.0, multiplier=1.0,
                 price=100.0)
        for i, (sym, q, exp) in enumerate(holdings))
    return Portfolio(VD, unds, positions, span_parameters=span_parameters)


@pytest.mark.parametrize("ex", EX["intra"], ids=[e["legs"] for e in EX["intra"]])
def test_cme_intra_commodity_examples(ex: dict) -> None:
    scans, pairs = _intra_table()
    sp = {"X": {"price_scan": scans, "intra_spread_charge": pairs}}
    holdings = [("X", q, _month(k)) for q, k in _legs(ex["legs"])]
    block = span.calculate_block(_futures_pf(holdings, sp), PARAMS)
    cc = block["combined_commodities"][0]
    assert cc["intra_spread_charge"] == pytest.approx(ex["intra_charge"], abs=TOL)
    assert cc["requirement"] == pytest.approx(ex["requirement"], abs=TOL)
    assert block["requirement"] == pytest.approx(ex["requirement"], abs=TOL)
    # the scan sees each month move by its own tier's range, in the same direction
    outs = ex["outrights"]
    assert cc["scan_risk"] == pytest.approx(abs(outs[0] - outs[1]), abs=TOL)


def _inter_setup() -> tuple[int, str, int, str, dict]:
    """(n_a, name_a, n_b, name_b, span_parameters) of the inter example ("2 corn vs 1 ...")."""
    inter = EX["inter"]
    m = re.match(r"^\s*(\d+)\s+(\w+)\s+vs\s+(\d+)\s+(\w+)\s*$", inter["legs"])
    assert m, inter["legs"]
    n_a, name_a, n_b, name_b = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
    sp = {
        "C": {"price_scan": inter["outright"][name_a],
              "inter_spreads": [{"legs": {"C": n_a, "S": n_b}, "credit": inter["credit"]}]},
        "S": {"price_scan": inter["outright"][name_b]},
    }
    return n_a, name_a, n_b, name_b, sp


@pytest.mark.parametrize("flip", [1, -1], ids=["long corn", "short corn"])
def test_cme_inter_commodity_example(flip: int) -> None:
    inter = EX["inter"]
    n_a, name_a, n_b, name_b, sp = _inter_setup()
    exp = date(2026, 7, 14)
    pf = _futures_pf([("C", flip * n_a, exp), ("S", -flip * n_b, exp)], sp)
    block = span.calculate_block(pf, PARAMS)
    assert block["requirement"] == pytest.approx(inter["requirement"], abs=TOL)
    corn, soy = block["combined_commodities"]
    assert corn["scan_risk"] == pytest.approx(n_a * inter["outright"][name_a], abs=TOL)
    assert soy["scan_risk"] == pytest.approx(n_b * inter["outright"][name_b], abs=TOL)
    assert corn["inter_spread_credit"] == pytest.approx(
        inter["credit"] * n_a * inter["outright"][name_a], abs=TOL)
    assert soy["inter_spread_credit"] == pytest.approx(
        inter["credit"] * n_b * inter["outright"][name_b], abs=TOL)


def test_cme_inter_example_same_side_gets_no_credit() -> None:
    inter = EX["inter"]
    n_a, name_a, n_b, name_b, sp = _inter_setup()
    exp = date(2026, 7, 14)
    block = span.calculate_block(_futures_pf([("C", n_a, exp), ("S", n_b, exp)], sp), PARAMS)
    assert block["requirement"] == pytest.approx(
        n_a * inter["outright"][name_a] + n_b * inter["outright"][name_b], abs=TOL)


def test_cme_inter_example_partial_spread() -> None:
    # twice the corn legs: one spread forms, the extra corn is charged in full
    inter = EX["inter"]
    n_a, name_a, n_b, name_b, sp = _inter_setup()
    exp = date(2026, 7, 14)
    pf = _futures_pf([("C", 2 * n_a, exp), ("S", -n_b, exp)], sp)
    block = span.calculate_block(pf, PARAMS)
    assert block["requirement"] == pytest.approx(
        inter["requirement"] + n_a * inter["outright"][name_a], abs=TOL)


@pytest.mark.parametrize("case", V["cases"], ids=[c["name"] for c in V["cases"]])
def test_request_cases_on_the_span_function(case: dict) -> None:
    block = span.calculate_block(portfolio_from_request(case["request"]), PARAMS)
    for path, expected in case["expect"].items():
        assert dig({"span": block}, path) == pytest.approx(expected, abs=case["tolerance"])
