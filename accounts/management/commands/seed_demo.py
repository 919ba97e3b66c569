"""Load the demo: two firms, staff of every role, ~20 clients per firm with realistic books,
prices for everything, then compute margin. Idempotent: a second run changes nothing.

Every number here is demo data (clearly synthetic prices in a plausible range), written through
the services so the audit trail tells the story from the first event.
"""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts import services as book
from accounts.models import Account, Instrument
from brokerage.models import Firm
from brokerage.roles import Role
from brokerage.scope import firm_scope
from brokerage.tenancy import add_member
from margin.market_data import load_implied_vols, load_prices, set_risk_free_rate
from margin.receivers import recompute_suspended

PASSWORD = "demo-pass-2026"
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
FIRMS = [("northwind", "Northwind Securities"), ("bluewater", "Bluewater Brokerage")]


class Command(BaseCommand):
    help = "Load the demo data (two firms, staff, clients, books, prices) and compute margin."

    def handle(self, *args, **options) -> None:
        if Firm.objects.filter(slug=FIRMS[0][0]).exists():
            self.stdout.write("Demo data already loaded.")
        else:
            with recompute_suspended():
                self._load()
        self._compute()
        self._print_logins()

    # -- market ---------------------------------------------------------------------------
    def _instrument(self, **fields) -> Instrument:
        manager = Instrument.cross_firm.for_compliance(reason="demo reference data")
        instrument, _ = manager.get_or_create(symbol=fields.pop("symbol"),
                                              firm=fields.pop("firm", None), defaults=fields)
        return instrument

    def _market(self, today: date) -> dict[str, Instrument]:
        instruments: dict[str, Instrument] = {}
        for symbol, (kind, pclass, cgroup, _price, _vol, q) in UNDERLYINGS.items():
            instruments[symbol] = self._instrument(
                symbol=symbol, kind=kind, product_class=pclass, class_group=cgroup,
                product_group=cgroup, dividend_yield=Decimal(str(q)),
                multiplier=Decimal(FUTURE_MULTIPLIER.get(symbol, 1)),
                expiry=expiry_in(3, today) if kind == "future" else None,
                description=f"{symbol} (demo)")
        instruments["ETH-PERP"] = self._instrument(
            symbol="ETH-PERP", kind="perpetual", product_class="crypto", class_group="ETH",
            product_group="ETH", underlying=instruments["ETH"], description="ETH perpetual")
        return instruments

    def _option(self, leg: Leg, instruments, today: date) -> Instrument:
        under = instruments[leg.symbol]
        price = UNDERLYINGS[leg.symbol][3]
        strike = strike_for(price, leg.moneyness)
        expiry = expiry_in(leg.months, today)
        index = under.kind == "index"
        symbol = f"{leg.symbol} {expiry:%y%m%d}{leg.right[0].upper()}{strike.normalize():f}"
        return self._instrument(
            symbol=symbol, kind="index_option" if index else "equity_option",
            underlying=under, product_class=under.product_class, class_group=under.class_group,
            product_group=under.product_group, multiplier=Decimal(100), strike=strike,
            right=leg.right, expiry=expiry, exercise_style="european" if index else "american",
            description=f"{leg.symbol} {expiry} {strike} {leg.right}")

    @staticmethod
    def _skewed_vol(option: Instrument) -> float:
        spot, vol = UNDERLYINGS[option.underlying.symbol][3], UNDERLYINGS[option.underlying.symbol][4]
        return vol * (1 + 0.8 * max(0.0, 1 - float(option.strike) / spot))  # a put skew

    def _mark(self, option: Instrument, today: date) -> Decimal:
        """The option's demo mark: its model value at the demo vol, to the cent."""
        from margin.engine import pricing

        spot, q = UNDERLYINGS[option.underlying.symbol][3], UNDERLYINGS[option.underlying.symbol][5]
        t = (option.expiry - today).days / 365.0
        model = pricing.EUROPEAN if option.exercise_style == "european" else pricing.AMERICAN
        value = float(pricing.option_value(model, spot, float(option.strike), t, RATE, q,
                                           self._skewed_vol(option), option.right == "call"))
        return Decimal(f"{max(value, 0.05):.2f}")

    def _price_everything(self, instruments: dict[str, Instrument], options: list[Instrument],
                          today: date) -> None:
        now = timezone.now()
        rows = [{"symbol": s, "price": f"{UNDERLYINGS[s][3]:.2f}", "observed_at": now}
                for s in UNDERLYINGS]
        vols = []
        for option in {o.pk: o for o in options}.values():
            rows.append({"symbol": option.symbol, "price": str(self._mark(option, today)),
                         "observed_at": now})
            vols.append({"symbol": option.symbol, "volatility": f"{self._skewed_vol(option):.4f}",
                         "observed_at": now})
        load_prices(observations=rows, source="demo", actor=None)
        if vols:
            load_implied_vols(observations=vols, source="demo", actor=None)
        set_risk_free_rate(rate=RATE, observed_on=today, actor=None)

    # -- people and books -----------------------------------------------------------------
    def _user(self, username: str, *, staff: bool, superuser: bool = False):
        User = get_user_model()
        return User.objects.create_user(username=username, password=PASSWORD, is_staff=staff,
                                        is_superuser=superuser,
                                        email=f"{username}@demo.example")

    def _load(self) -> None:
        today = timezone.localdate()
        rng = random.Random(20261124)
        instruments = self._market(today)
        options: list[Instrument] = []
        with transaction.atomic():
            from brokerage.tenancy import create_platform_user  # a platform role, no superuser

            create_platform_user(username="platform.auditor", role="auditor", password=PASSWORD,
                                 email="platform.auditor@demo.example")
            for firm_index, (slug, name) in enumerate(FIRMS):
                firm = Firm.objects.create(name=name, slug=slug)
                staff = {}
                for role, count in ((Role.FIRM_ADMIN, 1), (Role.RISK_OFFICER, 2),
                                    (Role.MARGIN_DESK, 1), (Role.COMPLIANCE, 1)):
                    for n in range(1, count + 1):
                        username = f"{slug}.{LOGIN_NAMES[role]}{n if count > 1 else ''}"
                        user = self._user(username, staff=True)
                        add_member(firm=firm, user=user, role=role)
                        staff.setdefault(role, user)
                admin = staff[Role.FIRM_ADMIN]
                with firm_scope(firm):
                    if slug == "bluewater":
                        self._stricter_crypto_haircuts(firm)
                    options += self._clients(firm, firm_index, admin, instruments, today, rng)
        self._price_everything(instruments, options, today)

    @staticmethod
    def _stricter_crypto_haircuts(firm) -> None:
        """Bluewater's own haircut table (twice the platform's), proposed and approved by its
        two risk officers: its crypto client's collateral counts for less than Northwind's."""
        from django.contrib.auth import get_user_model

        from margin import services as risk_parameters

        users = get_user_model().objects
        proposal = risk_parameters.propose_parameters(
            firm=firm, actor=users.get(username="bluewater.risk1"),
            overrides={"defi": {"haircut_tiers": {
                "large_cap": [[1000000, 0.10], [10000000, 0.20], [None, 0.30]],
                "other": [[1000000, 0.40], [10000000, 0.60], [None, 0.80]]}}},
            reason="house view: crypto haircuts twice the platform default")
        risk_parameters.approve_parameters(proposal=proposal,
                                           actor=users.get(username="bluewater.risk2"),
                                           reason="agreed")

    def _clients(self, firm, firm_index, admin, instruments, today, rng) -> list[Instrument]:
        options: list[Instrument] = []
        books = list(BOOKS) + [UNDER_MARGINED]
        while len(books) < 19:
            books.append(rng.choice(BOOKS[:11]))
        books.append(CRYPTO_BOOK + ([],))
        for n, (label, cash, margin_type, legs) in enumerate(books, start=1):
            first, last = FIRST[(n + firm_index * 7) % 20], LAST[(n * 3 + firm_index) % 20]
            is_applicant = label.startswith("Options-experienced")
            client = book.create_client(
                firm=firm, actor=admin, kind="person", name=f"{first} {last}",
                email=f"{first}.{last}@demo.example".lower(),
                born_or_incorporated_on=date(1955 + rng.randrange(40), rng.randrange(1, 13), 15),
                investment_objective="speculation" if margin_type == "portfolio_margin"
                or is_applicant else rng.choice(["growth", "income"]),
                years_trading_stocks=rng.randrange(3, 25),
                years_trading_options=6 if is_applicant else rng.randrange(0, 15),
                years_trading_futures=rng.randrange(0, 8),
                options_approval_level=4 if margin_type == "portfolio_margin" or is_applicant
                else rng.randrange(1, 4),
                annual_income=Decimal(rng.randrange(120, 900) * 1000),
                net_worth=Decimal(rng.randrange(800, 9000) * 1000),
                liquid_net_worth=Decimal(rng.randrange(300, 3000) * 1000),
            )
            login = (f"{firm.slug}.client{n}" if n <= 3 else f"{firm.slug}.applicant"
                     if is_applicant else f"{firm.slug}.crypto" if label == CRYPTO_BOOK[0]
                     else None)
            if login:  # these clients have portal logins
                user = self._user(login, staff=False)
                add_member(firm=firm, user=user, role=Role.CLIENT)
                book.update_client(client=client, actor=admin, portal_user=user)
            book.deliver_disclosure(client=client, document="options_odd", actor=admin,
                                    acknowledged=True)
            book.deliver_disclosure(client=client, document="margin", actor=admin,
                                    acknowledged=True)
            if margin_type == "portfolio_margin" or is_applicant:
                book.deliver_disclosure(client=client, document="portfolio_margin",
                                        actor=admin, acknowledged=True)
            account = book.open_account(
                client=client, number=f"{firm.slug[:2].upper()}{100000 + n}",
                registration="individual", margin_type=margin_type, actor=admin,
                opened_on=today - timedelta(days=rng.randrange(90, 2000)))
            if login:
                book.grant_account_access(account=account, user=user, actor=admin)
            book.post_ledger_entry(account=account, kind="deposit", amount=Decimal(cash),
                                   actor=admin, memo="initial funding")
            if label == CRYPTO_BOOK[0]:
                self._crypto_book(firm, account, admin, instruments)
                continue
            for leg in legs:
                quantity = Decimal(str(leg.quantity))
                if leg.right:
                    instrument = self._option(leg, instruments, today)
                    options.append(instrument)
                    price = self._mark(instrument, today) * instrument.multiplier
                else:
                    instrument = instruments[leg.symbol]
                    # Futures are settled daily (no premium changes hands at the trade).
                    price = Decimal(0) if instrument.kind == "future" else Decimal(
                        str(UNDERLYINGS[leg.symbol][3]))
                book.set_position(account=account, instrument=instrument, quantity=quantity,
                                  cost_basis=quantity * price, actor=admin)
                self._settle(account, admin, instrument, quantity, price)
        return options

    @staticmethod
    def _settle(account, admin, instrument, quantity: Decimal, unit_cost: Decimal) -> None:
        amount = (-quantity * unit_cost).quantize(Decimal("0.01"))
        if amount:
            book.post_ledger_entry(account=account, kind="trade_settlement", amount=amount,
                                   actor=admin, memo=f"{'buy' if quantity > 0 else 'sell'} "
                                                     f"{abs(quantity)} {instrument.symbol}")

    def _crypto_book(self, firm, account, admin, instruments) -> None:
        from margin.engine.defi import uniswap_v3

        # A concentrated ETH/USDC position around 3,000 (ticks of the 0.05 % pool, spacing 10):
        # token0 = USDC (6 decimals), token1 = ETH (18 decimals), as on mainnet.
        price_tick = uniswap_v3.get_tick_at_sqrt_ratio(uniswap_v3.sqrt_price_x96_from_prices(
            1.0, 3000.0, 6, 18))
        lower, upper = (price_tick - 2000) // 10 * 10, (price_tick + 2000) // 10 * 10
        lp = self._instrument(
            symbol=f"UNIV3-USDC/ETH-{firm.slug}-1", firm=firm, kind="uniswap_v3_lp",
            product_class="crypto", class_group="ETH", product_group="ETH",
            token0=instruments["USDC"], token1=instruments["ETH"], decimals0=6, decimals1=18,
            tick_lower=lower, tick_upper=upper, liquidity="2000000000000000", fee_tier=500,
            description="Uniswap v3 USDC/ETH 0.05 % position (demo)")
        from margin.engine.portfolio import LPPosition

        lp_value = Decimal(f"{uniswap_v3.lp_value(LPPosition(token0='USDC', token1='ETH', decimals0=6, decimals1=18, liquidity=int(lp.liquidity), tick_lower=lower, tick_upper=upper), 1.0, 3000.0):.2f}")
        book.set_position(account=account, instrument=lp, quantity=Decimal(1),
                          cost_basis=lp_value, actor=admin)
        self._settle(account, admin, lp, Decimal(1), lp_value)
        for symbol, quantity in (("ETH", Decimal(12)), ("BTC", Decimal("0.5")),
                                 ("USDC", Decimal(25000))):
            price = Decimal(str(UNDERLYINGS[symbol][3]))
            book.set_position(account=account, instrument=instruments[symbol], quantity=quantity,
                              cost_basis=quantity * price, actor=admin)
            self._settle(account, admin, instruments[symbol], quantity, price)
        book.set_position(account=account, instrument=instruments["ETH-PERP"],
                          quantity=Decimal(-5), cost_basis=Decimal(-5 * 2950), actor=admin)

    # -- margin and logins ----------------------------------------------------------------
    def _compute(self) -> None:
        from margin.tasks import recompute_firm

        for firm in Firm.objects.order_by("pk"):
            result = recompute_firm(firm.pk)
            flagged = result["flagged"]
            self.stdout.write(f"Margin computed for {firm.name}: {result['computed']} accounts"
                              + (f", flagged: {flagged}" if flagged else ""))
            with firm_scope(firm):
                from margin.models import MarginSnapshot

                deficits = MarginSnapshot.objects.filter(excess__lt=0).values_list(
                    "account__number", flat=True).distinct()
                if deficits:
                    self.stdout.write(f"  under-margined: {', '.join(sorted(deficits))}")

    def _print_logins(self) -> None:
        self.stdout.write(f"\nDemo logins (password for all: {PASSWORD})")
        self.stdout.write("  http://127.0.0.1:8000/admin/   staff desk")
        for slug, name in FIRMS:
            firm = Firm.objects.get(slug=slug)
            self.stdout.write(f"  {name}:")
            from brokerage.models import Membership

            with firm_scope(firm):
                for m in Membership.objects.select_related("user").order_by("role", "user__username"):
                    self.stdout.write(f"    {m.user.username:<28} {m.get_role_display()}")
        self.stdout.write("  Platform operator (no firm): platform.auditor")
        accounts = Account.cross_firm.for_compliance(reason="demo banner").count()
        self.stdout.write(f"  {accounts} accounts in 2 firms\n")
