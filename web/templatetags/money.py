"""Portal formatting: money with thousands separators, ratios as percentages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def usd(value) -> str:
    """$1,234.56 (a dash for a missing figure)."""
    if value is None or value == "":
        return "-"
    return f"${float(value):,.2f}"


@register.filter
def percent(value, digits: int = 1) -> str:
    """0.3578 -> 35.8 % (a dash for a missing ratio)."""
    if value is None or value == "":
        return "-"
    return f"{float(value) * 100:.{int(digits)}f} %"


@register.filter
def ratio(value) -> str:
    """A health factor to two decimals (a dash when there is no debt: Aave's infinity)."""
    if value is None or value == "":
        return "-"
    return f"{float(value):,.2f}"
