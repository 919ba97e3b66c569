"""Runs the engine blocks on a parsed `Portfolio` in docs/ENGINE.md order.

The response dict's keys come in CALCULATOR.md order; each block's own keys are in the order
its module built them. Numbers are raw floats: `render` rounds money at the edge. A block that
was not asked for (``methods``) or does not apply is None. An `EngineInputError` (input the
engine cannot value) becomes a `CalculatorError`: bad input never gives a partial number.
"""

from __future__ import annotations

from typing import Any

from margin.engine import portfolio_margin, regt, span, valuation, var
from margin.engine.defi import collateral
from margin.engine.errors import EngineInputError
from margin.engine.parameters import ParameterSet
from margin.engine.portfolio import Portfolio

from .parse import CalculatorError

# Methods whose figures revalue options at moved prices, so each option needs a model value
# and an implied vol (a mark outside the no-arbitrage bounds is then an error, not a warning).
MODEL_METHODS = frozenset({"portfolio_margin", "var"})


def need_model(portfolio: Portfolio) -> bool:
    """True when a requested figure revalues options with the pricing model.

    Portfolio margin and VaR always do; stress scenarios revalue at the moved prices; SPAN only
    for futures options that carry no exchange risk array.
    """
    methods = set(portfolio.methods)
    if methods & MODEL_METHODS or portfolio.stress:
        return True
    return "span" in methods and any(
        p.kind == "future_option" and p.risk_array is None for p in portfolio.positions)


def calculate(portfolio: Portfolio, params: ParameterSet) -> dict[str, Any]:
    """The response document (CALCULATOR.md), raw floats; raises CalculatorError."""
    try:
        return _calculate(portfolio, params)
    except EngineInputError as exc:
        raise CalculatorError([exc.as_dict()]) from exc


def _calculate(portfolio: Portfolio, params: ParameterSet) -> dict[str, Any]:
    asked = set(portfolio.methods)
    valued = valuation.value_positions(portfolio, params, need_model(portfolio))
    pm_block = portfolio_margin.calculate_block(portfolio, params, valued) \
        if "portfolio_margin" in asked else None
    regt_block = regt.calculate_block(portfolio, params, valued) if "reg_t" in asked else None
    span_block = span.calculate_block(portfolio, params) if "span" in asked else None
    var_block = var.calculate_var_block(portfolio, params, valued) if "var" in asked else None
    stress_block = var.calculate_stress_block(portfolio, params, valued) \
        if portfolio.stress else None
    collateral_block = collateral.calculate_block(portfolio, params, valued) \
        if "collateral" in asked else None
    return {
        "valuation_date": portfolio.valuation_date.isoformat(),
        "parameter_set": params.name,
        "net_liquidation_value": valued.net_liquidation_value,
        # built last: blocks may add their warnings to the valuation's list (VaR proxies)
        "warnings": list(valued.warnings),
        "positions": valued.rows,
        "portfolio_margin": pm_block,
        "reg_t": regt_block,
        "span": span_block,
        "var": var_block,
        "stress": stress_block,
        "collateral": collateral_block,
    }
