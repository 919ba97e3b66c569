"""The desk's accounts section: the firm's accounts searched and listed (``listing``) and each
account's 360 view (``account``: the client's overview as the client sees it, then positions,
ledger, history, calls, applications, restrictions, the audit trail and a what-if).

Every page reads stored rows (the current margin row, snapshots, the ledger): nothing is valued
on load (DESIGN.md "The paths data takes", 5); only the what-if runs the engine, writing nothing.
"""

from __future__ import annotations

from django.urls import path

from . import account, listing

urlpatterns = [
    path("", listing.account_list, name="desk-accounts"),
    path("<str:number>/", account.overview, name="desk-account"),
    path("<str:number>/positions/", account.positions, name="desk-account-positions"),
    path("<str:number>/ledger/", account.ledger, name="desk-account-ledger"),
    path("<str:number>/history/", account.history, name="desk-account-history"),
    path("<str:number>/calls/", account.calls, name="desk-account-calls"),
    path("<str:number>/applications/", account.applications,
         name="desk-account-applications"),
    path("<str:number>/restrictions/", account.restrictions,
         name="desk-account-restrictions"),
    path("<str:number>/audit/", account.audit_trail, name="desk-account-audit"),
    path("<str:number>/what-if/", account.what_if, name="desk-account-what-if"),
]
