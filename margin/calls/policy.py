"""The call policy as data: the platform default (the rule book's values, each with its source
tag and citation) and a firm's versions, changed through ``brokerage.approvals``.

Tags as MARGIN_CALLS.md uses them: P (primary text read), P* (primary quoted by secondary
sources), R (recalled, not confirmed: verify), B (broker practice), X (our proposal); a firm's
own value is tagged H (house). The platform default is the regulatory floor: a firm may only
make a value stricter (a shorter due period, a smaller de-minimis amount, a higher minimum, a
longer restriction), so the stricter of house and regulatory policy is what applies, and a call
records which one produced it (``rule_source``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from brokerage import approvals, audit
from brokerage.errors import InvalidInput, NotPermitted
from brokerage.models import ApprovalRequest, Firm
from brokerage.roles import Role
from brokerage.tenancy import firm_of, role_of

from .models import CallPolicy

APPROVAL_KIND = "call_policy"
POLICY_ROLES = frozenset({Role.FIRM_ADMIN, Role.RISK_OFFICER, Role.COMPLIANCE})
HOUSE = "H"

#: how a value may move from the platform's: "down" (a firm may only lower it: due days,
#: de-minimis amounts), "up" (only raise it: minimums, restriction lengths), "any" (house
#: practice, no regulatory floor)
DOWN, UP, ANY = "down", "up", "any"


@dataclass(frozen=True)
class Row:
    value: str
    kind: str  # "days", "hours", "money", "fraction", "count", "ratio", "switch" (0 or 1)
    source: str
    citation: str
    stricter: str


FAQ = "FINRA Portfolio Margin FAQ"
DEFAULT: dict[str, Row] = {
    # Due periods, business days from T (rule book sections 0-6)
    "reg_t_due_days": Row("3", "days", "P", "12 CFR 220.2 payment period (T+1 settlement + 2); "
                          "220.4(c)(3)", DOWN),
    "maintenance_due_days": Row("15", "days", "R", "FINRA 4210(f)(6): within 15 business days",
                                DOWN),
    "pm_deficiency_due_days": Row("3", "days", "R", "FINRA 4210(g)(10)(A)", DOWN),
    "pm_minimum_equity_due_days": Row("3", "days", "P*", f"{FAQ}: T+3", DOWN),
    "house_due_days": Row("3", "days", "B", "margin agreement (house call, 220.1(b)(2), "
                          "4210(d)); brokers use T+2 to T+5", ANY),
    "collateral_due_hours": Row("24", "hours", "X", "MARGIN_CALLS.md 7: no rule; HF <= 1.10 "
                                "call due in N hours", DOWN),
    # De-minimis amounts, dollars
    "reg_t_de_minimis": Row("1000.00", "money", "P", "FINRA Regulation T filings: liquidate or "
                            "extend if payment due exceeds $1,000 (220.4(d))", DOWN),
    "intraday_de_minimis": Row("1000.00", "money", "P*", "FINRA 4210(d)(2)(D): lesser of 5% of "
                               "equity or $1,000", DOWN),
    # House cushion over the requirement (fraction of it): house calls
    "house_cushion": Row("0.00", "fraction", "X", "house requirement over the regulatory one "
                         "(220.1(b)(2); 4210(d)); none unless the firm sets one", UP),
    # PM minimum equity and the deficiency's consequences (moved from eligibility)
    "pm_minimum_equity": Row("100000.00", "money", "P*", "FINRA 4210(g); Cboe Rule 10.4; "
                             f"{FAQ}", UP),
    "pm_minimum_equity_unlisted": Row("5000000.00", "money", "R", "FINRA 4210(g): accounts "
                                      "holding unlisted derivatives", UP),
    "pm_minimum_equity_notice_day": Row("1", "days", "X", "house timeline: notice", DOWN),
    "pm_minimum_equity_restriction_day": Row("3", "days", "P*", f"{FAQ}: not met by T+3, "
                                             "margin-reducing transactions only", DOWN),
    "pm_minimum_equity_downgrade_day": Row("5", "days", "B", "house practice: downgrade to "
                                           "Reg T (IBKR, tastytrade)", ANY),
    # The practice counter: liquidations in a rolling window, and the restriction it brings
    "practice_liquidations": Row("3", "count", "P*", f"{FAQ}: 3 liquidations in a rolling "
                                 "12 months; NYSE 432(b) predecessor; FINRA paragraph [R]", DOWN),
    "practice_months": Row("12", "count", "P*", f"{FAQ}: rolling 12 months", UP),
    "funds_on_hand_days": Row("90", "count", "P*", f"{FAQ}: funds on hand for 90 days", UP),
    "intraday_block_days": Row("90", "count", "P*", "FINRA 4210(d)(2)(D): 90 calendar days "
                               "after the 5th business day", UP),
    # The intraday margin deficit (rule book section 5): no due date by rule ("promptly");
    # close of business on the 5th business day is when a practice of misses brings the block
    "intraday_due_days": Row("5", "days", "P*", "FINRA 4210(d)(2)(D): satisfied promptly; "
                             "unmet at close of business on the 5th business day", DOWN),
    "intraday_lapse_days": Row("15", "days", "P*", "FINRA 4210(d)(2): outstanding until "
                               "immediately after close of business on the 15th business day",
                               UP),
    "intraday_de_minimis_fraction": Row("0.05", "fraction", "P*", "FINRA 4210(d)(2)(D): "
                                        "lesser of 5% of equity or $1,000", DOWN),
    # "Makes a practice" is not defined by the rule: a count of non-de-minimis misses at the
    # 5th business day within a look-back (the miss being judged included)
    "intraday_practice_misses": Row("3", "count", "X", "4210(d)(2)(D) 'makes a practice' is "
                                    "undefined: our proposal, as the FAQ's 3 liquidations in "
                                    "12 months; IBKR: 4+ misses in 12 months [B]", DOWN),
    "intraday_practice_months": Row("12", "count", "B", "look-back of the intraday practice "
                                    "counter: IBKR's 12 months; the FAQ's rolling 12 months",
                                    UP),
    # Crypto health-factor bands (no rule; Aave practice)
    "health_factor_warn": Row("1.20", "ratio", "X", "MARGIN_CALLS.md 7: HF <= 1.20 warn", UP),
    "health_factor_call": Row("1.10", "ratio", "X", "MARGIN_CALLS.md 7: HF <= 1.10 collateral "
                              "call", UP),
    "health_factor_liquidate": Row("1.00", "ratio", "X", "Aave: liquidatable when HF < 1", UP),
    # Liquidation plans (issue 12): what closing costs, per product class in price units
    **{f"liquidation_half_spread_{cls}": Row(value, "money", "X", "house estimate of the half "
                                             f"bid-ask spread of {cls} contracts (price units)",
                                             ANY)
       for cls, value in (("equity", "0.02"), ("narrow_index", "0.05"),
                          ("broad_index_high_cap", "0.25"), ("broad_index", "0.10"),
                          ("future", "0.125"), ("crypto", "1.00"), ("stablecoin", "0.0005"))},
    # The pre-trade check (issue 13): a PM account whose deficiency is past due takes no order
    # that increases its requirement (rule book 3: "no new opening orders except risk-reducing
    # ones"); [R], so a switch the firm's compliance officer can correct either way.
    "reject_increasing_orders_past_due": Row("1", "switch", "R", "FINRA 4210(g)(10) [R]: a PM "
                                             "deficiency not met by its due date, no new "
                                             "opening orders except risk-reducing ones", ANY),
    # Option expiry (issue 13): exercise by exception of an option this much in the money
    "occ_exercise_threshold": Row("0.01", "money", "P*", "OCC Rules 805: exercise by exception "
                                  "of options $0.01 or more in the money at expiry", ANY),
    "liquidation_fixed_penalty": Row("25.00", "money", "X", "house cost of touching a position "
                                     "in a liquidation (ticket, operational risk)", ANY),
}

#: the kind of call -> the policy row of its due period and the rule it cites
DUE_ROW = {"reg_t": "reg_t_due_days", "maintenance": "maintenance_due_days",
           "pm_deficiency": "pm_deficiency_due_days",
           "pm_minimum_equity": "pm_minimum_equity_due_days", "house": "house_due_days",
           "intraday": "intraday_due_days"}


def typed(name: str, value: Any) -> Decimal | int | bool:
    """A stored value as the code uses it: whole numbers for days and counts, a switch as a
    bool, else Decimal."""
    if DEFAULT[name].kind == "switch":
        return str(value) == "1"
    if DEFAULT[name].kind in ("days", "hours", "count"):
        return int(value)
    return Decimal(str(value))


def default_rows() -> dict[str, dict[str, str]]:
    return {name: {"value": row.value, "source": row.source, "citation": row.citation}
            for name, row in DEFAULT.items()}


class PolicyError(InvalidInput):
    """A refused policy change, every problem listed."""


def _parse(name: str, raw: Any) -> tuple[Any, str | None]:
    row = DEFAULT[name]
    if row.kind == "switch":
        switch = {True: 1, False: 0, "1": 1, "0": 0, "true": 1, "false": 0}
        key = raw.strip().lower() if isinstance(raw, str) else raw
        if isinstance(key, (dict, list)) or key not in switch:
            return None, f"{raw!r} is not a switch (true or false)"
        return switch[key], None
    if row.kind in ("days", "hours", "count"):
        if isinstance(raw, bool) or not (isinstance(raw, int) or (
                isinstance(raw, str) and raw.strip().isdigit())):
            return None, f"{raw!r} is not a whole number"
        number: Any = int(raw)
        if number < (1 if row.kind != "days" else 0):
            return None, f"{number} is too small"
        return number, None
    try:
        number = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        return None, f"{raw!r} is not a number"
    if not number.is_finite() or number < 0:
        return None, f"{raw!r} is not a non-negative number"
    return number, None


def check_values(values: dict[str, Any]) -> tuple[dict[str, dict[str, str]], list]:
    """A firm's changed values against the platform's: (rows, errors as (field, code, msg))."""
    errors: list[tuple[str, str, str]] = []
    rows = default_rows()
    for name in sorted(set(values) - set(DEFAULT)):
        errors.append((f"values.{name}", "unknown_field", "not a call-policy row"))
    for name in sorted(set(values) & set(DEFAULT)):
        number, problem = _parse(name, values[name])
        if problem:
            errors.append((f"values.{name}", "invalid", problem))
            continue
        floor, rule = typed(name, DEFAULT[name].value), DEFAULT[name]
        if rule.stricter == DOWN and number > floor:
            errors.append((f"values.{name}", "looser_than_regulation",
                           f"{number} is looser than the platform's {floor} ({rule.citation}): "
                           "a firm may only make it stricter"))
            continue
        if rule.stricter == UP and number < floor:
            errors.append((f"values.{name}", "looser_than_regulation",
                           f"{number} is below the platform's {floor} ({rule.citation}): "
                           "a firm may only make it stricter"))
            continue
        if number != floor:
            rows[name] = {"value": str(number), "source": HOUSE,
                          "citation": f"house policy (platform: {floor}, {rule.citation})"}
    if not errors:
        _check_order(rows, errors)
    return rows, errors


def _check_order(rows: dict[str, dict[str, str]], errors: list) -> None:
    def v(name: str):
        return typed(name, rows[name]["value"])

    if v("pm_minimum_equity_notice_day") > v("pm_minimum_equity_restriction_day"):
        errors.append(("values.pm_minimum_equity_notice_day", "invalid",
                       "the notice goes out no later than the restriction"))
    if v("pm_minimum_equity_downgrade_day") < v("pm_minimum_equity_restriction_day"):
        errors.append(("values.pm_minimum_equity_downgrade_day", "invalid",
                       "the downgrade comes no earlier than the restriction"))
    if v("intraday_due_days") > v("intraday_lapse_days"):
        errors.append(("values.intraday_due_days", "invalid",
                       "the 5th-business-day check comes no later than the lapse"))
    if not v("health_factor_liquidate") <= v("health_factor_call") <= v("health_factor_warn"):
        errors.append(("values.health_factor_call", "invalid",
                       "health-factor bands run liquidate <= call <= warn"))


# Reading ------------------------------------------------------------------------------------

def active_policy(firm: Firm) -> CallPolicy:
    """The firm's active version; version 1, the platform default, adopted on first use."""
    found = CallPolicy.objects.filter(firm=firm, status=CallPolicy.Status.ACTIVE).first()
    if found is not None:
        return found
    with transaction.atomic():
        Firm.objects.select_for_update().get(pk=firm.pk)
        found = CallPolicy.objects.filter(firm=firm, status=CallPolicy.Status.ACTIVE).first()
        if found is None and not CallPolicy.objects.filter(firm=firm).exists():
            found = CallPolicy.objects.create(firm=firm, version=1, rows=default_rows(),
                                              status=CallPolicy.Status.ACTIVE,
                                              reason="platform default (MARGIN_CALLS.md)")
            audit.record(firm=firm, actor=None, event_type="call_policy.adopted", obj=found,
                         after={"version": 1, "rows": found.rows})
    if found is None:
        raise RuntimeError(f"{firm} has call-policy versions but none active")
    return found


def due_rule(policy: CallPolicy, kind: str) -> tuple[str, str]:
    """The citation and source (regulatory or house) of a call kind's due period."""
    row = policy.row(DUE_ROW.get(kind, "collateral_due_hours"))
    if kind == "collateral":  # no rule (rule book 7): the firm's bands, all house practice
        band = policy.rows["health_factor_call"]
        return (f"health factor at or under {band['value']} ({band['citation']}); due in "
                f"{row['value']} hours ({row['citation']})")[:200], "house"
    if kind == "house":  # the house requirement itself is the firm's (220.1(b)(2))
        cushion = policy.rows["house_cushion"]
        return (f"house cushion {cushion['value']} ({cushion['citation']}); due: "
                f"{row['citation']}")[:200], "house"
    return row["citation"][:200], "house" if row["source"] == HOUSE else "regulatory"


# Changing ------------------------------------------------------------------------------------

def _require_role(actor, firm: Firm, doing: str) -> None:
    if firm_of(actor) != firm or role_of(actor) not in POLICY_ROLES:
        raise NotPermitted(f"only the firm's admins, risk and compliance officers may {doing}")


def propose_policy(*, firm: Firm, actor, values: dict[str, Any], reason: str) -> CallPolicy:
    """A new version: the platform default with the firm's stricter ``values``; takes effect
    when a second person approves it, if the version it was drafted on is still active."""
    _require_role(actor, firm, "propose a call policy")
    if not (reason or "").strip():
        raise PolicyError("say why the policy changes", field="reason", code="required")
    if not isinstance(values, dict) or not values:
        raise PolicyError("name at least one row to change", field="values", code="required")
    rows, errors = check_values(values)
    if errors:
        raise PolicyError(errors=errors)
    drafted_on = active_policy(firm).version
    with transaction.atomic():
        Firm.objects.select_for_update().get(pk=firm.pk)
        latest = CallPolicy.objects.filter(firm=firm).aggregate(v=Max("version"))["v"] or 0
        proposal = CallPolicy.objects.create(firm=firm, version=latest + 1, rows=rows,
                                             reason=reason.strip(), drafted_on=drafted_on,
                                             created_by=actor)
        request = approvals.request_approval(
            kind=APPROVAL_KIND, firm=firm, subject=proposal, requested_by=actor,
            drafted_on=drafted_on, makers=approvals.makers_of((actor, "proposed")),
            summary=f"call policy v{proposal.version}: {proposal.reason}")
        audit.record(firm=firm, actor=actor, event_type="call_policy.proposed", obj=proposal,
                     after={"version": proposal.version, "values": values,
                            "reason": proposal.reason, "drafted_on": drafted_on,
                            "approval_request": request.pk})
    return proposal


def approve_policy(*, proposal: CallPolicy, actor, reason: str = "") -> CallPolicy:
    approvals.decide(request=approvals.request_of(kind=APPROVAL_KIND, subject=proposal),
                     decider=actor, approve=True, reason=reason)
    return CallPolicy.objects.get(pk=proposal.pk)


def reject_policy(*, proposal: CallPolicy, actor, reason: str) -> CallPolicy:
    if not (reason or "").strip():
        raise PolicyError("say why the proposal is rejected", field="reason", code="required")
    approvals.turn_down(request=approvals.request_of(kind=APPROVAL_KIND, subject=proposal),
                        actor=actor, reason=reason)
    return CallPolicy.objects.get(pk=proposal.pk)


def _lock(request: ApprovalRequest) -> CallPolicy:
    Firm.objects.select_for_update().get(pk=request.firm_id)
    return CallPolicy.objects.select_for_update().get(pk=request.subject_id)


def _current_version(proposal: CallPolicy) -> int:
    active = CallPolicy.objects.filter(firm_id=proposal.firm_id,
                                       status=CallPolicy.Status.ACTIVE).first()
    return active.version if active else 0


def _revalidate(ruling: approvals.Ruling) -> None:
    changed = {name: row["value"] for name, row in ruling.subject.rows.items()
               if row["source"] == HOUSE}
    _, errors = check_values(changed)
    if errors:
        raise PolicyError(errors=errors)


def _close(proposal: CallPolicy, ruling: approvals.Ruling, status: str) -> None:
    proposal.status = status
    proposal.decided_by, proposal.decided_at = ruling.decider, timezone.now()
    proposal.decision_reason = ruling.reason
    proposal.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])


def _apply(ruling: approvals.Ruling) -> approvals.Change:
    proposal: CallPolicy = ruling.subject
    previous = CallPolicy.objects.filter(firm_id=proposal.firm_id,
                                         status=CallPolicy.Status.ACTIVE).first()
    if previous is not None:
        previous.status = CallPolicy.Status.SUPERSEDED
        previous.save(update_fields=["status"])
    _close(proposal, ruling, CallPolicy.Status.ACTIVE)
    return approvals.Change(before={"version": previous.version if previous else None},
                            after={"version": proposal.version, "rows": proposal.rows})


def _reject(ruling: approvals.Ruling) -> approvals.Change:
    _close(ruling.subject, ruling, CallPolicy.Status.REJECTED)
    return approvals.Change(after={"version": ruling.subject.version})


approvals.register(approvals.ApprovalKind(
    name=APPROVAL_KIND, subject_model="margin.callpolicy", audit_prefix="call_policy",
    lock=_lock, current_version=_current_version,
    describe=lambda proposal: f"call policy v{proposal.version}",
    authorize=lambda ruling: _require_role(ruling.decider, ruling.subject.firm,
                                           f"{ruling.verb} a call policy"),
    revalidate=_revalidate, apply=_apply, reject=_reject,
    target="the firm's call policy", remedy="propose the change again"))
