"""The intraday call at the end of the day (MARGIN_CALLS.md sections 5 and 10), run by
``margin.calls.issuance.close_of_day`` for the chunk it judges, before the running calls move
on:

1. open intraday calls are credited with what the account's transactions added to its IML,
   net, from the end of the deficit day to this close (deposits less withdrawals,
   liquidations and other IML increases less purchases): a satisfaction of manner
   ``iml_increase`` for the part not yet recorded; a same-day recovery never counts (only the
   days after the deficit day do). A met call's 90-day block lifts;
2. each monitored account's deficit of the day (``deficits.day_deficit``) opens an intraday
   call (one per deficit day), through the one call mechanism: its 4220 row, audit and notice;
3. an open call past close of business on the policy's 15th business day lapses (cancelled,
   ``lapsed``); one unmet at close of business on the 5th (its due date) is overdue, and when
   the account has made a practice of such misses (the policy's count within its look-back,
   de-minimis deficits not counted) the 90-day block on new or increased short positions and
   debit balances starts (``margin.calls.restrictions``), ending 90 calendar days after that
   5th business day or when the deficit is satisfied.

An intraday call never goes to liquidation by rule (section 10).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.db import transaction

from accounts.models import Account

from .. import business_days
from ..calls import services
from ..calls.models import CallPolicy, CallRecord, CallSatisfaction, MarginCall, Restriction
from ..calls.restrictions import impose, lift_intraday_block
from .deficits import Step, day_deficit, net_increase
from .models import IntradayObservation
from .regime import monitored

K, S = MarginCall.Kind, MarginCall.Status
CENT = Decimal("0.01")


def de_minimis_limit(policy: CallPolicy, equity: Decimal) -> Decimal:
    """The lesser of the policy's fraction of equity (5 %) and its amount ($1,000): a deficit
    at or under it does not count toward a practice (4210(d)(2)(D))."""
    return min(policy.value("intraday_de_minimis_fraction") * max(equity, Decimal(0)),
               policy.value("intraday_de_minimis")).quantize(CENT)


def is_de_minimis(call: MarginCall) -> bool:
    return call.amount <= de_minimis_limit(call.policy, call.equity)


def close_of_day(*, session: date, account_ids: list[int], policy: CallPolicy, run) -> None:
    """The intraday step of the close of ``session`` for these accounts (module docstring)."""
    open_calls = list(MarginCall.objects.filter(account_id__in=account_ids, kind=K.INTRADAY,
                                                status__in=MarginCall.OPEN_STATES)
                      .select_related("account", "policy").order_by("as_of", "pk"))
    if open_calls:
        _credit(open_calls, session=session, run=run)
    _issue(session=session, account_ids=account_ids, policy=policy, run=run)
    for call in MarginCall.objects.filter(account_id__in=account_ids, kind=K.INTRADAY,
                                          status__in=MarginCall.OPEN_STATES).select_related(
            "account", "policy").order_by("as_of", "pk"):
        _move_on(call, session=session, run=run)


def _credit(calls: list[MarginCall], *, session: date, run) -> None:
    """Net IML increases since each call's deficit day, one query for all of them."""
    effects: dict[int, list[tuple[date, Decimal]]] = defaultdict(list)
    for account_id, day, level, before, deposits in IntradayObservation.objects.filter(
            account_id__in={c.account_id for c in calls},
            session__gt=min(c.as_of for c in calls), session__lte=session,
    ).values_list("account_id", "session", "level", "level_before", "net_deposits"):
        # a writer that did not say what moved: its deposits are all that is known of it
        effects[account_id].append((day, level - before if before is not None else deposits))
    for call in calls:
        credit = net_increase(e for day, e in effects[call.account_id] if day > call.as_of)
        received = call.amount - call.amount_due
        new = min(credit, call.amount) - received
        if new <= 0 or call.status not in services.PAYABLE:
            continue
        with transaction.atomic():
            Account.objects.select_for_update().get(pk=call.account_id)
            met = services.record_satisfaction(
                call=call, manner=CallSatisfaction.Manner.IML_INCREASE, amount=new, actor=None,
                received_on=session,
                note=f"net IML increase since {call.as_of}: ${credit:,}")
            if met.status == S.MET:
                lift_intraday_block(met, day=session)
        run.add(call.account, "met intraday" if met.status == S.MET else "credited intraday")


def _issue(*, session: date, account_ids: list[int], policy: CallPolicy, run) -> None:
    """The day's deficit of each monitored account, one query for the chunk's observations."""
    accounts = {a.pk: a for a in monitored(Account.objects.filter(pk__in=account_ids))}
    steps: dict[int, list[Step]] = defaultdict(list)
    last: dict[int, IntradayObservation] = {}
    for row in IntradayObservation.objects.filter(account_id__in=list(accounts),
                                                  session=session).order_by("pk"):
        steps[row.account_id].append(Step(row.occurred_at, row.level, row.level_before,
                                          row.reducing))
        if row.account_id not in last or row.occurred_at >= last[row.account_id].occurred_at:
            last[row.account_id] = row
    issued = set(MarginCall.objects.filter(account_id__in=list(steps), kind=K.INTRADAY,
                                           as_of=session).values_list("account_id", flat=True))
    for account_id in sorted(set(steps) - issued):
        deficit = day_deficit(steps[account_id]).quantize(CENT)
        if deficit <= 0:
            continue
        latest = last[account_id]
        with transaction.atomic():
            account = Account.objects.select_for_update().select_related("client", "firm").get(
                pk=account_id)
            limit = de_minimis_limit(policy, latest.equity)
            services.issue_call(
                account=account, kind=K.INTRADAY, amount=deficit, as_of=session,
                equity=latest.equity, requirement=latest.maintenance, policy=policy,
                detail=(f"On {session} the account's intraday margin level fell to "
                        f"-${deficit:,} after a transaction that reduced it (FINRA "
                        f"4210(d)(2)). Deposit ${deficit:,} or reduce positions promptly"
                        + (f"; at or under ${limit:,} it is de minimis." if deficit <= limit
                           else ".")))
        run.add(accounts[account_id], "issued intraday")


def _move_on(call: MarginCall, *, session: date, run) -> None:
    lapse_on = business_days.add_business_days(call.as_of,
                                                call.policy.value("intraday_lapse_days"),
                                                call.calendar)
    if session >= lapse_on:
        # outstanding until immediately after close of business on the 15th business day
        services.cancel_call(call=call, reason=MarginCall.CancelReason.LAPSED, actor=None,
                             day=session, note=f"lapsed after close of business on {lapse_on}")
        run.add(call.account, "lapsed intraday")
        return
    if services.mark_overdue(call=call, day=session):
        run.add(call.account, "overdue intraday")
        call.refresh_from_db()
        if _practice(call, session=session):
            run.add(call.account, "intraday block")


def misses(account: Account, *, since: date) -> list[MarginCall]:
    """The account's intraday calls unmet at close of business on their 5th business day
    (made overdue) after ``since``, de-minimis ones left out: the practice counter."""
    calls = MarginCall.objects.filter(
        pk__in=CallRecord.objects.filter(account=account, event="overdue", day__gt=since,
                                         call__kind=K.INTRADAY).values("call_id"),
    ).select_related("policy").order_by("as_of")
    return [call for call in calls if not is_de_minimis(call)]


def _practice(call: MarginCall, *, session: date) -> Restriction | None:
    """A practice of missing the 5th business day brings the 90-day block (4210(d)(2)(D))."""
    if is_de_minimis(call):
        return None
    policy = call.policy
    since = session - relativedelta(months=policy.value("intraday_practice_months"))
    counted = misses(call.account, since=since)
    if len(counted) < policy.value("intraday_practice_misses"):
        return None
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=call.account_id)
        return impose(
            account=account, kind=Restriction.Kind.INTRADAY_90D, starts_on=session,
            ends_on=session + timedelta(days=policy.value("intraday_block_days")), call=call,
            policy=policy,
            cause=(f"{len(counted)} intraday deficits unmet at close of business on the 5th "
                   f"business day in {policy.value('intraday_practice_months')} months (a "
                   f"practice; {policy.row('intraday_practice_misses')['citation']}): no new "
                   f"or increased short positions or debit balances"))
