"""Fixtures of the trading-controls tests: a priced portfolio-margin book (stocks and listed
options on them, with vols and a rate), built through the services."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts import services as book
from accounts.models import Account, Instrument
from brokerage.scope import firm_scope
from margin.market_data import exchange_date, load_implied_vols, load_prices, set_risk_free_rate
from tests.factories import shared_instrument

#: symbol -> (product group, price, vol)
UNDERLYINGS = {"AAA": ("TECH", 120.0, 0.35), "BBB": ("TECH", 45.0, 0.5),
               "CCC": ("CCC", 310.0, 0.25)}


def listed(symbol: str, right: str, strike: str, days: int) -> Instrument:
    under = Instrument.cross_firm.for_compliance(reason="test").get(symbol=symbol, firm=None)
    expiry = exchange_date() + timedelta(days=days)
    return shared_instrument(
        f"{symbol} {expiry:%y%m%d}{right[0].upper()}{strike}", kind="equity_option",
        product_class="equity", product_group=under.product_group, underlying=under,
        class_group=symbol, multiplier=Decimal(100), strike=Decimal(strike), right=right,
        expiry=expiry, exercise_style="american")


@pytest.fixture
def market(db) -> dict[str, Instrument]:
    """The underlyings and a few options on each, priced, with vols (marked to model)."""
    now, today = timezone.now() - timedelta(minutes=1), exchange_date()
    found: dict[str, Instrument] = {}
    prices, vols = [], []
    for symbol, (group, price, vol) in UNDERLYINGS.items():
        found[symbol] = shared_instrument(symbol, product_group=group)
        prices.append({"symbol": symbol, "price": f"{price:.2f}", "observed_at": now})
        for right, moneyness in (("put", 0.9), ("put", 1.0), ("call", 1.1)):
            option = listed(symbol, right, f"{price * moneyness:.0f}", 45)
            found[f"{symbol} {right} {moneyness}"] = option
            vols.append({"symbol": option.symbol, "volatility": f"{vol:.4f}", "observed_at": now})
    load_prices(observations=prices, source="vendor", actor=None)
    load_implied_vols(observations=vols, source="vendor", actor=None)
    set_risk_free_rate(rate="0.04", observed_on=today, actor=None)
    return found


def pm_account(world, market, *, number: str = "PM-1", cash: str = "60000",
               holdings: dict[str, int] | None = None) -> Account:
    """A portfolio-margin account of firm A with ``cash`` and ``holdings`` (market key ->
    signed quantity); by default short puts on AAA and BBB."""
    holdings = holdings if holdings is not None else {"AAA put 0.9": -20, "BBB put 1.0": -30,
                                                      "CCC": 100}
    admin, desk = world.a.users["firm_admin"], world.a.users["margin_desk"]
    with firm_scope(world.firm_a):
        account = book.open_account(client=world.a.client, number=number,
                                    registration="individual", margin_type="portfolio_margin",
                                    actor=admin)
        book.post_ledger_entry(account=account, kind="deposit", amount=Decimal(cash), actor=desk)
        for key, quantity in holdings.items():
            book.set_position(account=account, instrument=market[key], actor=desk,
                              quantity=Decimal(quantity))
    return account
