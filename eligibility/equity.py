"""An account's equity for eligibility: margin's definition, never a second one.

Equity is what the margin engine says it is (``margin.equity``): cash plus the net liquidation
value of the positions, where a future counts 0 (settled daily into cash), a perpetual its
unrealised P&L, an option its mark x multiplier and an LP position its value. The account's
current margin (`margin.models.AccountMargin`, updated by every sweep) carries the latest
valuation, and a history `MarginSnapshot` the ones kept for the record; the fresher of the two
is read. The engine runs asynchronously after a book change (a Celery sweep), so a valuation
older than the account's latest ledger entry or position change describes a book that no
longer exists: until the engine catches up, margin values the book
now by the same definition without writing (``margin.equity.value_book``), so a deposit cures
a deficiency, and makes an application under review stale, the moment it is booked.
A book margin cannot value (a position without a price, a rejected oracle round) gives no
equity: the reading says which symbols, and the evaluation refuses to judge equity on it (see
evaluation.equity rules).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db.models import F

from accounts.models import Account, LedgerEntry, Position
from margin.equity import value_book
from margin.models import AccountMargin
from margin.snapshots import latest_snapshot

CENT = Decimal("0.01")

SOURCE_CURRENT = "current_margin"
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


def book_equity(account: Account) -> EquityReading:
    """The book valued now by margin (the snapshot's definition), without writing."""
    value = value_book(account)
    if value.equity is None:
        # Nothing to judge equity on: cash alone is shown, the unvalued symbols named.
        return EquityReading(value.cash.quantize(CENT), SOURCE_BOOK_INCOMPLETE,
                             unpriced=value.unvalued)
    return EquityReading(value.equity.quantize(CENT), SOURCE_BOOK)


def _book_changed_since(account: Account, moment: datetime) -> bool:
    return (LedgerEntry.objects.filter(account=account, created_at__gt=moment).exists()
            or Position.objects.filter(account=account, updated_at__gt=moment).exists())


def read_equity(account: Account) -> EquityReading:
    """The freshest valuation of the book as it stands: the current margin row (every sweep
    writes it, history snapshot or not) or the latest snapshot, while nothing in the book has
    moved since; else the book valued now."""
    current = AccountMargin.objects.filter(account=account, flag="", equity__isnull=False,
                                           dirty_version__lte=F("computed_version")).first()
    snapshot = latest_snapshot(account)
    if current is not None and (snapshot is None or current.computed_at >= snapshot.computed_at):
        if not _book_changed_since(account, current.computed_at):
            return EquityReading(current.equity.quantize(CENT), SOURCE_CURRENT,
                                 snapshot_id=current.snapshot_id)
    elif snapshot is not None and not _book_changed_since(account, snapshot.computed_at):
        return EquityReading(snapshot.equity.quantize(CENT), SOURCE_SNAPSHOT,
                             snapshot_id=snapshot.pk)
    return book_equity(account)
