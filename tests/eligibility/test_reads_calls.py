"""Eligibility reads margin's calls: an application is not approved for an account with an
open margin call (any kind: a Reg T call would vanish with the move to portfolio margin) or an
active restriction; the refusal names them, stays on record, and the application waits."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from brokerage.models import AuditEvent
from eligibility import services
from eligibility.errors import OpenMarginCalls
from margin.calls import services as calls
from margin.calls.policy import active_policy
from margin.calls.restrictions import impose
from margin.models import Restriction
from tests.api_body import decide, the_error

from .conftest import logged_in, reviewed_application

pytestmark = pytest.mark.django_db

T = date(2026, 11, 24)


def _reg_t_call(desk, amount: str = "4000"):
    return calls.issue_call(account=desk.account, kind="reg_t", amount=Decimal(amount), as_of=T,
                            trade_date=T, equity=Decimal("196000"), requirement=Decimal("200000"),
                            policy=active_policy(desk.firm))


def test_an_open_call_blocks_approval_and_the_refusal_names_it(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk)
    call = _reg_t_call(desk)
    with pytest.raises(OpenMarginCalls, match=f"Reg T \\(federal\\) call #{call.pk} "
                                              f"\\(\\$4,000.00 due 2026-11-30, issued\\)") as refused:
        services.approve_application(application=application, approver=desk.admin)
    assert refused.value.errors[0]["field"] == "account"
    assert refused.value.details == {"calls": [call.pk], "restrictions": []}
    application.refresh_from_db()
    assert application.state == "under_review"
    event = AuditEvent.objects.get(event_type="pm_application.approval_refused")
    assert event.after["open_margin_calls"]["calls"] == [call.pk]
    # met (staff record a securities deposit), the same approval goes through
    calls.record_satisfaction(call=call, manner="securities", amount="4000",
                              actor=desk.margin_desk, received_on=T + timedelta(days=1))
    approved = services.approve_application(application=application, approver=desk.admin)
    assert approved.state == "approved"


def test_an_open_minimum_equity_call_blocks_approval(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk)
    calls.issue_call(account=desk.account, kind="pm_minimum_equity", amount=Decimal("10000"),
                     as_of=T, equity=Decimal("90000"), requirement=Decimal("100000"),
                     policy=active_policy(desk.firm))
    with pytest.raises(OpenMarginCalls, match="PM minimum-equity deficiency #"):
        services.approve_application(application=application, approver=desk.admin)


def test_an_active_restriction_blocks_approval_until_it_ends(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk)
    restriction = impose(account=desk.account, kind=Restriction.Kind.FUNDS_ON_HAND_90D,
                         starts_on=T, ends_on=T + timedelta(days=90), cause="a practice",
                         policy=active_policy(desk.firm))
    with pytest.raises(OpenMarginCalls, match=f"funds on hand, 90 days restriction "
                                              f"#{restriction.pk} since 2026-11-24"):
        services.approve_application(application=application, approver=desk.admin)
    Restriction.objects.filter(pk=restriction.pk).update(state="ended")
    assert services.approve_application(application=application,
                                        approver=desk.admin).state == "approved"


def test_the_api_answers_422_naming_the_account(in_desk_firm):
    desk = in_desk_firm
    application = reviewed_application(desk)
    call = _reg_t_call(desk)
    response = decide(logged_in(desk.admin, APIClient), f"/api/v1/applications/{application.pk}/approve/", {"reasons": "ok"}, format="json")
    assert response.status_code == 422
    error = the_error(response)
    assert (error["field"], error["code"]) == ("account", "open_margin_call")
    assert f"#{call.pk}" in error["message"]
