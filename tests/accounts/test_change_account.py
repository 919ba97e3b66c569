"""change_account: a margin-type or status change marks the account dirty on commit, so the
sweep values it again under its new type (the requirement depends on the margin type)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from accounts import services as book
from accounts.models import Account
from brokerage.scope import firm_scope
from margin.dirty import mark_accounts
from margin.market_data import load_prices
from margin.models import AccountMargin
from margin.sweep import sweep_now
from tests.factories import shared_instrument

pytestmark = pytest.mark.django_db


def _current(account: Account) -> AccountMargin:
    return AccountMargin.cross_firm.for_compliance(reason="test").get(account=account)


def test_a_margin_type_change_marks_the_account_and_the_sweep_uses_the_new_type(
        world, django_capture_on_commit_callbacks):
    account, desk = world.a.account, world.a.users["margin_desk"]
    stock = shared_instrument("CHGA")
    load_prices(observations=[{"symbol": "CHGA", "price": "100",
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)
    with firm_scope(world.firm_a):
        assert account.margin_type == Account.MarginType.REG_T
        book.post_ledger_entry(account=account, kind="deposit", amount=Decimal("20000"),
                               actor=desk)
        book.set_position(account=account, instrument=stock,
                          quantity=Decimal(100), actor=desk)
    # The setup's own marks wait for a commit that never comes in this test: mark once.
    mark_accounts([account.pk], request=False)
    sweep_now()
    reg_t = _current(account)
    assert not reg_t.is_dirty
    assert reg_t.requirement == Decimal("2500.00")  # 25 % of $10,000 (Reg T maintenance)

    with firm_scope(world.firm_a), django_capture_on_commit_callbacks(execute=True):
        book.change_account(account=account, actor=world.a.users["firm_admin"],
                            event_type="account.margin_type_changed", reason="test",
                            margin_type=Account.MarginType.PORTFOLIO_MARGIN)
    marked = _current(account)
    assert marked.is_dirty and marked.dirty_version > reg_t.computed_version

    assert sweep_now().computed == 1
    pm = _current(account)
    assert not pm.is_dirty and pm.computed_version == marked.dirty_version
    assert pm.snapshot.margin_type == Account.MarginType.PORTFOLIO_MARGIN
    assert pm.requirement != reg_t.requirement and pm.equity == reg_t.equity
