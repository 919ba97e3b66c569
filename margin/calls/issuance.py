"""Calls from the sweep: issued and updated at the end-of-day run, recovered between closes.

The end-of-day run (``margin.end_of_day``) marks every account of a firm after its exchange's
close; the sweep values them and sends ``snapshots_written`` per chunk, naming the accounts
valued for the close (``end_of_day``). ``close_of_day`` then judges the chunk as of that
session (a business day by construction: runs start only after a session's close, so nothing
is issued on a weekend or a holiday): the accounts that may take a step are found for the
whole chunk in a few queries, and only those are locked and judged one by one:

- Reg T, maintenance, PM deficiency, PM minimum-equity and house calls are issued as of the
  session, due the policy's business days later (Reg T from the trade date); an open call's
  amount follows the close (a Reg T call's stays as issued); a call whose deficit is gone
  without the customer is cancelled as a market recovery (never a Reg T call);
- then the running calls of those accounts move on: due tomorrow (a notice), overdue, the PM
  minimum-equity deficiency's notice, restriction and downgrade days; restrictions past their
  end end.

Between closes (``watch``) the sweep only cancels calls a recovery has met; a deficit forming
is a warning (``deficits.warnings``), never a call. Collateral (health-factor) calls are the
exception, intraday by nature (rule book section 7): ``judge_collateral`` issues, updates,
recovers and makes them overdue from the chunk's health factors, at a close or between closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.db import transaction
from django.db.models import Exists, OuterRef, Subquery

from accounts.models import Account, LedgerEntry, Position
from accounts.services import change_account
from brokerage.models import Firm
from brokerage.scope import firm_scope

from .. import business_days
from ..intraday.calls import close_of_day as intraday_close
from ..models import AccountMargin, EndOfDayRun
from . import services
from .deficits import (
    ZERO,
    Collateral,
    Facts,
    Thresholds,
    collateral_credit,
    collateral_step,
    deficits,
    in_call_band,
    reg_t_increase,
)
from .hooks import linked_to_collateral_calls, thresholds_of_moves
from .models import MarginCall, Restriction
from .notices import notify
from .policy import active_policy
from .restrictions import end_expired, impose

K, S = MarginCall.Kind, MarginCall.Status
RECOVERABLE = (*services.RUNNING, S.OVERDUE)
EQUITY_KINDS = (K.MAINTENANCE, K.PM_DEFICIENCY, K.PM_MINIMUM_EQUITY, K.HOUSE)


@dataclass
class CallRun:
    """What one judgement did: (account number, step) pairs, in order."""

    session: date
    steps: list[tuple[str, str]] = field(default_factory=list)

    def add(self, account: Account, step: str) -> None:
        self.steps.append((account.number, step))


def facts_for(account_ids: list[int]) -> dict[int, tuple[Facts, int | None]]:
    """Every account's latest kept valuation, in two queries. The sweep sends its chunk signal
    before it writes the current rows, and every valuation a call decision rests on is kept
    (the close keeps every account; a recovery is kept by ``history_reason``), so the latest
    snapshot is the valuation judged."""
    from ..models import MarginSnapshot

    latest = MarginSnapshot.objects.filter(account=OuterRef("pk")).order_by(
        "-computed_at", "-id")
    # A book that moved after its latest valuation (a deposit not yet swept) is not judged on
    # it: the next valuation is.
    ids = [pk for pk, moved in Account.objects.filter(pk__in=account_ids).annotate(
        latest=Subquery(latest.values("pk")[:1]), at=Subquery(latest.values("computed_at")[:1]),
    ).annotate(moved=Exists(LedgerEntry.objects.filter(account=OuterRef("pk"),
                                                       created_at__gt=OuterRef("at")))
               | Exists(Position.objects.filter(account=OuterRef("pk"),
                                                updated_at__gt=OuterRef("at"))),
               ).values_list("latest", "moved") if pk and not moved]
    rows = MarginSnapshot.objects.filter(pk__in=ids).values_list(
        "account_id", "margin_type", "equity", "requirement", "regt_initial",
        "account__client__holds_unlisted_derivatives", "health_factor",
        "pk")
    return {account: (Facts(margin_type, equity, requirement, regt_initial, bool(unlisted),
                            float(hf) if hf is not None else None), snapshot)
            for account, margin_type, equity, requirement, regt_initial, unlisted, hf, snapshot
            in rows}


def open_calls(account_ids: list[int]) -> dict[int, list[MarginCall]]:
    found: dict[int, list[MarginCall]] = {}
    for call in MarginCall.objects.filter(account_id__in=account_ids,
                                          status__in=MarginCall.OPEN_STATES).order_by("pk"):
        found.setdefault(call.account_id, []).append(call)
    return found


def _traded_on(account_ids: list[int], session: date) -> set[int]:
    """Accounts whose positions changed on the session (its trade date)."""
    return set(Position.objects.filter(account_id__in=account_ids,
                                       updated_at__date=session).values_list("account_id",
                                                                             flat=True))


def close_of_day(*, firm: Firm, session: date, account_ids: list[int] | None = None,
                 collateral: dict[int, Collateral] | None = None) -> CallRun:
    """Issue, update and recover the calls of ``account_ids`` (all the firm's valued accounts
    when None) as of the close of ``session``; then move their running calls on. Collateral
    calls follow ``collateral`` (the chunk's health factors) as between closes."""
    run = CallRun(session=session)
    with firm_scope(firm):
        if not business_days.is_business_day(session, firm.exchange_calendar or "XNYS"):
            return run  # calls are issued as of a session's close only (rule book 0)
        policy = active_policy(firm)
        limits = Thresholds.of(policy)
        if account_ids is None:
            account_ids = list(AccountMargin.objects.values_list("account_id", flat=True))
        facts = facts_for(account_ids)
        calls = open_calls(account_ids)
        traded = _traded_on(account_ids, session)
        for account_id in sorted(facts):
            account_facts, snapshot_id = facts[account_id]
            owed = deficits(account_facts, limits)
            reg_t = (account_facts.margin_type == "reg_t" and account_id in traded
                     and (account_facts.regt_initial or 0) > account_facts.equity)
            if owed or reg_t or account_id in calls:
                _judge(account_id, account_facts, owed, snapshot_id=snapshot_id, policy=policy,
                       session=session, run=run, reg_t=reg_t)
        if collateral is not None:
            judge_collateral(firm=firm, policy=policy, account_ids=account_ids,
                             collateral=collateral, calls=calls, today=session, run=run)
        # intraday deficits: credited, issued, lapsed or overdue (before move_on, which would
        # make a call overdue before the day's increases are credited)
        intraday_close(session=session, account_ids=account_ids, policy=policy, run=run)
        move_on(account_ids=sorted(set(facts) | set(calls)), session=session, run=run)
    return run


def _judge(account_id: int, facts: Facts, owed: dict, *, snapshot_id, policy, session: date,
           run: CallRun, reg_t: bool) -> None:
    with transaction.atomic():
        account = Account.objects.select_for_update().select_related("client", "firm").get(
            pk=account_id)
        services.link_deposits(account=account, today=session)
        current = {c.kind: c for c in MarginCall.objects.select_for_update().filter(
            account=account, status__in=MarginCall.OPEN_STATES).exclude(kind=K.REG_T)}
        snapshot = _snapshot(snapshot_id)
        for kind in EQUITY_KINDS:
            amount, call = owed.get(kind), current.get(kind)
            if amount and call is None:
                services.issue_call(account=account, kind=kind, amount=amount, as_of=session,
                                    equity=facts.equity, requirement=_required(kind, facts,
                                                                               amount),
                                    policy=policy, snapshot=snapshot)
                run.add(account, f"issued {kind}")
            elif amount:
                if services.update_amount(call=call, amount=amount, equity=facts.equity,
                                          requirement=_required(kind, facts, amount),
                                          as_of=session, snapshot=snapshot):
                    run.add(account, f"changed {kind}")
            elif call is not None and call.status in RECOVERABLE:
                services.cancel_call(call=call, reason=MarginCall.CancelReason.MARKET_RECOVERY,
                                     actor=None, day=session)
                run.add(account, f"recovered {kind}")
        if reg_t:
            _reg_t(account, facts, snapshot=snapshot, policy=policy, session=session, run=run)


def _required(kind: str, facts: Facts, amount) -> object:
    """What equity had to reach for the call: the requirement, or the PM minimum."""
    return facts.equity + amount if kind in (K.PM_MINIMUM_EQUITY, K.HOUSE) else facts.requirement


def _snapshot(snapshot_id):
    from ..models import MarginSnapshot

    return MarginSnapshot.objects.filter(pk=snapshot_id).first() if snapshot_id else None


def _reg_t(account: Account, facts: Facts, *, snapshot, policy, session: date,
           run: CallRun) -> None:
    """One Reg T call per trade date, for the deficiency that day's transactions created or
    increased (the previous close's deficiency, from its end-of-day snapshot, is the base)."""
    if MarginCall.objects.filter(account=account, kind=K.REG_T, trade_date=session).exists():
        return
    from ..models import MarginSnapshot

    before = (MarginSnapshot.objects.filter(account=account, reason="end_of_day",
                                            valuation_date__lt=session,
                                            regt_initial__isnull=False)
              .order_by("-computed_at").values_list("regt_initial", "equity").first())
    deficiency_before = (before[0] - before[1]) if before else 0
    amount = reg_t_increase(deficiency_today=facts.regt_initial - facts.equity,
                            deficiency_before=deficiency_before, traded=True)
    if amount > 0:
        services.issue_call(account=account, kind=K.REG_T, amount=amount, as_of=session,
                            trade_date=session, equity=facts.equity,
                            requirement=facts.regt_initial, policy=policy, snapshot=snapshot)
        run.add(account, "issued reg_t")


# After the issue: due dates, the PM minimum-equity timeline, restrictions ---------------------

def move_on(*, account_ids: list[int], session: date, run: CallRun) -> None:
    """The running calls of these accounts as of the close of ``session``: deposits booked
    since a call was issued are linked first (whether or not a valuation has seen them)."""
    for account_id in sorted(set(MarginCall.objects.filter(
            account_id__in=account_ids, status__in=services.PAYABLE).values_list(
            "account_id", flat=True))):
        with transaction.atomic():
            account = Account.objects.select_for_update().get(pk=account_id)
            for linked in services.link_deposits(account=account, today=session):
                run.add(account, f"deposit linked to {linked.call.kind}")
    tomorrow = None
    for call in MarginCall.objects.filter(account_id__in=account_ids,
                                          status__in=MarginCall.OPEN_STATES).order_by("pk"):
        tomorrow = tomorrow or business_days.next_business_day(session, call.calendar)
        if call.kind == K.COLLATERAL:
            # due in hours: no due-tomorrow notice; overdue once its due time has passed
            if services.mark_overdue(call=call, day=session):
                run.add(call.account, f"overdue {call.kind}")
            continue
        if call.kind == K.PM_MINIMUM_EQUITY:
            _minimum_equity_timeline(call, session=session, run=run)
            continue
        with transaction.atomic():
            locked = services.lock_call(call)
            if locked.status in services.RUNNING and locked.due_date == tomorrow:
                if notify(locked, "due_tomorrow", key=locked.due_date.isoformat()):
                    run.add(locked.account, f"due tomorrow {locked.kind}")
        if services.mark_overdue(call=call, day=session):
            run.add(call.account, f"overdue {call.kind}")
            if call.kind == K.PM_DEFICIENCY:
                _closing_only(call, session=session, run=run)
    end_expired(account_ids=account_ids, day=session)


def _closing_only(call: MarginCall, *, session: date, run: CallRun) -> None:
    """A PM deficiency not met by its due date: no new opening orders except risk-reducing
    ones (4210(g), rule book section 3 [R]) until it is met; liquidation is the desk's."""
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=call.account_id)
        impose(account=account, kind=Restriction.Kind.CLOSING_ONLY, starts_on=session,
               call=call, policy=call.policy,
               cause=f"portfolio-margin deficiency call #{call.pk} not met by "
                     f"{call.due_date}; risk-reducing trades only")
        notify(call, "restricted")
    run.add(account, "restricted")


def _minimum_equity_timeline(call: MarginCall, *, session: date, run: CallRun) -> None:
    """The PM minimum-equity deficiency's consequences, each taken once, missed days caught up
    in order: the notice (policy day 1), closing-only from the restriction day (not met by
    T+3: margin-reducing trades only, FINRA PM FAQ), overdue after the due date, the house
    downgrade to Reg T (which supersedes the call: Reg T calls follow from the next close)."""
    with transaction.atomic():
        account = Account.objects.select_for_update().select_related("client", "firm").get(
            pk=call.account_id)
        call = services.lock_call(call)
        if not call.is_open:
            return
        if call.noticed_on is None and session >= call.notice_due_on:
            call.noticed_on = session
            call.save(update_fields=["noticed_on", "updated_at"])
            notify(call, "issued")
            run.add(account, "notice")
        if call.restricted_on is None and session >= call.restriction_due_on:
            impose(account=account, kind=Restriction.Kind.CLOSING_ONLY, starts_on=session,
                   call=call, policy=call.policy,
                   cause=f"portfolio-margin equity below ${call.requirement:,} since "
                         f"{call.as_of} (call #{call.pk}); risk-reducing trades only")
            call.restricted_on = session
            call.save(update_fields=["restricted_on", "updated_at"])
            notify(call, "restricted")
            run.add(account, "restricted")
    if services.mark_overdue(call=call, day=session):
        run.add(account, "overdue")
    call.refresh_from_db()
    if call.is_open and call.downgraded_on is None and session >= call.downgrade_due_on:
        _downgrade(call, account, session=session)
        run.add(account, "downgraded")


def _downgrade(call: MarginCall, account: Account, *, session: date) -> None:
    with transaction.atomic():
        call = services.lock_call(call)
        change_account(account=account, actor=None, event_type="account.downgraded_to_reg_t",
                       reason=f"PM minimum-equity call #{call.pk} not met by "
                              f"{call.downgrade_due_on}",
                       margin_type=Account.MarginType.REG_T)
        call.downgraded_on = session
        call.save(update_fields=["downgraded_on", "updated_at"])
        notify(call, "downgraded")
        # Under Reg T the PM minimum no longer applies: the call is superseded (Reg T and
        # 4210(c) calls follow from the next close), and its closing-only restriction lifts.
        services.cancel_call(call=call, reason=MarginCall.CancelReason.SUPERSEDED, actor=None,
                             day=session)


# Between closes -------------------------------------------------------------------------------

def watch(*, firm: Firm, account_ids: list[int], today: date | None = None,
          collateral: dict[int, Collateral] | None = None) -> CallRun:
    """An intraday chunk: open calls a recovery has met are cancelled (never a Reg T call);
    no call of the end-of-day kinds is issued or changed. Collateral calls are intraday by
    nature: issued, updated, recovered and made overdue here (``judge_collateral``)."""
    with firm_scope(firm):
        today = today or business_days.today(firm.exchange_calendar or "XNYS")
        run = CallRun(session=today)
        calls = open_calls(account_ids)
        if collateral or any(c.kind == K.COLLATERAL for cs in calls.values() for c in cs):
            judge_collateral(firm=firm, policy=active_policy(firm), account_ids=account_ids,
                             collateral=collateral or {}, calls=calls, today=today, run=run)
            calls = {a: [c for c in cs if c.kind != K.COLLATERAL] for a, cs in calls.items()}
            calls = {a: cs for a, cs in calls.items() if cs}
        if not calls:
            return run
        limits = Thresholds.of(active_policy(firm))
        facts = facts_for(sorted(calls))
        for account_id, account_calls in sorted(calls.items()):
            if account_id not in facts:
                continue
            owed = deficits(facts[account_id][0], limits)
            if any(c.kind not in owed for c in account_calls):
                # a deposit that met the call is a satisfaction, not a market recovery
                with transaction.atomic():
                    account = Account.objects.select_for_update().get(pk=account_id)
                    services.link_deposits(account=account, today=today)
                account_calls = [c for c in open_calls([account_id]).get(account_id, [])]
            for call in account_calls:
                if call.kind == K.COLLATERAL:
                    continue
                if (call.kind in EQUITY_KINDS and call.kind not in owed
                        and call.status in RECOVERABLE):
                    services.cancel_call(call=call,
                                         reason=MarginCall.CancelReason.MARKET_RECOVERY,
                                         actor=None, day=today)
                    run.add(call.account, f"recovered {call.kind}")
    return run


# Collateral (health-factor) calls --------------------------------------------------------------

def judge_collateral(*, firm: Firm, policy, account_ids: list[int],
                     collateral: dict[int, Collateral], calls: dict[int, list[MarginCall]],
                     today: date, run: CallRun) -> None:
    """The chunk's collateral calls (rule book section 7 [X]): a health factor at or under the
    policy's call band issues one (one open per account), due in the policy's hours, for
    ``deficits.collateral_owed``; an open one's amount follows the health factor; out of the
    band it is cancelled as a market recovery, after deposits are linked (a deposit meets
    it); an open one past its due time is overdue. Only the accounts in the band or holding
    an open collateral call are looked at: one query for the chunk (what earlier calls
    received), then one transaction each."""
    limits = Thresholds.of(policy)
    open_collateral = {a: c for a, cs in calls.items() for c in cs if c.kind == K.COLLATERAL}
    valued = set(account_ids)
    candidates = sorted({a for a, c in collateral.items() if in_call_band(c.health_factor, limits)}
                        | (set(open_collateral) & valued))
    if not candidates:
        return
    linked = linked_to_collateral_calls(candidates)
    for account_id in candidates:
        facts = collateral.get(account_id) or Collateral(None, ZERO, ZERO, ZERO)  # no debt left
        _collateral_step(account_id, facts, limits=limits, policy=policy, today=today, run=run,
                         linked=linked.get(account_id, ZERO))
    for call in MarginCall.objects.filter(pk__in=[c.pk for c in open_collateral.values()],
                                          status__in=services.RUNNING).order_by("pk"):
        if services.mark_overdue(call=call, day=today):
            run.add(call.account, f"overdue {call.kind}")


def _collateral_step(account_id: int, facts: Collateral, *, limits: Thresholds, policy,
                     today: date, run: CallRun, linked) -> None:
    from ..models import MarginSnapshot

    with transaction.atomic():
        account = Account.objects.select_for_update().select_related("client", "firm").get(
            pk=account_id)
        if any(s.call.kind == K.COLLATERAL
               for s in services.link_deposits(account=account, today=today)):
            run.add(account, "deposit linked to collateral")
            linked = linked_to_collateral_calls([account_id]).get(account_id, ZERO)
        call = MarginCall.objects.select_for_update().filter(
            account=account, kind=K.COLLATERAL, status__in=MarginCall.OPEN_STATES).first()
        step = collateral_step(facts, limits, open_amount=call.amount if call else None,
                               credit=collateral_credit(linked, facts.cash),
                               **thresholds_of_moves())
        if step is None:
            return
        snapshot = (MarginSnapshot.objects.filter(pk=facts.snapshot_id).first()
                    if facts.snapshot_id else None)
        if step.action == "issue":
            services.issue_call(account=account, kind=K.COLLATERAL, amount=step.amount,
                                as_of=today, equity=facts.equity,
                                requirement=facts.equity + step.amount, policy=policy,
                                snapshot=snapshot, health_factor=facts.health_factor,
                                detail=_collateral_detail(facts, limits))
            run.add(account, "issued collateral")
        elif step.action == "update":
            if services.update_amount(call=call, amount=step.amount, equity=facts.equity,
                                      requirement=facts.equity + step.amount, as_of=today,
                                      snapshot=snapshot, health_factor=facts.health_factor):
                run.add(account, "changed collateral")
        elif call.status in RECOVERABLE:
            services.cancel_call(call=call, reason=MarginCall.CancelReason.MARKET_RECOVERY,
                                 actor=None, day=today)
            run.add(account, "recovered collateral")


def collateral_overdue(now=None) -> list[int]:
    """Every firm's running collateral calls past their due time, made overdue: one query for
    all of them, then one transaction each in its firm's scope. Returns their ids."""
    from django.utils import timezone

    now = now or timezone.now()
    due = list(MarginCall.cross_firm.for_compliance(
        reason="collateral calls past their due time, each made overdue in its firm's scope",
    ).filter(kind=K.COLLATERAL, status__in=services.RUNNING, due_at__lte=now)
        .select_related("firm").order_by("firm_id", "pk"))
    made = []
    for call in due:
        with firm_scope(call.firm):
            if services.mark_overdue(call=call, day=call.due_date, now=now):
                made.append(call.pk)
    return made


def _collateral_detail(facts: Collateral, limits: Thresholds) -> str:
    return (f"The health factor of the account's collateral is {facts.health_factor:.4f}, at "
            f"or under the call band of {limits.health_factor_call}: deposit "
            f"collateral or cash to bring it back to {limits.health_factor_warn}, or repay the "
            f"borrowed ${facts.debt:,}.")


def session_of(firm: Firm) -> date | None:
    """The session the firm's latest exchange end-of-day run closes."""
    calendar = firm.exchange_calendar or "XNYS"
    with firm_scope(firm):
        return (EndOfDayRun.objects.filter(calendar=calendar).order_by("-session")
                .values_list("session", flat=True).first())
