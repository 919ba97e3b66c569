"""Market data (shared by every firm) and, per firm, parameter sets and margin snapshots."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from accounts.models import Account, Instrument
from brokerage.models import AppendOnlyRecord, TenantModel, VersionStatus
from brokerage.scope import AppendOnlyCrossFirmManager, AppendOnlyTenantManager


class PriceObservation(models.Model):
    """One observed price of an instrument (market reference data, shared)."""

    class Source(models.TextChoices):
        EXCHANGE = "exchange", "Exchange"
        VENDOR = "vendor", "Vendor"
        ORACLE = "oracle", "Oracle round"
        MANUAL = "manual", "Manual"
        DEMO = "demo", "Demo (synthetic)"

    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="prices")
    price = models.DecimalField(max_digits=24, decimal_places=8)
    source = models.CharField(max_length=12, choices=Source.choices)
    observed_at = models.DateTimeField()
    loaded_at = models.DateTimeField(auto_now_add=True)
    oracle_round_id = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["instrument", "-observed_at"]
        indexes = [models.Index(fields=["instrument", "-observed_at"])]

    def __str__(self) -> str:
        return f"{self.instrument} {self.price} @ {self.observed_at:%Y-%m-%d %H:%M}"


class ImpliedVolatility(models.Model):
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="vols")
    volatility = models.DecimalField(max_digits=10, decimal_places=6)
    source = models.CharField(max_length=12, choices=PriceObservation.Source.choices)
    observed_at = models.DateTimeField()

    class Meta:
        ordering = ["instrument", "-observed_at"]
        verbose_name_plural = "implied volatilities"

    def __str__(self) -> str:
        return f"{self.instrument} vol {self.volatility}"


class RiskFreeRate(models.Model):
    currency = models.CharField(max_length=3, default="USD")
    tenor_days = models.PositiveIntegerField(default=90)
    rate = models.DecimalField(max_digits=10, decimal_places=6,
                               help_text="continuously compounded, annual")
    observed_on = models.DateField()

    class Meta:
        ordering = ["currency", "-observed_on"]
        constraints = [models.UniqueConstraint(fields=["currency", "tenor_days", "observed_on"],
                                               name="rate_per_day")]

    def __str__(self) -> str:
        return f"{self.currency} {self.tenor_days}d {self.rate}"


class RiskParameterSet(TenantModel):
    """A firm's versioned parameter set: the platform default plus the firm's overrides.

    Snapshots record the version they used so any number can be recomputed from what was
    stored. A new version is proposed by one staff member and takes effect only when a second
    approves it (``margin.services`` through ``brokerage.approvals``), and only if the version
    it was drafted on is still the active one; every row stays for the record.
    """

    Status = VersionStatus

    version = models.PositiveIntegerField()
    base = models.CharField(max_length=40, default="default-2026.1")
    overrides = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE,
                              db_index=True)
    reason = models.TextField(blank=True)
    drafted_on = models.PositiveIntegerField(
        default=0, help_text="the firm's active version when proposed (0: the platform default): "
                             "approval is refused once another version has become active")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)

    class Meta(TenantModel.Meta):
        ordering = ["firm", "-version"]
        constraints = [models.UniqueConstraint(fields=["firm", "version"],
                                               name="parameter_set_version_per_firm")]

    def __str__(self) -> str:
        return f"{self.base}+firm{self.firm_id}v{self.version} ({self.status})"

    @property
    def label(self) -> str:
        return f"{self.base}/firm-v{self.version}"


class MarketState(AppendOnlyRecord, models.Model):
    """The market rows a sweep chunk's history snapshots were valued at, recorded once for the
    chunk instead of once per snapshot (``MarginSnapshot.market_state``): each instrument's
    price and implied-vol observation id, for every instrument the kept snapshots' positions
    rest on. Market reference data, shared as the observations are. Found by its digest (the
    sha256 of its JSON): a chunk valued at the same rows shares the row. Append-only."""

    never_updated = "a market state is recorded once and never changed"
    never_deleted = "a market state is kept with the snapshots that name it"

    digest = models.CharField(max_length=64, unique=True)
    price_ids = models.JSONField(default=dict, help_text="instrument id -> PriceObservation id")
    vol_ids = models.JSONField(default=dict, help_text="instrument id -> ImpliedVolatility id")
    recorded_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"market state {self.digest[:12]}"


class MarginSnapshot(AppendOnlyRecord, TenantModel):
    """The engine's result for one account at one market state. Read by every page; the
    portal never recomputes on page load.

    Append-only history (model and queryset guards here, a database trigger on PostgreSQL and
    SQLite as well): a snapshot is never updated or deleted. It records what it valued so
    ``manage.py recompute_snapshot`` can reproduce it later (``margin.reproduce``): the
    positions themselves (positions keep no history of their own), the market rows by id, the
    parameter-set version and the engine version; and its risk arrays compactly
    (``margin.risk_arrays``). ``positions`` is null on rows written before inputs were recorded.
    """

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="snapshots")
    computed_at = models.DateTimeField(db_index=True)
    inputs_hash = models.CharField(max_length=64)
    engine_version = models.CharField(max_length=20)
    parameter_set = models.CharField(max_length=60)
    margin_type = models.CharField(max_length=20)
    cash = models.DecimalField(max_digits=20, decimal_places=2)
    net_liquidation_value = models.DecimalField(max_digits=20, decimal_places=2)
    equity = models.DecimalField(max_digits=20, decimal_places=2,
                                 help_text="cash plus the net liquidation value of positions")
    pm_requirement = models.DecimalField(max_digits=20, decimal_places=2, null=True)
    house_requirement = models.DecimalField(max_digits=20, decimal_places=2, null=True)
    regt_initial = models.DecimalField(max_digits=20, decimal_places=2, null=True)
    regt_maintenance = models.DecimalField(max_digits=20, decimal_places=2, null=True)
    collateral_effective_value = models.DecimalField(max_digits=20, decimal_places=2, null=True)
    health_factor = models.DecimalField(
        max_digits=20, decimal_places=6, null=True, blank=True,
        help_text="Aave-style health factor of crypto collateral against its debt (null: no "
                  "debt, or no collateral block); collateral calls rest on it")
    requirement = models.DecimalField(max_digits=20, decimal_places=2,
                                      help_text="the requirement of the account's margin type")
    excess = models.DecimalField(max_digits=20, decimal_places=2,
                                 help_text="equity minus requirement; negative is a deficit")
    flags = models.JSONField(default=list, blank=True)
    result = models.JSONField(
        null=True, blank=True,
        help_text="the calculator's whole response (snapshots written before the batch sweep; "
                  "null since: the explanation is rendered on demand, margin.explain)")
    methods = models.JSONField(
        default=list, blank=True,
        help_text="the calculator methods valued, the ones the requirement rests on "
                  "(margin.snapshots.requirement_methods); empty: written before they were "
                  "recorded, the parameter set's snapshot methods")
    # -- what was valued, by reference (margin.reproduce recomputes from these)
    valuation_date = models.DateField(null=True, blank=True,
                                      help_text="the date options were aged to (exchange day)")
    positions = models.JSONField(
        null=True, blank=True,
        help_text="[[instrument id, quantity, cost basis], ...] as valued, by instrument id "
                  "(null: written before inputs were recorded)")
    price_ids = models.JSONField(default=dict, blank=True,
                                 help_text="instrument id -> PriceObservation id used")
    vol_ids = models.JSONField(default=dict, blank=True,
                               help_text="instrument id -> ImpliedVolatility id used")
    # The sweep records the chunk's market rows once (empty price_ids and vol_ids then): two
    # JSON maps per account were a ninth of a chunk's CPU and a sixth of the database's. Not
    # indexed: a state is never deleted (append-only), so nothing looks snapshots up by it.
    market_state = models.ForeignKey(
        MarketState, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        db_index=False, help_text="the chunk's market rows, where price_ids and vol_ids are "
                                  "not the snapshot's own (margin.figures.market_ids)")
    rate = models.ForeignKey(RiskFreeRate, null=True, blank=True, on_delete=models.PROTECT,
                             related_name="+", help_text="the rate row used (none: 0)")
    # A day's rate is corrected in place (set_risk_free_rate), so the value is kept beside it.
    rate_used = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True,
                                    help_text="the rate valued at, as the row held it then")
    history = models.JSONField(
        null=True, blank=True,
        help_text="the daily closes VaR used: returns, first and last date of the window, a "
                  "digest of the closes, and the history flags (null: VaR not asked for)")
    parameter_version = models.ForeignKey(
        RiskParameterSet, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="the firm's parameter-set version used (none: the platform default named in "
                  "parameter_set)")
    add_ons = models.JSONField(default=dict, blank=True,
                               help_text="house add-ons and minimum charge, money to the cent")
    risk_arrays = models.JSONField(
        default=dict, blank=True,
        help_text="class group -> its P&L at each valuation point, float32 (margin.risk_arrays)")

    reason = models.CharField(
        max_length=20, blank=True,
        help_text="why this valuation was kept as history (margin.snapshots.history_reason): "
                  "end_of_day, forced, first, excess_sign, requirement_move")
    content_hash = models.CharField(
        max_length=64, blank=True,
        help_text="sha256 of the stored fields; the chunk's audit event carries a digest of "
                  "these, which the audit verifier checks (blank: written before issue 10)")

    objects = AppendOnlyTenantManager()
    cross_firm = AppendOnlyCrossFirmManager()
    never_updated = "margin snapshots are append-only: a snapshot is never updated"
    never_deleted = "margin snapshots are append-only: a snapshot is never deleted"

    class Meta(TenantModel.Meta):
        ordering = ["account", "-computed_at"]
        get_latest_by = "computed_at"
        constraints = [models.UniqueConstraint(fields=["account", "inputs_hash"],
                                               name="snapshot_once_per_input")]
        indexes = [models.Index(fields=["account", "-computed_at"])]

    def __str__(self) -> str:
        return f"{self.account} @ {self.computed_at:%Y-%m-%d %H:%M} excess {self.excess}"

    @property
    def is_deficit(self) -> bool:
        return self.excess < 0

    @property
    def records_inputs(self) -> bool:
        return self.positions is not None


class OracleRejection(models.Model):
    """An oracle round that failed a check. Until a good round arrives after it, accounts
    holding the instrument keep their last good snapshot and are flagged."""

    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="+")
    round_id = models.CharField(max_length=40)
    failed_check = models.CharField(max_length=30)
    message = models.TextField()
    rejected_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-rejected_at"]

    def __str__(self) -> str:
        return f"{self.instrument} round {self.round_id}: {self.failed_check}"


class DailyClose(models.Model):
    """One underlying's close on one trading day (market reference data, shared): the history
    historical VaR draws its scenarios from (METHODOLOGY.md section 5). Loaded through
    ``margin.market_history.load_daily_closes``; a later load of the same day replaces it."""

    class Source(models.TextChoices):
        EXCHANGE = "exchange", "Exchange"
        VENDOR = "vendor", "Vendor"
        MANUAL = "manual", "Manual"
        # The demo's generated closes: labelled on every snapshot whose VaR rests on them.
        SYNTHETIC = "synthetic", "Synthetic (demo only, not market prices)"

    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT,
                                   related_name="daily_closes")
    date = models.DateField()
    close = models.DecimalField(max_digits=24, decimal_places=8)
    source = models.CharField(max_length=12, choices=Source.choices)
    loaded_at = models.DateTimeField(help_text="when this close was (last) loaded")

    class Meta:
        ordering = ["instrument", "date"]
        constraints = [models.UniqueConstraint(fields=["instrument", "date"],
                                               name="daily_close_per_day")]

    def __str__(self) -> str:
        return f"{self.instrument} {self.date:%Y-%m-%d} close {self.close}"


class AccountMargin(TenantModel):
    """The current margin of one account: one row, updated in place by the sweep (what pages,
    the pre-trade check and the desk read; history stays in MarginSnapshot).

    Dirty accounts: every input that moves the account's requirement raises ``dirty_version``
    to a new value of the global ``SweepState.last_version`` (on commit, one statement per
    load); the sweep records the version it computed at in ``computed_version``. The account
    is dirty while ``dirty_version > computed_version``, so an input arriving while a chunk is
    computed leaves it dirty without any flag to clear. ``claimed_at`` and ``claim`` say which
    sweep run holds the account, so two dispatches do not value it at once (a claim older than
    the sweep's lease is taken over: its worker died).
    """

    account = models.OneToOneField(Account, on_delete=models.PROTECT, primary_key=True,
                                   related_name="current_margin")
    dirty_version = models.BigIntegerField(default=0)
    marked_at = models.DateTimeField(null=True, blank=True,
                                     help_text="when an input last marked the account dirty")
    computed_version = models.BigIntegerField(default=0)
    computed_at = models.DateTimeField(null=True, blank=True)
    claim = models.BigIntegerField(default=0, help_text="the sweep run holding the account")
    claimed_at = models.DateTimeField(null=True, blank=True)
    snapshot = models.ForeignKey(MarginSnapshot, null=True, blank=True,
                                 on_delete=models.PROTECT, related_name="+",
                                 help_text="the latest snapshot the current numbers come from")
    equity = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    requirement = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    excess = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    health_factor = models.DecimalField(
        max_digits=20, decimal_places=6, null=True, blank=True,
        help_text="the last valuation's health factor of crypto collateral against its debt "
                  "(null: no debt); collateral calls are judged on it")
    end_of_day_due = models.BooleanField(
        default=False, help_text="the end-of-day run marked the account: its next valuation "
                                 "is kept as history whatever moved (cleared when written)")
    flag = models.TextField(blank=True, help_text="why the last sweep could not value the "
                                                  "account (the numbers are the last good ones)")
    risk_arrays = models.JSONField(
        default=dict, blank=True,
        help_text="the last valuation's P&L per class group at each valuation point, float32 "
                  "(margin.risk_arrays): what what-if and the pre-trade check start from")

    class Meta(TenantModel.Meta):
        ordering = ["account"]
        indexes = [
            # Only the dirty rows, in account order: the sweep's claim (which locks them in
            # that order), a chunk's reads, and the backlog's count and oldest mark read the
            # few dirty rows among every account of every firm, never the whole table.
            # PostgreSQL has no estimate for ``dirty_version > computed_version`` (it takes a
            # third of the rows): keyed by firm, the claim still walked all 100,000 rows of the
            # primary key for its order; keyed by account, this index gives the order itself.
            models.Index(fields=["account"],
                         condition=models.Q(dirty_version__gt=models.F("computed_version")),
                         name="account_margin_dirty_rows"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} v{self.computed_version}/{self.dirty_version}"

    @property
    def is_dirty(self) -> bool:
        return self.dirty_version > self.computed_version


class SweepState(models.Model):
    """The sweep's shared state, one row: the version counter of the embedded SQLite demo
    (PostgreSQL draws versions from a sequence, ``margin.dirty``), when the pending debounced
    sweep is due (null: none pending), when the last sweep started, and when the last sweep
    that claimed accounts started (the debounce window runs from it)."""

    last_version = models.BigIntegerField(default=0)
    sweep_due_at = models.DateTimeField(null=True, blank=True)
    last_sweep_at = models.DateTimeField(
        null=True, blank=True, help_text="when the last sweep started (null: none yet)")
    window_from = models.DateTimeField(
        null=True, blank=True,
        help_text="when the last sweep that claimed accounts started (the debounce window's "
                  "start; an empty sweep, beat's every few seconds, opens none)")

    def __str__(self) -> str:
        return f"version {self.last_version}, sweep due {self.sweep_due_at}"


class MarketChange(models.Model):
    """One instrument whose market inputs a database transaction changed: written by triggers
    on the instrument, price and implied-vol tables (PostgreSQL; migration 0022), never by the
    application, so no writer (a service, the admin, a bulk load, raw SQL) can forget it.

    ``txid`` is the writing transaction's id: what a worker's kept market data
    (``margin.market_cache``) compares with the transaction snapshot it read in, so it reads
    again exactly the instruments changed by transactions it could not see, whatever order
    they committed in (row ids and times are assigned before the commit and say nothing of
    it). Old rows are pruned with the end-of-day run (``prune_market_changes``)."""

    class Kind(models.TextChoices):
        INSTRUMENT = "instrument", "Instrument"
        PRICE = "price", "Price"
        VOL = "vol", "Implied volatility"

    txid = models.BigIntegerField(db_index=True)
    instrument_id = models.BigIntegerField()  # no foreign key: a deleted instrument is logged too
    kind = models.CharField(max_length=10, choices=Kind.choices)
    logged_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.kind} of instrument {self.instrument_id} by transaction {self.txid}"


class MarketChangeHorizon(models.Model):
    """One row: the newest transaction id whose ``MarketChange`` rows were pruned. Kept market
    data read in a snapshot that could not see that transaction may have missed a change, so
    it is read again whole."""

    pruned_through = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"market changes pruned through transaction {self.pruned_through}"


class EndOfDayRun(TenantModel):
    """A firm's end-of-day run for one session date: recorded when the run is started, so beat
    asking again (every few minutes after the close) starts it once per firm and date."""

    session = models.DateField(help_text="the trading day (or crypto day) the run closes")
    calendar = models.CharField(max_length=16, help_text="the exchange calendar, or CRYPTO")
    started_at = models.DateTimeField()
    accounts = models.PositiveIntegerField(default=0, help_text="accounts marked for it")

    class Meta(TenantModel.Meta):
        ordering = ["-session"]
        constraints = [models.UniqueConstraint(fields=["firm", "calendar", "session"],
                                               name="end_of_day_once_per_session")]

    def __str__(self) -> str:
        return f"end of day {self.calendar} {self.session:%Y-%m-%d}"


# Margin calls, their policy, restrictions and the 4220 record (margin.calls): defined in their
# own module, registered with this app by importing them here.
from .calls.models import (  # noqa: E402,F401
    CallExtension,
    CallNotice,
    CallPolicy,
    CallRecord,
    CallSatisfaction,
    MarginCall,
    Restriction,
)

# Executions (margin.executions): defined in their own module, registered here.
from .executions.models import Execution  # noqa: E402,F401

# The intraday record (margin.intraday): defined in its own module, registered here.
from .intraday.models import IntradayObservation  # noqa: E402,F401

# Liquidation plans (margin.liquidation): defined in their own module, registered here.
from .liquidation.models import LiquidationPlan  # noqa: E402,F401
