"""Signals the book sends upward (margin marks accounts dirty, eligibility goes stale)."""

from django.dispatch import Signal

book_changed = Signal()  # kwargs: account_ids
client_profile_changed = Signal()  # kwargs: client
