"""Ongoing eligibility: the minimum-equity deficiency of a portfolio-margin account.

FINRA 4210(g) / Cboe Options Rule 10.4: a portfolio-margin account keeps at least the minimum
equity ($100,000 regulatory floor, the firm's maintenance minimum, $5,000,000 with unlisted
derivatives). When equity closes below it on business day T a deficiency opens; not met by T+3
the account may only make risk-reducing trades (status `restricted`). The firm's rule set then
sets the house timeline, in business days after T: a notice (day 1), the restriction (day 3 at
the latest), the downgrade to Reg T (day 5). A cure (a deposit, a recovery) at any point closes
the deficiency and lifts a restriction this deficiency imposed.

`evaluate_deficiencies(firm=, today=)` is driven by the date it is given, so tests run it on a
frozen clock; production runs it after the close every day (eligibility.tasks). It is
idempotent: a step taken is never taken twice, and a missed day is caught up on the next run.
Equity that cannot be established (a position without any price) is not judged: nothing opens
or escalates on it until the book can be valued.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.db import transaction
from django.db.models import Exists, OuterRef, Subquery

from accounts.models import Account, LedgerEntry, Position
from accounts.services import change_account
from brokerage import audit
from brokerage.models import Firm
from brokerage.scope import firm_scope
from margin.models import MarginSnapshot

from . import calendar as business_days
from .equity import read_equity
from .evaluation import MAINTENANCE, client_facts, required_equity
from .models import Deficiency, RuleSet
from .notifications import mail_client_on_commit
from .services import active_rule_set

D = Deficiency.State


@dataclass
class DeficiencyRun:
    """What one run did, step by step: (account number, step) pairs."""

    today: date
    steps: list[tuple[str, str]] = field(default_factory=list)

    def add(self, account: Account, step: str) -> None:
        self.steps.append((account.number, step))


def evaluate_deficiencies(*, firm: Firm, today: date) -> DeficiencyRun:
    """Judge every portfolio-margin account of `firm` (and every open deficiency) as of `today`."""
    run = DeficiencyRun(today=today)
    with firm_scope(firm):
        rule_set = active_rule_set(firm=firm)
        open_accounts = set(Deficiency.objects.filter(state__in=Deficiency.OPEN_STATES)
                            .values_list("account_id", flat=True))
        pm_accounts = set(Account.objects.filter(
            margin_type=Account.MarginType.PORTFOLIO_MARGIN,
        ).exclude(status=Account.Status.CLOSED).values_list("pk", flat=True))
        for account_id in sorted(open_accounts | pm_accounts):
            assess_account(account_id=account_id, rule_set=rule_set, today=today, run=run)
    return run


def assess_accounts(*, firm: Firm, account_ids: list[int], today: date) -> DeficiencyRun:
    """The same judgement for a chunk of accounts (those a sweep chunk's snapshots cover).

    Most accounts of a chunk can take no step: no open deficiency, and either not on portfolio
    margin or with snapshot equity at or above their minimum. They are found in two queries for
    the whole chunk and skipped; only the rest are judged one by one (``assess_account``).
    """
    run = DeficiencyRun(today=today)
    with firm_scope(firm):
        rule_set = active_rule_set(firm=firm)
        for account_id in _to_judge(sorted(set(account_ids)), rule_set):
            assess_account(account_id=account_id, rule_set=rule_set, today=today, run=run)
    return run


@dataclass(frozen=True)
class _MinimumFacts:
    """The one client fact ``required_equity`` reads (the others do not move the minimum)."""

    holds_unlisted_derivatives: bool


def _to_judge(account_ids: list[int], rule_set: RuleSet) -> list[int]:
    """The accounts that may take a step: an open deficiency (it may be cured or escalate), or
    a portfolio-margin account whose equity ``read_equity`` would not take from its snapshot
    (none yet, or the book moved since) or which is below its maintenance minimum."""
    open_ids = set(Deficiency.objects.filter(account_id__in=account_ids,
                                             state__in=Deficiency.OPEN_STATES)
                   .values_list("account_id", flat=True))
    latest = MarginSnapshot.objects.filter(account=OuterRef("pk")).order_by("-computed_at", "-id")
    rows = Account.objects.filter(
        pk__in=account_ids, margin_type=Account.MarginType.PORTFOLIO_MARGIN,
    ).exclude(pk__in=open_ids).annotate(
        snapshot_equity=Subquery(latest.values("equity")[:1]),
        snapshot_at=Subquery(latest.values("computed_at")[:1]),
    ).annotate(
        # read_equity's test of a book that moved after its snapshot, for the whole chunk
        ledger_moved=Exists(LedgerEntry.objects.filter(account=OuterRef("pk"),
                                                       created_at__gt=OuterRef("snapshot_at"))),
        position_moved=Exists(Position.objects.filter(account=OuterRef("pk"),
                                                      updated_at__gt=OuterRef("snapshot_at"))),
    ).values_list("pk", "client__holds_unlisted_derivatives", "snapshot_equity",
                  "ledger_moved", "position_moved")
    minimums: dict[bool, object] = {}
    short = set()
    for pk, holds_unlisted, equity, ledger_moved, position_moved in rows:
        if holds_unlisted not in minimums:
            minimums[holds_unlisted] = required_equity(
                client=_MinimumFacts(holds_unlisted), rule_set=rule_set, purpose=MAINTENANCE)
        if equity is None or ledger_moved or position_moved or equity < minimums[holds_unlisted]:
            short.add(pk)
    return sorted(open_ids | short)


def assess_account(*, account_id: int, rule_set: RuleSet, today: date,
                   run: DeficiencyRun | None = None) -> Deficiency | None:
    """One account, one transaction: open, escalate or cure its deficiency as of `today`."""
    run = run or DeficiencyRun(today=today)
    with transaction.atomic():
        account = Account.objects.select_for_update().select_related("client").get(pk=account_id)
        deficiency = (Deficiency.objects.select_for_update()
                      .filter(account=account, state__in=Deficiency.OPEN_STATES).first())
        equity = read_equity(account)
        if not equity.complete:
            return deficiency
        if deficiency is None:
            if account.margin_type != Account.MarginType.PORTFOLIO_MARGIN:
                return None
            minimum = required_equity(client=client_facts(account.client), rule_set=rule_set,
                                      purpose=MAINTENANCE)
            if equity.amount >= minimum:
                return None
            if not business_days.is_business_day(today, account.firm.exchange_calendar):
                return None  # T is a business day: the next session opens it if still short
            deficiency = _open(account, rule_set=rule_set, today=today, minimum=minimum,
                               equity=equity.amount, source=equity.source)
            run.add(account, "opened")
        elif equity.amount >= deficiency.minimum:
            _cure(deficiency, account, today=today, equity=equity.amount)
            run.add(account, "cured")
            return deficiency
        deficiency.last_equity, deficiency.last_evaluated_on = equity.amount, today
        deficiency.save(update_fields=["last_equity", "last_evaluated_on", "updated_at"])
        for step in _escalate(deficiency, account, today=today):
            run.add(account, step)
    return deficiency


def _open(account: Account, *, rule_set: RuleSet, today: date, minimum, equity,
          source: str) -> Deficiency:
    code = account.firm.exchange_calendar

    def day(n: int) -> date:
        return business_days.add_business_days(today, n, code)

    deficiency = Deficiency.objects.create(
        firm=account.firm, account=account, rule_set=rule_set, opened_on=today, minimum=minimum,
        equity_at_open=equity, equity_source=source, last_equity=equity, last_evaluated_on=today,
        notice_due_on=day(rule_set.deficiency_notice_day),
        restriction_due_on=day(rule_set.deficiency_restriction_day),
        downgrade_due_on=day(rule_set.deficiency_conversion_day))
    audit.record(firm=account.firm, actor=None, event_type="deficiency.opened", obj=deficiency,
                 after={"account": account.number, "equity": equity, "minimum": minimum,
                        "equity_source": source, "rule_set_version": rule_set.version,
                        "notice_due_on": deficiency.notice_due_on,
                        "restriction_due_on": deficiency.restriction_due_on,
                        "downgrade_due_on": deficiency.downgrade_due_on})
    return deficiency


def _escalate(deficiency: Deficiency, account: Account, *, today: date) -> list[str]:
    steps: list[str] = []
    context = {"deficiency": deficiency, "account": account}
    if deficiency.noticed_on is None and today >= deficiency.notice_due_on:
        deficiency.noticed_on = today
        deficiency.save(update_fields=["noticed_on", "updated_at"])
        audit.record(firm=account.firm, actor=None, event_type="deficiency.notice_sent",
                     obj=deficiency, after={"account": account.number, "equity": deficiency.last_equity,
                                            "minimum": deficiency.minimum})
        mail_client_on_commit(client=account.client, template="deficiency_notice", context=context)
        steps.append("notice")
    if deficiency.state == D.OPEN and today >= deficiency.restriction_due_on:
        # FINRA 4210(g): not met by T+3, risk-reducing trades only.
        imposed = account.status == Account.Status.OPEN
        if imposed:
            change_account_status(account, Account.Status.RESTRICTED,
                                  event_type="account.restricted",
                                  reason=f"portfolio-margin equity below {deficiency.minimum} "
                                         f"since {deficiency.opened_on} (deficiency "
                                         f"#{deficiency.pk}); risk-reducing trades only")
        deficiency.state, deficiency.restricted_on = D.RESTRICTED, today
        deficiency.restricted_by_timeline = imposed
        deficiency.save(update_fields=["state", "restricted_on", "restricted_by_timeline",
                                       "updated_at"])
        audit.record(firm=account.firm, actor=None, event_type="deficiency.account_restricted",
                     obj=deficiency, after={"account": account.number, "imposed": imposed})
        mail_client_on_commit(client=account.client, template="account_restricted",
                              context=context)
        steps.append("restricted")
    if deficiency.state == D.RESTRICTED and today >= deficiency.downgrade_due_on:
        changes = {"margin_type": Account.MarginType.REG_T}
        if deficiency.restricted_by_timeline:
            # The restriction served the PM minimum; under Reg T that minimum no longer applies.
            changes["status"] = Account.Status.OPEN
        change_account(account=account, actor=None, event_type="account.downgraded_to_reg_t",
                       reason=f"portfolio-margin equity deficiency #{deficiency.pk} not cured "
                              f"by {deficiency.downgrade_due_on}", **changes)
        deficiency.state, deficiency.downgraded_on = D.DOWNGRADED, today
        deficiency.save(update_fields=["state", "downgraded_on", "updated_at"])
        audit.record(firm=account.firm, actor=None, event_type="deficiency.downgraded",
                     obj=deficiency, after={"account": account.number, "margin_type": "reg_t"})
        mail_client_on_commit(client=account.client, template="account_downgraded",
                              context=context)
        steps.append("downgraded")
    return steps


def change_account_status(account: Account, status: str, *, event_type: str, reason: str) -> None:
    change_account(account=account, actor=None, event_type=event_type, reason=reason,
                   status=status)
    account.status = status


def _cure(deficiency: Deficiency, account: Account, *, today: date, equity) -> None:
    lifted = deficiency.restricted_by_timeline and account.status == Account.Status.RESTRICTED
    if lifted:
        change_account_status(account, Account.Status.OPEN, event_type="account.restriction_lifted",
                              reason=f"portfolio-margin equity deficiency #{deficiency.pk} cured")
    deficiency.state, deficiency.cured_on = D.CURED, today
    deficiency.last_equity, deficiency.last_evaluated_on = equity, today
    deficiency.save(update_fields=["state", "cured_on", "last_equity", "last_evaluated_on",
                                   "updated_at"])
    audit.record(firm=account.firm, actor=None, event_type="deficiency.cured", obj=deficiency,
                 after={"account": account.number, "equity": equity, "minimum": deficiency.minimum,
                        "restriction_lifted": lifted})
    mail_client_on_commit(client=account.client, template="deficiency_cured",
                          context={"deficiency": deficiency, "account": account})


def check_cures(*, account_ids: list[int], today: date) -> list[Deficiency]:
    """After a deposit or a position change: close open deficiencies the book now covers.

    Escalation waits for the scheduled run; a cure is taken as soon as it is seen.
    """
    cured: list[Deficiency] = []
    for deficiency in Deficiency.objects.filter(account_id__in=account_ids,
                                                state__in=Deficiency.OPEN_STATES).order_by("pk"):
        with transaction.atomic():
            account = Account.objects.select_for_update().select_related("client").get(
                pk=deficiency.account_id)
            locked = Deficiency.objects.select_for_update().get(pk=deficiency.pk)
            if locked.state not in Deficiency.OPEN_STATES:
                continue
            equity = read_equity(account)
            if equity.complete and equity.amount >= locked.minimum:
                _cure(locked, account, today=today, equity=equity.amount)
                cured.append(locked)
    return cured
