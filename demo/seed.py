"""The demo: two firms, staff of every role, ~20 clients per firm with realistic books, prices
for everything, then margin computed. A second run loads nothing again (it recomputes margin
and prints the logins).

Every number here is demo data (clearly synthetic prices in a plausible range), written through
the services of the app that owns each row, so the audit trail tells the story from its first
event. README.md documents the logins, the password, the firms and the account numbers
(Northwind NO100001..., Bluewater BL100001..., NO100013 under-margined, NO100020 the crypto
client): later issues add to the demo, never renumber it.

`load` reads in the story's order: the platform's auditor, shared reference data, each firm with
its people and books, then the market; `seed` computes margin and prints the logins.
"""

from __future__ import annotations

import calendar
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from accounts import services as book
from accounts.models import Account, Client, Instrument
from brokerage import audit
from brokerage.models import Firm, Membership
from brokerage.passwords import DEMO_PASSWORD
from brokerage.roles import STAFF_ROLES, PlatformRoleName, Role
from brokerage.scope import firm_scope
from brokerage.second_factor import base32_secret, issue_authenticator
from brokerage.tenancy import create_firm, create_firm_user, create_platform_user
from eligibility import services as eligibility
from eligibility.models import Application
from margin import business_days
from margin import services as risk_parameters
from margin.calls.issuance import close_of_day
from margin.end_of_day import last_closed_session
from margin.engine import pricing
from margin.engine.defi import uniswap_v3
from margin.engine.portfolio import LPPosition
from margin.market_data import load_implied_vols, load_prices, set_risk_free_rate
from margin.market_history import load_synthetic_demo_history
from margin.models import AccountMargin, MarginCall, MarginSnapshot
from margin.receivers import recompute_suspended
from margin.tasks import recompute_accounts, recompute_firm

# Published (README, the seed's output), so refused everywhere but the demo: set with
# `set_password` (no validator runs) only under the demo settings, and accepted at the login only
# there (brokerage.passwords).
PASSWORD = DEMO_PASSWORD
RATE = 0.043

# symbol: (kind, product_class, class_group, price, implied vol, dividend yield)
UNDERLYINGS = {
    "AAPL": ("stock", "equity", "AAPL", 232.0, 0.26, 0.0),
    "MSFT": ("stock", "equity", "MSFT", 418.0, 0.24, 0.0),
    "IBM": ("stock", "equity", "IBM", 238.0, 0.22, 0.0),
    "NVDA": ("stock", "equity", "NVDA", 142.0, 0.48, 0.0),
    "TSLA": ("stock", "equity", "TSLA", 251.0, 0.58, 0.0),
    "AMZN": ("stock", "equity", "AMZN", 201.0, 0.32, 0.0),
    "KO": ("stock", "equity", "KO", 69.5, 0.16, 0.0),
    "XOM": ("stock", "equity", "XOM", 116.0, 0.24, 0.0),
    "JPM": ("stock", "equity", "JPM", 242.0, 0.23, 0.0),
    "SPX": ("index", "broad_index_high_cap", "SPX", 6010.0, 0.15, 0.013),
    "SPY": ("etf", "broad_index_high_cap", "SPX", 599.0, 0.15, 0.0),
    "IWM": ("etf", "broad_index", "IWM", 226.0, 0.21, 0.0),
    # Index futures follow their index's class group when held with it (METHODOLOGY.md 1).
    "ES": ("future", "future", "SPX", 6035.0, 0.15, 0.0),
    "ETH": ("crypto", "crypto", "ETH", 3000.0, 0.65, 0.0),
    "BTC": ("crypto", "crypto", "BTC", 91000.0, 0.55, 0.0),
    "USDC": ("crypto", "stablecoin", "USDC", 1.0, 0.02, 0.0),
}
FUTURE_MULTIPLIER = {"ES": 50}

# Shared instruments by symbol: the underlyings, the perpetual and every option a book holds
# (listed once, the first time a book needs it; both firms trade the same contracts).
Listing = dict[str, Instrument]
Write = Callable[[str], None]


@dataclass(frozen=True)
class Leg:
    symbol: str            # underlying symbol
    quantity: float
    right: str = ""        # call / put for options
    moneyness: float = 0.0  # strike = price x (1 + moneyness), rounded to the strike grid
    months: int = 1        # expiry: third Friday this many months ahead


def third_friday(year: int, month: int) -> date:
    first_weekday, _ = calendar.monthrange(year, month)
    first_friday = 1 + (4 - first_weekday) % 7
    return date(year, month, first_friday + 14)


def expiry_in(months: int, today: date) -> date:
    month, year = today.month + months, today.year
    while month > 12:
        month, year = month - 12, year + 1
    return third_friday(year, month)


def strike_for(price: float, moneyness: float) -> Decimal:
    raw = price * (1 + moneyness)
    step = 5 if price >= 100 else 1 if price >= 20 else 0.5
    if price >= 2000:
        step = 25
    return Decimal(str(round(raw / step) * step))


# The books: (name, equity deposited, margin type, legs); the legs describe real strategies.
# Trades settle against the deposit (purchases debit cash, sales and premiums credit it).
BOOKS = [
    ("Long AAPL with protective puts", 70_000, "reg_t",
     [Leg("AAPL", 500), Leg("AAPL", 5, "put", -0.10, 2)]),
    ("Covered calls on MSFT", 70_000, "reg_t",
     [Leg("MSFT", 300), Leg("MSFT", -3, "call", 0.05, 1)]),
    ("SPX put credit spread", 120_000, "portfolio_margin",
     [Leg("SPX", -5, "put", -0.05, 1), Leg("SPX", 5, "put", -0.07, 1)]),
    ("SPX iron condor", 150_000, "portfolio_margin",
     [Leg("SPX", -4, "put", -0.05, 2), Leg("SPX", 4, "put", -0.08, 2),
      Leg("SPX", -4, "call", 0.04, 2), Leg("SPX", 4, "call", 0.06, 2)]),
    ("ES futures with SPY hedge", 60_000, "reg_t",
     [Leg("ES", 2), Leg("SPY", -150)]),
    ("Diversified long stock", 130_000, "reg_t",
     [Leg("KO", 800), Leg("XOM", 400), Leg("JPM", 300), Leg("AMZN", 250)]),
    ("IBM collar", 130_000, "reg_t",
     [Leg("IBM", 1000), Leg("IBM", 10, "put", -0.08, 2), Leg("IBM", -10, "call", 0.08, 2)]),
    ("Hedged SPY with SPX calls written", 250_000, "portfolio_margin",
     [Leg("SPY", 2000), Leg("SPX", -2, "call", 0.03, 1), Leg("SPX", 2, "put", -0.06, 3)]),
    ("NVDA call debit spread", 15_000, "reg_t",
     [Leg("NVDA", 20, "call", 0.0, 2), Leg("NVDA", -20, "call", 0.10, 2)]),
    ("TSLA short strangle", 180_000, "portfolio_margin",
     [Leg("TSLA", -10, "call", 0.20, 1), Leg("TSLA", -10, "put", -0.20, 1), Leg("TSLA", 100)]),
    ("IWM long with puts", 120_000, "reg_t",
     [Leg("IWM", 1000), Leg("IWM", 10, "put", -0.05, 3)]),
    ("Options-experienced applicant ($180,000)", 180_000, "reg_t",
     [Leg("AAPL", 150), Leg("MSFT", 90)]),
]
CRYPTO_BOOK = ("Crypto-native: LP, ETH and a perp", 150_000, "portfolio_margin")
# Issue 11: borrowed USDC against ETH, health factor about 1.18 (inside the 1.20 warning band).
CRYPTO_BORROWER = ("Crypto borrower: ETH against borrowed USDC", 5_000, "reg_t")
UNDER_MARGINED = ("Under-margined naked puts", 30_000, "portfolio_margin",
                  [Leg("NVDA", -30, "put", -0.05, 1), Leg("TSLA", -20, "put", -0.05, 1)])

FIRST = ["Avery", "Jordan", "Morgan", "Riley", "Casey", "Quinn", "Dana", "Harper", "Rowan",
         "Emerson", "Sasha", "Kendall", "Reese", "Parker", "Skyler", "Drew", "Blake", "Cameron",
         "Hayden", "Logan"]
LAST = ["Whitfield", "Okafor", "Lindqvist", "Marchetti", "Haddad", "Nakamura", "Fairbanks",
        "Castellano", "Abernathy", "Delacroix", "Ivanova", "Mbeki", "Sorensen", "Villanueva",
        "Kowalski", "Brennan", "Achebe", "Thornton", "Yamamoto", "Pereira"]

LOGIN_NAMES = {Role.FIRM_ADMIN: "admin", Role.RISK_OFFICER: "risk", Role.MARGIN_DESK: "desk",
               Role.COMPLIANCE: "compliance"}
# Staff per firm, the firm admin first: the platform opens the firm with its admin, and the admin
# adds everyone after (user administration of a firm is its admin's, on the firm's chain).
STAFF = ((Role.FIRM_ADMIN, 1), (Role.RISK_OFFICER, 2), (Role.MARGIN_DESK, 1),
         (Role.COMPLIANCE, 1))
FIRMS = [("northwind", "Northwind Securities"), ("bluewater", "Bluewater Brokerage")]
PLATFORM_AUDITOR = "platform.auditor"


def seed(*, write: Write) -> None:
    """Load the demo once, compute every firm's margin, print the logins."""
    if not settings.DEMO:
        raise ImproperlyConfigured("the demo loads only under the demo settings (DJANGO_DEBUG=1 "
                                   "PMARGIN_DEMO=1, as `make demo` sets): its password is "
                                   "published")
    if Firm.objects.filter(slug=FIRMS[0][0]).exists():
        write("Demo data already loaded.")
    else:
        # One transaction: a seed that fails half-way leaves nothing behind, so a rerun starts
        # clean. Margin is computed once at the end, not after every write.
        with recompute_suspended(), transaction.atomic():
            load(today=timezone.localdate())
    compute_margin(write=write)
    margin_calls(write=write)
    pm_application(write=write)
    # Every chain's head, signed and anchored outside the database (AUDIT_ANCHOR_DIR).
    heads = audit.checkpoint_all(reason="seed_demo")
    write(f"Audit trail: {len(heads)} chains checkpointed in {settings.AUDIT_ANCHOR_DIR}.")
    print_logins(write=write)


def load(*, today: date) -> None:
    """The story, in the order it happens."""
    rng = random.Random(20261124)  # a fixed seed: every run tells the same story
    create_platform_auditor()
    listing = list_shared_instruments(today=today)
    for firm_index, (slug, name) in enumerate(FIRMS):
        firm, staff = open_firm(slug=slug, name=name)
        admin = staff[f"{slug}.admin"]
        with firm_scope(firm):
            if slug == "bluewater":
                stricter_crypto_haircuts(firm=firm, proposer=staff["bluewater.risk1"],
                                         approver=staff["bluewater.risk2"])
            else:
                wider_house_stress(firm=firm, proposer=staff["northwind.risk2"])
            open_books(firm=firm, firm_index=firm_index, admin=admin, listing=listing,
                       today=today, rng=rng)
    price_market(listing=listing, today=today)
    # Daily close history (what VaR reads), after the instruments and today's prices exist and
    # before margin is computed. It is SYNTHETIC and loaded as such, so every snapshot whose VaR
    # rests on it says so (flag history_source: synthetic) and the portal labels it.
    load_synthetic_demo_history()


# -- the platform -----------------------------------------------------------------------------
def create_platform_auditor() -> None:
    """The platform's auditor: a login of no firm holding the platform `auditor` role
    (read-only, cross-firm audit export with a reason), never a superuser."""
    set_demo_password(create_platform_user(username=PLATFORM_AUDITOR,
                                           role=PlatformRoleName.AUDITOR,
                                           email=f"{PLATFORM_AUDITOR}@demo.example"))


def set_demo_password(user):
    """The published demo password, set without the validators (which refuse it)."""
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    return user


# -- shared reference data (platform chain) ---------------------------------------------------
def list_shared_instruments(*, today: date) -> Listing:
    listing: Listing = {}
    for symbol, (kind, pclass, cgroup, _price, _vol, q) in UNDERLYINGS.items():
        listing[symbol] = book.create_instrument(
            symbol=symbol, kind=kind, actor=None, product_class=pclass, class_group=cgroup,
            product_group=cgroup, dividend_yield=Decimal(str(q)),
            multiplier=Decimal(FUTURE_MULTIPLIER.get(symbol, 1)),
            expiry=expiry_in(3, today) if kind == "future" else None,
            description=f"{symbol} (demo)")
    listing["ETH-PERP"] = book.create_instrument(
        symbol="ETH-PERP", kind="perpetual", actor=None, product_class="crypto",
        class_group="ETH", product_group="ETH", underlying=listing["ETH"],
        description="ETH perpetual")
    return listing


def option_for(leg: Leg, *, listing: Listing, today: date) -> Instrument:
    """The listed option a leg trades, listed on first use."""
    under = listing[leg.symbol]
    price = UNDERLYINGS[leg.symbol][3]
    strike = strike_for(price, leg.moneyness)
    expiry = expiry_in(leg.months, today)
    symbol = f"{leg.symbol} {expiry:%y%m%d}{leg.right[0].upper()}{strike.normalize():f}"
    if symbol not in listing:
        index = under.kind == "index"
        listing[symbol] = book.create_instrument(
            symbol=symbol, kind="index_option" if index else "equity_option", actor=None,
            underlying=under, product_class=under.product_class,
            class_group=under.class_group, product_group=under.product_group,
            multiplier=Decimal(100), strike=strike, right=leg.right, expiry=expiry,
            exercise_style="european" if index else "american",
            description=f"{leg.symbol} {expiry} {strike} {leg.right}")
    return listing[symbol]


def skewed_vol(option: Instrument) -> float:
    spot, vol = UNDERLYINGS[option.underlying.symbol][3], UNDERLYINGS[option.underlying.symbol][4]
    return vol * (1 + 0.8 * max(0.0, 1 - float(option.strike) / spot))  # a put skew


def mark(option: Instrument, today: date) -> Decimal:
    """The option's demo mark: its model value at the demo vol, to the cent."""
    spot, q = UNDERLYINGS[option.underlying.symbol][3], UNDERLYINGS[option.underlying.symbol][5]
    t = (option.expiry - today).days / 365.0
    model = pricing.EUROPEAN if option.exercise_style == "european" else pricing.AMERICAN
    value = float(pricing.option_value(model, spot, float(option.strike), t, RATE, q,
                                       skewed_vol(option), option.right == "call"))
    return Decimal(f"{max(value, 0.05):.2f}")


def price_market(*, listing: Listing, today: date) -> None:
    """Today's prices for every underlying and option, the options' vols, the rate."""
    now = timezone.now()
    options = [instrument for instrument in listing.values() if instrument.is_option]
    rows = [{"symbol": s, "price": f"{UNDERLYINGS[s][3]:.2f}", "observed_at": now}
            for s in UNDERLYINGS]
    rows += [{"symbol": o.symbol, "price": str(mark(o, today)), "observed_at": now}
             for o in options]
    vols = [{"symbol": o.symbol, "volatility": f"{skewed_vol(o):.4f}", "observed_at": now}
            for o in options]
    load_prices(observations=rows, source="demo", actor=None)
    if vols:
        load_implied_vols(observations=vols, source="demo", actor=None)
    set_risk_free_rate(rate=RATE, observed_on=today, actor=None)


# -- each firm: its people, its parameters, its books (the firm's chain) ----------------------
def open_firm(*, slug: str, name: str) -> tuple[Firm, dict[str, Any]]:
    """The firm and its staff logins (`<slug>.admin`, `<slug>.risk1`...), by username."""
    firm = create_firm(name=name, slug=slug, actor=None)
    staff: dict[str, Any] = {}
    admin = None
    for role, count in STAFF:
        for n in range(1, count + 1):
            username = f"{slug}.{LOGIN_NAMES[role]}{n if count > 1 else ''}"
            staff[username] = set_demo_password(create_firm_user(
                firm=firm, username=username, role=role, email=f"{username}@demo.example",
                actor=admin))
            # Every staff role needs a second factor: the demo's is issued, its secret printed.
            issue_authenticator(user=staff[username])
            admin = admin or staff[username]  # the admin (first) adds the others
    return firm, staff


def stricter_crypto_haircuts(*, firm: Firm, proposer, approver) -> None:
    """Bluewater's own haircut table (twice the platform's), proposed and approved by its
    two risk officers: its crypto client's collateral counts for less than Northwind's."""
    proposal = risk_parameters.propose_parameters(
        firm=firm, actor=proposer,
        overrides={"defi": {"haircut_tiers": {
            "large_cap": [[1000000, 0.10], [10000000, 0.20], [None, 0.30]],
            "other": [[1000000, 0.40], [10000000, 0.60], [None, 0.80]]}}},
        reason="house view: crypto haircuts twice the platform default")
    risk_parameters.approve_parameters(proposal=proposal, actor=approver, reason="agreed")


def wider_house_stress(*, firm: Firm, proposer) -> None:
    """Northwind's pending change (issue 19): its second risk officer proposes a wider house
    stress range and concentration move; it waits on the desk for a second person, and until
    then the platform's values stay in force."""
    risk_parameters.propose_parameters(
        firm=firm, actor=proposer,
        overrides={"house": {"stress_range": 0.30, "concentration": {"top_move": 0.35}}},
        reason="after the quarterly review: single-name moves of 30 % in the stress test")


def open_books(*, firm: Firm, firm_index: int, admin, listing: Listing, today: date,
               rng: random.Random) -> None:
    """Twenty clients: the model books, the under-margined one (13th), the crypto client
    (20th), the rest filled with model books at random."""
    books = list(BOOKS) + [UNDER_MARGINED]
    while len(books) < 19:
        books.append(rng.choice(BOOKS[:11]))
    books.append(CRYPTO_BOOK + ([],))
    for n, (label, cash, margin_type, legs) in enumerate(books, start=1):
        account = open_client(firm=firm, firm_index=firm_index, n=n, label=label,
                              margin_type=margin_type, admin=admin, today=today, rng=rng)
        book.post_ledger_entry(account=account, kind="deposit", amount=Decimal(cash),
                               actor=admin, memo="initial funding")
        if label == CRYPTO_BOOK[0]:
            crypto_book(firm=firm, account=account, admin=admin, listing=listing)
        else:
            for leg in legs:
                trade(account=account, leg=leg, admin=admin, listing=listing, today=today)
    label, cash, margin_type = CRYPTO_BORROWER
    borrower = open_client(firm=firm, firm_index=firm_index, n=21, label=label,
                           margin_type=margin_type, admin=admin, today=today, rng=rng)
    book.post_ledger_entry(account=borrower, kind="deposit", amount=Decimal(cash), actor=admin,
                           memo="initial funding")
    for symbol, quantity in (("ETH", Decimal(10)), ("USDC", Decimal(-21000))):
        price = Decimal(str(UNDERLYINGS[symbol][3]))
        book.set_position(account=borrower, instrument=listing[symbol], quantity=quantity,
                          cost_basis=quantity * price, actor=admin)


def open_client(*, firm: Firm, firm_index: int, n: int, label: str, margin_type: str, admin,
                today: date, rng: random.Random) -> Account:
    """The n-th client of the firm with its disclosures and account (and portal login: the
    first three, the applicant and the crypto client have one)."""
    first, last = FIRST[(n + firm_index * 7) % 20], LAST[(n * 3 + firm_index) % 20]
    is_applicant = label.startswith("Options-experienced")
    wants_pm = margin_type == "portfolio_margin" or is_applicant
    client = book.create_client(
        firm=firm, actor=admin, kind="person", name=f"{first} {last}",
        email=f"{first}.{last}@demo.example".lower(),
        born_or_incorporated_on=date(1955 + rng.randrange(40), rng.randrange(1, 13), 15),
        investment_objective="speculation" if wants_pm else rng.choice(["growth", "income"]),
        years_trading_stocks=rng.randrange(3, 25),
        years_trading_options=6 if is_applicant else rng.randrange(0, 15),
        years_trading_futures=rng.randrange(0, 8),
        options_approval_level=4 if wants_pm else rng.randrange(1, 4),
        annual_income=Decimal(rng.randrange(120, 900) * 1000),
        net_worth=Decimal(rng.randrange(800, 9000) * 1000),
        liquid_net_worth=Decimal(rng.randrange(300, 3000) * 1000),
    )
    login = (f"{firm.slug}.client{n}" if n <= 3 else f"{firm.slug}.applicant"
             if is_applicant else f"{firm.slug}.crypto" if label == CRYPTO_BOOK[0] else None)
    user = None
    if login:
        user = set_demo_password(create_firm_user(firm=firm, username=login, role=Role.CLIENT,
                                                  email=f"{login}@demo.example", actor=admin))
        book.update_client(client=client, actor=admin, portal_user=user)
    deliver_disclosures(client=client, admin=admin, portfolio_margin=wants_pm)
    account = book.open_account(
        client=client, number=f"{firm.slug[:2].upper()}{100000 + n}",
        registration="individual", margin_type=margin_type, actor=admin,
        opened_on=today - timedelta(days=rng.randrange(90, 2000)))
    if user is not None:
        book.grant_account_access(account=account, user=user, actor=admin)
    return account


def deliver_disclosures(*, client: Client, admin, portfolio_margin: bool) -> None:
    documents = ["options_odd", "margin"] + (["portfolio_margin"] if portfolio_margin else [])
    for document in documents:
        book.deliver_disclosure(client=client, document=document, actor=admin,
                                acknowledged=True)


def trade(*, account: Account, leg: Leg, admin, listing: Listing, today: date) -> None:
    quantity = Decimal(str(leg.quantity))
    if leg.right:
        instrument = option_for(leg, listing=listing, today=today)
        price = mark(instrument, today) * instrument.multiplier
    else:
        instrument = listing[leg.symbol]
        # Futures are settled daily (no premium changes hands at the trade).
        price = Decimal(0) if instrument.kind == "future" else Decimal(
            str(UNDERLYINGS[leg.symbol][3]))
    book.set_position(account=account, instrument=instrument, quantity=quantity,
                      cost_basis=quantity * price, actor=admin)
    settle(account=account, admin=admin, instrument=instrument, quantity=quantity,
           unit_cost=price)


def settle(*, account: Account, admin, instrument: Instrument, quantity: Decimal,
           unit_cost: Decimal) -> None:
    amount = (-quantity * unit_cost).quantize(Decimal("0.01"))
    if amount:
        book.post_ledger_entry(account=account, kind="trade_settlement", amount=amount,
                               actor=admin, memo=f"{'buy' if quantity > 0 else 'sell'} "
                                                 f"{abs(quantity)} {instrument.symbol}")


def crypto_book(*, firm: Firm, account: Account, admin, listing: Listing) -> None:
    """An ETH/USDC LP position (the firm's own instrument), ETH, BTC, USDC and a short perp."""
    # A concentrated ETH/USDC position around 3,000 (ticks of the 0.05 % pool, spacing 10):
    # token0 = USDC (6 decimals), token1 = ETH (18 decimals), as on mainnet.
    price_tick = uniswap_v3.get_tick_at_sqrt_ratio(uniswap_v3.sqrt_price_x96_from_prices(
        1.0, 3000.0, 6, 18))
    lower, upper = (price_tick - 2000) // 10 * 10, (price_tick + 2000) // 10 * 10
    lp = book.create_instrument(
        symbol=f"UNIV3-USDC/ETH-{firm.slug}-1", kind="uniswap_v3_lp", firm=firm, actor=admin,
        product_class="crypto", class_group="ETH", product_group="ETH",
        token0=listing["USDC"], token1=listing["ETH"], decimals0=6, decimals1=18,
        tick_lower=lower, tick_upper=upper, liquidity="2000000000000000", fee_tier=500,
        description="Uniswap v3 USDC/ETH 0.05 % position (demo)")
    position = LPPosition(token0="USDC", token1="ETH", decimals0=6, decimals1=18,
                          liquidity=int(lp.liquidity), tick_lower=lower, tick_upper=upper)
    lp_value = Decimal(f"{uniswap_v3.lp_value(position, 1.0, 3000.0):.2f}")
    book.set_position(account=account, instrument=lp, quantity=Decimal(1),
                      cost_basis=lp_value, actor=admin)
    settle(account=account, admin=admin, instrument=lp, quantity=Decimal(1), unit_cost=lp_value)
    for symbol, quantity in (("ETH", Decimal(12)), ("BTC", Decimal("0.5")),
                             ("USDC", Decimal(25000))):
        price = Decimal(str(UNDERLYINGS[symbol][3]))
        book.set_position(account=account, instrument=listing[symbol], quantity=quantity,
                          cost_basis=quantity * price, actor=admin)
        settle(account=account, admin=admin, instrument=listing[symbol], quantity=quantity,
               unit_cost=price)
    book.set_position(account=account, instrument=listing["ETH-PERP"],
                      quantity=Decimal(-5), cost_basis=Decimal(-5 * 2950), actor=admin)


# -- margin and logins ------------------------------------------------------------------------
def compute_margin(*, write: Write) -> None:
    for firm in Firm.objects.order_by("pk"):
        result = recompute_firm(firm.pk)
        flagged = result["flagged"]
        write(f"Margin computed for {firm.name}: {result['computed']} accounts"
              + (f", flagged: {flagged}" if flagged else ""))
        with firm_scope(firm):
            deficits = MarginSnapshot.objects.filter(excess__lt=0).values_list(
                "account__number", flat=True).distinct()
            if deficits:
                write(f"  under-margined: {', '.join(sorted(deficits))}")


def margin_calls(*, write: Write) -> None:
    """Issue 11's story as of the last close, whatever the weekday the seed runs on: the
    valuations just computed are judged as of that session, which issues the calls the books
    call for (NO100013's PM deficiency and minimum-equity deficiency, with their due dates);
    Northwind's history adds a maintenance call of an earlier close that nobody met (overdue
    at this close, with a plan a risk officer proposed), one a deposit met and one still
    running (``call_history``). The session's end-of-day run is
    left to beat or to `manage.py run_end_of_day` (after a price drop, say), which values the
    books again for that close and updates the calls. A second seed changes nothing."""
    now = timezone.now()
    for firm in Firm.objects.order_by("pk"):
        calendar = firm.exchange_calendar or "XNYS"
        session = last_closed_session(calendar, now) or business_days.business_days_before(
            business_days.today(calendar), 1, calendar)
        with firm_scope(firm):
            if firm.slug == "northwind" and not MarginCall.objects.exists():
                call_history(firm=firm, session=session, calendar=calendar)
        close_of_day(firm=firm, session=session)
        with firm_scope(firm):
            if firm.slug == "northwind":
                plan_for_overdue_call(firm=firm)
            open_calls = MarginCall.objects.filter(status__in=MarginCall.OPEN_STATES)
            listed = ", ".join(f"{c.account.number} {c.kind} ${c.amount_due:,} due {c.due_date}"
                               for c in open_calls.select_related("account").order_by("due_date"))
        write(f"Margin calls at {firm.name}'s close of {session}: {listed or 'none'}")


def pm_application(*, write: Write) -> None:
    """Issue 19's story: `northwind.applicant` ($180,000, options level 4, the PM disclosure
    signed) applies for portfolio margin from the portal once the book is valued; the
    application waits on the desk for `northwind.risk1` to review it and `northwind.risk2` to
    approve it (four eyes). A second seed leaves it as it is."""
    firm = Firm.objects.get(slug="northwind")
    with firm_scope(firm):
        applicant = Membership.objects.get(user__username="northwind.applicant").user
        account = Account.objects.get(client__portal_user=applicant)
        if not Application.objects.filter(account=account).exists():
            eligibility.create_application(account=account, actor=applicant, submit=True)
        application = Application.objects.filter(account=account).latest("created_at")
    write(f"Portfolio-margin application #{application.pk} for {account.number}: "
          f"{application.get_state_display().lower()}")


def call_history(*, firm: Firm, session: date, calendar: str) -> None:
    """Northwind's earlier calls, issued by the close itself on books really short: NO100002's
    client withdrew cash below its Reg T maintenance requirement, and the close 16 sessions ago
    issued a maintenance call nobody met (due in 15 business days: overdue now); NO100001 went
    short the same way, the close 10 sessions ago called it and a deposit met it; NO100009,
    called 2 sessions ago, has its call still running. The demo's
    market is one state: the valuation on record stands for those earlier closes."""
    desk = Membership.objects.get(user__username="northwind.desk").user
    overdue = _short_by(firm, "NO100002", Decimal("5000.00"), desk)
    close_of_day(firm=firm, session=business_days.business_days_before(session, 16, calendar),
                 account_ids=[overdue.pk])
    met = _short_by(firm, "NO100001", Decimal("2500.00"), desk)
    close_of_day(firm=firm, session=business_days.business_days_before(session, 10, calendar),
                 account_ids=[met.pk])
    call = MarginCall.objects.filter(account=met, kind="maintenance").get()
    book.post_ledger_entry(account=met, kind="deposit", amount=call.amount_due, actor=desk,
                           memo=f"wire for margin call #{call.pk}")
    recompute_accounts(firm.pk, [met.pk])
    # NO100009 went short two sessions ago: a maintenance call still running, which the desk
    # may ask to extend (issue 19's walk) before it is due.
    running = _short_by(firm, "NO100009", Decimal("1800.00"), desk)
    close_of_day(firm=firm, session=business_days.business_days_before(session, 2, calendar),
                 account_ids=[running.pk])


def plan_for_overdue_call(*, firm: Firm) -> None:
    """NO100002's overdue call gets its suggested liquidation plan, proposed by a risk officer
    so that the margin desk (a second person) can approve it: "log in as the margin desk and
    see the overdue call first with its plan" (issue 19). Once: a second seed keeps it."""
    from margin.liquidation.services import propose_plan
    from margin.models import LiquidationPlan

    overdue = MarginCall.objects.filter(account__number="NO100002", kind="maintenance",
                                        status=MarginCall.Status.OVERDUE).first()
    if overdue is None or LiquidationPlan.objects.filter(call=overdue).exists():
        return
    propose_plan(actor=Membership.objects.get(user__username="northwind.risk1").user,
                 call=overdue)


def _short_by(firm: Firm, number: str, shortfall: Decimal, desk) -> Account:
    """The client withdraws what leaves the account ``shortfall`` under its requirement, as
    the engine values it now; valued again after the withdrawal."""
    account = Account.objects.get(number=number)
    current = AccountMargin.objects.get(account=account)
    book.post_ledger_entry(account=account, kind="withdrawal",
                           amount=-(current.excess + shortfall), actor=desk,
                           memo="client withdrawal")
    recompute_accounts(firm.pk, [account.pk])
    return account


def print_logins(*, write: Write) -> None:
    write(f"\nDemo logins (password for all: {PASSWORD})")
    write("  http://127.0.0.1:8000/admin/   staff desk; staff are then asked for the code of their")
    write("  authenticator: add the secret beside the login to an authenticator app, or print the")
    write("  current code with `make demo-code WHO=northwind.risk1` (manage.py demo_otp_code)")
    for slug, name in FIRMS:
        firm = Firm.objects.get(slug=slug)
        write(f"  {name}:")
        with firm_scope(firm):
            for m in Membership.objects.select_related("user").order_by("role", "user__username"):
                secret = (f"  TOTP secret {base32_secret(issue_authenticator(user=m.user))}"
                          if m.role in STAFF_ROLES else "")
                write(f"    {m.user.username:<28} {m.get_role_display():<20}{secret}".rstrip())
    write(f"  Platform auditor (no firm; read-only, cross-firm audit export): {PLATFORM_AUDITOR}")
    accounts = Account.cross_firm.for_compliance(reason="demo banner").count()
    write(f"  {accounts} accounts in 2 firms\n")
