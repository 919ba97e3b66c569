"""Portal formatting: money with its currency, thousands separators and a real minus sign
(U+2212); ratios as percentages. One filter for money (`usd`), used on every page."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()

MINUS = "\u2212"


def format_money(value, currency: str = "$") -> str:
    """-47555 -> −$47,555.00 (a dash for a missing figure)."""
    if value is None or value == "":
        return "-"
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation:
        return "-"
    sign = MINUS if amount < 0 else ""
    return f"{sign}{currency}{abs(amount):,.2f}"


@register.filter
def usd(value) -> str:
    """Money in dollars: $1,234.56, −$1,234.56, a dash for a missing figure."""
    return format_money(value)


@register.filter
def signed_number(value, digits: int = 2) -> str:
    """A plain number with thousands separators and a real minus sign (Greeks, quantities)."""
    if value is None or value == "":
        return "-"
    text = f"{float(value):,.{int(digits)}f}"
    return text.replace("-", MINUS)


@register.filter
def percent(value, digits: int = 1) -> str:
    """0.3578 -> 35.8 % (a dash for a missing ratio)."""
    if value is None or value == "":
        return "-"
    return f"{float(value) * 100:.{int(digits)}f} %".replace("-", MINUS)


@register.filter
def ratio(value) -> str:
    """A health factor to two decimals (a dash when there is no debt: Aave's infinity)."""
    if value is None or value == "":
        return "-"
    return f"{float(value):,.2f}"
