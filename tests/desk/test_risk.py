"""The desk's firm risk page and the firm-wide price-move simulator, through the test client:
the simulation equals a full recompute of the moved book (the market actually loaded and each
account valued by the calculator alone), writes nothing, refuses bad input in words; the home
lists rejected oracle rounds and stale margin; a wrong role gets a 403."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.utils import timezone

from accounts import services as book
from accounts.models import Account, Instrument
from brokerage.models import AuditEvent
from brokerage.roles import Role
from brokerage.scope import firm_scope
from margin import simulation
from margin.dirty import mark_accounts
from margin.engine.var import named_scenarios
from margin.market_data import exchange_date, load_implied_vols, load_prices, set_risk_free_rate
from margin.models import AccountMargin, MarginSnapshot, OracleRejection
from margin.sweep import sweep_now
from margin.valuing import ChunkInputs, value_alone
from tests.factories import log_in, shared_instrument

pytestmark = pytest.mark.django_db

#: symbol -> (kind, product class, price, vol of its options)
MARKET = {"AAPL": ("stock", "equity", "232.00", 0.26), "MSFT": ("stock", "equity", "418.00", 0.24),
          "SPX": ("index", "broad_index_high_cap", "6010.00", 0.15),
          "SPY": ("etf", "broad_index_high_cap", "599.00", 0.15)}


def _option(symbol: str, right: str, strike: str, days: int):
    under = shared_instrument(symbol)
    expiry = exchange_date() + timedelta(days=days)
    index = under.kind == "index"
    return shared_instrument(
        f"{symbol} {expiry:%y%m%d}{right[0].upper()}{strike}",
        kind="index_option" if index else "equity_option", product_class=under.product_class,
        product_group=under.product_group, class_group=under.class_group, underlying=under,
        multiplier=Decimal(100), strike=Decimal(strike), right=right, expiry=expiry,
        exercise_style="european" if index else "american")


@pytest.fixture
def desk(world):
    """Firm A's books on AAPL, MSFT and SPX, valued by the sweep: portfolio-margin books the
    batch values (one short AAPL puts on thin cash: in deficit at AAPL -10 %), a Reg T book
    long AAPL on a debit (the calculator's; in deficit at AAPL -10 %), one on MSFT alone;
    firm B holds AAPL too. Options carry marks and vols."""
    now = timezone.now()
    for symbol, (kind, pclass, _price, _) in MARKET.items():
        shared_instrument(symbol, kind=kind, product_class=pclass,
                          **({"class_group": "SPX", "product_group": "SPX"}
                             if symbol in ("SPX", "SPY") else {}))
    options = {"put": _option("AAPL", "put", "220", 40), "call": _option("AAPL", "call", "250", 40),
               "spx": _option("SPX", "put", "5700", 30), "msft": _option("MSFT", "call", "430", 60)}
    load_prices(observations=[{"symbol": s, "price": p, "observed_at": now}
                              for s, (_, _, p, _) in MARKET.items()]
                + [{"symbol": o.symbol, "price": mark, "observed_at": now}
                   for o, mark in zip(options.values(), ("6.10", "4.20", "38.00", "14.00"),
                                      strict=True)],
                source="vendor", actor=None)
    load_implied_vols(observations=[{"symbol": o.symbol, "observed_at": now,
                                     "volatility": f"{MARKET[o.underlying.symbol][3]:.4f}"}
                                    for o in options.values()], source="vendor", actor=None)
    set_risk_free_rate(rate="0.043", observed_on=exchange_date(), actor=None)
    accounts = {}
    books = {  # number: (firm, margin type, cash, [(instrument, quantity)])
        "PM-LONG": ("a", "portfolio_margin", "150000", [("AAPL", 300), ("put", 3), ("SPY", 50)]),
        "PM-PUTS": ("a", "portfolio_margin", "62000", [("put", -10), ("call", -2)]),
        "PM-SPX": ("a", "portfolio_margin", "400000", [("spx", -2), ("SPY", 100)]),
        "PM-MSFT": ("a", "portfolio_margin", "60000", [("MSFT", 100), ("msft", -1)]),
        "RT-AAPL": ("a", "reg_t", "-40000", [("AAPL", 250)]),
        "B-AAPL": ("b", "reg_t", "-45000", [("AAPL", 250)]),
    }
    for number, (side, margin_type, cash, legs) in books.items():
        fw = getattr(world, side)
        admin, desk_user = fw.users[Role.FIRM_ADMIN], fw.users[Role.MARGIN_DESK]
        with firm_scope(fw.firm):
            account = book.open_account(client=fw.client, number=number,
                                        registration="individual", margin_type=margin_type,
                                        actor=admin)
            kind = "deposit" if Decimal(cash) > 0 else "withdrawal"
            book.post_ledger_entry(account=account, kind=kind, amount=Decimal(cash),
                                   actor=desk_user)
            for name, quantity in legs:
                instrument = options.get(name) or shared_instrument(name)
                book.set_position(account=account, instrument=instrument,
                                  quantity=Decimal(quantity), actor=desk_user)
        accounts[number] = account
    mark_accounts([a.pk for a in accounts.values()], request=False)
    result = sweep_now()
    assert result.flagged == {} or set(result.flagged) <= {world.a.account.pk, world.b.account.pk}
    simulation.forget_books()
    yield world, accounts
    simulation.forget_books()


def _valued_alone(world, accounts) -> dict[str, tuple[Decimal, Decimal]]:
    """Each of firm A's books valued by the calculator alone at the market now stored."""
    with firm_scope(world.firm_a):
        listed = list(Account.objects.filter(pk__in=[a.pk for a in accounts.values()],
                                             firm=world.firm_a).select_related("firm")
                      .order_by("pk"))
        inputs = ChunkInputs.load(listed)
        found = {}
        for account in listed:
            snapshot = value_alone(inputs, account)
            assert not hasattr(snapshot, "flag"), snapshot
            found[account.number] = (snapshot.equity, snapshot.requirement)
    return found


def options_on(symbols) -> list[Instrument]:
    return list(Instrument.cross_firm.for_compliance(reason="test: the shared options").filter(
        underlying__symbol__in=list(symbols)))


def _as_cents(figures: dict[str, tuple[float, float]]) -> dict[str, tuple[Decimal, Decimal]]:
    return {n: (Decimal(f"{e:.2f}"), Decimal(f"{r:.2f}")) for n, (e, r) in figures.items()}


@pytest.mark.parametrize("shock", [("AAPL", -0.10), ("SPX", 0.07), "2008-10", "2020-03-16"])
def test_the_simulation_equals_a_full_recompute_of_the_moved_book(desk, shock):
    """Engine against calculator: the simulator's figures before any price moves equal each
    account valued alone after the moved prices are really loaded (options then marked to
    model at their stored vol, as between quotes); portfolio-margin books went through the
    batch path, the Reg T book through the calculator."""
    world, accounts = desk
    firm = world.firm_a
    with firm_scope(firm):
        books, _ = simulation.firm_books(firm, use_cache=False)
        batch = {books.numbers[k] for k in books.batch_index.tolist()}
        assert {"PM-LONG", "PM-PUTS", "PM-SPX", "PM-MSFT"} <= batch
        assert "RT-AAPL" not in batch and "B-AAPL" not in books.numbers  # firm A's books only
        if isinstance(shock, tuple):
            moved = simulation.resolve_shock(books, symbol=shock[0], move=shock[1])
        else:
            moved = simulation.resolve_shock(books, scenario=shock)
        now = _as_cents(simulation.account_figures(firm, None, use_cache=False))
        after = _as_cents(simulation.account_figures(firm, moved, use_cache=False))
    alone = _valued_alone(world, accounts)
    assert set(alone) == set(now) - {world.a.account.number}  # and the empty one: $0
    assert {n: now[n] for n in alone} == alone
    later = timezone.now() + timedelta(seconds=1)
    load_prices(observations=[{"symbol": s, "observed_at": later,
                               "price": f"{Decimal(p) * Decimal(str(1 + moved.moves[s])):.8f}"}
                              for s, (_, _, p, _) in MARKET.items() if s in moved.moves],
                source="vendor", actor=None)
    shifted = [o for o in options_on(moved.vol_shifts)]
    if shifted:  # the scenario's implied-vol shift, loaded as the options' new vols
        load_implied_vols(observations=[{
            "symbol": o.symbol, "observed_at": later,
            "volatility": f"{MARKET[o.underlying.symbol][3] + moved.vol_shifts[o.underlying.symbol]:.4f}"}
            for o in shifted], source="vendor", actor=None)
    assert moved.moves and bool(shifted) == (shock == "2020-03-16")
    assert {n: after[n] for n in alone} == _valued_alone(world, accounts)
    assert after["PM-MSFT"] == now["PM-MSFT"] or "MSFT" in moved.moves


def test_aapl_down_ten_percent_on_the_desk(client, desk):
    """The page a risk officer reads: who goes into deficit, by how much, now -> after,
    sorted by the new deficit; totals; the seconds it took; nothing written."""
    world, accounts = desk
    assert log_in(client, world.a.users[Role.RISK_OFFICER])
    with firm_scope(world.firm_a):
        before = (MarginSnapshot.objects.count(),
                  list(AccountMargin.objects.order_by("pk").values_list(
                      "account_id", "equity", "requirement", "excess", "computed_version")))
    events = AuditEvent.objects.count()
    page = client.get("/desk/risk/simulate/", {"symbol": "aapl", "move": "−10 %"})
    assert page.status_code == 200
    result = page.context["result"]
    assert result.shock.label == "AAPL -10 %"
    numbers = [m.number for m in result.deficits]
    assert set(numbers) == {"PM-PUTS", "RT-AAPL"}
    assert numbers == sorted(numbers, key=lambda n: next(m.excess_after for m in result.deficits
                                                          if m.number == n))
    assert result.newly_in_deficit == 2 and result.in_deficit_after == 2
    assert all(m.excess_now >= 0 > m.excess_after for m in result.deficits)
    text = page.content.decode()
    assert "AAPL -10 %: 2 accounts in deficit" in text and "→" in text
    assert result.books == simulation.DATABASE and result.seconds > 0
    again = client.get("/desk/risk/simulate/", {"symbol": "AAPL", "move": "-10"})
    assert again.context["result"].books == simulation.BATCH  # the resident books
    assert [m.excess_after for m in again.context["result"].deficits] == \
        [m.excess_after for m in result.deficits]
    with firm_scope(world.firm_a):
        assert before == (MarginSnapshot.objects.count(),
                          list(AccountMargin.objects.order_by("pk").values_list(
                              "account_id", "equity", "requirement", "excess",
                              "computed_version")))
    assert AuditEvent.objects.count() == events


def test_a_named_scenario_across_all(client, desk):
    world, _ = desk
    assert log_in(client, world.a.users[Role.MARGIN_DESK])
    page = client.get("/desk/risk/simulate/", {"scenario": "2008-10"})
    result = page.context["result"]
    assert result.shock.label == named_scenarios()["2008-10"]["title"]
    assert result.after.equity < result.now.equity
    assert "PM-PUTS" in [m.number for m in result.deficits]


@pytest.mark.parametrize(("query", "field", "words"), [
    ({"symbol": "ZZZZ", "move": "-10"}, "symbol", "no book of the firm holds anything on 'ZZZZ'"),
    ({"symbol": "AAPL", "move": "NaN"}, "move", "finite"),
    ({"symbol": "AAPL", "move": "-250"}, "move", "a move must lie between -99.99 % and"),
    ({"symbol": "AAPL", "move": "1e9"}, "move", "a move must lie between"),
    ({"symbol": "AAPL", "move": "ten"}, "move", "is not a percentage"),
    ({"symbol": "", "move": "-10"}, "symbol", "name the underlying"),
    ({"symbol": "AAPL", "move": ""}, "move", "give the move in percent"),
    ({"scenario": "1929-10"}, "scenario", "Select a valid choice"),
])
def test_bad_input_is_refused_in_words(client, desk, query, field, words):
    world, _ = desk
    assert log_in(client, world.a.users[Role.RISK_OFFICER])
    page = client.get("/desk/risk/simulate/", query)
    assert page.status_code == 200 and page.context["result"] is None
    errors = page.context["form"].errors
    assert words in " ".join(errors[field]), errors
    assert words.split("'")[0] in page.content.decode()


def test_the_firm_risk_page(client, desk):
    world, accounts = desk
    assert log_in(client, world.a.users[Role.FIRM_ADMIN])
    page = client.get("/desk/risk/")
    assert page.status_code == 200
    text = page.content.decode()
    with firm_scope(world.firm_a):
        rows = AccountMargin.objects.filter(requirement__isnull=False)
        total = sum(r.requirement for r in rows)
    assert page.context["day"].now.requirement == total
    # valued today for the first time: the day starts from each account's first snapshot
    assert page.context["day"].start.accounts == len(rows)
    closest = page.context["closest"]
    assert closest[0].account.number == min(
        (r for r in rows if r.requirement > 0), key=lambda r: r.excess / r.requirement
    ).account.number
    assert page.context["largest"][0].requirement == max(r.requirement for r in rows)
    groups = {e.class_group: e for e in page.context["exposures"]}
    assert groups["AAPL"].long == Decimal("550") * Decimal("232.00") + 3 * 100 * Decimal("232.00")
    assert groups["AAPL"].accounts == 3  # firm B's holder is not firm A's
    assert "B-AAPL" not in text and "<svg" in text and "Concentration by underlying" in text
    assert 'style="' not in text  # the CSP allows no inline style


def test_home_lists_oracle_rejections_and_stale_margin(client, desk):
    world, accounts = desk
    aapl = shared_instrument("AAPL")
    OracleRejection.objects.create(instrument=aapl, round_id="77", failed_check="jump",
                                   message="a 40 % jump from the last round")
    with firm_scope(world.firm_a):
        AccountMargin.objects.filter(account=accounts["PM-MSFT"]).update(
            dirty_version=10**9, marked_at=timezone.now() - timedelta(hours=2))
    assert log_in(client, world.a.users[Role.RISK_OFFICER])
    home = client.get("/desk/").content.decode()
    assert "1 oracle round rejected" in home and "AAPL (jump)" in home
    assert "1 account with stale margin" in home
    risk = client.get("/desk/risk/").content.decode()
    assert "a 40 % jump from the last round" in risk and "PM-MSFT" in risk
    # the simulator names the accounts it leaves out, and why
    result = client.get("/desk/risk/simulate/", {"symbol": "MSFT", "move": "-5"}).context["result"]
    assert dict(result.not_simulated)["PM-LONG"].startswith("oracle round rejected: AAPL")
    assert log_in(client, world.a.users[Role.COMPLIANCE])
    assert "oracle round" not in client.get("/desk/").content.decode()


def test_the_resident_books_follow_the_margin_version(desk):
    world, accounts = desk
    firm = world.firm_a
    first, source = simulation.firm_books(firm)
    assert source == simulation.DATABASE
    assert simulation.firm_books(firm) == (first, simulation.BATCH)
    mark_accounts([accounts["PM-MSFT"].pk], request=False)  # a ledger entry, say
    _, source = simulation.firm_books(firm)
    assert source == simulation.DATABASE


def test_wrong_roles_are_refused(client, desk):
    world, _ = desk
    for role in (Role.COMPLIANCE, Role.CLIENT):
        client.logout()
        assert log_in(client, world.a.users[role])
        for url in ("/desk/risk/", "/desk/risk/simulate/?symbol=AAPL&move=-10"):
            assert client.get(url).status_code == 403, (role, url)


def _books_figures(books: simulation.FirmBooks, shock) -> dict:
    """What a ``FirmBooks`` answers with, comparable across loaders (NaN as None)."""
    equity, requirement = simulation._figures(books, shock)

    def listed(values):
        return [None if np.isnan(v) else round(float(v), 2) for v in values]

    return {"accounts": books.account_ids.tolist(), "numbers": books.numbers,
            "cash": books.cash.tolist(), "batch": sorted(books.batch_index.tolist()),
            "alone": sorted(b.index for b in books.alone),
            "not_simulated": dict(sorted(books.not_simulated.items())),
            "underlyings": sorted(books.underlyings), "equity": listed(equity),
            "requirement": listed(requirement)}


def test_the_array_load_gives_the_per_chunk_loads_books(desk):
    """On a mixed book (batch books, a Reg T book, an empty one, a book blocked by a rejected
    oracle round, one holding an unpriced stock, one holding an option past its expiry that
    the validator refuses), the array load and the sweep's per-chunk loader give the same
    books and the same figures, at the current market and moved."""
    world, accounts = desk
    firm = world.firm_a
    now = timezone.now()
    unpriced = shared_instrument("NOPX")
    expired = _option("AAPL", "put", "200", -3)
    load_prices(observations=[{"symbol": expired.symbol, "price": "1.00", "observed_at": now}],
                source="vendor", actor=None)
    OracleRejection.objects.create(instrument=shared_instrument("MSFT"), round_id="78",
                                   failed_check="jump", message="a 40 % jump")
    fw = world.a
    with firm_scope(firm):
        for number, legs in {"PM-NOPX": [(unpriced, 10), (shared_instrument("AAPL"), 5)],
                             "PM-EXPIRED": [(expired, 2), (shared_instrument("SPY"), 10)],
                             "PM-AAPL": [(shared_instrument("AAPL"), 20)]}.items():
            account = book.open_account(client=fw.client, number=number,
                                        registration="individual",
                                        margin_type="portfolio_margin",
                                        actor=fw.users[Role.FIRM_ADMIN])
            book.post_ledger_entry(account=account, kind="deposit", amount=Decimal("90000"),
                                   actor=fw.users[Role.MARGIN_DESK])
            for instrument, quantity in legs:
                book.set_position(account=account, instrument=instrument,
                                  quantity=Decimal(quantity), actor=fw.users[Role.MARGIN_DESK])
    by_chunk = simulation.load_books_by_chunk(firm)
    arrays = simulation.load_books(firm)
    number = dict(zip(arrays.numbers, range(arrays.accounts), strict=True))
    assert number["PM-LONG"] in arrays.batch_index  # the batch path is exercised
    assert "PM-MSFT" in {arrays.numbers[k] for k in arrays.not_simulated}
    assert number["PM-NOPX"] in arrays.not_simulated
    # the validator refuses the expired put in the universe: its holder goes to the calculator
    assert arrays.not_simulated[number["PM-EXPIRED"]].startswith("expired:")
    assert number["PM-AAPL"] in arrays.batch_index
    with firm_scope(firm):
        for shock in (None, simulation.resolve_shock(arrays, symbol="AAPL", move=-0.10),
                      simulation.resolve_shock(arrays, scenario="2008-10")):
            assert _books_figures(arrays, shock) == _books_figures(by_chunk, shock)
