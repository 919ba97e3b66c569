"""The desk's read-only views of calls, restrictions and policies; actions call services."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from brokerage.scope import firm_scope
from margin.calls import policy, services
from tests.eligibility.conftest import logged_in

from .conftest import T

pytestmark = pytest.mark.django_db


def test_staff_read_calls_restrictions_and_policies_and_edit_nothing(desk):
    with firm_scope(desk.firm):
        call = services.issue_call(account=desk.account, kind="maintenance",
                                   amount=Decimal("5000"), as_of=T, equity=Decimal("0"),
                                   requirement=Decimal("5000"),
                                   policy=policy.active_policy(desk.firm))
    staff = logged_in(desk.compliance)
    for url in ("/admin/margin/margincall/", f"/admin/margin/margincall/{call.pk}/change/",
                "/admin/margin/restriction/", "/admin/margin/callpolicy/"):
        assert staff.get(url).status_code == 200, url
    assert staff.get("/admin/margin/margincall/add/").status_code == 403
    assert logged_in(desk.other_firm_admin).get(
        f"/admin/margin/margincall/{call.pk}/change/").status_code in (302, 404)


def test_the_liquidation_action_calls_the_service_under_its_guard(desk):
    with firm_scope(desk.firm):
        call = services.issue_call(account=desk.account, kind="maintenance",
                                   amount=Decimal("5000"), as_of=T, equity=Decimal("0"),
                                   requirement=Decimal("5000"),
                                   policy=policy.active_policy(desk.firm))
    staff = logged_in(desk.margin_desk)
    form = {"action": "liquidate_selected", "_selected_action": [call.pk]}
    page = staff.post("/admin/margin/margincall/", form, follow=True)
    assert b"only an overdue call goes to liquidation" in page.content
    with firm_scope(desk.firm):
        services.mark_overdue(call=call, day=date(2026, 12, 17))
    staff.post("/admin/margin/margincall/", form, follow=True)
    call.refresh_from_db()
    assert call.status == "liquidation_pending"
