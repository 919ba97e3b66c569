"""Eligibility reacting to the book (the lower app sends, this app listens; nothing imports up).

- `client_profile_changed(client=)`: applications under review whose client facts changed go
  stale.
- `book_changed(account_ids=)`: applications under review whose equity moved go stale. Price
  loads send `account_ids=None` (instrument ids instead): equity is judged again at approval,
  so a price tick alone changes nothing here.

The PM minimum-equity deficiency is a margin call kind (``margin.calls``): margin issues,
escalates and closes it; eligibility reads calls.

`client_profile_changed` is sent on commit. `book_changed` is sent inside the writer's
transaction (margin marks the accounts dirty in it, so a crash after the commit loses no mark);
this app's work on it is deferred to the commit, so it runs in its own transactions either way. The signal may come
from a task with no firm in scope; the firm is then taken from the rows it names (the one
explicit, reasoned cross-firm read) and each firm is handled inside its own scope.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.dispatch import receiver

from accounts.models import Account, Client
from accounts.signals import book_changed, client_profile_changed
from brokerage.models import Firm
from brokerage.scope import firm_scope

log = logging.getLogger(__name__)


@receiver(client_profile_changed, dispatch_uid="eligibility.client_profile_changed")
def on_client_profile_changed(sender, client: Client, **kwargs) -> None:
    from .services import detect_stale_for_client

    with firm_scope(client.firm):
        detect_stale_for_client(client=client)


@receiver(book_changed, dispatch_uid="eligibility.book_changed")
def on_book_changed(sender, account_ids=None, **kwargs) -> None:
    if not account_ids:
        return
    ids = list(account_ids)
    transaction.on_commit(lambda: judge_book_change(ids))


def judge_book_change(account_ids: list[int]) -> None:
    """Applications under review of the accounts whose book moved go stale."""
    from .services import detect_stale_for_accounts

    owners = Account.cross_firm.for_compliance(
        reason="route a book signal (account ids only) to the firm that owns each account",
    ).filter(pk__in=list(account_ids)).values_list("firm_id", "pk")
    by_firm: dict[int, list[int]] = {}
    for firm_id, account_id in owners:
        by_firm.setdefault(firm_id, []).append(account_id)
    for firm in Firm.objects.filter(pk__in=by_firm).order_by("pk"):
        ids = sorted(by_firm[firm.pk])
        with firm_scope(firm):
            detect_stale_for_accounts(account_ids=ids)
