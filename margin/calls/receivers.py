"""Calls listening to the sweep and the book (per chunk, never per account).

- ``snapshots_written(firm, account_ids, end_of_day)``: the accounts valued for a close are
  judged as of that session (``issuance.close_of_day``); the others only for a recovery
  (``issuance.watch``); ``collateral`` (the valuations with a health factor) issues, updates
  and recovers collateral calls in either.
- ``book_changed(account_ids)``: deposits booked on accounts with open calls are linked to
  them as cash satisfactions (on commit, in its own transactions).
"""

from __future__ import annotations

from django.db import transaction
from django.dispatch import receiver

from accounts.models import Account
from accounts.signals import book_changed
from brokerage.models import Firm
from brokerage.scope import firm_scope

from ..signals import snapshots_written
from .models import MarginCall


@receiver(snapshots_written, dispatch_uid="margin.calls.snapshots_written")
def on_snapshots_written(sender, firm: Firm, account_ids: list[int], end_of_day=(),
                         collateral=None, **kwargs) -> None:
    from .issuance import close_of_day, session_of, watch

    closing = sorted(set(end_of_day) & set(account_ids))
    if closing:
        session = session_of(firm)
        if session is not None:
            close_of_day(firm=firm, session=session, account_ids=closing,
                         collateral={a: c for a, c in (collateral or {}).items()
                                     if a in closing})
    between = sorted(set(account_ids) - set(closing))
    if between:
        watch(firm=firm, account_ids=between,
              collateral={a: c for a, c in (collateral or {}).items() if a in between})


@receiver(book_changed, dispatch_uid="margin.calls.book_changed")
def on_book_changed(sender, account_ids=None, **kwargs) -> None:
    """Sent inside the writer's transaction (the accounts' marks go with it); linking runs
    once that commits, in its own transactions."""
    if not account_ids:
        return
    ids = list(account_ids)
    transaction.on_commit(lambda: link_deposits_of(ids))


def link_deposits_of(account_ids: list[int]) -> None:
    from .services import link_deposits

    calls = MarginCall.cross_firm.for_compliance(
        reason="route a book signal (account ids only) to the firm owning each open call",
    ).filter(account_id__in=account_ids, status__in=MarginCall.OPEN_STATES)
    owners = sorted(set(calls.values_list("firm_id", "account_id")))
    for firm_id, account_id in owners:
        firm = Firm.objects.get(pk=firm_id)
        with firm_scope(firm):
            link_deposits(account=Account.objects.get(pk=account_id))
