"""The intraday margin standard (MARGIN_CALLS.md section 5), replayed on frozen sessions across
Thanksgiving and a weekend: the IML after each transaction, the day's deficit (with the
worst-order rule), the call at the close, its satisfaction by deposits and by liquidations, its
lapse after the 15th business day, de minimis, the practice counter and the 90-day block."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction

from accounts import services as book
from accounts.models import Account, Position
from brokerage import audit
from brokerage.errors import NotPermitted
from margin.calls.policy import approve_policy, propose_policy
from margin.calls.restrictions import end_expired, opens_or_increases_short_or_debit, refusals
from margin.intraday.calls import misses
from margin.intraday.levels import intraday_margin_level
from margin.intraday.regime import legacy_accounts
from margin.models import IntradayObservation, MarginCall, Restriction

from .conftest import T, close, priced_stock

pytestmark = pytest.mark.django_db
NY = ZoneInfo("America/New_York")
WED, FRI = date(2026, 11, 25), date(2026, 11, 27)  # Thanksgiving Thursday between them


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NY)


def trade(account: Account, stock, quantity: int, price: str, when: datetime) -> None:
    """An execution as trade capture books it: the position and its cash in one transaction."""
    held = Position.objects.filter(account=account, instrument=stock).first()
    with transaction.atomic():
        book.set_position(account=account, instrument=stock,
                          quantity=(held.quantity if held else 0) + quantity, actor=None)
        book.post_ledger_entry(account=account, kind="trade_settlement",
                               amount=-Decimal(quantity) * Decimal(price), actor=None,
                               effective_at=when)


def cash(account: Account, amount: str, when: datetime) -> None:
    amount = Decimal(amount)
    book.post_ledger_entry(account=account, kind="deposit" if amount > 0 else "withdrawal",
                           amount=amount, actor=None, effective_at=when)


def levels(account: Account) -> list[tuple[Decimal, bool]]:
    return list(IntradayObservation.objects.filter(account=account).order_by("pk")
                .values_list("level", "reducing"))


def intraday_calls(account: Account, **filters) -> list[MarginCall]:
    return list(MarginCall.objects.filter(account=account, kind="intraday", **filters)
                .order_by("as_of"))


@pytest.fixture
def monitored(in_desk_firm):
    """The desk's Reg T account ($200,000 cash) moved to the intraday regime; MGN at $100."""
    account = book.set_regime(account=in_desk_firm.account, regime="intraday",
                              actor=in_desk_firm.risk, reason="phase-in")
    in_desk_firm.stock = priced_stock("MGN", "100")
    return account


def deficit_day(account, stock, day: date = T) -> None:
    """Buy $400,000 on margin (IML 200,000 -> 100,000), withdraw $150,000 (-> -50,000), sell a
    quarter back (-> -25,000: a same-day recovery): the day's deficit is $50,000."""
    trade(account, stock, 4000, "100", at(day, 10))
    cash(account, "-150000", at(day, 11))
    trade(account, stock, -1000, "100", at(day, 12))


def test_the_day_replayed_transaction_by_transaction(in_desk_firm, monitored):
    account = monitored
    deficit_day(account, in_desk_firm.stock)
    assert levels(account) == [(Decimal("100000.00"), True), (Decimal("-50000.00"), True),
                               (Decimal("-25000.00"), False)]
    first = IntradayObservation.objects.filter(account=account).order_by("pk").first()
    # one row for the trade's two writes (position and cash), measured at the same prices
    assert (first.session, first.level_before, first.equity, first.maintenance, first.traded) \
        == (T, Decimal("200000.00"), Decimal("200000.00"), Decimal("100000.00"), True)
    # what the pre-trade check reads: the level now and after a proposed order
    assert intraday_margin_level(account).iml == Decimal("-25000.00")
    after = intraday_margin_level(account, changes=[(in_desk_firm.stock, Decimal(-1000))],
                                  cash_change=Decimal("100000"))
    assert after.iml == Decimal("0.00")
    close(in_desk_firm.firm, T)
    [call] = intraday_calls(account)
    assert (call.amount, call.status, call.as_of) == (Decimal("50000.00"), "issued", T)
    # due at close of business on the 5th business day (Thanksgiving skipped), no due time
    assert (call.due_date, call.due_at) == (date(2026, 12, 2), None)
    assert "4210(d)(2)(D)" in call.rule and call.rule_source == "regulatory"
    close(in_desk_firm.firm, T)  # the run again: nothing twice
    assert len(intraday_calls(account)) == 1


def test_the_worst_order_when_the_order_cannot_be_shown(in_desk_firm, monitored):
    account = monitored
    trade(account, in_desk_firm.stock, 4000, "100", at(T, 10))  # IML 100,000
    # an import stamped alike: as recorded the level never goes negative (160,000; 30,000)...
    cash(account, "60000", at(T, 13))
    cash(account, "-130000", at(T, 13))
    assert [lvl for lvl, _ in levels(account)] == [Decimal("100000.00"), Decimal("160000.00"),
                                                   Decimal("30000.00")]
    close(in_desk_firm.firm, T)
    # ...but the withdrawal may have come first: 100,000 - 130,000
    [call] = intraday_calls(account)
    assert call.amount == Decimal("30000.00")


def test_shown_order_is_kept(in_desk_firm, monitored):
    account = monitored
    trade(account, in_desk_firm.stock, 4000, "100", at(T, 10))
    cash(account, "60000", at(T, 13))
    cash(account, "-130000", at(T, 13, 1))
    close(in_desk_firm.firm, T)
    assert intraday_calls(account) == []


def test_met_by_later_deposits_not_by_the_same_day_recovery(in_desk_firm, monitored):
    account = monitored
    deficit_day(account, in_desk_firm.stock)
    cash(account, "90000", at(T, 15))  # same day: the deficit stands
    close(in_desk_firm.firm, T)
    [call] = intraday_calls(account)
    assert call.amount == Decimal("50000.00")
    cash(account, "20000", at(WED, 10))
    cash(account, "-5000", at(WED, 11))  # net of withdrawals
    close(in_desk_firm.firm, WED)
    call.refresh_from_db()
    assert (call.status, call.amount_due) == ("partially_met", Decimal("35000.00"))
    cash(account, "35000", at(FRI, 10))
    close(in_desk_firm.firm, FRI)
    call.refresh_from_db()
    assert (call.status, call.amount_due, call.closed_on) == ("met", Decimal("0.00"), FRI)
    assert list(call.satisfactions.values_list("manner", "amount")) == [
        ("iml_increase", Decimal("15000.00")), ("iml_increase", Decimal("35000.00"))]
    assert list(call.records.values_list("event", flat=True)) == ["issued", "satisfied",
                                                                   "satisfied"]


def test_met_by_a_liquidation(in_desk_firm, monitored):
    account = monitored
    deficit_day(account, in_desk_firm.stock)
    close(in_desk_firm.firm, T)
    trade(account, in_desk_firm.stock, -2000, "100", at(WED, 10))  # maintenance -50,000
    close(in_desk_firm.firm, WED)
    [call] = intraday_calls(account)
    assert call.status == "met"
    assert [s.manner for s in call.satisfactions.all()] == ["iml_increase"]


def test_lapses_after_the_fifteenth_business_day(in_desk_firm, monitored):
    account = monitored
    deficit_day(account, in_desk_firm.stock)
    close(in_desk_firm.firm, T)
    close(in_desk_firm.firm, date(2026, 12, 2))  # the 5th business day: overdue
    [call] = intraday_calls(account)
    assert call.status == "overdue"
    assert Restriction.objects.filter(account=account).count() == 0  # one miss: no practice
    close(in_desk_firm.firm, date(2026, 12, 15))
    call.refresh_from_db()
    assert call.status == "overdue"
    close(in_desk_firm.firm, date(2026, 12, 16))  # close of business on the 15th: lapses
    call.refresh_from_db()
    assert (call.status, call.cancel_reason, call.closed_on) == ("cancelled", "lapsed",
                                                                 date(2026, 12, 16))


def _practice_of(desk, misses_needed: int):
    proposal = propose_policy(firm=desk.firm, actor=desk.admin,
                              values={"intraday_practice_misses": misses_needed},
                              reason="stricter practice")
    return approve_policy(proposal=proposal, actor=desk.risk)


def test_de_minimis_deficits_do_not_make_a_practice(in_desk_firm, monitored):
    _practice_of(in_desk_firm, 1)
    account = monitored
    trade(account, in_desk_firm.stock, 4000, "100", at(T, 10))  # IML 100,000, equity 200,000
    cash(account, "-100800", at(T, 11))  # IML -800; equity 99,200: the limit is $1,000
    close(in_desk_firm.firm, T)
    close(in_desk_firm.firm, date(2026, 12, 2))
    [call] = intraday_calls(account)
    assert (call.amount, call.status) == (Decimal("800.00"), "overdue")
    assert misses(account, since=T - timedelta(days=1)) == []
    assert Restriction.objects.filter(account=account).count() == 0


def test_a_practice_of_misses_blocks_new_shorts_and_debits_for_ninety_days(in_desk_firm,
                                                                           monitored):
    _practice_of(in_desk_firm, 2)
    account = monitored
    deficit_day(account, in_desk_firm.stock)  # T: deficit 50,000
    close(in_desk_firm.firm, T)
    cash(account, "-10000", at(WED, 10))  # WED: IML -35,000 after a withdrawal
    close(in_desk_firm.firm, WED)
    assert [c.amount for c in intraday_calls(account)] == [Decimal("50000.00"),
                                                           Decimal("35000.00")]
    close(in_desk_firm.firm, date(2026, 12, 2))  # T's 5th business day: one miss
    assert Restriction.objects.filter(account=account).count() == 0
    close(in_desk_firm.firm, date(2026, 12, 3))  # WED's: the second, a practice
    [block] = Restriction.objects.filter(account=account)
    assert (block.kind, block.state, block.starts_on, block.ends_on) == (
        "intraday_90d", "active", date(2026, 12, 3), date(2026, 12, 3) + timedelta(days=90))
    assert block.call == intraday_calls(account)[1]
    account.refresh_from_db()
    assert account.status == "open"  # not closing-only: closing trades and long sales go
    # the rule the pre-trade check asks: new or larger shorts and debits refused
    assert opens_or_increases_short_or_debit(quantity_before=0, quantity_after=-100,
                                             cash_before=10, cash_after=20)
    assert opens_or_increases_short_or_debit(quantity_before=3000, quantity_after=3100,
                                             cash_before=-260000, cash_after=-270000)
    assert not opens_or_increases_short_or_debit(quantity_before=-100, quantity_after=0,
                                                 cash_before=-5, cash_after=-100)  # closing
    assert not opens_or_increases_short_or_debit(quantity_before=3000, quantity_after=2000,
                                                 cash_before=-260000, cash_after=-160000)
    assert refusals(account=account, quantity_before=0, quantity_after=-100,
                    cash_before=Decimal(0), cash_after=Decimal(0))
    assert refusals(account=account, quantity_before=3000, quantity_after=2000,
                    cash_before=Decimal(0), cash_after=Decimal(1)) == []
    # it ends on the day's satisfaction of the deficit that brought it...
    cash(account, "40000", at(date(2026, 12, 4), 10))
    close(in_desk_firm.firm, date(2026, 12, 4))
    block.refresh_from_db()
    assert (block.state, block.closed_on) == ("lifted", date(2026, 12, 4))
    assert refusals(account=account, quantity_before=0, quantity_after=-100,
                    cash_before=Decimal(0), cash_after=Decimal(0)) == []


def test_the_block_ends_ninety_days_after_the_fifth_business_day(in_desk_firm, monitored):
    _practice_of(in_desk_firm, 1)
    account = monitored
    deficit_day(account, in_desk_firm.stock)
    close(in_desk_firm.firm, T)
    close(in_desk_firm.firm, date(2026, 12, 2))
    [block] = Restriction.objects.filter(account=account, kind="intraday_90d")
    assert block.ends_on == date(2027, 3, 2)
    end_expired(account_ids=[account.pk], day=date(2027, 3, 2))
    block.refresh_from_db()
    assert block.state == "active"  # through its 90th day
    end_expired(account_ids=[account.pk], day=date(2027, 3, 3))
    block.refresh_from_db()
    assert block.state == "ended"


def test_legacy_pdt_accounts_are_not_monitored(in_desk_firm):
    account = in_desk_firm.account
    assert account.regime == "legacy_pdt"  # the firm's choice (the platform default)
    assert list(legacy_accounts()) == [account]
    deficit_day(account, priced_stock("MGN", "100"))
    assert levels(account) == []
    close(in_desk_firm.firm, T)
    assert intraday_calls(account) == []
    assert MarginCall.objects.filter(account=account, kind="maintenance").exists()


def test_portfolio_margin_accounts_are_not_monitored_whatever_their_flag(in_desk_firm):
    account = book.set_regime(account=in_desk_firm.account, regime="intraday",
                              actor=in_desk_firm.admin, reason="flag set")
    book.change_account(account=account, actor=in_desk_firm.admin, event_type="test.setup",
                        margin_type="portfolio_margin")
    deficit_day(account, priced_stock("MGN", "100"))
    assert levels(account) == []
    close(in_desk_firm.firm, T)
    assert intraday_calls(account) == []


def test_switching_the_regime_is_audited_and_for_admins_and_risk_only(in_desk_firm):
    account = in_desk_firm.account
    with pytest.raises(NotPermitted):
        book.set_regime(account=account, regime="intraday", actor=in_desk_firm.margin_desk,
                        reason="x")
    book.set_regime(account=account, regime="intraday", actor=in_desk_firm.admin,
                    reason="phase-in before 20 October 2027")
    event = audit.events_for(in_desk_firm.firm).filter(
        event_type="account.regime_changed").get()
    assert event.before == {"regime": "legacy_pdt"}
    assert legacy_accounts().count() == 0


def _api(user):
    from rest_framework.test import APIClient

    from brokerage.tokens import create_api_token

    return APIClient(HTTP_AUTHORIZATION=f"Bearer {create_api_token(user=user, actor=None).secret}")


def test_the_desk_lists_legacy_accounts_and_moves_them_through_the_api(in_desk_firm):
    from tests.api_body import the_error

    number = in_desk_firm.account.number
    risk = _api(in_desk_firm.risk)
    listed = risk.get("/api/v1/accounts/?regime=legacy_pdt").json()["results"]
    assert [(a["number"], a["regime"]) for a in listed] == [(number, "legacy_pdt")]
    assert risk.get("/api/v1/accounts/?regime=intraday").json()["results"] == []
    refused = risk.get("/api/v1/accounts/?regime=pdt")
    assert refused.status_code == 400 and the_error(refused)["field"] == "regime"
    desk = _api(in_desk_firm.margin_desk).post(f"/api/v1/accounts/{number}/regime/",
                                               {"regime": "intraday", "reason": "x"},
                                               format="json")
    assert desk.status_code == 403
    moved = risk.post(f"/api/v1/accounts/{number}/regime/",
                      {"regime": "intraday", "reason": "phase-in"}, format="json")
    assert (moved.status_code, moved.json()["regime"]) == (200, "intraday")
    assert risk.get("/api/v1/accounts/?regime=legacy_pdt").json()["results"] == []


def test_new_accounts_take_the_firm_s_choice(in_desk_firm):
    from brokerage.tenancy import set_firm_intraday_regime
    from tests.eligibility.conftest import someone_elses_account

    with pytest.raises(NotPermitted):
        set_firm_intraday_regime(firm=in_desk_firm.firm, actor=in_desk_firm.risk,
                                 regime="intraday")
    firm = set_firm_intraday_regime(firm=in_desk_firm.firm, actor=in_desk_firm.admin,
                                    regime="intraday")
    assert firm.intraday_regime == "intraday"
    in_desk_firm.firm.refresh_from_db()
    opened = someone_elses_account(in_desk_firm, name="New", email="new@example.com")
    assert opened.regime == "intraday"
    assert in_desk_firm.account.regime == "legacy_pdt"  # existing accounts move one by one


def test_an_observation_is_never_changed_once_its_transaction_committed(in_desk_firm,
                                                                        monitored):
    from django.db import connection
    from django.db.utils import DatabaseError

    cash(monitored, "-1000", at(T, 10))
    row = IntradayObservation.objects.get(account=monitored)
    assert row.database_transaction  # stamped by the database
    with pytest.raises(PermissionError):
        IntradayObservation.objects.filter(pk=row.pk).update(level=0)
    # the trigger: another transaction than the writer's is refused (the test's own wrapping
    # transaction wrote it, so pretend the row came from an earlier one)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE margin_intradayobservation DISABLE TRIGGER USER")
        cursor.execute("UPDATE margin_intradayobservation SET database_transaction = '1' "
                       "WHERE id = %s", [row.pk])
        cursor.execute("ALTER TABLE margin_intradayobservation ENABLE TRIGGER USER")
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            cursor.execute("UPDATE margin_intradayobservation SET level = 0 WHERE id = %s",
                           [row.pk])
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            cursor.execute("DELETE FROM margin_intradayobservation WHERE id = %s", [row.pk])


@pytest.mark.django_db(transaction=True)
def test_committed_transactions_each_leave_their_own_row(in_desk_firm, monitored):
    """Outside a test's wrapping transaction, as in production: a trade's two writes share one
    row (the database's transaction id), the next transaction writes its own."""
    trade(monitored, in_desk_firm.stock, 4000, "100", at(T, 10))
    cash(monitored, "-150000", at(T, 11))
    rows = list(IntradayObservation.objects.filter(account=monitored).order_by("pk"))
    assert [(r.level, r.traded) for r in rows] == [(Decimal("100000.00"), True),
                                                   (Decimal("-50000.00"), False)]
    assert all(r.transaction.startswith("xact:") for r in rows)
    assert rows[0].transaction != rows[1].transaction
