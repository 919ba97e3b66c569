"""FINRA's intraday margin standard (4210(a)(17)-(19), (d)(2); MARGIN_CALLS.md section 5).

What lives where:

- ``models``: ``IntradayObservation``, one append-only row per transaction of a monitored
  account: the intraday margin level (IML) before and after it, written in the transaction;
- ``levels``: the IML of a book (``intraday_margin_level``: now, or after proposed changes, as
  the pre-trade check asks), on the maintenance basis the engine's Reg T block computes;
- ``monitor``: the ``book_changed`` receiver writing the observations;
- ``deficits``: the day's intraday margin deficit from the observations (the worst-order rule);
- ``calls``: the end-of-day step: the intraday call opened, met by net IML increases, made
  overdue at the 5th business day (a practice of misses brings the 90-day block), lapsed after
  the 15th;
- ``regime``: which accounts are monitored, and the legacy-PDT accounts the desk migrates.

Scope (rule book section 5): margin accounts other than good-faith (cash) and portfolio-margin
accounts. A cash account pays in full and carries no maintenance margin to measure an IML
against; a PM account's intraday risk is its own requirement (4210(g)(1)(J)-(K)), not this
standard. So only Reg T accounts under the ``intraday`` regime are monitored, whatever the flag
of a cash or PM account says.
"""
