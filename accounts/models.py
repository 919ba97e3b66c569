"""The book: clients, accounts, instruments, positions and the append-only cash ledger.

Instruments are market reference data, shared by every firm (`firm` is null): a listed stock,
option series or future is the same contract whoever holds it. An LP position (a Uniswap v3 NFT
with its own ticks and liquidity) belongs to one holder, so its instrument carries its firm.
The scoped manager shows shared rows plus the firm's own.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from brokerage.models import AppendOnlyRecord, Firm, TenantModel
from brokerage.scope import AppendOnlyTenantManager, CrossFirmManager, SharedOrTenantManager

uint_string = RegexValidator(r"^[0-9]{1,78}$", "a non-negative integer in decimal digits")
MONEY = {"max_digits": 20, "decimal_places": 2}
QUANTITY = {"max_digits": 24, "decimal_places": 8}


class Client(TenantModel):
    class Kind(models.TextChoices):
        PERSON = "person", "Person"
        ENTITY = "entity", "Entity"

    class Objective(models.TextChoices):
        PRESERVATION = "preservation", "Capital preservation"
        INCOME = "income", "Income"
        GROWTH = "growth", "Growth"
        SPECULATION = "speculation", "Speculation"

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PERSON)
    name = models.CharField(max_length=200)
    email = models.EmailField()
    phone = models.CharField(max_length=40, blank=True)
    address = models.TextField(blank=True)
    born_or_incorporated_on = models.DateField()
    investment_objective = models.CharField(max_length=20, choices=Objective.choices)
    years_trading_stocks = models.PositiveSmallIntegerField(default=0)
    years_trading_options = models.PositiveSmallIntegerField(default=0)
    years_trading_futures = models.PositiveSmallIntegerField(default=0)
    options_approval_level = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(4)],
        help_text="0 none, 1 covered, 2 long/spreads, 3 spreads, 4 uncovered",
    )
    annual_income = models.DecimalField(**MONEY, validators=[MinValueValidator(0)])
    net_worth = models.DecimalField(**MONEY)
    liquid_net_worth = models.DecimalField(**MONEY)
    holds_unlisted_derivatives = models.BooleanField(default=False)
    portal_user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="client_profile",
    )
    updated_at = models.DateTimeField(auto_now=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantModel.Meta):
        ordering = ["name"]
        indexes = [models.Index(fields=["firm", "name"])]

    def __str__(self) -> str:
        return self.name


class RiskDisclosure(TenantModel):
    """A disclosure delivered to a client and, once signed, its acknowledgement."""

    class Document(models.TextChoices):
        OPTIONS_ODD = "options_odd", "Characteristics and Risks of Standardized Options"
        PORTFOLIO_MARGIN = "portfolio_margin", "Portfolio margin risk disclosure"
        MARGIN = "margin", "Margin disclosure statement"

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="disclosures")
    document = models.CharField(max_length=30, choices=Document.choices)
    version = models.CharField(max_length=20, default="2026-01")
    delivered_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        ordering = ["client", "document", "-delivered_at"]

    def __str__(self) -> str:
        return f"{self.client} {self.document} {self.version}"


class Account(TenantModel):
    class Registration(models.TextChoices):
        INDIVIDUAL = "individual", "Individual"
        JOINT = "joint", "Joint"
        ENTITY = "entity", "Entity"
        RETIREMENT = "retirement", "Retirement (IRA)"

    class MarginType(models.TextChoices):
        CASH = "cash", "Cash"
        REG_T = "reg_t", "Reg T margin"
        PORTFOLIO_MARGIN = "portfolio_margin", "Portfolio margin"

    class Regime(models.TextChoices):
        """FINRA 4210 (MARGIN_CALLS.md section 5): the intraday margin standard, or the old
        pattern-day-trader treatment a firm may keep by account until 20 October 2027."""

        LEGACY_PDT = "legacy_pdt", "Legacy pattern-day-trader treatment"
        INTRADAY = "intraday", "Intraday margin standard"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESTRICTED = "restricted", "Restricted (risk-reducing trades only)"
        CLOSED = "closed", "Closed"

    number = models.CharField(max_length=20)
    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="accounts")
    registration = models.CharField(max_length=12, choices=Registration.choices)
    margin_type = models.CharField(max_length=20, choices=MarginType.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    base_currency = models.CharField(max_length=3, default="USD")
    regime = models.CharField(max_length=12, choices=Regime.choices, default=Regime.LEGACY_PDT,
                              help_text="intraday margin monitoring applies to intraday Reg T "
                                        "accounts only (margin.intraday)")
    opened_on = models.DateField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantModel.Meta):
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["firm", "number"], name="account_number_per_firm"),
        ]

    def __str__(self) -> str:
        return self.number


class AccountUserObjectPermission(UserObjectPermissionBase):
    """django-guardian direct FK: a client user's grant to see one account."""

    content_object = models.ForeignKey(Account, on_delete=models.CASCADE)


class AccountGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Account, on_delete=models.CASCADE)


class Instrument(models.Model):
    class Kind(models.TextChoices):
        STOCK = "stock", "Stock"
        ETF = "etf", "ETF"
        INDEX = "index", "Index"
        EQUITY_OPTION = "equity_option", "Equity option"
        INDEX_OPTION = "index_option", "Index option"
        FUTURE = "future", "Future"
        FUTURE_OPTION = "future_option", "Futures option"
        CRYPTO = "crypto", "Crypto asset"
        PERPETUAL = "perpetual", "Perpetual"
        UNISWAP_V3_LP = "uniswap_v3_lp", "Uniswap v3 LP position"

    class ProductClass(models.TextChoices):
        EQUITY = "equity", "Equity"
        NARROW_INDEX = "narrow_index", "Narrow-based index"
        BROAD_INDEX_HIGH_CAP = "broad_index_high_cap", "High-cap broad-based index"
        BROAD_INDEX = "broad_index", "Broad-based index"
        FUTURE = "future", "Future"
        CRYPTO = "crypto", "Crypto"
        STABLECOIN = "stablecoin", "Stablecoin"

    class Right(models.TextChoices):
        CALL = "call", "Call"
        PUT = "put", "Put"

    class Exercise(models.TextChoices):
        AMERICAN = "american", "American"
        EUROPEAN = "european", "European"

    OPTION_KINDS = (Kind.EQUITY_OPTION, Kind.INDEX_OPTION, Kind.FUTURE_OPTION)
    UNDERLYING_KINDS = (Kind.STOCK, Kind.ETF, Kind.INDEX, Kind.FUTURE, Kind.CRYPTO)

    firm = models.ForeignKey(Firm, null=True, blank=True, on_delete=models.PROTECT,
                             related_name="+", help_text="empty for shared market reference data")
    symbol = models.CharField(max_length=64)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    description = models.CharField(max_length=200, blank=True)
    underlying = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="derivatives")
    product_class = models.CharField(max_length=24, choices=ProductClass.choices)
    class_group = models.CharField(max_length=32)
    product_group = models.CharField(max_length=32)
    multiplier = models.DecimalField(max_digits=12, decimal_places=4, default=Decimal(1))
    strike = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    right = models.CharField(max_length=4, choices=Right.choices, blank=True)
    expiry = models.DateField(null=True, blank=True)
    exercise_style = models.CharField(max_length=8, choices=Exercise.choices, blank=True)
    dividend_yield = models.DecimalField(max_digits=8, decimal_places=6, default=Decimal(0))
    # Uniswap v3 position: pool tokens, range and liquidity (raw integers, kept exact as text).
    token0 = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="+")
    token1 = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="+")
    decimals0 = models.PositiveSmallIntegerField(null=True, blank=True)
    decimals1 = models.PositiveSmallIntegerField(null=True, blank=True)
    tick_lower = models.IntegerField(null=True, blank=True)
    tick_upper = models.IntegerField(null=True, blank=True)
    liquidity = models.CharField(max_length=40, blank=True, validators=[uint_string])
    fee_tier = models.PositiveIntegerField(null=True, blank=True)

    objects = SharedOrTenantManager()
    cross_firm = CrossFirmManager()

    class Meta:
        base_manager_name = "cross_firm"
        ordering = ["symbol"]
        constraints = [
            models.UniqueConstraint(fields=["symbol"], condition=models.Q(firm__isnull=True),
                                    name="instrument_symbol_shared"),
            models.UniqueConstraint(fields=["firm", "symbol"], name="instrument_symbol_per_firm"),
        ]

    def __str__(self) -> str:
        return self.symbol

    @property
    def is_option(self) -> bool:
        return self.kind in self.OPTION_KINDS


class Position(TenantModel):
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="positions")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="+")
    quantity = models.DecimalField(**QUANTITY, help_text="signed: negative is short")
    cost_basis = models.DecimalField(**MONEY, default=Decimal(0))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["account", "instrument"], name="position_per_instrument"),
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.quantity} {self.instrument}"


class LedgerEntry(AppendOnlyRecord, TenantModel):
    """One cash movement. Never updated or deleted: a correction is a new entry."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit", "Deposit"
        WITHDRAWAL = "withdrawal", "Withdrawal"
        TRADE_SETTLEMENT = "trade_settlement", "Trade settlement"
        FEE = "fee", "Fee"
        INTEREST = "interest", "Interest"
        CORRECTION = "correction", "Correction"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="ledger")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    amount = models.DecimalField(**MONEY, help_text="signed: credit positive, debit negative")
    currency = models.CharField(max_length=3, default="USD")
    effective_at = models.DateTimeField()
    memo = models.CharField(max_length=200, blank=True)
    corrects = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="corrections")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AppendOnlyTenantManager()
    never_updated = never_deleted = "ledger entries are append-only: post a correction instead"

    class Meta(TenantModel.Meta):
        ordering = ["account", "effective_at", "id"]
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.account} {self.kind} {self.amount}"
