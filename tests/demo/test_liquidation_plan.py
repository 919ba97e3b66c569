"""Issue 12 in the demo: an overdue call shows a plan that cures it at a cost no higher than
the greedy alternative beside it, the engine's requirement after the plan is under equity,
and approving it takes a second person. Through the API, as the desk would."""

from __future__ import annotations

from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from brokerage.models import AuditEvent, Firm
from brokerage.scope import firm_scope
from margin.calls import services as call_services
from margin.engine import liquidation as engine
from margin.liquidation.services import _book
from margin.models import LiquidationPlan, MarginCall, MarginSnapshot
from tests.api_body import decide
from tests.factories import log_in

pytestmark = pytest.mark.django_db(transaction=False)
PASSWORD = "demo-pass-2026"


def _login(client, username: str) -> None:
    assert log_in(client, username, password=PASSWORD), username


def _engine_after(plan: LiquidationPlan) -> float:
    """The full engine's requirement of the plan's snapshot book after its trades."""
    portfolio, params, valuation = _book(plan.snapshot, plan.basis)
    closes = {t["position"]: t["quantity"] for t in plan.trades}
    model = engine.build_model(portfolio, params, valuation,
                               engine.Costs({c: 0.0 for c in plan.costs["half_spread"]}, 0.0),
                               plan.basis)
    x = np.array([closes.get(p, 0) for p in model.position_ids], dtype=np.int64)
    return engine.engine_requirement(portfolio, params, valuation, plan.basis, model)(x)


def test_an_overdue_call_gets_a_plan_a_second_person_approves(client) -> None:
    call_command("seed_demo", stdout=StringIO())
    northwind = Firm.objects.get(slug="northwind")
    with firm_scope(northwind):
        deficiency = MarginCall.objects.get(account__number="NO100013", kind="pm_deficiency")
        # the due date passes unmet: the end-of-day run of that day marks it overdue
        assert call_services.mark_overdue(call=deficiency, day=deficiency.due_date)
        overdue = MarginCall.objects.get(account__number="NO100002", kind="maintenance")
        assert overdue.status == "overdue"  # as the demo's close left it
        bluewater_call = None
    with firm_scope(Firm.objects.get(slug="bluewater")):
        bluewater_call = MarginCall.objects.filter(account__number="BL100013").first()

    _login(client, "northwind.risk1")
    url = f"/api/v1/margin-calls/{deficiency.pk}/liquidation-plan/"
    assert client.post(url, {"speed": 1}, content_type="application/json").status_code == 400
    assert client.get(url).status_code == 404  # none yet
    answer = client.post(url, {}, content_type="application/json")
    assert answer.status_code == 201, answer.content
    plan = answer.json()
    assert plan["outcome"] == "cured" and plan["status"] == "proposed"
    assert plan["basis"] == "portfolio_margin" and plan["trades"]
    equity = float(plan["equity_before"])
    assert float(plan["requirement_before"]) > equity
    assert float(plan["requirement_after"]) * (1 + float(plan["cushion"])) \
        + float(plan["spread_cost"]) <= equity + 0.01
    assert float(plan["cost"]) <= float(plan["greedy_cost"])
    assert plan["greedy"]["status"] in ("cured", "not_cured")
    for trade in plan["trades"]:
        assert trade["side"] == "buy" and 0 < trade["quantity"] <= -trade["quantity_before"]
    with firm_scope(northwind):
        stored = LiquidationPlan.objects.get(pk=plan["id"])
        latest = MarginSnapshot.objects.filter(account=deficiency.account).order_by(
            "-computed_at", "-id").first()
        assert stored.snapshot_id == latest.pk and stored.call_id == deficiency.pk
        assert _engine_after(stored) == pytest.approx(float(stored.requirement_after), abs=0.01)
        assert _engine_after(stored) < equity
        assert AuditEvent.objects.filter(event_type="liquidation_plan.proposed").exists()

    # the proposer never approves (four eyes); compliance does not approve plans (the margin
    # desk, the admins and the risk officers do, issue 19)
    refused = decide(client, url + "approve/", {}, content_type="application/json")
    assert refused.status_code == 403, refused.content
    client.logout()
    _login(client, "northwind.compliance")
    assert decide(client, url + "approve/", {}, content_type="application/json").status_code == 403
    client.logout()
    # another firm's call is a 404
    _login(client, "bluewater.risk2")
    assert client.post(url, {}, content_type="application/json").status_code == 404
    client.logout()
    _login(client, "northwind.risk2")
    approved = decide(client, url + "approve/", {"reason": "cure the deficiency"},
                           content_type="application/json")
    assert approved.status_code == 200, approved.content
    assert approved.json()["status"] == "approved"
    assert approved.json()["decided_by"] == "northwind.risk2"
    with firm_scope(northwind):
        deficiency.refresh_from_db()
        assert deficiency.status == "liquidation_pending"  # an instruction: nothing sent
        assert AuditEvent.objects.filter(event_type="liquidation_plan.approved").exists()
    again = decide(client, url + "approve/", {}, content_type="application/json")
    assert again.status_code == 409
    # NO100002's maintenance call, overdue at the demo's close (a withdrawal left the Reg T
    # account short): its plan cures it too, on the Reg T engine
    answer = client.post(f"/api/v1/margin-calls/{overdue.pk}/liquidation-plan/", {},
                         content_type="application/json")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["outcome"] == "cured" and body["trades"], body
    assert float(body["cost"]) <= float(body["greedy_cost"])
    client.logout()
    assert bluewater_call is not None


def test_recomputing_supersedes_and_a_rejection_needs_a_reason(client) -> None:
    call_command("seed_demo", stdout=StringIO())
    northwind = Firm.objects.get(slug="northwind")
    with firm_scope(northwind):
        call = MarginCall.objects.get(account__number="NO100013", kind="pm_deficiency")
        assert call_services.mark_overdue(call=call, day=call.due_date)
        minimum = MarginCall.objects.get(account__number="NO100013", kind="pm_minimum_equity")
    _login(client, "northwind.desk")
    url = f"/api/v1/margin-calls/{call.pk}/liquidation-plan/"
    first = client.post(url, {}, content_type="application/json").json()
    second = client.post(url, {}, content_type="application/json").json()
    assert second["cost"] == first["cost"] and second["id"] != first["id"]
    with firm_scope(northwind):
        assert LiquidationPlan.objects.get(pk=first["id"]).status == "superseded"
    assert client.get(url).json()["id"] == second["id"]
    # a minimum-equity deficiency is not cured by closing trades
    refused = client.post(f"/api/v1/margin-calls/{minimum.pk}/liquidation-plan/", {},
                          content_type="application/json")
    assert refused.status_code in (400, 409), refused.content
    client.logout()
    _login(client, "northwind.risk1")
    no_reason = decide(client, url + "reject/", {}, content_type="application/json")
    assert no_reason.status_code == 400
    assert no_reason.json()["errors"][0]["field"] == "reason"
    rejected = decide(client, url + "reject/", {"reason": "deposit promised"},
                           content_type="application/json")
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    client.logout()
