"""Proposing, recomputing, approving and rejecting liquidation plans.

A plan rests on the account's latest valuation (``MarginSnapshot``): its recorded book and
market are rebuilt (``margin.reproduce``), never today's, so the plan can be recomputed from what
was stored. The requirement cured is the one the call is about: the portfolio-margin
requirement with the firm's house layer (PM deficiency, house call), Reg T's initial requirement
for a Reg T call (liquidated "to meet the call or to clear the deficiency existing on
liquidation day, whichever is less", MARGIN_CALLS.md 1), 4210(c) maintenance for a
maintenance call; on request for an account in deficit, its margin type's. The cushion is the
call policy's ``house_cushion``; the half spreads and the fixed penalty are policy rows too.

Proposing again (recompute) supersedes the plan awaiting a decision. Approving goes through
``brokerage.approvals`` (a second person, re-validated against the account's latest valuation);
approved, the plan is an instruction and an overdue call moves to liquidation pending. Booking
the fills is the trading-controls issue's; ``margin.calls.services.record_liquidation`` then
meets the call and counts toward the practice counter.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.models import Account
from brokerage import approvals, audit
from brokerage.errors import Conflict, InvalidInput, NotFound, NotPermitted
from brokerage.models import ApprovalRequest
from brokerage.roles import STAFF_ROLES, Role
from brokerage.scope import lock_in_firm
from brokerage.tenancy import firm_of, role_of
from margin.engine import liquidation as engine
from margin.engine.portfolio import PRODUCT_CLASSES
from margin.engine.valuation import value_positions

from ..calls import policy as call_policy
from ..calls import services as call_services
from ..calls.models import CallPolicy, MarginCall
from ..figures import money
from ..models import MarginSnapshot
from .models import LiquidationPlan

APPROVAL_KIND = "liquidation_plan"
#: Who may approve a plan someone else proposed: the margin desk works the overdue call and
#: approves its plan as the second person (issue 19: "the desk ... approves a plan proposed by
#: someone else"), beside the firm's admins and risk officers; four eyes still applies.
APPROVER_ROLES = frozenset({Role.FIRM_ADMIN, Role.RISK_OFFICER, Role.MARGIN_DESK})
K, S = MarginCall.Kind, MarginCall.Status
PLANNED_STATES = (S.OVERDUE, S.LIQUIDATION_PENDING)


class PlanError(InvalidInput):
    """A plan that cannot be proposed as asked."""


def _require(actor, firm, roles, doing: str) -> None:
    if actor is None or firm_of(actor) != firm or role_of(actor) not in roles:
        who = "staff" if roles is STAFF_ROLES else "admins, risk officers and margin desk"
        raise NotPermitted(f"only the firm's {who} may {doing}")


def policy_costs(policy: CallPolicy) -> engine.Costs:
    """The half-spread table and the fixed penalty of the policy (the platform's values for a
    version adopted before the rows existed)."""
    defaults = call_policy.default_rows()

    def value(name: str) -> float:
        return float((policy.rows.get(name) or defaults[name])["value"])

    return engine.Costs({cls: value(f"liquidation_half_spread_{cls}")
                         for cls in PRODUCT_CLASSES}, value("liquidation_fixed_penalty"))


def _basis(account: Account, call: MarginCall | None) -> str:
    if call is not None:
        if call.kind == K.PM_MINIMUM_EQUITY:
            raise PlanError("a minimum-equity deficiency is equity below the PM minimum: closing "
                            "trades do not raise equity, so no liquidation cures it",
                            field="call", code="not_curable_by_liquidation")
        if call.kind == K.REG_T:
            return engine.REGT_INITIAL
        if call.kind == K.MAINTENANCE:
            return engine.REGT_MAINTENANCE
        if call.kind in (K.PM_DEFICIENCY, K.HOUSE):
            return engine.PM_BASIS
        raise PlanError(f"a {call.get_kind_display()} is not cured by a liquidation plan",
                        field="call", code="not_curable_by_liquidation")
    if account.margin_type == Account.MarginType.PORTFOLIO_MARGIN:
        return engine.PM_BASIS
    if account.margin_type == Account.MarginType.REG_T:
        return engine.REGT_MAINTENANCE
    return engine.REGT_INITIAL


def _latest_snapshot(account: Account) -> MarginSnapshot:
    snapshot = MarginSnapshot.objects.filter(account=account).order_by("-computed_at",
                                                                       "-id").first()
    if snapshot is None or not snapshot.records_inputs:
        raise PlanError(f"{account.number} has no valuation to plan on", field="account",
                        code="no_valuation")
    return snapshot


def _book(snapshot: MarginSnapshot, basis: str):
    """The snapshot's recorded book and market as an engine portfolio, valued."""
    from ..book import build_portfolio
    from ..reproduce import _rate, _rebuild

    rebuilt = _rebuild(snapshot)
    methods = ("portfolio_margin",) if basis == engine.PM_BASIS else ("portfolio_margin",
                                                                      "reg_t")
    portfolio = build_portfolio(rebuilt.positions, valuation_date=snapshot.valuation_date,
                                prices=rebuilt.prices, vols=rebuilt.vols, rate=_rate(snapshot),
                                params=rebuilt.params, valuation_time=snapshot.computed_at,
                                methods=methods)
    return portfolio, rebuilt.params, value_positions(portfolio, rebuilt.params, True)


def _target(call: MarginCall | None, equity: float, cushion: float, requirement: float
            ) -> engine.Target:
    allowed = 0.0
    if call is not None and call.kind == K.REG_T:
        # the lesser of the call and the deficiency existing on liquidation day
        deficiency = (1 + cushion) * requirement - equity
        allowed = max(0.0, deficiency - float(call.amount_due))
    return engine.Target(equity=equity, cushion=cushion, allowed_deficit=allowed)


def _money_plan(plan: engine.Plan) -> dict:
    shown = plan.as_dict()
    for key in ("cost", "spread_cost", "penalty_cost", "requirement_before",
                "requirement_after", "model_requirement_after", "equity_before",
                "equity_after"):
        if shown[key] is not None:
            shown[key] = str(money(shown[key]))
    for trade in shown["trades"]:
        trade["spread_cost"] = str(money(trade["spread_cost"]))
    return shown


def propose_plan(*, actor, call: MarginCall | None = None, account: Account | None = None
                 ) -> LiquidationPlan:
    """Propose (or recompute) the plan for an overdue call, or on request for an account in
    deficit; the plan awaiting a decision for the same call or account is superseded."""
    if (call is None) == (account is None):
        raise PlanError("name a call or an account", field="call", code="required")
    account = call.account if call is not None else account
    _require(actor, account.firm, STAFF_ROLES, "propose a liquidation plan")
    if call is not None and call.status not in PLANNED_STATES:
        raise Conflict(f"call #{call.pk} is {call.status}: a plan is proposed for an overdue "
                       "call (ask for the account in deficit instead)", field="status")
    basis = _basis(account, call)
    snapshot = _latest_snapshot(account)
    if call is None and snapshot.excess >= 0:
        raise PlanError(f"{account.number} is not in deficit (excess {snapshot.excess})",
                        field="account", code="not_in_deficit")
    policy = call.policy if call is not None else call_policy.active_policy(account.firm)
    costs = policy_costs(policy)
    cushion = float(policy.value("house_cushion"))
    portfolio, params, valuation = _book(snapshot, basis)
    model = engine.build_model(portfolio, params, valuation, costs, basis)
    verify = engine.engine_requirement(portfolio, params, valuation, basis, model)
    target = _target(call, float(snapshot.equity), cushion,
                     verify(engine.np.zeros(model.n, engine.np.int64)))
    plan = engine.solve(model, target, verify)
    alternative = engine.greedy(model, target, verify)
    return _store(actor=actor, account=account, call=call, snapshot=snapshot, policy=policy,
                  basis=basis, plan=plan, alternative=alternative, target=target, costs=costs)


def _store(*, actor, account, call, snapshot, policy, basis, plan: engine.Plan,
           alternative: engine.Plan, target: engine.Target, costs: engine.Costs
           ) -> LiquidationPlan:
    with transaction.atomic():
        Account.objects.select_for_update().get(pk=account.pk)
        for old in LiquidationPlan.objects.select_for_update().filter(
                account=account, call=call, status=LiquidationPlan.Status.PROPOSED):
            approvals.close_pending(kind=APPROVAL_KIND, subject=old, by=actor,
                                    reason="recomputed")
            old.status = LiquidationPlan.Status.SUPERSEDED
            old.save(update_fields=["status"])
            audit.record(firm=account.firm, actor=actor, event_type="liquidation_plan.superseded",
                         obj=old, after={"status": old.status})
        row = LiquidationPlan.objects.create(
            firm=account.firm, account=account, call=call, snapshot=snapshot, policy=policy,
            basis=basis, outcome=plan.status, solver_status=plan.solver_status[:200],
            message=plan.message, trades=[t.as_dict() for t in plan.trades],
            cost=money(plan.cost), spread_cost=money(plan.spread_cost),
            penalty_cost=money(plan.penalty_cost), equity_before=money(target.equity),
            equity_after=money(plan.equity_after), requirement_before=money(
                plan.requirement_before), requirement_after=money(plan.requirement_after),
            cushion=Decimal(str(target.cushion)), allowed_deficit=money(target.allowed_deficit),
            tightening=plan.tightening, rounds=plan.rounds, seconds=plan.seconds,
            costs={"half_spread": costs.half_spread, "fixed_penalty": costs.fixed_penalty},
            greedy=_money_plan(alternative), proposed_by=actor, proposed_at=timezone.now())
        if plan.status == engine.CURED:
            approvals.request_approval(
                kind=APPROVAL_KIND, firm=account.firm, subject=row, requested_by=actor,
                drafted_on=snapshot.pk, makers=approvals.makers_of((actor, "proposed")),
                summary=f"liquidation plan for {account.number}: {len(plan.trades)} trades, "
                        f"cost {row.cost}")
        audit.record(firm=account.firm, actor=actor, event_type="liquidation_plan.proposed",
                     obj=row, after={"account": account.number, "call": call.pk if call else None,
                                     "snapshot": snapshot.pk, "basis": basis,
                                     "outcome": plan.status, "cost": str(row.cost),
                                     "greedy_cost": row.greedy["cost"],
                                     "trades": row.trades})
    return row


def require_approver(*, plan: LiquidationPlan, actor) -> None:
    """Refuse a role that may never approve a plan (asked before anything about the plan)."""
    _require(actor, plan.firm, APPROVER_ROLES, "approve a liquidation plan")


def approve_plan(*, plan: LiquidationPlan, actor, reason: str = "") -> LiquidationPlan:
    # Who may approve is asked before what state the plan is in: a role that may never
    # approve gets its 403, not a 409 telling it the plan's outcome.
    require_approver(plan=plan, actor=actor)
    approvals.decide(request=_request(plan), decider=actor, approve=True, reason=reason)
    return LiquidationPlan.objects.get(pk=plan.pk)


def reject_plan(*, plan: LiquidationPlan, actor, reason: str) -> LiquidationPlan:
    if not (reason or "").strip():
        raise PlanError("say why the plan is rejected", field="reason", code="required")
    approvals.turn_down(request=_request(plan), actor=actor, reason=reason)
    return LiquidationPlan.objects.get(pk=plan.pk)


def _request(plan: LiquidationPlan) -> ApprovalRequest:
    if plan.outcome != engine.CURED:
        raise Conflict(f"plan #{plan.pk} is {plan.outcome}: there is nothing to approve",
                       field="state")
    return approvals.request_of(kind=APPROVAL_KIND, subject=plan)


# The approvals kind --------------------------------------------------------------------------

def _lock(request: ApprovalRequest) -> LiquidationPlan:
    return lock_in_firm(LiquidationPlan, request.subject_id,
                        missing=NotFound("no such liquidation plan in your firm"))


def _current_version(plan: LiquidationPlan) -> int:
    """The account's latest valuation: a plan drafted on an older one is recomputed."""
    latest = MarginSnapshot.objects.filter(account_id=plan.account_id).order_by(
        "-computed_at", "-id").values_list("pk", flat=True).first()
    return latest or 0


def _authorize(ruling: approvals.Ruling) -> None:
    if ruling.approve or str(ruling.decider.pk) not in ruling.request.makers:
        _require(ruling.decider, ruling.subject.firm, APPROVER_ROLES,
                 f"{ruling.verb} a liquidation plan")


def _revalidate(ruling: approvals.Ruling) -> None:
    plan: LiquidationPlan = ruling.subject
    if plan.status != LiquidationPlan.Status.PROPOSED:
        raise Conflict(f"plan #{plan.pk} is {plan.status}", field="state")
    if plan.call_id is not None:
        call = MarginCall.objects.get(pk=plan.call_id)
        if call.status not in PLANNED_STATES:
            raise Conflict(f"call #{call.pk} is {call.status} now: the plan is not needed",
                           field="state")


def _close(plan: LiquidationPlan, ruling: approvals.Ruling, status: str) -> None:
    plan.status, plan.decided_by, plan.decided_at = status, ruling.decider, timezone.now()
    plan.decision_reason = ruling.reason
    plan.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])


def _apply(ruling: approvals.Ruling) -> approvals.Change:
    plan: LiquidationPlan = ruling.subject
    _close(plan, ruling, LiquidationPlan.Status.APPROVED)
    if plan.call_id is not None:
        call = MarginCall.objects.get(pk=plan.call_id)
        if call.status == S.OVERDUE:
            call_services.start_liquidation(call=call, actor=ruling.decider,
                                            note=f"liquidation plan #{plan.pk} approved")
    return approvals.Change(before={"status": LiquidationPlan.Status.PROPOSED},
                            after={"status": plan.status, "instruction": plan.trades,
                                   "cost": str(plan.cost)})


def _reject(ruling: approvals.Ruling) -> approvals.Change:
    _close(ruling.subject, ruling, LiquidationPlan.Status.REJECTED)
    return approvals.Change(after={"status": LiquidationPlan.Status.REJECTED})


approvals.register(approvals.ApprovalKind(
    name=APPROVAL_KIND, subject_model="margin.liquidationplan", audit_prefix="liquidation_plan",
    lock=_lock, current_version=_current_version,
    describe=lambda plan: f"liquidation plan #{plan.pk}", authorize=_authorize,
    revalidate=_revalidate, apply=_apply, reject=_reject,
    target="the account's valuation", remedy="recompute the plan"))
