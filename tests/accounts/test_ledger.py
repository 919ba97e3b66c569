"""The cash ledger: balances derive from entries; entries are never updated or deleted."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.utils import timezone

from accounts import services as book
from accounts.models import LedgerEntry
from brokerage import audit

pytestmark = pytest.mark.django_db


def test_balance_is_the_sum_of_entries_and_respects_as_of(world, in_firm_a):
    account, desk = world.a.account, world.a.users["margin_desk"]
    earlier = timezone.now() - timedelta(days=2)
    book.post_ledger_entry(account=account, kind="deposit", amount=Decimal("150000"),
                           actor=desk, effective_at=earlier)
    book.post_ledger_entry(account=account, kind="withdrawal", amount=Decimal("-20000.50"),
                           actor=desk)
    book.post_ledger_entry(account=account, kind="fee", amount=Decimal("-12.25"), actor=desk)
    assert book.cash_balance(account) == Decimal("129987.25")
    assert book.cash_balance(account, as_of=earlier + timedelta(hours=1)) == Decimal("150000")
    assert audit.events_for(world.firm_a).filter(event_type="ledger.posted").count() == 3


def test_a_correction_is_a_new_entry(world, in_firm_a):
    account, desk = world.a.account, world.a.users["margin_desk"]
    wrong = book.post_ledger_entry(account=account, kind="deposit", amount=Decimal("1000"),
                                   actor=desk)
    book.post_ledger_entry(account=account, kind="correction", amount=Decimal("-900"),
                           actor=desk, corrects=wrong, memo="keyed 1,000 for 100")
    assert book.cash_balance(account) == Decimal("100")
    assert LedgerEntry.objects.filter(account=account).count() == 2


def test_update_and_delete_are_refused_by_model_queryset_and_database(world, in_firm_a):
    entry = book.post_ledger_entry(account=world.a.account, kind="deposit",
                                   amount=Decimal("500"), actor=world.a.users["margin_desk"])
    entry.amount = Decimal("5000")
    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError):
        entry.delete()
    with pytest.raises(PermissionError):
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=Decimal("1"))
    with pytest.raises(PermissionError):
        LedgerEntry.objects.filter(pk=entry.pk).delete()
    for sql in ("UPDATE accounts_ledgerentry SET amount = 1 WHERE id = %s",
                "DELETE FROM accounts_ledgerentry WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, [entry.pk])
    assert book.cash_balance(world.a.account) == Decimal("500")


@pytest.mark.parametrize("kind,amount", [("deposit", "-5"), ("withdrawal", "5"),
                                         ("deposit", "NaN"), ("deposit", "Infinity")])
def test_bad_entries_are_refused_and_nothing_is_written(world, in_firm_a, kind, amount):
    with pytest.raises(book.BookError):
        book.post_ledger_entry(account=world.a.account, kind=kind, amount=Decimal(amount),
                               actor=world.a.users["margin_desk"])
    assert not LedgerEntry.objects.exists()
