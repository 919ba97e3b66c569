"""Signals margin sends upward (eligibility reads new snapshots: DESIGN.md, path 4)."""

from django.dispatch import Signal

snapshots_written = Signal()  # kwargs: firm, account_ids, end_of_day (those valued for a close)
