"""What the sweep asks of calls when it decides whether a valuation is kept as history
(``margin.snapshots.history_reason``): would this valuation meet an open call?

Built once per chunk (two queries: the chunk's open calls, the firm's policy), then asked per
valuation without a query. A call opening shows as the excess changing sign (the requirement
kinds) and is issued at the close, whose run keeps every account as history anyway; an open
call's amount changes only at the close as well. What is left intraday is a call a recovery
would meet, which the sweep then cancels (``issuance.watch``): that valuation is the one the
cancellation rests on, so it is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from .deficits import Facts, Thresholds, deficits
from .models import MarginCall

EQUITY_KINDS = frozenset({"maintenance", "pm_deficiency", "pm_minimum_equity", "house"})


@dataclass(frozen=True)
class ChunkCalls:
    open_kinds: dict[int, frozenset[str]]
    limits: Thresholds | None
    unlisted: frozenset[int] = frozenset()  # accounts whose client holds unlisted derivatives

    def would_meet(self, valuation) -> bool:
        kinds = self.open_kinds.get(valuation.account_id, frozenset()) & EQUITY_KINDS
        if not kinds or self.limits is None:
            return False
        facts = Facts(valuation.margin_type, valuation.equity, valuation.requirement,
                      holds_unlisted_derivatives=valuation.account_id in self.unlisted)
        return bool(kinds - set(deficits(facts, self.limits)))


def chunk_calls(firm, account_ids: list[int]) -> ChunkCalls:
    rows = MarginCall.objects.filter(account_id__in=account_ids,
                                     status__in=MarginCall.OPEN_STATES).values_list(
        "account_id", "kind", "account__client__holds_unlisted_derivatives")
    found: dict[int, set[str]] = {}
    unlisted = set()
    for account_id, kind, holds_unlisted in rows:
        found.setdefault(account_id, set()).add(kind)
        if holds_unlisted:
            unlisted.add(account_id)
    if not found:
        return ChunkCalls({}, None)
    from .policy import active_policy

    return ChunkCalls({a: frozenset(k) for a, k in found.items()},
                      Thresholds.of(active_policy(firm)), frozenset(unlisted))
