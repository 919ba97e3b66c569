"""Trade capture: executions booked into the book, busts and corrections, option expiry and
assignment at the end of day (issue 13).

- ``models``: ``Execution``, append-only: a bust or a correction is a new row linked to the
  one it reverses, never an edit;
- ``services``: ``book_execution`` (idempotent by the client's execution id, checked by the
  pre-trade check, ``margin.pretrade``, unless a risk officer or firm admin overrides it with
  a reason), ``bust_execution``, ``correct_execution``; positions and cash change only through
  ``accounts.services`` (which send ``book_changed``: the account is marked dirty in the same
  transaction);
- ``expiry``: expired options removed at zero, in-the-money equity options exercised or
  assigned into stock at the end of day;
- ``api``: ``/api/v1/executions`` (one or a batch, all or nothing).
"""
