"""An account's equity for eligibility: the engine's latest snapshot, else the book at market.

The margin engine writes `margin.models.MarginSnapshot` rows (one per account and market
version) with the account's `equity`. Until it has run for an account (or before the model
exists at all) equity is cash plus every position at its latest price:
cash_balance + sum(quantity x multiplier x latest price).
The engine runs asynchronously after a book change (a Celery sweep), so a snapshot older than
the account's latest ledger entry or position change describes a book that no longer exists:
until the engine catches up, the book at current prices is the equity (a deposit cures a
deficiency, and makes an application under review stale, the moment it is booked).
A position with no price at all cannot be valued; the reading says which symbols, and the
evaluation refuses to judge equity on it (see evaluation.equity rules).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.apps import apps

from accounts.models import Account, LedgerEntry, Position
from accounts.services import cash_balance
from margin.market_data import latest_prices

CENT = Decimal("0.01")

SOURCE_SNAPSHOT = "margin_snapshot"
SOURCE_BOOK = "book"
SOURCE_BOOK_INCOMPLETE = "book_incomplete"


@dataclass(frozen=True)
class EquityReading:
    amount: Decimal
    source: str
    snapshot_id: int | None = None
    unpriced: tuple[str, ...] = field(default_factory=tuple)

    @property
    def complete(self) -> bool:
        return self.source != SOURCE_BOOK_INCOMPLETE

    def as_json(self) -> dict:
        return {"amount": str(self.amount), "source": self.source,
                "snapshot_id": self.snapshot_id, "unpriced": list(self.unpriced)}


def _snapshot_model():
    """margin.MarginSnapshot once the lead's model lands; None until then."""
    try:
        return apps.get_model("margin", "MarginSnapshot")
    except LookupError:
        return None


def _latest_snapshot(account: Account):
    model = _snapshot_model()
    if model is None:
        return None
    rows = model._default_manager.filter(account=account)
    ordering = model._meta.get_latest_by
    if ordering:
        ordering = [ordering] if isinstance(ordering, str) else list(ordering)
        return rows.order_by(*(f"-{o}" if not o.startswith("-") else o[1:] for o in ordering),
                             "-pk").first()
    return rows.order_by("-pk").first()


def book_equity(account: Account) -> EquityReading:
    cash = cash_balance(account)
    positions = list(Position.objects.filter(account=account).select_related("instrument"))
    prices = latest_prices(p.instrument_id for p in positions)
    market_value = Decimal(0)
    unpriced: list[str] = []
    for position in positions:
        price = prices.get(position.instrument_id)
        if price is None:
            unpriced.append(position.instrument.symbol)
            continue
        market_value += position.quantity * position.instrument.multiplier * price.price
    amount = (cash + market_value).quantize(CENT)
    if unpriced:
        return EquityReading(amount, SOURCE_BOOK_INCOMPLETE, unpriced=tuple(sorted(unpriced)))
    return EquityReading(amount, SOURCE_BOOK)


def _book_changed_since(account: Account, snapshot) -> bool:
    field_name = snapshot._meta.get_latest_by if hasattr(snapshot, "_meta") else None
    moment = getattr(snapshot, field_name, None) if isinstance(field_name, str) else None
    if moment is None:
        return False
    return (LedgerEntry.objects.filter(account=account, created_at__gt=moment).exists()
            or Position.objects.filter(account=account, updated_at__gt=moment).exists())


def read_equity(account: Account) -> EquityReading:
    snapshot = _latest_snapshot(account)
    if (snapshot is not None and getattr(snapshot, "equity", None) is not None
            and not _book_changed_since(account, snapshot)):
        return EquityReading(Decimal(snapshot.equity).quantize(CENT), SOURCE_SNAPSHOT,
                             snapshot_id=snapshot.pk)
    return book_equity(account)


def account_equity(account: Account) -> tuple[Decimal, str]:
    """(equity, source): source is 'margin_snapshot', 'book' or 'book_incomplete'.

    The latest `margin.MarginSnapshot` equity when the model exists, has a row for the account
    and the book has not changed since; otherwise cash plus positions at current prices."""
    reading = read_equity(account)
    return reading.amount, reading.source
