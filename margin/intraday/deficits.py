"""The day's intraday margin deficit from its observed transactions (pure: no database).

FINRA 4210(a)(19) as quoted (MARGIN_CALLS.md section 5): for each day with one or more
IML-reducing transactions, not less than the absolute value of the largest negative IML
following an IML-reducing transaction; where the order of the transactions cannot be shown,
the order that yields the highest deficit is assumed.

The order is shown by the transactions' times. Transactions sharing one time (a batch stamped
alike, an import without times, which the importer stamps with one time) are unordered among
themselves: each is measured by its own effect on the IML (level after less level before, at
the prices of its time), and the worst order runs every IML-reducing one first, so the lowest
level the group can reach is the level before it plus every negative effect. Effects add
exactly where each transaction moves cash and positions the engine margins one by one (stock,
single options); where they pair into strategies the group's recorded order is measured too and
the worse of the two taken.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import groupby

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class Step:
    """One observed transaction: when, the IML after it and before it (None: not known),
    and whether it reduced the IML (or withdrew cash)."""

    occurred_at: datetime
    level: Decimal
    level_before: Decimal | None
    reducing: bool

    @property
    def effect(self) -> Decimal | None:
        return None if self.level_before is None else self.level - self.level_before


def day_deficit(steps: Sequence[Step]) -> Decimal:
    """The day's deficit (zero when no IML-reducing transaction left a negative IML), from its
    transactions in the order they were recorded."""
    worst = ZERO
    ordered = sorted(steps, key=lambda s: s.occurred_at)  # stable: recorded order within a time
    for _, grouped in groupby(ordered, key=lambda s: s.occurred_at):
        group = list(grouped)
        for step in group:
            if step.reducing:
                worst = max(worst, -step.level)
        if len(group) > 1 and any(s.reducing for s in group):
            worst = max(worst, -worst_order_low(group))
    return worst


def worst_order_low(group: Sequence[Step]) -> Decimal:
    """The lowest IML an unordered group can reach: its level before (the first recorded's)
    with every reducing transaction applied first. A group whose level before is not known
    is measured in its recorded order only."""
    start = group[0].level_before
    if start is None:
        return min(s.level for s in group)
    return start + sum((s.effect for s in group
                        if s.effect is not None and s.effect < 0), ZERO)


def net_increase(effects: Iterable[Decimal]) -> Decimal:
    """What a run of transactions added to the IML, net (deposits, liquidations and other
    increases, less withdrawals and purchases)."""
    return sum(effects, ZERO)
