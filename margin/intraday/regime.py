"""Which accounts the intraday standard monitors, and the legacy ones the desk migrates.

Firms may keep the old pattern-day-trader treatment by account until 20 October 2027 (RN
26-10; MARGIN_CALLS.md section 5): those accounts get the end-of-day calls only. The desk lists
them (``legacy_accounts``; the API's ``GET /api/v1/accounts/?regime=legacy_pdt``) and moves
each with ``accounts.services.set_regime`` (the firm's admin or risk officer, audited).
"""

from __future__ import annotations

from datetime import date

from django.db.models import QuerySet

from accounts.models import Account

#: the end of the phase-in: every margin account is under the intraday standard by then
PHASE_IN_ENDS = date(2027, 10, 20)


def monitored(accounts: QuerySet[Account]) -> QuerySet[Account]:
    """The accounts the intraday standard applies to: Reg T margin accounts under the
    ``intraday`` regime, not closed. Cash (good-faith) and portfolio-margin accounts are out
    of its scope whatever their flag (section 5: "margin accounts other than good-faith and
    PM accounts")."""
    return accounts.filter(regime=Account.Regime.INTRADAY,
                           margin_type=Account.MarginType.REG_T).exclude(
        status=Account.Status.CLOSED)


def legacy_accounts() -> QuerySet[Account]:
    """The firm in scope's open accounts still under the legacy PDT treatment, by number, to
    migrate before ``PHASE_IN_ENDS`` (fails closed without a firm in scope)."""
    return (Account.objects.filter(regime=Account.Regime.LEGACY_PDT)
            .exclude(status=Account.Status.CLOSED).select_related("client")
            .order_by("number"))
