"""Recompute margin when the book or a price moves (after the change commits)."""

from __future__ import annotations

import contextvars
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from django.db.models import Q
from django.dispatch import receiver

from accounts.models import Account, Position
from accounts.signals import book_changed

_suspended: contextvars.ContextVar[bool] = contextvars.ContextVar("recompute_suspended",
                                                                  default=False)


@contextmanager
def recompute_suspended() -> Iterator[None]:
    """Bulk loads (the demo seed) recompute once at the end instead of after every write."""
    token = _suspended.set(True)
    try:
        yield
    finally:
        _suspended.reset(token)


def recompute_is_suspended() -> bool:
    return _suspended.get()


@receiver(book_changed)
def schedule_recompute(sender, account_ids=None, instrument_ids=None, **kwargs) -> None:
    if _suspended.get():
        return
    from .tasks import recompute_accounts

    by_firm: dict[int, set[int]] = defaultdict(set)
    if account_ids:
        for pk, firm_id in Account.cross_firm.for_compliance(
                reason="route a recompute to the account's firm").filter(
                pk__in=account_ids).values_list("pk", "firm_id"):
            by_firm[firm_id].add(pk)
    if instrument_ids:
        holders = Position.cross_firm.for_compliance(
            reason="a price moved: find every account holding the instrument").filter(
            Q(instrument_id__in=instrument_ids)
            | Q(instrument__underlying_id__in=instrument_ids)
            | Q(instrument__token0_id__in=instrument_ids)
            | Q(instrument__token1_id__in=instrument_ids)).values_list("account_id", "firm_id")
        for pk, firm_id in holders:
            by_firm[firm_id].add(pk)
    for firm_id, ids in sorted(by_firm.items()):
        recompute_accounts.delay(firm_id, sorted(ids))
