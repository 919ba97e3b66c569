"""Margin calls, their policy, restrictions and the daily margin record (FINRA 4220).

The rule book is ``../shared/spec/MARGIN_CALLS.md``. What lives where:

- ``models``: ``CallPolicy`` (a firm's versioned call policy, every row with its source tag and
  citation), ``MarginCall`` and its children (``CallSatisfaction``, ``CallExtension``,
  ``CallNotice``), ``CallRecord`` (the append-only 4220 record), ``Restriction``;
- ``policy``: the platform default (the rule book's values), proposing and approving a firm's
  version through ``brokerage.approvals`` (kind ``call_policy``);
- ``services``: every transition of a call (the rule book's state machine, section 10), each in
  one transaction with its audit event, its 4220 row and its notice;
- ``deficits``: what a valuation owes, per call kind (pure: no database);
- ``issuance``: the end-of-day run issuing and updating calls, the sweep's recovery and
  warnings, deposits linked as satisfactions;
- ``restrictions``: restrictions that follow unmet calls, and their two-person waiver;
- ``record``: the FINRA 4220 daily rows and their CSV.
"""
