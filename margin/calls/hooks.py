"""What the sweep asks of calls when it decides whether a valuation is kept as history
(``margin.snapshots.history_reason``): would this valuation meet an open call?

Built once per chunk (two queries: the chunk's open calls, the firm's policy), then asked per
valuation without a query. A call opening shows as the excess changing sign (the requirement
kinds) and is issued at the close, whose run keeps every account as history anyway; an open
call's amount changes only at the close as well. What is left intraday is a call a recovery
would meet, which the sweep then cancels (``issuance.watch``): that valuation is the one the
cancellation rests on, so it is kept. Collateral (health-factor) calls are intraday by nature:
a valuation that would issue one, move its amount past the snapshot threshold or cancel it as
a recovery is kept too (``deficits.collateral_step``, the same decision the call run takes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db.models import Sum

from .deficits import Collateral, Facts, Thresholds, collateral_credit, collateral_step, deficits
from .models import CallSatisfaction, MarginCall

EQUITY_KINDS = frozenset({"maintenance", "pm_deficiency", "pm_minimum_equity", "house"})
COLLATERAL = "collateral"


def thresholds_of_moves() -> dict[str, Decimal]:
    """The snapshot threshold (a setting) an open collateral call's amount must move by."""
    return {"relative": Decimal(str(settings.MARGIN_SNAPSHOT_REQUIREMENT_MOVE)),
            "floor": Decimal(str(settings.MARGIN_SNAPSHOT_REQUIREMENT_FLOOR))}


def linked_to_collateral_calls(account_ids, *, closed_only: bool = True) -> dict[int, Decimal]:
    """Cash deposits linked to the accounts' earlier (closed) collateral calls: one query."""
    rows = CallSatisfaction.objects.filter(
        call__account_id__in=list(account_ids), call__kind=COLLATERAL,
        manner=CallSatisfaction.Manner.CASH)
    if closed_only:
        rows = rows.filter(call__status__in=MarginCall.CLOSED_STATES)
    return dict(rows.values("call__account_id").annotate(total=Sum("amount"))
                .values_list("call__account_id", "total"))


@dataclass
class ChunkCalls:
    open_kinds: dict[int, frozenset[str]]
    limits: Thresholds | None
    unlisted: frozenset[int] = frozenset()  # accounts whose client holds unlisted derivatives
    collateral_open: dict[int, Decimal] = field(default_factory=dict)  # account -> amount
    collateral_linked: dict[int, Decimal] = field(default_factory=dict)

    def would_meet(self, valuation) -> bool:
        """Would this valuation meet an open call, or move a collateral call (issue, amount,
        recovery)? Then the call rests on it: it is kept."""
        if self.limits is None:
            return False
        if self.would_move_collateral(valuation):
            return True
        kinds = self.open_kinds.get(valuation.account_id, frozenset()) & EQUITY_KINDS
        if not kinds:
            return False
        facts = Facts(valuation.margin_type, valuation.equity, valuation.requirement,
                      holds_unlisted_derivatives=valuation.account_id in self.unlisted)
        return bool(kinds - set(deficits(facts, self.limits)))

    def would_move_collateral(self, valuation) -> bool:
        account = valuation.account_id
        if valuation.health_factor is None and account not in self.collateral_open:
            return False
        facts = Collateral(valuation.health_factor,
                           getattr(valuation, "collateral_debt", None) or Decimal("0.00"),
                           valuation.equity, valuation.cash)
        credit = collateral_credit(self.collateral_linked.get(account, Decimal("0.00")),
                                   valuation.cash)
        return collateral_step(facts, self.limits, open_amount=self.collateral_open.get(account),
                               credit=credit, **thresholds_of_moves()) is not None


def chunk_calls(firm, account_ids: list[int],
                collateral: dict[int, Collateral] | None = None) -> ChunkCalls:
    """The chunk's open calls (one query) and, when any of its valuations has a health factor
    in the firm's call band, what earlier collateral calls of those accounts received (one)."""
    rows = MarginCall.objects.filter(account_id__in=account_ids,
                                     status__in=MarginCall.OPEN_STATES).values_list(
        "account_id", "kind", "account__client__holds_unlisted_derivatives", "amount")
    found: dict[int, set[str]] = {}
    unlisted = set()
    collateral_open: dict[int, Decimal] = {}
    for account_id, kind, holds_unlisted, amount in rows:
        found.setdefault(account_id, set()).add(kind)
        if holds_unlisted:
            unlisted.add(account_id)
        if kind == COLLATERAL:
            collateral_open[account_id] = amount
    if not found and not collateral:
        return ChunkCalls({}, None)
    from .deficits import in_call_band
    from .policy import active_policy

    limits = Thresholds.of(active_policy(firm))
    banded = sorted({a for a, c in (collateral or {}).items()
                     if in_call_band(c.health_factor, limits)} | set(collateral_open))
    return ChunkCalls({a: frozenset(k) for a, k in found.items()}, limits, frozenset(unlisted),
                      collateral_open, linked_to_collateral_calls(banded) if banded else {})
