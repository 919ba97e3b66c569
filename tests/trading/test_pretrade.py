"""The pre-trade check: its figures equal a full recompute of the book with the orders booked,
it writes nothing, and each reason of a rejection (restriction, past-due PM deficiency under
the policy switch, deficit, health factor) is given when it applies and only then."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.db import connection
from django.test import Client

from accounts import services as book
from brokerage.scope import firm_scope
from brokerage.tokens import create_api_token
from margin import pretrade
from margin.calls.models import CallPolicy
from margin.calls.policy import active_policy, approve_policy, propose_policy
from margin.calls.restrictions import impose
from margin.calls.services import issue_call
from margin.market_data import exchange_date
from margin.models import AccountMargin
from margin.tasks import recompute_accounts
from tests.trading.conftest import pm_account

pytestmark = pytest.mark.django_db


def footprint() -> dict[str, int]:
    """Rows of every project table (the check must change none)."""
    tables = [t for t in connection.introspection.table_names()
              if t.split("_")[0] in ("brokerage", "accounts", "margin", "eligibility")]
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(f'(SELECT count(*) FROM "{t}")' for t in tables))
        return dict(zip(tables, cursor.fetchone(), strict=True))


def order(market, key: str, side: str, quantity: int, price: str | None = None):
    return pretrade.Order(market[key], side, Decimal(quantity),
                          Decimal(price) if price is not None else None)


def codes(result) -> list[str]:
    return [r.code for r in result.reasons]


def book_orders(world, account, orders, marks) -> None:
    """The orders booked as positions and cash (what an execution does), then the account
    recomputed by the sweep: the full recompute the check must equal."""
    desk = world.a.users["margin_desk"]
    with firm_scope(world.firm_a):
        held = {p.instrument_id: p.quantity for p in account.positions.all()}
        for o, price in zip(orders, marks, strict=True):
            held[o.instrument.pk] = held.get(o.instrument.pk, Decimal(0)) + o.signed
            book.set_position(account=account, instrument=o.instrument,
                              quantity=held[o.instrument.pk], actor=desk)
            cash = pretrade.trade_cash(o.instrument, o.signed, price)
            if cash:
                book.post_ledger_entry(account=account, kind="trade_settlement", amount=cash,
                                       actor=desk)
    recompute_accounts(world.firm_a.pk, [account.pk])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_check_equals_a_full_recompute_of_the_book_with_the_orders(world, market, seed):
    rng = np.random.default_rng(seed)
    keys = sorted(market)
    holdings = {keys[int(k)]: int(rng.integers(1, 20)) * int(rng.choice([-1, 1]))
                for k in rng.choice(len(keys), size=5, replace=False)}
    account = pm_account(world, market, cash="400000", holdings=holdings)
    orders = [order(market, keys[int(k)], str(rng.choice(["buy", "sell"])),
                    int(rng.integers(1, 15))) for k in rng.choice(len(keys), size=2,
                                                                    replace=False)]
    with firm_scope(world.firm_a):
        result = pretrade.check(account=account, orders=orders, buying_power=False)
        marks = pretrade._Market.load(account, orders).marks(orders)
    book_orders(world, account, orders, marks)
    with firm_scope(world.firm_a):
        current = AccountMargin.objects.get(account=account)
    assert current.requirement == result.after.requirement
    assert current.equity == result.after.equity
    assert current.excess == result.after.excess_liquidity
    assert result.intraday_margin_level == result.after.excess_liquidity


def test_the_check_writes_nothing_so_a_read_only_token_may_ask(world, market):
    account = pm_account(world, market)
    client = Client(HTTP_AUTHORIZATION="Bearer " + create_api_token(
        user=world.a.users["margin_desk"], actor=None, read_only=True).secret)
    assert client.get("/api/v1/").status_code == 200  # the token's first use is audited
    before = footprint()
    response = client.post(f"/api/v1/accounts/{account.number}/pre-trade", json.dumps(
        {"orders": [{"instrument": market["AAA put 0.9"].symbol, "side": "sell",
                     "quantity": "5"}]}), content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["decision"] == "reject" and body["reasons"][0]["code"] == "deficit"
    assert body["buying_power"][0]["quantity_after"] == "0"
    assert footprint() == before


def test_selling_more_puts_is_rejected_and_buying_back_is_accepted_with_a_smaller_deficit(
        world, market):
    account = pm_account(world, market, cash="20000")
    with firm_scope(world.firm_a):
        more = pretrade.check(account=account, orders=[order(market, "AAA put 0.9", "sell", 5)])
        back = pretrade.check(account=account, orders=[order(market, "AAA put 0.9", "buy", 10)])
    assert more.before.excess_liquidity < 0
    assert codes(more) == ["deficit"] and more.after.excess_liquidity < \
        more.before.excess_liquidity
    assert back.decision == "accept"
    assert back.before.excess_liquidity < back.after.excess_liquidity


def test_reg_t_buying_power_is_excess_over_the_initial_rate(world, market):
    with firm_scope(world.firm_a):
        account = book.open_account(client=world.a.client, number="RT-1",
                                    registration="individual", margin_type="reg_t",
                                    actor=world.a.users["firm_admin"])
        book.post_ledger_entry(account=account, kind="deposit", amount=Decimal("10000"),
                               actor=None)
        result = pretrade.check(account=account, orders=[order(market, "CCC", "buy", 10)])
    row = result.buying_power[0]
    assert row["before"] == Decimal("20000.00")  # $10,000 of excess at 50 %
    assert result.after.requirement == Decimal("775.00")  # 25 % of $3,100
    assert row["after"] == (result.after.excess_liquidity * 2).quantize(Decimal("0.01"))


def test_the_intraday_margin_level_after_is_the_intraday_standards_own(world, market):
    """Rule book 5: for a Reg T account the check's level after the orders is what
    ``margin.intraday.levels`` computes for the same book (equity less the maintenance
    requirement, 4210(c)), so the desk and the intraday record never disagree."""
    from margin.intraday.levels import intraday_margin_level

    with firm_scope(world.firm_a):
        account = book.open_account(client=world.a.client, number="RT-2",
                                    registration="individual", margin_type="reg_t",
                                    actor=world.a.users["firm_admin"])
        book.post_ledger_entry(account=account, kind="deposit", amount=Decimal("2000"),
                               actor=None)
        book.set_position(account=account, instrument=market["CCC"], quantity=Decimal(20),
                          actor=None)
        result = pretrade.check(account=account, orders=[order(market, "CCC", "buy", 30)],
                                buying_power=False)
        level = intraday_margin_level(account, changes=[(market["CCC"], Decimal(30))],
                                      cash_change=result.after.cash - result.before.cash)
    assert level.iml is not None and result.intraday_margin_level == level.iml


def test_pm_buying_power_is_the_largest_order_the_excess_carries(world, market):
    account = pm_account(world, market, cash="100000", holdings={"CCC": 10})
    with firm_scope(world.firm_a):
        result = pretrade.check(account=account,
                                orders=[order(market, "AAA put 0.9", "sell", 1)])
        most = int(result.buying_power[0]["quantity_before"])
        assert most > 1
        assert int(result.buying_power[0]["quantity_after"]) == most - 1

        def excess_after_selling(quantity: int) -> Decimal:
            return pretrade.check(account=account, orders=[order(
                market, "AAA put 0.9", "sell", quantity)], buying_power=False
            ).after.excess_liquidity

        assert excess_after_selling(most) >= 0 > excess_after_selling(most + 1)


@pytest.mark.parametrize("kind", ["closing_only", "intraday_90d", "some_future_kind"])
def test_an_active_restriction_forbids_what_its_kind_forbids(world, market, kind):
    account = pm_account(world, market, cash="500000")
    with firm_scope(world.firm_a):
        from margin.calls.models import Restriction

        Restriction.objects.create(firm=world.firm_a, account=account, kind=kind,
                                   starts_on=exchange_date(), cause="test",
                                   policy=active_policy(world.firm_a))
        opening = pretrade.check(account=account, orders=[order(market, "AAA put 0.9",
                                                               "sell", 2)], buying_power=False)
        closing = pretrade.check(account=account, orders=[order(market, "AAA put 0.9",
                                                               "buy", 2)], buying_power=False)
    assert codes(opening) == ["restricted"] and kind.replace("_", " ")[:5] in \
        opening.reasons[0].message.lower() or kind == "some_future_kind"
    assert closing.decision == "accept"


def test_funds_on_hand_forbids_a_purchase_on_credit_only(world, market):
    account = pm_account(world, market, cash="1000", holdings={"CCC": 100})
    with firm_scope(world.firm_a):
        impose(account=account, kind="funds_on_hand_90d", starts_on=exchange_date(),
               cause="a practice", policy=active_policy(world.firm_a))
        on_credit = pretrade.check(account=account, orders=[order(market, "CCC", "buy", 10)],
                                   buying_power=False)
        paid = pretrade.check(account=account, orders=[order(market, "BBB", "buy", 10)],
                              buying_power=False)
    assert "restricted" in codes(on_credit)
    assert "restricted" not in codes(paid)


def test_a_past_due_pm_deficiency_refuses_orders_raising_the_requirement_by_policy(
        world, market):
    account = pm_account(world, market, cash="500000")
    with firm_scope(world.firm_a):
        policy = active_policy(world.firm_a)
        today = exchange_date()
        issue_call(account=account, kind="pm_deficiency", amount=Decimal("1000"),
                   as_of=today - timedelta(days=10), equity=Decimal("0"),
                   requirement=Decimal("1000"), policy=policy)
        from margin.calls.models import MarginCall

        call = MarginCall.objects.get(account=account)
        assert call.due_date < today
        raising = pretrade.check(account=account, orders=[order(market, "AAA put 0.9", "sell",
                                                               2)], buying_power=False)
        lowering = pretrade.check(account=account, orders=[order(market, "AAA put 0.9", "buy",
                                                                2)], buying_power=False)
        assert codes(raising) == ["pm_deficiency_past_due"]
        assert lowering.decision == "accept"
        proposal = propose_policy(firm=world.firm_a, actor=world.a.users["risk_officer"],
                                  values={"reject_increasing_orders_past_due": False},
                                  reason="compliance: [R] not confirmed")
        approve_policy(proposal=proposal, actor=world.a.users["firm_admin"])
        assert CallPolicy.objects.get(pk=proposal.pk).value(
            "reject_increasing_orders_past_due") is False
        switched_off = pretrade.check(account=account, orders=[order(market, "AAA put 0.9",
                                                                    "sell", 2)],
                                      buying_power=False)
    assert switched_off.decision == "accept"


def test_a_health_factor_below_the_call_band_is_refused(world, market):
    from tests.factories import shared_instrument
    from tests.margin.calls.test_collateral import DEBT, eth

    with firm_scope(world.firm_a):
        account = book.open_account(client=world.a.client, number="HF-1",
                                    registration="individual", margin_type="reg_t",
                                    actor=world.a.users["firm_admin"])
        book.post_ledger_entry(account=account, kind="deposit", amount=Decimal("5000"),
                               actor=None)
        eth_ = shared_instrument("ETH", kind="crypto", product_class="crypto")
        usdc = shared_instrument("USDC", kind="crypto", product_class="stablecoin")
        eth("3000")
        book.set_position(account=account, instrument=eth_, quantity=Decimal(10),
                          cost_basis=Decimal(30000), actor=None)
        book.set_position(account=account, instrument=usdc, quantity=-DEBT, cost_basis=-DEBT,
                          actor=None)
        borrow = pretrade.check(account=account, orders=[
            pretrade.Order(usdc, "sell", Decimal(5000), Decimal(1))], buying_power=False)
        repay = pretrade.check(account=account, orders=[
            pretrade.Order(usdc, "buy", Decimal(1000), Decimal(1))], buying_power=False)
    assert borrow.before.health_factor > Decimal("1.10") > borrow.after.health_factor
    assert "health_factor" in codes(borrow)
    assert "health_factor" not in codes(repay)


def test_an_account_that_cannot_be_valued_is_a_422_naming_it(world, market):
    from tests.factories import shared_instrument

    account = pm_account(world, market)
    shared_instrument("UNPRICED")
    client = Client(HTTP_AUTHORIZATION="Bearer " + create_api_token(
        user=world.a.users["risk_officer"], actor=None).secret)
    response = client.post(f"/api/v1/accounts/{account.number}/pre-trade", json.dumps(
        {"orders": [{"instrument": "UNPRICED", "side": "buy", "quantity": "5"}]}),
        content_type="application/json")
    assert response.status_code == 422, response.content
    assert "UNPRICED" in response.json()["errors"][0]["message"]
    response = client.post(f"/api/v1/accounts/{account.number}/pre-trade", json.dumps(
        {"orders": [{"instrument": "NOPE", "side": "buy", "quantity": "5"}]}),
        content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "orders[0].instrument"


def test_a_clean_current_margin_row_is_the_before_of_the_check(world, market):
    account = pm_account(world, market)
    recompute_accounts(world.firm_a.pk, [account.pk])
    orders = [order(market, "BBB put 1.0", "buy", 3)]
    with firm_scope(world.firm_a):
        assert not AccountMargin.objects.get(account=account).is_dirty
        from_row = pretrade.check(account=account, orders=orders, buying_power=False)
        valued = pretrade.check(account=account, orders=orders, buying_power=False,
                                use_current_margin=False)
    assert from_row.before == valued.before and from_row.after == valued.after
