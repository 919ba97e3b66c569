"""What the API matrix found, kept as tests of their own."""

from __future__ import annotations

from brokerage.scope import firm_scope
from tests.api.endpoints import ADMIN, COMPLIANCE, DESK, _call
from tests.api.test_matrix import bearer, footprint
from tests.api_body import the_error
from tests.factories import value_each_firms_account


def test_a_role_that_may_not_approve_a_plan_is_refused_before_the_plan_s_state_is_told(world):
    """A plan with nothing to approve (the account is not in deficit) was a 409 naming its
    outcome for anyone on the staff; a role that may never approve gets its 403 first."""
    from margin.calls.models import MarginCall
    from margin.calls.services import mark_overdue
    from margin.liquidation.services import propose_plan

    value_each_firms_account(world)  # valued, and well above its requirement
    fw = world.a
    with firm_scope(fw.firm):
        call = MarginCall.objects.get(pk=_call(fw))
        assert mark_overdue(call=call, day=call.due_date)
        call.refresh_from_db()
        assert propose_plan(actor=fw.users[DESK.value], call=call).outcome == "not_needed"
    url = f"/api/v1/margin-calls/{call.pk}/liquidation-plan/approve/"
    # compliance never approves a plan (the admins, risk officers and margin desk do)
    compliance, admin = bearer(fw.users[COMPLIANCE.value]), bearer(fw.users[ADMIN.value])
    before = footprint()
    refused = compliance.post(url, {}, content_type="application/json")
    assert refused.status_code == 403, refused.content
    assert the_error(refused)["code"] == "not_permitted"
    etag = admin.get(url.removesuffix("approve/"))["ETag"]
    conflict = admin.post(url, {}, content_type="application/json", HTTP_IF_MATCH=etag)
    assert conflict.status_code == 409 and the_error(conflict)["code"] == "conflict"
    assert footprint() == before
