"""The database benches' loader (margin.bench.loader): a tiny synthetic book written with COPY
values cleanly through the product's own sweep, every account kept as history by the
end-of-day run (what `make bench-e2e` measures at 100,000 accounts)."""

from __future__ import annotations

import pytest
from django.db.models import Count

from accounts.models import Account, Instrument, Position
from margin.bench.book import make_book
from margin.bench.loader import load_book, netted_positions
from margin.end_of_day import start_end_of_day
from margin.market_data import exchange_date
from margin.models import AccountMargin, MarginSnapshot
from margin.sweep import sweep_now

pytestmark = pytest.mark.django_db

ACCOUNTS = 50


def _cross(model):
    return model.cross_firm.for_compliance(reason="test")


def test_a_loaded_book_values_cleanly_through_the_sweep():
    sb = make_book(n_accounts=ACCOUNTS, n_positions=20 * ACCOUNTS, n_series=250,
                   n_underlyings=20)
    loaded = load_book(sb, slug="benchtest")

    accounts = _cross(Account).filter(firm=loaded.firm)
    assert accounts.count() == ACCOUNTS
    assert set(accounts.values_list("margin_type", flat=True)) == {"portfolio_margin"}
    assert _cross(Position).filter(firm=loaded.firm).count() == loaded.positions \
        == netted_positions(sb)[0].shape[0]
    options = _cross(Instrument).filter(underlying_id__in=loaded.underlying_ids.tolist())
    assert options.count() == 250
    assert int(loaded.holders.sum()) >= ACCOUNTS * 2  # every account holds 2-6 underlyings

    run = start_end_of_day(firm=loaded.firm, calendar="XNYS", session=exchange_date())
    assert run is not None and run.accounts == ACCOUNTS
    result = sweep_now(firm_id=loaded.firm.pk)

    assert (result.computed, result.flagged) == (ACCOUNTS, {})
    rows = _cross(AccountMargin).filter(firm=loaded.firm)
    assert not rows.filter(flag__gt="").exists()
    assert not rows.filter(end_of_day_due=True).exists()
    snapshots = _cross(MarginSnapshot).filter(firm=loaded.firm)
    per_account = snapshots.values("account_id").annotate(n=Count("id"))
    assert len(per_account) == ACCOUNTS and {r["n"] for r in per_account} == {1}
    assert set(snapshots.values_list("reason", flat=True)) == {"end_of_day"}
    # valued for the requirement (portfolio margin) with nothing to flag
    assert {(tuple(s.methods), tuple(s.flags)) for s in snapshots} == {(("portfolio_margin",), ())}
    assert all(s.excess > 0 for s in snapshots)  # the deposits cover every requirement


def test_an_option_mark_is_never_stored_below_its_model_value():
    # A deep in-the-money mark sits on its intrinsic value (the engine's lower bound): rounded
    # down to the stored places it fell below it and the account was flagged, not valued.
    from decimal import Decimal

    from margin.bench.loader import _mark_text

    for mark in (4.074762176001, 4.07476217, 12.5, 1e-12):
        assert Decimal(_mark_text(mark)) >= Decimal(repr(mark))
    assert _mark_text(0.0) == "0.01000000"
