"""Signals margin sends upward (eligibility reads new snapshots: DESIGN.md, path 4)."""

from django.dispatch import Signal

#: kwargs: firm, account_ids, end_of_day (those valued for a close), collateral (account id ->
#: margin.calls.deficits.Collateral, the valuations with a health factor)
snapshots_written = Signal()
