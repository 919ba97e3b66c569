"""Intraday monitoring: each transaction of a monitored account's book leaves one
``IntradayObservation``, written in the transaction that changes the book.

The book's writers (``accounts.services``: positions, the cash ledger, and whatever books
through them) send ``book_changed`` inside their transaction with ``changes``, what moved: a
position's quantity before and after, a ledger entry's kind, amount and effective time. The
level before the transaction is the book before it (what moved, reversed) valued at the same
prices as the book after it, so a price move between two transactions is never taken for
either of them. A writer that does not say what moved (``changes`` absent) is still observed:
the level before is then the last one observed, and the transaction counts as IML-reducing when
the level fell or is not known (a deficit is never missed for want of detail). ``changes=[]``
says nothing of the book moved (a margin-type or status change): no observation.

One database transaction is one transaction of the book (an execution's position and its cash
settlement, written together): the first write of it records the level before, each write
records the level after, and the row is completed in place until the transaction commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.dispatch import receiver
from django.utils import timezone

from accounts.models import Account, LedgerEntry
from accounts.services import cash_balances
from accounts.signals import book_changed
from brokerage.scope import firm_scope

from .. import business_days
from ..book import Holding, load_positions
from .levels import value_books
from .models import IntradayObservation
from .regime import monitored


@dataclass
class Pending:
    """One account's transaction so far (inside one database transaction)."""

    level_before: Decimal | None
    occurred_at: datetime | None = None
    traded: bool = False
    withdrew: bool = False
    net_deposits: Decimal = Decimal("0.00")
    changes: list[dict] = field(default_factory=list)


def transaction_token() -> str:
    """The current database transaction's token: the outermost atomic block the code opened
    (a test case's wrapping block is not a transaction of the book). A new block gets a new
    token; it lives on the block while it is open."""
    blocks = [b for b in connection.atomic_blocks if not getattr(b, "_from_testcase", False)]
    if not blocks:
        return uuid.uuid4().hex  # autocommit: every statement is its own transaction
    block = blocks[0]
    index = len(connection.atomic_blocks) - len(blocks)
    if not index and connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # the database's own id of the transaction
            cursor.execute("SELECT pg_current_xact_id()::text")
            return f"xact:{cursor.fetchone()[0]}"
    # a savepoint's id is unique on the connection; an outermost block (SQLite) has none, so
    # the token it carries is dropped when it commits (a block reused as a decorator starts
    # anew)
    savepoint = connection.savepoint_ids[index - 1] if index else None
    token = getattr(block, "_intraday_token", None)
    if token is None or token[0] != savepoint:
        token = (savepoint, uuid.uuid4().hex)
        block._intraday_token = token
        if savepoint is None:
            connection.on_commit(lambda: _forget(block), robust=True)
    return token[1]


def _forget(block) -> None:
    if hasattr(block, "_intraday_token"):
        del block._intraday_token


def _pending() -> tuple[str, dict[int, Pending]]:
    token = transaction_token()
    state = getattr(connection, "_intraday_pending", None)
    if state is None or state[0] != token:
        state = (token, {})
        connection._intraday_pending = state
    return state


@receiver(book_changed, dispatch_uid="margin.intraday.book_changed")
def observe(sender, account_ids=None, changes=None, **kwargs) -> None:
    if not account_ids or changes == []:
        return
    accounts = list(monitored(Account.cross_firm.for_compliance(
        reason="route a book signal (account ids only) to the monitored accounts' firms",
    ).filter(pk__in=list(account_ids))).select_related("firm").order_by("firm_id", "pk"))
    for firm_id in sorted({a.firm_id for a in accounts}):
        group = [a for a in accounts if a.firm_id == firm_id]
        with firm_scope(group[0].firm):
            record(group, changes)


def record(accounts: list[Account], changes: list[dict] | None) -> list[IntradayObservation]:
    """The observations of these accounts (one firm, in its scope) after a write of their
    book, in the writer's transaction."""
    token, pending = _pending()
    now = timezone.now()
    holdings = load_positions(accounts)
    cash = cash_balances(accounts)
    books: dict[object, tuple[list[Holding], Decimal]] = {}
    for account in accounts:
        books[("after", account.pk)] = (holdings.get(account.pk, []), cash[account.pk])
        mine = [c for c in changes or () if c.get("account_id") == account.pk]
        # cash alone moves equity, not the requirement (Reg T maintenance is in
        # net-liquidation terms): the level before is the level after less the cash, unvalued
        if (account.pk not in pending and changes is not None
                and any("instrument_id" in c for c in mine)):
            books[("before", account.pk)] = _reversed(account.pk, books[("after", account.pk)],
                                                      mine)
    levels = value_books(accounts[0].firm, books)
    rows = []
    for account in accounts:
        after = levels[("after", account.pk)]
        mine = [c for c in changes or () if c.get("account_id") == account.pk]
        state = pending.get(account.pk)
        if state is None:
            before = levels.get(("before", account.pk))
            if before is not None:
                level_before = before.iml
            elif changes is not None and after.iml is not None:
                level_before = after.iml - sum((Decimal(c["amount"]) for c in mine
                                                if "amount" in c), Decimal(0))
            else:
                level_before = _last_level(account)
            state = pending[account.pk] = Pending(level_before=level_before)
        _take(state, mine, changes is None)
        if after.iml is None:
            continue  # not valued (a missing price): the sweep flags the account
        level_before = state.level_before
        occurred = state.occurred_at or now
        rows.append(IntradayObservation(
            firm=account.firm, account=account, session=_session(account, occurred),
            transaction=token, occurred_at=occurred, equity=after.equity,
            maintenance=after.maintenance, level=after.iml, level_before=level_before,
            reducing=state.withdrew or level_before is None or after.iml < level_before,
            traded=state.traded, net_deposits=state.net_deposits,
            changes=state.changes, recorded_at=now))
    IntradayObservation.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["account", "transaction"],
        update_fields=["session", "occurred_at", "equity", "maintenance", "level",
                       "level_before", "reducing", "traded", "net_deposits", "changes",
                       "recorded_at"])
    return rows


def _reversed(account_id: int, book, changes: list[dict]):
    """The book before ``changes``: each position at its quantity before, the cash less what
    the entries added."""
    holdings, cash = book
    by_instrument = {h.instrument_id: h for h in holdings}
    for change in changes:
        if "instrument_id" in change:
            held = by_instrument.get(change["instrument_id"])
            instrument = held.instrument if held else _instrument(change["instrument_id"])
            by_instrument[instrument.pk] = Holding(
                account_id, instrument, Decimal(change["quantity_before"]),
                held.cost_basis if held else Decimal(0))
        elif "amount" in change:
            cash -= Decimal(change["amount"])
    return list(by_instrument.values()), cash


def _instrument(pk: int):
    from accounts.models import Instrument

    return Instrument.objects.select_related("underlying", "token0", "token1").get(pk=pk)


def _take(state: Pending, changes: list[dict], unknown: bool) -> None:
    if unknown:
        state.traded = True  # a writer that did not say: taken as a trade
        state.changes.append({"unknown": True})
    for change in changes:
        if "instrument_id" in change:
            state.traded = True
            state.changes.append({"instrument_id": change["instrument_id"],
                                  "quantity_before": str(change["quantity_before"]),
                                  "quantity_after": str(change["quantity_after"])})
        elif "amount" in change:
            amount = Decimal(change["amount"])
            kind = change.get("ledger_kind", "")
            if kind in (LedgerEntry.Kind.DEPOSIT, LedgerEntry.Kind.WITHDRAWAL):
                state.net_deposits += amount
            if kind == LedgerEntry.Kind.WITHDRAWAL:
                state.withdrew = True
            at = change.get("effective_at")
            if at is not None and (state.occurred_at is None or at > state.occurred_at):
                state.occurred_at = at
            state.changes.append({"ledger_kind": kind, "amount": str(amount),
                                  "effective_at": at.isoformat() if at else None})


def _last_level(account: Account) -> Decimal | None:
    return (IntradayObservation.objects.filter(account=account).order_by("-occurred_at", "-pk")
            .values_list("level", flat=True).first())


def _session(account: Account, at: datetime):
    """The business day a transaction belongs to: its exchange date, or the next session when
    it fell on a weekend or holiday."""
    calendar = account.firm.exchange_calendar or business_days.DEFAULT_CALENDAR
    day = timezone.localdate(at, timezone=business_days.exchange(calendar).tz)
    return business_days.add_business_days(day, 0, calendar)
