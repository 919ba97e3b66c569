"""Dirty accounts: every input that moves a requirement marks exactly the accounts it affects,
in the load's own transaction, in one UPDATE whatever their number, with a version that only
goes up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import services as book
from accounts.models import Account, Instrument
from brokerage.scope import firm_scope
from margin import services
from margin.dirty import holders_of
from margin.engine.errors import OracleRejected
from margin.market_data import load_implied_vols, load_oracle_round, load_prices, set_risk_free_rate
from margin.market_history import load_daily_closes
from margin.models import AccountMargin
from tests.factories import shared_instrument

pytestmark = pytest.mark.django_db


@dataclass
class Book:
    stock: Account  # holds UNDL
    option: Account  # holds a call on UNDL
    perpetual: Account  # holds a perpetual on TOKX
    lp: Account  # holds an LP position with TOKX as token1
    other: Account  # holds OTHR only
    foreign: Account  # another firm's account holding UNDL
    idle: Account  # holds nothing


def _open(fw, number: str) -> Account:
    with firm_scope(fw.firm):
        return book.open_account(client=fw.client, number=number, registration="individual",
                                 margin_type="reg_t", actor=fw.users["firm_admin"])


def _hold(fw, account: Account, instrument, quantity: str = "1") -> None:
    with firm_scope(fw.firm):
        book.set_position(account=account, instrument=instrument, quantity=Decimal(quantity),
                          actor=fw.users["margin_desk"])


@pytest.fixture
def holders(world) -> Book:
    undl = shared_instrument("UNDL")
    call = shared_instrument("UNDL-C100", kind="equity_option", underlying=undl,
                             strike=Decimal(100), right="call", expiry=date.today() + timedelta(days=60),
                             multiplier=Decimal(100), exercise_style="american")
    tokx = shared_instrument("TOKX", kind="crypto", product_class="crypto")
    usdx = shared_instrument("USDX", kind="crypto", product_class="stablecoin")
    perp = shared_instrument("TOKX-PERP", kind="perpetual", product_class="crypto", underlying=tokx)
    lp = shared_instrument("UNIV3-USDX/TOKX", kind="uniswap_v3_lp", product_class="crypto",
                           token0=usdx, token1=tokx, decimals0=6, decimals1=18,
                           tick_lower=-200000, tick_upper=-190000, liquidity="1000000")
    other = shared_instrument("OTHR")
    a = world.a
    accounts = Book(stock=a.account, option=_open(a, "A-OPT"), perpetual=_open(a, "A-PERP"),
                    lp=_open(a, "A-LP"), other=_open(a, "A-OTHR"), foreign=world.b.account,
                    idle=_open(a, "A-IDLE"))
    _hold(a, accounts.stock, undl, "100")
    _hold(a, accounts.option, call, "2")
    _hold(a, accounts.perpetual, perp, "-3")
    _hold(a, accounts.lp, lp, "1")
    _hold(a, accounts.other, other, "10")
    _hold(world.b, accounts.foreign, undl, "5")
    return accounts


def _versions() -> dict[int, int]:
    return dict(AccountMargin.cross_firm.for_compliance(reason="test reads every firm's rows")
                .values_list("account_id", "dirty_version"))


def _marked_by(load, capture) -> tuple[set[int], list[str]]:
    """The accounts whose version a load raised, and the UPDATEs of the current-margin table it
    sent (its on-commit callbacks run too: the sweep it asks for)."""
    before = _versions()
    with CaptureQueriesContext(connection) as queries, capture(execute=True):
        load()
    after = _versions()
    updates = [q["sql"] for q in queries.captured_queries
               if q["sql"].startswith("UPDATE") and '"margin_accountmargin"' in q["sql"]]
    return {pk for pk, v in after.items() if v != before[pk]}, updates


def _now() -> str:
    return timezone.now().isoformat()


def test_every_account_has_its_current_margin_row_from_the_start(holders):
    rows = AccountMargin.cross_firm.for_compliance(reason="test").filter(
        account_id__in=[holders.idle.pk, holders.foreign.pk])
    assert {(r.account_id, r.firm_id) for r in rows} == {
        (holders.idle.pk, holders.idle.firm_id), (holders.foreign.pk, holders.foreign.firm_id)}


def _holding(*symbols: str) -> set[int]:
    """The accounts ``holders_of`` the shared instruments named finds, read through the
    subquery it returns."""
    ids = Instrument.cross_firm.for_compliance(reason="test: shared instruments").filter(
        symbol__in=symbols, firm__isnull=True).values_list("pk", flat=True)
    found = holders_of(list(ids))
    assert isinstance(found, QuerySet)  # a subquery for the mark, never read into Python
    return {row["account_id"] for row in found}


def test_holders_of_finds_the_holders_of_every_contract_on_the_instrument_in_every_firm(holders):
    assert _holding("UNDL") == {holders.stock.pk, holders.option.pk, holders.foreign.pk}
    assert _holding("TOKX") == {holders.perpetual.pk, holders.lp.pk}  # underlying, token1
    assert _holding("USDX") == {holders.lp.pk}  # the pool's token0
    assert _holding("UNDL-C100") == {holders.option.pk}  # not the underlying's holders
    assert _holding("UNDL", "OTHR") == {holders.stock.pk, holders.option.pk, holders.foreign.pk,
                                        holders.other.pk}
    assert _holding() == set()
    assert holders.idle.pk not in _holding("UNDL", "TOKX", "USDX", "OTHR")


def test_holders_of_finds_the_contracts_first_and_their_positions_by_instrument(holders):
    """Positions are selected by ``instrument_id`` alone (its index), among the contracts the
    instrument table's own indexes find: no join of every position to its instrument."""
    undl = Instrument.cross_firm.for_compliance(reason="test").get(symbol="UNDL", firm=None)
    sql = str(holders_of([undl.pk]).query)
    assert '"accounts_position"."instrument_id" IN (SELECT' in sql and "JOIN" not in sql


def test_a_price_load_marks_exactly_the_holders_in_one_statement(
        holders, django_capture_on_commit_callbacks):
    marked, updates = _marked_by(lambda: load_prices(
        observations=[{"symbol": "UNDL", "price": "88", "observed_at": _now()},
                      {"symbol": "TOKX", "price": "2900", "observed_at": _now()}],
        source="vendor", actor=None), django_capture_on_commit_callbacks)
    # Through the stock, an option on it, a perpetual and an LP token; in every firm.
    assert marked == {holders.stock.pk, holders.option.pk, holders.perpetual.pk, holders.lp.pk,
                      holders.foreign.pk}
    assert len(updates) == 1 and "accounts_position" in updates[0]  # the holders as a subquery


def test_versions_only_go_up_and_every_load_draws_a_new_one(
        holders, django_capture_on_commit_callbacks):
    def price(symbol: str, value: str):
        return lambda: load_prices(observations=[{"symbol": symbol, "price": value,
                                                  "observed_at": _now()}],
                                   source="vendor", actor=None)

    _marked_by(price("UNDL", "90"), django_capture_on_commit_callbacks)
    first = _versions()
    _marked_by(price("OTHR", "11"), django_capture_on_commit_callbacks)
    second = _versions()
    assert second[holders.other.pk] > first[holders.stock.pk] > 0
    assert second[holders.stock.pk] == first[holders.stock.pk]  # not a holder of OTHR


def test_a_vol_load_marks_the_holders_of_the_option(holders, django_capture_on_commit_callbacks):
    marked, updates = _marked_by(lambda: load_implied_vols(
        observations=[{"symbol": "UNDL-C100", "volatility": "0.45", "observed_at": _now()}],
        source="vendor", actor=None), django_capture_on_commit_callbacks)
    assert marked == {holders.option.pk} and len(updates) == 1


def test_a_rate_marks_every_account_of_every_firm(holders, django_capture_on_commit_callbacks):
    marked, updates = _marked_by(lambda: set_risk_free_rate(
        rate="0.041", observed_on=timezone.localdate(), actor=None),
        django_capture_on_commit_callbacks)
    assert marked == set(_versions()) and len(updates) == 1
    assert {holders.idle.pk, holders.foreign.pk} <= marked


def test_a_history_load_marks_the_holders(holders, django_capture_on_commit_callbacks):
    day = timezone.localdate() - timedelta(days=1)
    marked, updates = _marked_by(lambda: load_daily_closes(
        rows=[{"symbol": "TOKX", "date": day.isoformat(), "close": "2950"}], source="vendor",
        actor=None), django_capture_on_commit_callbacks)
    assert marked == {holders.perpetual.pk, holders.lp.pk} and len(updates) == 1


def test_an_oracle_round_marks_the_holders(holders, django_capture_on_commit_callbacks):
    now = timezone.now()
    answer = {"round_id": "7", "answer": "290000000000", "decimals": 8,
              "started_at": now.isoformat(), "updated_at": now.isoformat(),
              "answered_in_round": "7", "heartbeat_s": 3600, "previous_answer": "290000000000"}
    marked, updates = _marked_by(lambda: load_oracle_round(
        symbol="TOKX", round=answer, reference_price=2900.0, actor=None, valuation_time=now),
        django_capture_on_commit_callbacks)
    assert marked == {holders.perpetual.pk, holders.lp.pk} and len(updates) == 1

    # A rejected round marks them too: their current margin is flagged until a good round.
    three_hours_ago = (now - timedelta(hours=3)).isoformat()
    stale = {**answer, "round_id": "8", "answered_in_round": "8",
             "started_at": three_hours_ago, "updated_at": three_hours_ago}

    def rejected():
        with pytest.raises(OracleRejected):
            load_oracle_round(symbol="TOKX", round=stale, reference_price=2900.0, actor=None,
                              valuation_time=now)

    marked, updates = _marked_by(rejected, django_capture_on_commit_callbacks)
    assert marked == {holders.perpetual.pk, holders.lp.pk} and len(updates) == 1


def test_a_position_and_a_ledger_entry_mark_their_account(
        world, holders, django_capture_on_commit_callbacks):
    marked, _ = _marked_by(lambda: _hold(world.a, holders.idle, shared_instrument("OTHR"), "3"),
                           django_capture_on_commit_callbacks)
    assert marked == {holders.idle.pk}

    def deposit():
        with firm_scope(world.firm_b):
            book.post_ledger_entry(account=holders.foreign, kind="deposit",
                                   amount=Decimal("500"), actor=world.b.users["margin_desk"])

    marked, _ = _marked_by(deposit, django_capture_on_commit_callbacks)
    assert marked == {holders.foreign.pk}


def test_a_parameter_set_becoming_active_marks_the_firms_accounts(
        world, holders, django_capture_on_commit_callbacks):
    with firm_scope(world.firm_a):
        proposal = services.propose_parameters(
            firm=world.firm_a, actor=world.a.users["risk_officer"], reason="house view",
            overrides={"defi": {"haircut_tiers": {"large_cap": [[None, 0.2]]}}})
    with firm_scope(world.firm_a):
        marked, updates = _marked_by(lambda: services.approve_parameters(
            proposal=proposal, actor=world.a.users["firm_admin"]),
            django_capture_on_commit_callbacks)
    firm_a = set(AccountMargin.cross_firm.for_compliance(reason="test").filter(
        firm=world.firm_a).values_list("account_id", flat=True))
    assert marked == firm_a and holders.foreign.pk not in marked and len(updates) == 1


def test_the_mark_is_part_of_the_loads_transaction(holders):
    """Dirty exactly when the data is: inside the load's transaction, before any commit; and
    a load that rolls back leaves no mark (nor a version a sweep could take for done)."""
    before = _versions()
    with transaction.atomic():
        load_prices(observations=[{"symbol": "UNDL", "price": "91", "observed_at": _now()}],
                    source="vendor", actor=None)
        inside = _versions()
        assert inside[holders.stock.pk] > before[holders.stock.pk]  # no commit needed
    try:
        with transaction.atomic():
            load_prices(observations=[{"symbol": "OTHR", "price": "12", "observed_at": _now()}],
                        source="vendor", actor=None)
            raise RuntimeError("the load's transaction fails after the mark")
    except RuntimeError:
        pass
    assert _versions()[holders.other.pk] == before[holders.other.pk]


def test_versions_come_from_the_database_sequence_drawn_per_row(holders):
    """On PostgreSQL a sequence (no counter row to queue on), one value per row marked: a load
    that commits after another always leaves the higher version on the rows they share."""
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value FROM margin_version")
        start = cursor.fetchone()[0]
    marked, _ = _marked_by(lambda: load_prices(
        observations=[{"symbol": "UNDL", "price": "93", "observed_at": _now()}],
        source="vendor", actor=None), lambda execute: transaction.atomic())
    versions = _versions()
    drawn = sorted(versions[pk] for pk in marked)
    assert marked == {holders.stock.pk, holders.option.pk, holders.foreign.pk}
    assert len(set(drawn)) == 3 and drawn[0] > start
