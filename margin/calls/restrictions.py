"""Restrictions that follow unmet calls (MARGIN_CALLS.md sections 1, 3, 4, 5 and 10), with
start, end and cause; the trading-controls issue enforces them on trades.

- closing-only: a PM minimum-equity deficiency not met by its restriction day (4210(g), FAQ);
  lifted when the call is met or cancelled;
- funds on hand for 90 days (policy) after a practice of liquidations: 3 calls met by
  liquidation in a rolling 12 months (policy), unless waived;
- the intraday 90-day block (4210(d)(2)(D), rule book section 5): a practice of intraday
  deficits unmet at close of business on the 5th business day blocks new or increased short
  positions and debit balances for 90 calendar days after that day, or until the deficit is
  satisfied (``margin.intraday.calls`` imposes it). What each kind forbids is one table,
  ``FORBIDS``, which the pre-trade check (``forbidding``) and ``refusals`` both read.

A waiver needs two people holding the firm-admin or compliance role: one asks, another
approves (``brokerage.approvals``, kind ``restriction_waiver``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.db import transaction

from accounts.models import Account
from accounts.services import change_account
from brokerage import approvals, audit
from brokerage.errors import IllegalTransition, InvalidInput, NotFound, NotPermitted
from brokerage.models import ApprovalRequest
from brokerage.roles import Role
from brokerage.scope import lock_in_firm
from brokerage.tenancy import firm_of, role_of

from .. import business_days
from .models import CallPolicy, MarginCall, Restriction

APPROVAL_KIND = "restriction_waiver"
WAIVER_ROLES = frozenset({Role.FIRM_ADMIN, Role.COMPLIANCE})
RK = Restriction.Kind


def impose(*, account: Account, kind: str, starts_on: date, cause: str, policy: CallPolicy,
           call: MarginCall | None = None, ends_on: date | None = None) -> Restriction:
    """Start a restriction (inside the caller's transaction); one active per account and kind:
    an active one is returned as it is."""
    active = Restriction.objects.filter(account=account, kind=kind,
                                        state=Restriction.State.ACTIVE).first()
    if active is not None:
        return active
    takes_status = kind == RK.CLOSING_ONLY and account.status == Account.Status.OPEN
    restriction = Restriction.objects.create(
        firm=account.firm, account=account, kind=kind, starts_on=starts_on, ends_on=ends_on,
        cause=cause[:300], call=call, policy=policy, restricted_account=takes_status)
    audit.record(firm=account.firm, actor=None, event_type="restriction.imposed",
                 obj=restriction, after={"account": account.number, "kind": kind,
                                         "starts_on": starts_on, "ends_on": ends_on,
                                         "cause": restriction.cause,
                                         "call": call.pk if call else None})
    if takes_status:
        change_account(account=account, actor=None, event_type="account.restricted",
                       reason=cause, status=Account.Status.RESTRICTED)
        account.status = Account.Status.RESTRICTED
    return restriction


def _close(restriction: Restriction, *, state: str, day: date, reason: str, actor=None) -> None:
    restriction.state, restriction.closed_on = state, day
    restriction.closed_reason = reason[:300]
    restriction.save(update_fields=["state", "closed_on", "closed_reason"])
    audit.record(firm=restriction.firm, actor=actor, event_type=f"restriction.{state}",
                 obj=restriction, after={"account": restriction.account.number,
                                         "kind": restriction.kind, "closed_on": day,
                                         "reason": restriction.closed_reason})
    account = Account.objects.select_for_update().get(pk=restriction.account_id)
    still = Restriction.objects.filter(account=account, kind=RK.CLOSING_ONLY,
                                       state=Restriction.State.ACTIVE,
                                       restricted_account=True).exists()
    if (restriction.restricted_account and not still
            and account.status == Account.Status.RESTRICTED):
        change_account(account=account, actor=actor, event_type="account.restriction_lifted",
                       reason=reason, status=Account.Status.OPEN)


def lift_for_call(call: MarginCall, *, day: date, reason: str) -> list[Restriction]:
    """The call that caused them is met or cancelled: its restrictions that last until then
    end (those with a fixed length, like funds on hand, run their course)."""
    lifted = []
    for restriction in Restriction.objects.select_for_update().filter(
            call=call, state=Restriction.State.ACTIVE, ends_on__isnull=True).order_by("pk"):
        _close(restriction, state=Restriction.State.LIFTED, day=day, reason=reason)
        lifted.append(restriction)
    return lifted


def lift_intraday_block(call: MarginCall, *, day: date) -> list[Restriction]:
    """The deficit that brought the 90-day block is satisfied: the block ends with it
    (4210(d)(2)(D): 90 days after the 5th business day, or until the deficit is satisfied)."""
    lifted = []
    for restriction in Restriction.objects.select_for_update().filter(
            call=call, kind=RK.INTRADAY_90D, state=Restriction.State.ACTIVE).order_by("pk"):
        _close(restriction, state=Restriction.State.LIFTED, day=day,
               reason=f"intraday deficit of call #{call.pk} satisfied")
        lifted.append(restriction)
    return lifted


def opens_or_increases_short_or_debit(*, quantity_before: Decimal, quantity_after: Decimal,
                                      cash_before: Decimal, cash_after: Decimal) -> str:
    """Why one position's change is refused under the intraday 90-day block, or "" when it may
    go: the block's own rule (``FORBIDS[INTRADAY_90D]``) on the effect of that change."""
    effect = OrderEffect.of_position(quantity_before=quantity_before,
                                     quantity_after=quantity_after,
                                     cash_before=cash_before, cash_after=cash_after)
    return _intraday_block_why(effect)


def refusals(*, account: Account, quantity_before: Decimal, quantity_after: Decimal,
             cash_before: Decimal, cash_after: Decimal) -> list[str]:
    """The active restrictions of ``account`` that refuse one position's change, each with
    why: ``forbidding`` (what the pre-trade check asks) on that change's effect."""
    effect = OrderEffect.of_position(quantity_before=quantity_before,
                                     quantity_after=quantity_after,
                                     cash_before=cash_before, cash_after=cash_after)
    return [f"{r.get_kind_display()} until {r.ends_on}: {effect.describe()}"
            for r in forbidding(account, effect)]


def end_expired(*, account_ids: list[int] | None = None, day: date) -> list[Restriction]:
    """Restrictions whose end date has passed (the end-of-day run)."""
    ended = []
    rows = Restriction.objects.filter(state=Restriction.State.ACTIVE, ends_on__lt=day)
    if account_ids is not None:
        rows = rows.filter(account_id__in=account_ids)
    for restriction in rows.order_by("pk"):
        with transaction.atomic():
            locked = Restriction.objects.select_for_update().get(pk=restriction.pk)
            if locked.state == Restriction.State.ACTIVE:
                _close(locked, state=Restriction.State.ENDED, day=day,
                       reason=f"ended on {locked.ends_on}")
                ended.append(locked)
    return ended


def check_practice(*, account: Account, day: date, call: MarginCall) -> Restriction | None:
    """A practice of liquidations: the policy's count of Reg T or PM calls met by
    liquidation within its rolling months brings funds on hand for its days."""
    from .policy import active_policy

    policy = active_policy(account.firm)
    since = day - relativedelta(months=policy.value("practice_months"))
    count = MarginCall.objects.filter(
        account=account, met_by_liquidation=True, closed_on__gt=since,
        kind__in=[MarginCall.Kind.REG_T, MarginCall.Kind.PM_DEFICIENCY]).count()
    if count < policy.value("practice_liquidations"):
        return None
    with transaction.atomic():
        return impose(account=account, kind=RK.FUNDS_ON_HAND_90D, starts_on=day,
                      ends_on=day + timedelta(days=policy.value("funds_on_hand_days")),
                      cause=f"{count} calls met by liquidation in "
                            f"{policy.value('practice_months')} months (a practice; "
                            f"{policy.rows['practice_liquidations']['citation']})",
                      policy=policy, call=call)


# What a restriction forbids (the pre-trade check, margin.pretrade, enforces it) -----------------

@dataclass(frozen=True)
class OrderEffect:
    """What proposed orders do to the account, as restrictions judge them."""

    opens: bool  # a position opened, increased or turned over
    increases_short: bool  # a short position opened or increased
    increases_debit: bool  # cash ends negative and lower than before
    increases_requirement: bool
    #: every position moved is a short moved towards zero (the intraday block lets a short be
    #: closed even when paying for it deepens a debit, 4210(d)(2)(D))
    closes_short: bool = False

    @classmethod
    def of_position(cls, *, quantity_before: Decimal, quantity_after: Decimal,
                    cash_before: Decimal, cash_after: Decimal) -> OrderEffect:
        was, now = Decimal(quantity_before), Decimal(quantity_after)
        cash_was, cash_now = Decimal(cash_before), Decimal(cash_after)
        return cls(opens=abs(now) > abs(was) or (was != 0 and now != 0 and (was > 0) != (now > 0)),
                   increases_short=now < 0 and now < min(was, Decimal(0)),
                   increases_debit=cash_now < 0 and cash_now < min(cash_was, Decimal(0)),
                   increases_requirement=False,
                   closes_short=was < 0 and was < now <= 0)

    def describe(self) -> str:
        said = [what for what, done in (
            ("opens or increases a position", self.opens),
            ("opens or increases a short position", self.increases_short),
            ("creates or increases a debit balance", self.increases_debit),
            ("increases the requirement", self.increases_requirement)) if done]
        return ", ".join(said) or "is not a closing trade"


#: kind -> whether it forbids orders of that effect. Closing-only: margin-reducing trades only
#: (4210(g), FAQ); funds on hand: no purchase on credit (rule book 1); the intraday block: no
#: new or increased short position or debit balance (4210(d)(2)(D)).
FORBIDS: dict[str, Callable[[OrderEffect], bool]] = {
    RK.CLOSING_ONLY: lambda e: e.opens or e.increases_requirement,
    RK.FUNDS_ON_HAND_90D: lambda e: e.increases_debit,
    RK.INTRADAY_90D: lambda e: bool(_intraday_block_why(e)),
}


def _intraday_block_why(effect: OrderEffect) -> str:
    """4210(d)(2)(D): no new or increased short position or debit balance; closing a short
    stays allowed even paid from a debit; a sale of a long raises cash and is never refused."""
    if effect.increases_short:
        return "it opens or increases a short position"
    if effect.increases_debit and not effect.closes_short:
        return "it opens or increases a debit balance"
    return ""


def forbids(kind: str, effect: OrderEffect) -> bool:
    """Whether an active restriction of ``kind`` forbids orders of ``effect``; a kind without
    its own rule fails closed: closing trades only."""
    rule = FORBIDS.get(kind)
    return rule(effect) if rule is not None else (effect.opens or effect.increases_requirement)


def forbidding(account: Account, effect: OrderEffect) -> list[Restriction]:
    """The account's active restrictions that forbid orders of ``effect``."""
    return [r for r in Restriction.objects.filter(account=account,
                                                  state=Restriction.State.ACTIVE).order_by("pk")
            if forbids(r.kind, effect)]


# The two-person waiver ------------------------------------------------------------------------

def _require_officer(actor, firm, doing: str) -> None:
    if firm_of(actor) != firm or role_of(actor) not in WAIVER_ROLES:
        raise NotPermitted(f"only the firm's admins and compliance officers may {doing}")


def request_waiver(*, restriction: Restriction, actor, reason: str) -> ApprovalRequest:
    _require_officer(actor, restriction.firm, "ask for a waiver")
    if not (reason or "").strip():
        raise InvalidInput("say why the restriction is waived (kept on file)", field="reason",
                           code="required")
    with transaction.atomic():
        restriction = lock_in_firm(Restriction, restriction.pk,
                                   missing=NotFound("no such restriction in your firm"))
        if restriction.state != Restriction.State.ACTIVE:
            raise IllegalTransition(f"the restriction is {restriction.state}", field="state")
        if approvals.pending(kinds=[APPROVAL_KIND]).filter(subject_id=restriction.pk).exists():
            raise IllegalTransition("a waiver of this restriction is already awaiting a "
                                    "second officer", field="state")
        request = approvals.request_approval(
            kind=APPROVAL_KIND, firm=restriction.firm, subject=restriction, requested_by=actor,
            drafted_on=1, makers=approvals.makers_of((actor, "asked to waive")),
            summary=f"waive {restriction}: {reason.strip()}", payload={"reason": reason.strip()})
        audit.record(firm=restriction.firm, actor=actor, event_type="restriction.waiver_asked",
                     obj=restriction, after={"reason": reason.strip(),
                                             "approval_request": request.pk})
    return request


def decide_waiver(*, restriction: Restriction, actor, approve: bool, reason: str = "",
                  today: date | None = None) -> Restriction:
    approvals.decide(request=approvals.request_of(kind=APPROVAL_KIND, subject=restriction),
                     decider=actor, approve=approve, reason=reason, today=today)
    return Restriction.objects.get(pk=restriction.pk)


def _lock(request: ApprovalRequest) -> Restriction:
    return Restriction.objects.select_for_update().get(pk=request.subject_id)


def _apply(ruling: approvals.Ruling) -> approvals.Change:
    restriction: Restriction = ruling.subject
    if restriction.state != Restriction.State.ACTIVE:
        raise IllegalTransition(f"the restriction is {restriction.state}", field="state")
    day = ruling.context.get("today") or business_days.today(
        restriction.firm.exchange_calendar or business_days.DEFAULT_CALENDAR)
    _close(restriction, state=Restriction.State.WAIVED, day=day,
           reason=f"waived by {ruling.request.requested_by.username} and "
                  f"{ruling.decider.username}: {ruling.request.payload.get('reason', '')}",
           actor=ruling.decider)
    return approvals.Change(after={"state": restriction.state})


approvals.register(approvals.ApprovalKind(
    name=APPROVAL_KIND, subject_model="margin.restriction", audit_prefix="restriction_waiver",
    lock=_lock, current_version=lambda restriction: 1,
    describe=lambda restriction: f"the {restriction.get_kind_display().lower()} restriction "
                                 f"#{restriction.pk}",
    authorize=lambda ruling: _require_officer(ruling.decider, ruling.subject.firm,
                                              f"{ruling.verb} a waiver"),
    apply=_apply, reject=lambda ruling: approvals.Change(after={"state": "active"}),
    target="the restriction", remedy="ask again"))
