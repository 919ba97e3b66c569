"""Every transition of a margin call (MARGIN_CALLS.md section 10), one transaction each: the
call row locked, the guard checked, the move made, its audit event, its 4220 row and its notice
written together. Bad input is a ``DomainError`` naming the problem, raised before anything is
written.

```
issued --partial--> partially_met --remainder--> met
  |  \\--extension granted before due--> extended --(new due)--> partially_met / met
  |--deficiency gone without the customer (not Reg T)--> cancelled(market_recovery, ...)
  \\--due passes unmet--> overdue --> liquidation_pending --> liquidated --> met (by liquidation)
                                                                   \\--shortfall--> overdue
```
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Account, LedgerEntry
from brokerage import audit
from brokerage.errors import IllegalTransition, InvalidInput, NotFound, NotPermitted
from brokerage.roles import STAFF_ROLES
from brokerage.scope import lock_in_firm
from brokerage.tenancy import firm_of, role_of

from .. import business_days
from . import policy as call_policy
from .models import CallPolicy, CallRecord, CallSatisfaction, MarginCall
from .notices import notify

CENT = Decimal("0.01")
S = MarginCall.Status
K = MarginCall.Kind
R = MarginCall.CancelReason

#: statuses a satisfaction may arrive in
PAYABLE = (S.ISSUED, S.PARTIALLY_MET, S.EXTENDED, S.OVERDUE, S.LIQUIDATION_PENDING,
           S.LIQUIDATED)
#: statuses in which the due date is still ahead (an extension, a cancellation by recovery)
RUNNING = (S.ISSUED, S.PARTIALLY_MET, S.EXTENDED)
#: the kinds the sweep's end-of-day run issues (and whose amount it updates)
END_OF_DAY_KINDS = (K.REG_T, K.MAINTENANCE, K.PM_DEFICIENCY, K.PM_MINIMUM_EQUITY, K.HOUSE)


class CallError(InvalidInput):
    """A call step refused for its input."""


def money(value: Any, field: str = "amount") -> Decimal:
    try:
        number = Decimal(str(value))
    except (ArithmeticError, ValueError, TypeError):
        raise CallError(f"{value!r} is not an amount", field=field) from None
    if not number.is_finite():
        raise CallError(f"{value!r} is not a finite amount", field=field)
    return number.quantize(CENT)


def require_staff(actor, firm, doing: str) -> None:
    if actor is None:
        return  # the system (the end-of-day run, the sweep)
    if firm_of(actor) != firm or role_of(actor) not in STAFF_ROLES:
        raise NotPermitted(f"only the firm's staff may {doing}")


def lock_call(call: MarginCall) -> MarginCall:
    return lock_in_firm(MarginCall, call.pk, missing=NotFound("no such margin call in your firm"))


def _describe(call: MarginCall) -> dict[str, Any]:
    return {"account": call.account.number, "kind": call.kind, "status": call.status,
            "amount": call.amount, "amount_due": call.amount_due, "as_of": call.as_of,
            "due_date": call.due_date, "rule": call.rule, "policy_version": call.policy.version}


def _write(call: MarginCall, *, event: str, actor, day: date, before: dict | None = None,
           manner: str = "", received: Decimal | None = None, **extra: Any) -> None:
    """The audit event and the 4220 row of one move (inside its transaction)."""
    call.save()
    audit.record(firm=call.firm, actor=actor, event_type=f"margin_call.{event}", obj=call,
                 before=before, after={**_describe(call), **extra})
    CallRecord.objects.create(firm=call.firm, call=call, account_id=call.account_id, day=day,
                              event=event, amount_required=call.amount,
                              amount_due=call.amount_due, status=call.status, manner=manner,
                              amount_received=received, recorded_at=timezone.now())


def due_date_for(*, kind: str, as_of: date, policy: CallPolicy, calendar: str) -> date:
    """T + the kind's due period in business days on the exchange calendar (rule book 0)."""
    days = policy.value(call_policy.DUE_ROW[kind])
    return business_days.add_business_days(as_of, days, calendar)


# Issue and update ------------------------------------------------------------------------------

def issue_call(*, account: Account, kind: str, amount: Decimal, as_of: date, equity: Decimal,
               requirement: Decimal, policy: CallPolicy, snapshot=None,
               trade_date: date | None = None, actor=None, now: datetime | None = None,
               detail: str = "", health_factor: Decimal | None = None) -> MarginCall:
    """Open a call (inside the caller's transaction, which holds the account's lock)."""
    if kind not in K.values:
        raise CallError(f"unknown call kind {kind!r}", field="kind")
    amount = money(amount)
    if amount <= 0:
        raise CallError("a call is for a positive amount", field="amount")
    now = now or timezone.now()
    calendar = account.firm.exchange_calendar or business_days.DEFAULT_CALENDAR
    rule, source = call_policy.due_rule(policy, kind)
    due_at = None
    if kind == K.COLLATERAL:
        due_at = now + timedelta(hours=policy.value("collateral_due_hours"))
        due = due_at.date()
    else:
        due = due_date_for(kind=kind, as_of=trade_date or as_of, policy=policy,
                           calendar=calendar)
    with transaction.atomic():
        call = MarginCall(firm=account.firm, account=account, kind=kind, status=S.ISSUED,
                          as_of=as_of, trade_date=trade_date if kind == K.REG_T else None,
                          due_date=due, due_at=due_at, amount=amount, amount_due=amount,
                          equity=money(equity), requirement=money(requirement), rule=rule,
                          rule_source=source, policy=policy, snapshot=snapshot,
                          calendar=calendar, issued_at=now, last_evaluated_on=as_of,
                          health_factor=health_factor)
        if kind == K.PM_MINIMUM_EQUITY:
            for field, row in (("notice_due_on", "pm_minimum_equity_notice_day"),
                               ("restriction_due_on", "pm_minimum_equity_restriction_day"),
                               ("downgrade_due_on", "pm_minimum_equity_downgrade_day")):
                setattr(call, field, business_days.add_business_days(
                    as_of, policy.value(row), calendar))
        _write(call, event="issued", actor=actor, day=as_of, equity=call.equity,
               requirement=call.requirement, snapshot=snapshot.pk if snapshot else None,
               rule_source=source)
        if kind != K.PM_MINIMUM_EQUITY:  # its notice goes out on the policy's notice day
            notify(call, "issued", detail=detail)
    return call


def update_amount(*, call: MarginCall, amount: Decimal, equity: Decimal, requirement: Decimal,
                  as_of: date, snapshot=None, health_factor: Decimal | None = None) -> bool:
    """The end-of-day run's new amount for a call that is not Reg T (a Reg T call's amount is
    fixed when issued, rule book section 1), or the sweep's for a collateral call (intraday by
    nature). What was already received still counts."""
    if call.kind == K.REG_T:
        raise IllegalTransition("a Reg T call's amount is fixed when it is issued", field="kind")
    amount = money(amount)
    with transaction.atomic():
        call = lock_call(call)
        call.equity, call.requirement = money(equity), money(requirement)
        call.last_evaluated_on = as_of
        if snapshot is not None:
            call.snapshot = snapshot
        if health_factor is not None:
            call.health_factor = health_factor
        if amount == call.amount or call.status not in PAYABLE:
            call.save()
            return False
        before = {"amount": call.amount, "amount_due": call.amount_due, "status": call.status}
        received = call.amount - call.amount_due
        call.amount = amount
        call.amount_due = max(amount - received, Decimal("0.00"))
        if call.amount_due == 0:
            # what was received already covers the smaller amount: met
            call.status, call.closed_on = S.MET, as_of
        _write(call, event="amount_changed", actor=None, day=as_of, before=before)
        notify(call, "met" if call.status == S.MET else "changed", key=as_of.isoformat())
        if call.status == S.MET:
            _after_met(call, as_of)
    return True


# Satisfactions ---------------------------------------------------------------------------------

def record_satisfaction(*, call: MarginCall, manner: str, amount: Any, actor,
                        received_on: date | None = None, note: str = "",
                        ledger_entry: LedgerEntry | None = None) -> MarginCall:
    """Record what met (part of) the call; the amount due falls by it (at most to zero).
    Staff record securities deposits and other manners; cash comes from the ledger
    (``link_deposits``), liquidations from ``record_liquidation``."""
    require_staff(actor, call.firm, "record a satisfaction")
    if manner not in CallSatisfaction.Manner.values:
        raise CallError(f"unknown manner {manner!r}; one of "
                        f"{', '.join(CallSatisfaction.Manner.values)}", field="manner")
    if manner == CallSatisfaction.Manner.CASH and ledger_entry is None and actor is not None:
        raise CallError("a cash satisfaction is a deposit booked in the cash ledger: it is "
                        "linked from there, not entered by hand", field="manner")
    amount = money(amount)
    if amount <= 0:
        raise CallError("a satisfaction is a positive amount", field="amount")
    with transaction.atomic():
        call = lock_call(call)
        if call.status not in PAYABLE:
            raise IllegalTransition(f"call #{call.pk} is {call.status}: nothing is due",
                                    field="status")
        day = received_on or business_days.today(call.calendar)
        used = min(amount, call.amount_due)
        CallSatisfaction.objects.create(firm=call.firm, call=call, manner=manner, amount=used,
                                        received_on=day, ledger_entry=ledger_entry,
                                        note=note[:300], recorded_by=_user(actor),
                                        recorded_at=timezone.now())
        before = {"status": call.status, "amount_due": call.amount_due}
        call.amount_due -= used
        if call.amount_due <= 0:
            call.status, call.closed_on = S.MET, day
            if manner == CallSatisfaction.Manner.LIQUIDATION:
                call.met_by_liquidation = True
        elif call.status in (S.ISSUED, S.EXTENDED):
            call.status = S.PARTIALLY_MET
        elif call.status == S.LIQUIDATED:
            call.status = S.OVERDUE  # a shortfall remains after the liquidation
        _write(call, event="satisfied", actor=actor, day=day, before=before, manner=manner,
               received=used, ledger_entry=ledger_entry.pk if ledger_entry else None)
        if call.status == S.MET:
            notify(call, "met")
            _after_met(call, day)
    return call


def _user(actor):
    return actor if actor is not None and actor.pk else None


def _after_met(call: MarginCall, day: date) -> None:
    from .restrictions import lift_for_call

    lift_for_call(call, day=day, reason=f"call #{call.pk} met")


def link_deposits(*, account: Account, today: date | None = None) -> list[CallSatisfaction]:
    """Deposits booked in the cash ledger after a call was issued (the valuation it rests on
    did not see them) become its cash satisfactions, each deposit linked to a call once.
    Equity-based calls each see the whole deposit (it raises equity for all of them); a Reg T
    call's share is not reused for another Reg T call (220.4(c)(4) [R])."""
    linked: list[CallSatisfaction] = []
    # An intraday deficit is met by net increases in the intraday margin level, deposits among
    # them net of withdrawals (margin.intraday.calls), not by each deposit linked here.
    calls = list(MarginCall.objects.filter(account=account, status__in=PAYABLE)
                 .exclude(kind=K.INTRADAY).order_by("due_date", "pk"))
    if not calls:
        return linked
    deposits = list(LedgerEntry.objects.filter(
        account=account, kind=LedgerEntry.Kind.DEPOSIT,
        created_at__gt=min(c.issued_at for c in calls)).order_by("created_at", "pk"))
    for entry in deposits:
        reg_t_pool = entry.amount - sum(CallSatisfaction.objects.filter(
            ledger_entry=entry, call__kind=K.REG_T).values_list("amount", flat=True))
        for call in calls:
            call.refresh_from_db()
            if call.status not in PAYABLE or entry.created_at <= call.issued_at:
                continue
            if CallSatisfaction.objects.filter(call=call, ledger_entry=entry).exists():
                continue
            share = entry.amount if call.kind != K.REG_T else min(entry.amount, reg_t_pool)
            if share <= 0:
                continue
            due_before = call.amount_due
            record_satisfaction(call=call, manner=CallSatisfaction.Manner.CASH, amount=share,
                                actor=None, ledger_entry=entry,
                                received_on=today or business_days.today(call.calendar),
                                note=f"deposit #{entry.pk}")
            if call.kind == K.REG_T:
                reg_t_pool -= min(share, due_before)
            linked.append(CallSatisfaction.objects.filter(call=call, ledger_entry=entry).get())
    return linked


# Cancellation, overdue, liquidation -----------------------------------------------------------

def cancel_call(*, call: MarginCall, reason: str, actor, day: date | None = None,
                note: str = "") -> MarginCall:
    """Cancel with one of the rule book's reasons, under its guards."""
    require_staff(actor, call.firm, "cancel a call")
    if reason not in R.values:
        raise CallError(f"unknown reason {reason!r}; one of {', '.join(R.values)}",
                        field="reason")
    with transaction.atomic():
        call = lock_call(call)
        if not call.is_open:
            raise IllegalTransition(f"call #{call.pk} is already {call.status}", field="status")
        _check_cancel(call, reason)
        day = day or business_days.today(call.calendar)
        before = {"status": call.status}
        call.status, call.cancel_reason, call.closed_on = S.CANCELLED, reason, day
        _write(call, event="cancelled", actor=actor, day=day, before=before, reason=reason,
               note=note)
        _after_met(call, day)
    return call


def _check_cancel(call: MarginCall, reason: str) -> None:
    if reason == R.MARKET_RECOVERY and call.kind == K.REG_T:
        raise IllegalTransition("a Reg T call is not cancelled by a market recovery (rule "
                                "book section 10): it is met or liquidated", field="reason")
    if reason == R.DE_MINIMIS:
        limit = call.policy.value("reg_t_de_minimis" if call.kind != K.INTRADAY
                                  else "intraday_de_minimis")
        if call.amount_due > limit:
            raise IllegalTransition(f"${call.amount_due} due is above the de-minimis "
                                    f"${limit}", field="reason")
    if reason == R.LAPSED and call.kind != K.INTRADAY:
        raise IllegalTransition("only an intraday deficit lapses (after the 15th business "
                                "day)", field="reason")
    if reason == R.MARKET_RECOVERY and call.status not in (*RUNNING, S.OVERDUE):
        raise IllegalTransition(f"call #{call.pk} is {call.status}: a liquidation under way "
                                "is recorded, not cancelled by a recovery", field="reason")


def mark_overdue(*, call: MarginCall, day: date, now: datetime | None = None) -> bool:
    """The due date passed unmet (the end-of-day run of ``day``, after the close); a call due
    in hours (collateral) when its due time has passed."""
    with transaction.atomic():
        call = lock_call(call)
        if call.status not in RUNNING or call.due_date > day:
            return False
        if call.due_at is not None and call.due_at > (now or timezone.now()):
            return False
        before = {"status": call.status}
        call.status = S.OVERDUE
        _write(call, event="overdue", actor=None, day=day, before=before)
        notify(call, "overdue")
    return True


def start_liquidation(*, call: MarginCall, actor, note: str = "") -> MarginCall:
    require_staff(actor, call.firm, "start a liquidation")
    with transaction.atomic():
        call = lock_call(call)
        if call.status != S.OVERDUE:
            raise IllegalTransition(f"call #{call.pk} is {call.status}: only an overdue call "
                                    "goes to liquidation", field="status")
        if call.kind == K.INTRADAY:
            raise IllegalTransition("an intraday deficit never goes to liquidation by rule",
                                    field="kind")
        before = {"status": call.status}
        call.status = S.LIQUIDATION_PENDING
        _write(call, event="liquidation_pending", actor=actor,
               day=business_days.today(call.calendar), before=before, note=note)
    return call


#: Calls a risk-reducing trade meets in part (rule book 3, "How met: deposit, or risk-reducing
#: trades"; maintenance and house calls are equity-based alike). A trade on a day after the
#: deficiency counts as a liquidation (the FAQ exempts only a same-day cure of an intraday PM
#: deficiency, which opens no call here). Reg T calls are met by payment and their liquidation
#: by ``record_liquidation``; intraday calls by increases in the intraday margin level
#: (``margin.intraday.calls``); collateral calls follow the health factor in the sweep.
MET_BY_TRADES = (K.MAINTENANCE, K.PM_DEFICIENCY, K.HOUSE)


def credit_risk_reducing_trade(*, account: Account, improvement: Decimal, note: str
                               ) -> list[MarginCall]:
    """A booked trade that raised the account's excess by ``improvement`` at the prices it was
    checked at (the pre-trade check's before and after, so no market move is counted) meets
    each open call of ``MET_BY_TRADES`` by that much, as deposits do (each equity-based call
    sees the whole of it): the amount due falls now, and the call is met by liquidation when
    nothing remains. Runs in the booking's transaction; the system records it."""
    if improvement <= 0:
        return []
    credited = []
    for call in MarginCall.objects.filter(account=account, status__in=PAYABLE,
                                          kind__in=MET_BY_TRADES).order_by("due_date", "pk"):
        call = record_satisfaction(call=call, manner=CallSatisfaction.Manner.LIQUIDATION,
                                   amount=improvement, actor=None, note=note)
        if call.met_by_liquidation and call.kind == K.PM_DEFICIENCY:
            from .restrictions import check_practice

            check_practice(account=account, day=call.closed_on, call=call)
        credited.append(call)
    return credited


def record_liquidation(*, call: MarginCall, amount: Any, actor, day: date | None = None,
                       note: str = "") -> MarginCall:
    """Closing trades booked for the call (the trading-controls issue books them): the call is
    liquidated, then met by liquidation or overdue for the shortfall; a Reg T or PM call met
    by liquidation counts toward the practice counter."""
    require_staff(actor, call.firm, "record a liquidation")
    amount = money(amount)
    if amount <= 0:
        raise CallError("a liquidation raises a positive amount", field="amount")
    with transaction.atomic():
        call = lock_call(call)
        if call.status != S.LIQUIDATION_PENDING:
            raise IllegalTransition(f"call #{call.pk} is {call.status}: no liquidation is "
                                    "pending", field="status")
        day = day or business_days.today(call.calendar)
        before = {"status": call.status}
        call.status = S.LIQUIDATED
        _write(call, event="liquidated", actor=actor, day=day, before=before, note=note)
    call = record_satisfaction(call=call, manner=CallSatisfaction.Manner.LIQUIDATION,
                               amount=amount, actor=actor, received_on=day, note=note)
    if call.met_by_liquidation and call.kind in (K.REG_T, K.PM_DEFICIENCY):
        from .restrictions import check_practice

        check_practice(account=call.account, day=day, call=call)
    return call
