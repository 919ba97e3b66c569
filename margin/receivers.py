"""Margin listening to the book: a change marks the accounts dirty (after it commits); a new
account gets its current-margin row."""

from __future__ import annotations

from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts.models import Account
from accounts.signals import book_changed

from .dirty import mark_accounts, mark_holders
from .dirty import sweeps_are_suspended as recompute_is_suspended
from .dirty import sweeps_suspended as recompute_suspended
from .models import AccountMargin

__all__ = ["recompute_is_suspended", "recompute_suspended"]


@receiver(book_changed, dispatch_uid="margin.book_changed")
def mark_dirty(sender, account_ids=None, instrument_ids=None, **kwargs) -> None:
    """Positions and ledger entries name their accounts (the signal is sent on commit)."""
    if account_ids:
        mark_accounts(account_ids)
    if instrument_ids:
        mark_holders(instrument_ids)


@receiver(post_save, sender=Account, dispatch_uid="margin.account_opened")
def open_current_margin(sender, instance: Account, created: bool, raw: bool = False,
                        **kwargs) -> None:
    """Every account has its one current-margin row from the start, so a mark (one UPDATE)
    never misses an account. Clean at version 0: nothing to value until its book moves."""
    if created and not raw:
        AccountMargin.objects.bulk_create(
            [AccountMargin(account=instance, firm_id=instance.firm_id)], ignore_conflicts=True)
