"""Shared set-up of the margin-call tests: the eligibility desk (firm A, its staff and a
client account with $200,000), a priced stock, and a close run on a frozen session."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django.utils import timezone

from accounts import services as book
from accounts.models import Account
from margin.end_of_day import start_end_of_day
from margin.market_data import load_prices
from margin.models import MarginCall
from margin.sweep import sweep_now
from tests.eligibility.conftest import (  # noqa: F401  (the desk's fixtures, shared here)
    desk,
    fast_password_hashing,
    in_desk_firm,
)
from tests.factories import shared_instrument

T = date(2026, 11, 24)  # Tuesday; XNYS: Thanksgiving Thu 26, weekend 28-29


def close(firm, session: date) -> None:
    """The firm's end-of-day run for ``session``, swept in this process (eager)."""
    start_end_of_day(firm=firm, calendar=firm.exchange_calendar or "XNYS", session=session)
    sweep_now(firm_id=firm.pk)


def priced_stock(symbol: str, price: str):
    stock = shared_instrument(symbol)
    set_price(symbol, price)
    return stock


def set_price(symbol: str, price: str, *, minutes: int = 0) -> None:
    load_prices(observations=[{"symbol": symbol, "price": price,
                               "observed_at": timezone.now() - timedelta(minutes=60 - minutes)}],
                source="exchange", actor=None)


def margined_long(account: Account, *, symbol: str = "MGN", shares: int = 1000,
                  price: str = "100", debit: str = "280000") -> Account:
    """A Reg T account long ``shares`` at ``price`` on a debit: with $200,000 of cash and
    $280,000 withdrawn, equity is $100,000 - $80,000 = $20,000 against 25% maintenance."""
    stock = priced_stock(symbol, price)
    book.set_position(account=account, instrument=stock, quantity=Decimal(shares), actor=None)
    book.post_ledger_entry(account=account, kind="withdrawal", amount=-Decimal(debit),
                           actor=None, effective_at=timezone.now() - timedelta(minutes=5))
    return account


def calls_of(account: Account, **filters) -> list[MarginCall]:
    return list(MarginCall.objects.filter(account=account, **filters).order_by("pk"))
