"""Market history: daily closes loaded validated and audited, and snapshots' VaR on them.

VaR in a snapshot runs on the stored closes of the account's own underlyings (the last
`window` returns, 500 by default), never on the bundled synthetic file; an underlying with too
little history leaves VaR out with a `history_short` flag while every other method is still
computed; the demo's synthetic history is loaded as `synthetic` and labelled wherever it is used.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts import services as book
from brokerage.celery import app
from brokerage.models import AuditEvent
from brokerage.scope import firm_scope
from margin import services as risk_parameters
from margin.dirty import sweep_started
from margin.market_data import MarketDataError, load_prices
from margin.market_history import (
    SYNTHETIC_FLAG,
    load_daily_closes,
    load_synthetic_demo_history,
    read_history,
)
from margin.models import DailyClose
from margin.reproduce import explanation
from margin.snapshots import compute_snapshots, latest_snapshot
from margin.tasks import recompute_accounts
from tests.factories import PASSWORD, log_in, shared_instrument

pytestmark = pytest.mark.django_db


def weekdays_back(n: int, *, every_day: bool = False) -> list[date]:
    """The last ``n`` weekdays (or days) up to today, oldest first."""
    days: list[date] = []
    day = timezone.localdate()
    while len(days) < n:
        if every_day or day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=1)
    return days[::-1]


def closes_rows(symbol: str, returns: np.ndarray, *, start: float = 100.0,
                every_day: bool = False) -> list[dict]:
    prices = start * np.cumprod(np.r_[1.0, 1.0 + np.asarray(returns)])
    days = weekdays_back(len(prices), every_day=every_day)
    return [{"symbol": symbol, "date": d.isoformat(), "close": f"{p:.8f}"}
            for d, p in zip(days, prices, strict=True)]


def random_returns(n: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.015, n)


def hold(world, symbol: str, quantity: int = 100, price: str = "100", **fields):
    """Account A holds ``quantity`` of a shared underlying priced now (cash is not needed)."""
    instrument = shared_instrument(symbol, **fields)
    load_prices(observations=[{"symbol": symbol, "price": price,
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)
    with firm_scope(world.firm_a):
        book.set_position(account=world.a.account, instrument=instrument,
                          quantity=Decimal(quantity), actor=world.a.users["margin_desk"])
    return instrument


def snapshot_of(world):
    recompute_accounts(world.firm_a.pk, [world.a.account.pk])
    with firm_scope(world.firm_a):
        return latest_snapshot(world.a.account)


# --------------------------------------------------------------------------- loading


def test_a_load_stores_the_closes_and_is_one_audit_event_on_the_platform_chain():
    shared_instrument("ACME")
    shared_instrument("BETA")
    count = load_daily_closes(rows=[
        {"symbol": "ACME", "date": "2025-03-03", "close": "101.5"},
        {"symbol": "ACME", "date": "2025-03-04", "close": "102"},
        {"symbol": "BETA", "date": "2025-03-04", "close": "7.25"},
    ], source="vendor", actor=None)
    assert count == 3
    stored = list(DailyClose.objects.order_by("instrument__symbol", "date")
                  .values_list("instrument__symbol", "date", "close", "source"))
    assert stored == [("ACME", date(2025, 3, 3), Decimal("101.5"), "vendor"),
                      ("ACME", date(2025, 3, 4), Decimal("102"), "vendor"),
                      ("BETA", date(2025, 3, 4), Decimal("7.25"), "vendor")]
    event = AuditEvent.objects.get(event_type="history.loaded")
    assert event.chain == "platform" and event.firm is None
    assert event.after["count"] == 3 and event.after["symbols"] == ["ACME", "BETA"]
    assert event.after["replaced"] == 0


@pytest.mark.parametrize("bad,field,code", [
    ({"close": "-1"}, "close", "not_positive"),
    ({"close": "0"}, "close", "not_positive"),
    ({"close": "NaN"}, "close", "not_finite"),
    ({"close": "Infinity"}, "close", "not_finite"),
    ({"close": "abc"}, "close", "invalid"),
    ({"close": "1e20"}, "close", "too_large"),
    ({"symbol": "NOPE"}, "symbol", "unknown_symbol"),
    ({"symbol": "ACME 261218C50"}, "symbol", "not_an_underlying"),
    ({"date": "2999-01-01"}, "date", "future"),
    ({"date": "03/05/2025"}, "date", "invalid"),
    # a moment is not a trading day (which zone's date?): refused, not a TypeError
    ({"date": datetime(2025, 3, 4, 21, 0, tzinfo=UTC)}, "date", "invalid"),
    ({"date": "2025-03-03"}, "date", "duplicate"),
    ({"volume": 10}, "", "unknown_field"),
])
def test_a_bad_row_is_named_and_nothing_is_stored(bad, field, code):
    acme = shared_instrument("ACME")
    shared_instrument("ACME 261218C50", kind="equity_option", multiplier=Decimal(100),
                      underlying=acme, strike=Decimal(50), right="call",
                      expiry=date(2026, 12, 18))
    good = {"symbol": "ACME", "date": "2025-03-03", "close": "100"}
    rows = [good, {**good, "date": "2025-03-04", **bad}]
    with pytest.raises(MarketDataError) as caught:
        load_daily_closes(rows=rows, source="vendor", actor=None)
    assert caught.value.errors == [{"field": f"rows[1].{field}" if field else "rows[1]",
                                    "code": code, "message": caught.value.errors[0]["message"]}]
    assert not DailyClose.objects.exists()
    assert not AuditEvent.objects.filter(event_type="history.loaded").exists()


def test_every_bad_row_is_listed_and_an_unknown_source_is_refused():
    shared_instrument("ACME")
    with pytest.raises(MarketDataError) as caught:
        load_daily_closes(rows=[{"symbol": "ACME", "date": "2025-03-03", "close": "-5"},
                                {"symbol": "ACME", "date": "someday", "close": "5"}],
                          source="rumour", actor=None)
    assert [(e["field"], e["code"]) for e in caught.value.errors] == [
        ("source", "invalid"), ("rows[0].close", "not_positive"), ("rows[1].date", "invalid")]
    with pytest.raises(MarketDataError) as empty:
        load_daily_closes(rows=[], source="vendor", actor=None)
    assert empty.value.errors[0]["code"] == "empty"
    assert not DailyClose.objects.exists()


def test_a_later_load_corrects_a_day_but_synthetic_never_replaces_real():
    shared_instrument("ACME")
    day = {"symbol": "ACME", "date": "2025-03-03"}
    load_daily_closes(rows=[{**day, "close": "100"}], source="vendor", actor=None)
    load_daily_closes(rows=[{**day, "close": "100.5"}], source="exchange", actor=None)
    row = DailyClose.objects.get()
    assert (row.close, row.source) == (Decimal("100.5"), "exchange")
    assert AuditEvent.objects.filter(event_type="history.loaded").latest("seq").after[
        "replaced"] == 1
    with pytest.raises(MarketDataError) as caught:
        load_daily_closes(rows=[{**day, "close": "90"}], source="synthetic", actor=None)
    assert caught.value.errors[0]["code"] == "would_replace_real"
    assert DailyClose.objects.get().close == Decimal("100.5")


@pytest.fixture
def eager_celery():
    """Tasks run in-process (the embedded default) so the recompute a load schedules is seen."""
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def test_a_load_recomputes_the_accounts_holding_the_underlying_through_an_option(
        world, eager_celery, django_capture_on_commit_callbacks):
    acme = shared_instrument("ACME")
    option = shared_instrument("ACME 270115P90", kind="equity_option", multiplier=Decimal(100),
                               underlying=acme, strike=Decimal(90), right="put",
                               expiry=timezone.localdate() + timedelta(days=60))
    load_prices(observations=[{"symbol": "ACME", "price": "100",
                               "observed_at": timezone.now().isoformat()},
                              {"symbol": option.symbol, "price": "1.80",
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)
    with firm_scope(world.firm_a):
        book.set_position(account=world.a.account, instrument=option, quantity=Decimal(-2),
                          actor=world.a.users["margin_desk"])
    sweep_started()  # the setup's own sweep request goes on a commit the test never reaches
    with django_capture_on_commit_callbacks(execute=True):
        load_daily_closes(rows=closes_rows("ACME", random_returns(500)), source="vendor",
                          actor=None)
    with firm_scope(world.firm_a):
        snapshot = latest_snapshot(world.a.account)
    assert snapshot is not None and explanation(snapshot)["var"] is not None
    assert not [f for f in explanation(snapshot)["warnings"] if f.startswith("history")]


# --------------------------------------------------------------------------- snapshots' VaR


def test_var_runs_on_the_last_500_stored_returns_of_the_account_underlying(world):
    hold(world, "ACME", quantity=100, price="100")
    calm = random_returns(500)
    crash = np.tile([-0.20, 0.25], 50)[:99]  # older than the window: must not count
    load_daily_closes(rows=closes_rows("ACME", np.r_[crash, calm]), source="vendor", actor=None)
    snapshot = snapshot_of(world)
    one_day = explanation(snapshot)["var"]["horizons"][0]
    assert one_day["days"] == 1
    # 99 % VaR of 500 scenarios: the 6th largest loss of 100 shares x $100 x return.
    closes = np.array([float(r["close"]) for r in closes_rows("ACME", np.r_[crash, calm])])
    window = closes[-501:]
    losses = -100 * 100.0 * (window[1:] / window[:-1] - 1.0)
    assert one_day["historical"] == pytest.approx(np.sort(losses)[::-1][5], rel=1e-9)
    assert not [f for f in explanation(snapshot)["warnings"] if f.startswith("history")]
    # every other method too
    assert explanation(snapshot)["portfolio_margin"] and explanation(snapshot)["reg_t"]


def test_short_history_leaves_var_out_with_a_flag_and_the_other_methods_computed(world):
    hold(world, "ACME")
    hold(world, "BETA")
    load_daily_closes(rows=closes_rows("ACME", random_returns(180)), source="vendor", actor=None)
    snapshot = snapshot_of(world)
    assert explanation(snapshot)["var"] is None
    assert "history_short: ACME has 180 of the 500 returns needed" in explanation(snapshot)["warnings"]
    assert "history_short: BETA has 0 of the 500 returns needed" in explanation(snapshot)["warnings"]
    assert explanation(snapshot)["portfolio_margin"] is not None and explanation(snapshot)["reg_t"]
    assert snapshot.pm_requirement > 0 and snapshot.requirement > 0


def test_the_window_is_the_firms_parameter_set(world):
    hold(world, "ACME")
    load_daily_closes(rows=closes_rows("ACME", random_returns(300)), source="vendor", actor=None)
    assert "history_short: ACME has 300 of the 500 returns needed" in explanation(snapshot_of(world))["warnings"]
    with firm_scope(world.firm_a):
        proposal = risk_parameters.propose_parameters(
            firm=world.firm_a, actor=world.a.users["risk_officer"],
            overrides={"var": {"window": 250}}, reason="a shorter window while history grows")
        risk_parameters.approve_parameters(proposal=proposal,
                                           actor=world.a.users["firm_admin"], reason="agreed")
    snapshot = snapshot_of(world)
    assert explanation(snapshot)["var"] is not None
    assert not [f for f in explanation(snapshot)["warnings"] if f.startswith("history")]


@pytest.mark.parametrize("coin_days,enough", [
    # Crypto trades every day: 760 daily closes hold more than 501 weekdays ...
    (760, True),
    # ... 560 are enough on their own but share only ~400 dates with a weekday stock.
    (560, False),
])
def test_underlyings_on_different_calendars_use_their_common_dates(world, coin_days, enough):
    hold(world, "ACME")
    hold(world, "COIN", quantity=2, kind="crypto", product_class="crypto")
    load_daily_closes(rows=closes_rows("ACME", random_returns(520)), source="vendor", actor=None)
    load_daily_closes(rows=closes_rows("COIN", random_returns(coin_days - 1, seed=3),
                                       every_day=True), source="vendor", actor=None)
    snapshot = snapshot_of(world)
    short = [f for f in explanation(snapshot)["warnings"] if f.startswith("history_short")]
    if enough:
        assert explanation(snapshot)["var"] is not None and not short
        return
    assert explanation(snapshot)["var"] is None
    assert short[0].startswith("history_short: ACME, COIN share ")
    assert short[0].endswith("of the 500 returns needed (closes on the same dates)")


def test_underlyings_with_different_holidays_read_the_earlier_closes_they_share(
        django_assert_num_queries):
    # Each misses a different tenth of the weekdays: 630 closes each, 560 on shared dates. The
    # 501st-newest close of each is not far enough back for 501 shared dates, so the window
    # reads further back (one more query) rather than calling the history short.
    holidays = {"HOLA": 0, "HOLB": 5}
    instruments = [shared_instrument(symbol) for symbol in holidays]
    days = weekdays_back(700)
    for symbol, skipped in holidays.items():
        load_daily_closes(rows=[{"symbol": symbol, "date": d.isoformat(), "close": "100"}
                                for i, d in enumerate(days) if i % 10 != skipped],
                          source="vendor", actor=None)
    history = read_history(instruments, on=timezone.localdate(), returns_needed=500)
    with django_assert_num_queries(1):
        window = history.for_symbols(["HOLA", "HOLB"])
    assert window.flags == () and len(window.history["HOLA"]) == 501
    shared = [d for i, d in enumerate(days) if i % 10 not in holidays.values()]
    assert window.history["HOLA"] == (100.0,) * 501 and len(shared) == 560
    with django_assert_num_queries(0):  # cut once per set of symbols
        assert history.for_symbols(["HOLB", "HOLA"]) is window


def test_a_chunk_reads_its_history_in_two_queries(django_assert_num_queries):
    instruments = [shared_instrument(s) for s in ("AAA", "BBB", "CCC")]
    for n, symbol in enumerate(("AAA", "BBB")):
        load_daily_closes(rows=closes_rows(symbol, random_returns(510, seed=n)), source="vendor",
                          actor=None)
    with django_assert_num_queries(2):
        history = read_history(instruments, on=timezone.localdate(), returns_needed=500)
    assert history.for_symbols(["AAA", "BBB"]).history is not None
    assert history.for_symbols(["AAA", "CCC"]).flags == (
        "history_short: CCC has 0 of the 500 returns needed",)
    assert len(history.for_symbols(["AAA"]).history["AAA"]) == 501


# --------------------------------------------------------------------------- synthetic demo


def test_the_demo_history_is_loaded_as_synthetic_and_labelled_where_used(world, client):
    hold(world, "AAPL", quantity=10, price="232")
    stored = load_synthetic_demo_history()
    assert stored == 600  # AAPL only: the file's other symbols are not instruments here
    assert set(DailyClose.objects.values_list("source", flat=True)) == {"synthetic"}
    assert load_synthetic_demo_history() == 600  # again: the same closes, nothing added
    assert DailyClose.objects.count() == 600
    snapshot = snapshot_of(world)
    assert explanation(snapshot)["var"] is not None
    assert SYNTHETIC_FLAG in explanation(snapshot)["warnings"]
    with firm_scope(world.firm_a):
        book.grant_account_access(account=world.a.account, user=world.a.users["client"],
                                  actor=world.a.users["firm_admin"])
    log_in(client, "alpha_client", password=PASSWORD)
    # VaR is shown (and labelled) on the portal's Why page
    page = client.get(f"/portal/accounts/{world.a.account.number}/why/").content.decode()
    assert "Synthetic history" in page and "not market prices" in page


def test_real_history_carries_no_synthetic_label(world):
    hold(world, "ACME")
    load_daily_closes(rows=closes_rows("ACME", random_returns(500)), source="exchange",
                      actor=None)
    assert SYNTHETIC_FLAG not in explanation(snapshot_of(world))["warnings"]


def test_snapshots_without_var_in_the_firms_methods_read_no_history(world):
    hold(world, "ACME")
    with firm_scope(world.firm_a):
        proposal = risk_parameters.propose_parameters(
            firm=world.firm_a, actor=world.a.users["risk_officer"],
            overrides={"snapshots": {"methods": ["portfolio_margin", "reg_t"]}},
            reason="no VaR in snapshots")
        risk_parameters.approve_parameters(proposal=proposal,
                                           actor=world.a.users["firm_admin"], reason="agreed")
        [outcome] = compute_snapshots(accounts=[world.a.account])
    assert explanation(outcome.snapshot)["var"] is None
    assert not [f for f in explanation(outcome.snapshot)["warnings"] if f.startswith("history")]


# --------------------------------------------------------------------------- the command


def test_load_history_reads_a_csv_with_its_columns_in_any_order(tmp_path: Path):
    shared_instrument("ACME")
    path = tmp_path / "closes.csv"
    path.write_text("# vendor file\ndate,symbol,close\n2025-03-03,ACME,100\n\n"
                    "2025-03-04,ACME,101.25\n", encoding="utf-8")
    out = StringIO()
    call_command("load_history", str(path), "--source", "exchange", stdout=out)
    assert "Loaded 2 daily closes" in out.getvalue()
    assert list(DailyClose.objects.values_list("close", "source")) == [
        (Decimal("100"), "exchange"), (Decimal("101.25"), "exchange")]


def test_load_history_names_the_bad_lines_and_stores_nothing(tmp_path: Path):
    shared_instrument("ACME")
    path = tmp_path / "closes.csv"
    path.write_text("symbol,date,close\nACME,2025-03-03,100\n# a comment\nACME,2025-03-04,-2\n"
                    "NOPE,2025-03-04,5\n", encoding="utf-8")
    with pytest.raises(CommandError) as caught:
        call_command("load_history", str(path))
    message = str(caught.value)
    assert "nothing loaded" in message
    assert f"{path}:line 4 (close): must be positive" in message
    assert f"{path}:line 5 (symbol): unknown symbol 'NOPE'" in message
    assert not DailyClose.objects.exists()


def test_load_history_refuses_a_file_without_the_columns(tmp_path: Path):
    path = tmp_path / "closes.csv"
    path.write_text("ticker,day,price\nACME,2025-03-03,100\n", encoding="utf-8")
    with pytest.raises(CommandError, match="symbol, date and close"):
        call_command("load_history", str(path))
