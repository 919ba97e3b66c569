"""Fixtures of the margin tests."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts import services as book
from accounts.models import Account
from brokerage.scope import firm_scope
from margin.dirty import mark_accounts
from tests.factories import shared_instrument
from tests.margin.history import set_price


@pytest.fixture(autouse=True)
def _no_kept_universe():
    """A worker process keeps one valued universe across chunks (margin.valuing.UNIVERSES);
    each test starts without one (ids of another test's rows may come back), nor with kept
    market data (margin.market_cache.MARKET)."""
    from margin.market_cache import MARKET
    from margin.valuing import UNIVERSES

    UNIVERSES.clear()
    MARKET.clear()
    yield
    UNIVERSES.clear()
    MARKET.clear()


@pytest.fixture
def four(world) -> dict[str, Account]:
    """Firm A's four Reg T accounts (maintenance 25 % of long stock), ACME at 100:
    big: $20,000 and 100 ACME (requirement $2,500); tiny: $1,000 and 1 ACME ($25, under the
    floor whatever the move); thin: 100 ACME on a $7,400 debit (excess +$100, negative below
    98.67); cash: $5,000, no positions. All dirty, none valued yet."""
    acme = shared_instrument("ACME")
    set_price("100")
    admin, desk = world.a.users["firm_admin"], world.a.users["margin_desk"]
    with firm_scope(world.firm_a):
        accounts = {"big": world.a.account, **{name: book.open_account(
            client=world.a.client, number=f"A-{name}", registration="individual",
            margin_type="reg_t", actor=admin) for name in ("tiny", "thin", "cash")}}
        for name, cash, quantity in (("big", "20000", 100), ("tiny", "1000", 1),
                                     ("thin", "-7400", 100), ("cash", "5000", 0)):
            kind = "deposit" if Decimal(cash) > 0 else "withdrawal"
            book.post_ledger_entry(account=accounts[name], kind=kind, amount=Decimal(cash),
                                   actor=desk)
            if quantity:
                book.set_position(account=accounts[name], instrument=acme,
                                  quantity=Decimal(quantity), actor=desk)
    # The setup's own marks run on commit, which a test transaction never reaches.
    mark_accounts([a.pk for a in accounts.values()], request=False)
    return accounts
