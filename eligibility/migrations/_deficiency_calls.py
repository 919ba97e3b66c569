"""Open PM minimum-equity deficiencies become open ``pm_minimum_equity`` margin calls (0003
runs this before it drops eligibility's ``Deficiency``): nothing open is lost.

Each open deficiency (``open`` or ``restricted``) becomes a call issued as of the day it opened
(T), for what equity still lacked at its last evaluation, due on its timeline's T+3 (the day
the restriction follows: "not met by T+3", FINRA PM FAQ), its notice, restriction and
downgrade days and the steps already taken carried over; a restriction the deficiency imposed
becomes the call's closing-only restriction (lifted when the call is met). Each call gets its
4220 row (issued, on T) and an audit event naming the deficiency it replaces. The firm's call
policy is its active version, else version 1 built as 0004 builds it (the platform default
with the rule set's house values).

``issued_at`` is the conversion's time: deposits booked before it were already in the equity
the deficiency last judged, so only later ones are linked to the call (never counted twice).
The audit events go through ``brokerage.audit`` (the chain's hash is the core's code, not a
historical model's): the conversion runs on databases whose brokerage schema is 0004's.
"""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone

OPEN_STATES = ("open", "restricted")
DUE_ROW = "pm_minimum_equity_due_days"


def convert_open_deficiencies(apps, schema_editor) -> list[int]:
    """The migration step; returns the calls made (ids), for the tests."""
    Deficiency = apps.get_model("eligibility", "Deficiency")
    made = []
    for deficiency in (Deficiency._base_manager.filter(state__in=OPEN_STATES)
                       .select_related("account", "firm", "rule_set").order_by("pk")):
        made.append(_convert(apps, deficiency))
    return made


def _policy(apps, deficiency):
    from eligibility.migrations._moved import policy_rows

    CallPolicy = apps.get_model("margin", "CallPolicy")
    found = CallPolicy._base_manager.filter(firm_id=deficiency.firm_id, status="active").first()
    if found is not None:
        return found
    RuleSet = apps.get_model("eligibility", "RuleSet")
    rule_set = (RuleSet._base_manager.filter(firm_id=deficiency.firm_id, status="active")
                .first() or deficiency.rule_set)
    rows, _ = policy_rows(rule_set)
    return CallPolicy._base_manager.create(
        firm_id=deficiency.firm_id, version=1, status="active", rows=rows,
        reason="the firm's rule-set values of the PM minimum and its timeline, moved (with "
               "its open deficiencies)")


def _convert(apps, deficiency) -> int:
    from brokerage import audit
    from brokerage.models import Firm

    MarginCall = apps.get_model("margin", "MarginCall")
    CallRecord = apps.get_model("margin", "CallRecord")
    Restriction = apps.get_model("margin", "Restriction")
    policy = _policy(apps, deficiency)
    row = policy.rows[DUE_ROW]
    amount = max(deficiency.minimum - deficiency.last_equity, Decimal("0.01"))
    now = timezone.now()
    call = MarginCall._base_manager.create(
        firm_id=deficiency.firm_id, account_id=deficiency.account_id, kind="pm_minimum_equity",
        status="issued", as_of=deficiency.opened_on, due_date=deficiency.restriction_due_on,
        amount=amount, amount_due=amount, equity=deficiency.last_equity,
        requirement=deficiency.minimum, rule=row["citation"][:200],
        rule_source="house" if row["source"] == "H" else "regulatory", policy=policy,
        calendar=deficiency.firm.exchange_calendar or "XNYS",
        notice_due_on=deficiency.notice_due_on, restriction_due_on=deficiency.restriction_due_on,
        downgrade_due_on=deficiency.downgrade_due_on, noticed_on=deficiency.noticed_on,
        restricted_on=deficiency.restricted_on, downgraded_on=deficiency.downgraded_on,
        issued_at=now, last_evaluated_on=deficiency.last_evaluated_on)
    CallRecord._base_manager.create(
        firm_id=call.firm_id, call=call, account_id=call.account_id, day=call.as_of,
        event="issued", amount_required=amount, amount_due=amount, status="issued",
        recorded_at=now)
    firm = Firm.objects.get(pk=deficiency.firm_id)
    described = {"account": deficiency.account.number, "kind": call.kind,
                 "status": call.status, "amount": amount, "as_of": call.as_of,
                 "due_date": call.due_date, "rule": call.rule, "policy_version": policy.version,
                 "equity": call.equity, "requirement": call.requirement,
                 "converted_from": f"eligibility.deficiency #{deficiency.pk}"}
    audit.record(firm=firm, actor=None, event_type="margin_call.converted_from_deficiency",
                 object_type="margin.margincall", object_id=call.pk,
                 before={"deficiency": deficiency.pk, "state": deficiency.state,
                         "opened_on": deficiency.opened_on, "minimum": deficiency.minimum,
                         "last_equity": deficiency.last_equity,
                         "rule_set_version": deficiency.rule_set.version},
                 after=described)
    if deficiency.state == "restricted":
        restriction = Restriction._base_manager.create(
            firm_id=call.firm_id, account_id=call.account_id, kind="closing_only",
            state="active", starts_on=deficiency.restricted_on or call.restriction_due_on,
            cause=(f"portfolio-margin equity below ${deficiency.minimum:,} since "
                   f"{deficiency.opened_on} (call #{call.pk}, was deficiency "
                   f"#{deficiency.pk}); risk-reducing trades only")[:300],
            call=call, policy=policy,
            restricted_account=deficiency.restricted_by_timeline)
        audit.record(firm=firm, actor=None, event_type="restriction.imposed",
                     object_type="margin.restriction", object_id=restriction.pk,
                     after={"account": deficiency.account.number, "kind": "closing_only",
                            "starts_on": restriction.starts_on, "ends_on": None,
                            "cause": restriction.cause, "call": call.pk,
                            "converted_from": f"eligibility.deficiency #{deficiency.pk}"})
    return call.pk
