"""Plain-language explanation of a snapshot: what drives the requirement, point by point."""

from __future__ import annotations

from .models import MarginSnapshot
from .reproduce import NotReproducible, explanation


def _money(value) -> str:
    return "n/a" if value is None else f"${float(value):,.2f}"


def _percent(value) -> str:
    return "n/a" if value is None else f"{float(value):.1%}"


def explained_result(snapshot: MarginSnapshot) -> dict:
    """The calculator's whole response behind the snapshot, rendered now from its recorded
    inputs (empty when they no longer value: the stored figures still stand)."""
    try:
        return explanation(snapshot)
    except NotReproducible:
        return {}


def explain_snapshot(snapshot: MarginSnapshot, result: dict | None = None) -> str:
    result = explained_result(snapshot) if result is None else result
    lines = [
        f"Account {snapshot.account.number} ({snapshot.get_margin_type_display()})"
        if hasattr(snapshot, "get_margin_type_display") else f"Account {snapshot.account.number}",
        f"Equity {_money(snapshot.equity)} = cash {_money(snapshot.cash)} + positions "
        f"{_money(snapshot.net_liquidation_value)}",
        f"Requirement {_money(snapshot.requirement)}; excess {_money(snapshot.excess)}"
        + ("  ** DEFICIT **" if snapshot.excess < 0 else ""),
        f"Portfolio margin {_money(snapshot.pm_requirement)} vs Reg T maintenance "
        f"{_money(result['reg_t']['maintenance'])} (initial "
        f"{_money(result['reg_t']['initial'])})"
        if result.get("reg_t") else
        f"Portfolio margin {_money(snapshot.pm_requirement)} (Reg T does not cover these "
        "positions)",
        f"Engine {snapshot.engine_version}, parameters {snapshot.parameter_set}",
    ]
    pm = result.get("portfolio_margin")
    if pm:
        driver = pm.get("driver") or {}
        lines.append(f"Driven by product group {driver.get('product_group')} at a move of "
                     f"{float(driver.get('point', 0)):+.1%}")
        for group in pm.get("class_groups", []):
            points = ", ".join(f"{p:+.1%}: {v:,.0f}" for p, v in zip(group["points"], group["pnl"],
                                                                    strict=False))
            lines.append(f"  {group['class_group']}: worst loss {_money(group['worst_loss'])}; "
                         f"P&L by move [{points}]")
        for name, value in (pm.get("house_components") or {}).items():
            lines.append(f"  house {name}: {_money(value)}")
    reg_t = result.get("reg_t")
    if reg_t:
        for strategy in reg_t.get("strategies", []):
            lines.append(f"  Reg T {strategy['strategy']} {', '.join(strategy['positions'])}: "
                         f"maintenance {_money(strategy['maintenance'])}")
    collateral = result.get("collateral")
    if collateral:
        lines.append(f"Collateral: market {_money(collateral['market_value'])}, stressed loss "
                     f"{_money(collateral['stressed_loss'])}, effective "
                     f"{_money(collateral['effective_value'])}, LTV {_percent(collateral['ltv'])}")
        for row in collateral.get("positions", []):
            lines.append(f"  {row['id']}: market {_money(row['market_value'])}, stressed loss "
                         f"{_money(row['stressed_loss'])}, effective "
                         f"{_money(row['effective_value'])}")
    var = result.get("var")
    if var:
        for horizon in var.get("horizons", []):
            lines.append(f"VaR {var['confidence']:.0%} {horizon['days']}-day: historical "
                         f"{_money(horizon['historical'])}, expected shortfall "
                         f"{_money(horizon['expected_shortfall'])}, parametric "
                         f"{_money(horizon['parametric'])}")
    for stress in result.get("stress") or []:
        lines.append(f"Stress {stress['scenario']}: loss {_money(stress['loss'])}")
    if snapshot.flags:
        lines.append("Flags: " + "; ".join(map(str, snapshot.flags)))
    return "\n".join(lines)
