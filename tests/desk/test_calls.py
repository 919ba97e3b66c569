"""The margin-call desk (/desk/calls/) through the test client: the list by due date and size,
a call's page and its actions through the services (a deposit or other satisfaction, an
extension a second person decides, waivers, the liquidation plan with its scenario effect and
the greedy alternative, approved by a second person). A wrong role is a 403, another firm's call
or plan a 404; bad input is named in words and changes nothing; the services write the audit
events."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts import services as book
from accounts.models import LedgerEntry
from brokerage.models import AuditEvent
from brokerage.roles import Role
from brokerage.scope import firm_scope
from margin import business_days
from margin.calls.models import CallExtension, CallSatisfaction, MarginCall
from margin.calls.policy import active_policy
from margin.calls.restrictions import impose
from margin.calls.services import issue_call, mark_overdue
from margin.liquidation.services import propose_plan
from margin.market_data import load_prices
from margin.models import LiquidationPlan, Restriction
from margin.tasks import recompute_accounts
from tests.factories import FirmWorld, log_in, make_world, shared_instrument

pytestmark = pytest.mark.django_db

ADMIN, RISK, DESK, COMPLIANCE, CLIENT = (Role.FIRM_ADMIN.value, Role.RISK_OFFICER.value,
                                         Role.MARGIN_DESK.value, Role.COMPLIANCE.value,
                                         Role.CLIENT.value)


def _today() -> date:
    return business_days.today("XNYS")


def _running(fw: FirmWorld, *, kind: str = "maintenance", amount: str = "1000",
             account=None) -> MarginCall:
    """A call issued at today's close: due in the policy's business days, still running."""
    with firm_scope(fw.firm):
        return issue_call(account=account or fw.account, kind=kind, amount=Decimal(amount),
                          as_of=_today(), equity=Decimal("0"), requirement=Decimal(amount),
                          policy=active_policy(fw.firm))


def _overdue_with_book(fw: FirmWorld) -> MarginCall:
    """10 ACME at 100 on a $900 debit (short of 4210(c) maintenance), valued; its maintenance
    call, issued 20 sessions ago, overdue now."""
    with firm_scope(fw.firm):
        stock = shared_instrument("ACME")
        load_prices(observations=[{"symbol": "ACME", "price": "100",
                                   "observed_at": timezone.now().isoformat()}],
                    source="vendor", actor=None)
        book.set_position(account=fw.account, instrument=stock, quantity=Decimal(10),
                          actor=fw.users[ADMIN])
        book.post_ledger_entry(account=fw.account, kind="withdrawal", amount=Decimal("-900"),
                               actor=None, effective_at=timezone.now() - timedelta(minutes=1))
        recompute_accounts(fw.firm.pk, [fw.account.pk])
        call = issue_call(account=fw.account, kind="maintenance", amount=Decimal("150"),
                          as_of=business_days.business_days_before(_today(), 20, "XNYS"),
                          equity=Decimal("100"), requirement=Decimal("250"),
                          policy=active_policy(fw.firm))
        assert mark_overdue(call=call, day=_today())
        call.refresh_from_db()
        return call


def _as(client, user) -> None:
    client.logout()
    assert log_in(client, user)


def _said(response) -> str:
    return " ".join(str(m) for m in response.context["messages"])


def _events(firm, event_type: str) -> int:
    return AuditEvent.objects.filter(firm=firm, event_type=event_type).count()


@pytest.fixture
def world():
    return make_world()


# The list and the home ------------------------------------------------------------------------

def test_the_list_puts_the_overdue_call_first_then_by_due_date_and_size(client, world):
    a = world.a
    with firm_scope(a.firm):
        second = book.open_account(client=a.client, number="ALPHA-0002", registration="individual",
                                   margin_type="reg_t", actor=a.users[ADMIN],
                                   opened_on=date(2025, 1, 2))
    small = _running(a, amount="500")
    large = _running(a, kind="house", amount="9000", account=second)
    with firm_scope(a.firm):
        late = issue_call(account=second, kind="maintenance", amount=Decimal("300"),
                          as_of=business_days.business_days_before(_today(), 20, "XNYS"),
                          equity=Decimal("0"), requirement=Decimal("300"),
                          policy=active_policy(a.firm))
        mark_overdue(call=late, day=_today())
    theirs = _running(world.b, amount="777")
    _as(client, a.users[DESK])
    page = client.get("/desk/calls/")
    assert page.status_code == 200
    html = page.content.decode()
    late.refresh_from_db()
    shown = sorted((late, large, small), key=lambda c: html.index(f'href="/desk/calls/{c.pk}/"'))
    assert shown[0] == late  # the overdue call first: the earliest due
    assert shown == sorted(shown, key=lambda c: (c.due_date, -c.amount_due))
    assert "Overdue" in html and "$9,000.00" in html and "$777.00" not in html
    assert f'href="/desk/calls/{theirs.pk}/"' not in html
    only_house = client.get("/desk/calls/", {"kind": "house"}).content.decode()
    assert f'/desk/calls/{large.pk}/' in only_house and f'/desk/calls/{small.pk}/' not in only_house
    only_overdue = client.get("/desk/calls/", {"overdue": "1"}).content.decode()
    assert f'/desk/calls/{late.pk}/' in only_overdue and f'/desk/calls/{small.pk}/' not in only_overdue

    home = client.get("/desk/").content.decode()
    assert "1 call overdue" in home and f'href="/desk/calls/{late.pk}/"' in home
    assert home.index("1 call overdue") < home.index("</ul>")


def test_a_client_and_another_firm_are_refused(client, world):
    call = _running(world.a)
    _as(client, world.a.users[CLIENT])
    assert client.get("/desk/calls/").status_code == 403
    assert client.get(f"/desk/calls/{call.pk}/").status_code == 403
    _as(client, world.b.users[DESK])
    for url in (f"/desk/calls/{call.pk}/", f"/desk/calls/{call.pk}/plan/"):
        assert client.get(url).status_code == 404, url
    refused = client.post(f"/desk/calls/{call.pk}/satisfactions/",
                          {"manner": "securities", "amount": "10", "reference": "x"})
    assert refused.status_code == 404
    with firm_scope(world.firm_a):
        assert not CallSatisfaction.objects.exists()


def test_wrong_roles_get_a_403_and_nothing_changes(client, world):
    call = _running(world.a)
    with firm_scope(world.firm_a):
        restriction = impose(account=world.a.account, kind="funds_on_hand_90d",
                             starts_on=_today(), cause="a practice",
                             policy=active_policy(world.firm_a))
    _as(client, world.a.users[COMPLIANCE])
    assert client.get(f"/desk/calls/{call.pk}/").status_code == 200  # compliance reads
    assert client.post(f"/desk/calls/{call.pk}/satisfactions/", {
        "manner": "securities", "amount": "10", "reference": "x"}).status_code == 403
    assert client.post(f"/desk/calls/{call.pk}/plan/decision/",
                       {"decision": "approve"}).status_code == 403
    _as(client, world.a.users[DESK])
    waiver = f"/desk/calls/{call.pk}/restrictions/{restriction.pk}/waiver/"
    assert client.post(waiver, {"reason": "please"}).status_code == 403
    with firm_scope(world.firm_a):
        assert not CallSatisfaction.objects.exists()
        assert Restriction.objects.get(pk=restriction.pk).state == "active"


# Satisfactions ----------------------------------------------------------------------------------

def test_the_desk_records_a_securities_deposit_through_the_service(client, world):
    call = _running(world.a, amount="1000")
    _as(client, world.a.users[DESK])
    page = client.get(f"/desk/calls/{call.pk}/").content.decode()
    assert "Record a deposit or other satisfaction" in page
    done = client.post(f"/desk/calls/{call.pk}/satisfactions/", {
        "manner": "securities", "amount": "400.00", "reference": "DTC 12345"}, follow=True)
    assert "Securities deposit of $400.00 recorded" in _said(done)
    assert "$600.00 due" in _said(done)
    with firm_scope(world.firm_a):
        call.refresh_from_db()
        assert (call.status, call.amount_due) == ("partially_met", Decimal("600.00"))
        [kept] = CallSatisfaction.objects.filter(call=call)
        assert (kept.manner, kept.note, kept.recorded_by) == ("securities", "DTC 12345",
                                                             world.a.users[DESK])
    assert _events(world.firm_a, "margin_call.satisfied") == 1
    assert "DTC 12345" in client.get(f"/desk/calls/{call.pk}/").content.decode()


def test_a_cash_deposit_is_booked_in_the_ledger_and_linked(client, world,
                                                          django_capture_on_commit_callbacks):
    call = _running(world.a, amount="1000")
    _as(client, world.a.users[RISK])
    refused = client.post(f"/desk/calls/{call.pk}/satisfactions/", {
        "manner": "cash", "amount": "1000", "reference": "wire 1"}, follow=True)
    assert "does not book cash" in _said(refused)
    _as(client, world.a.users[DESK])
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(f"/desk/calls/{call.pk}/satisfactions/", {
            "manner": "cash", "amount": "1000", "reference": "wire 2"})
    assert done.status_code == 302
    with firm_scope(world.firm_a):
        entry = LedgerEntry.objects.get(account=world.a.account, kind="deposit")
        assert entry.amount == Decimal("1000.00") and "wire 2" in entry.memo
        call.refresh_from_db()
        assert call.status == "met"
        assert CallSatisfaction.objects.get(call=call).ledger_entry == entry
    assert _events(world.firm_a, "ledger.posted") >= 1


BAD_AMOUNTS = [
    ("-5", "the amount must be more than zero"),
    ("0", "the amount must be more than zero"),
    ("NaN", "the amount must be a number"),
    ("Infinity", "the amount must be a number"),
    ("12,5x", "the amount must be a number"),
    ("1.234", "at most 2 decimal places"),
    ("", "the amount is required"),
]


def test_a_bad_amount_is_named_and_changes_nothing(client, world):
    call = _running(world.a)
    _as(client, world.a.users[DESK])
    before = AuditEvent.objects.count()
    for amount, said in BAD_AMOUNTS:
        answer = client.post(f"/desk/calls/{call.pk}/satisfactions/", {
            "manner": "securities", "amount": amount, "reference": "r"}, follow=True)
        assert said in _said(answer) and "Nothing was recorded" in _said(answer), amount
    future = (_today() + timedelta(days=3)).isoformat()
    answer = client.post(f"/desk/calls/{call.pk}/satisfactions/", {
        "manner": "securities", "amount": "5", "reference": "r", "received_on": future},
        follow=True)
    assert "is in the future" in _said(answer)
    answer = client.post(f"/desk/calls/{call.pk}/satisfactions/", {
        "manner": "liquidation", "amount": "5", "reference": "r"}, follow=True)
    assert "choose how the call was met" in _said(answer)
    assert AuditEvent.objects.count() == before
    with firm_scope(world.firm_a):
        assert not CallSatisfaction.objects.exists()
        call.refresh_from_db()
        assert call.amount_due == Decimal("1000.00")


# Extensions -------------------------------------------------------------------------------------

def test_a_bad_extension_date_is_named_and_changes_nothing(client, world):
    call = _running(world.a)
    _as(client, world.a.users[DESK])
    before = AuditEvent.objects.count()
    for value, said in [((_today() - timedelta(days=1)).isoformat(), "is in the past"),
                        ("2026-13-40", "YYYY-MM-DD"), ("next week", "YYYY-MM-DD"),
                        (call.due_date.isoformat(), "not after the call's due date"),
                        ("", "the date is required")]:
        answer = client.post(f"/desk/calls/{call.pk}/extension/", {
            "new_due_date": value, "reason_code": "travel", "reason": "client abroad"},
            follow=True)
        assert said in _said(answer), (value, _said(answer))
    far = business_days.add_business_days(call.due_date, 40, "XNYS").isoformat()
    too_long = client.post(f"/desk/calls/{call.pk}/extension/", {
        "new_due_date": far, "reason_code": "travel", "reason": "r"}, follow=True)
    assert "from 1 to 30" in _said(too_long)
    assert AuditEvent.objects.count() == before
    with firm_scope(world.firm_a):
        assert not CallExtension.objects.exists()


def test_an_extension_the_desk_asks_for_is_decided_by_another_person(client, world):
    call = _running(world.a)  # a maintenance call: FINRA decides, after the firm's two people
    new_due = business_days.add_business_days(call.due_date, 3, "XNYS")
    _as(client, world.a.users[DESK])
    asked = client.post(f"/desk/calls/{call.pk}/extension/", {
        "new_due_date": new_due.isoformat(), "reason_code": "travel",
        "reason": "client abroad until the 20th"}, follow=True)
    assert "3 business days" in _said(asked)
    mine = client.post(f"/desk/calls/{call.pk}/extension/decision/", {"decision": "approve"},
                       follow=True)
    assert "cannot approve it: a second person decides (four eyes)" in _said(mine)
    with firm_scope(world.firm_a):
        assert CallExtension.objects.get(call=call).state == "proposed"
    _as(client, world.a.users[RISK])
    home = client.get("/desk/").content.decode()
    assert "1 extension request awaiting approval" in home
    approved = client.post(f"/desk/calls/{call.pk}/extension/decision/",
                           {"decision": "approve", "reason": "fair"}, follow=True)
    assert "Requested of the examining authority" in _said(approved)
    _as(client, world.a.users[DESK])
    no_id = client.post(f"/desk/calls/{call.pk}/extension/outcome/", {"outcome": "granted"},
                        follow=True)
    assert "FINRA Filing ID" in _said(no_id)
    granted = client.post(f"/desk/calls/{call.pk}/extension/outcome/",
                          {"outcome": "granted", "filing_id": "REX-77"}, follow=True)
    assert f"granted, due {new_due:%Y-%m-%d}" in _said(granted)
    with firm_scope(world.firm_a):
        call.refresh_from_db()
        assert (call.status, call.due_date) == ("extended", new_due)
    for event in ("call_extension.proposed", "call_extension.approved",
                  "call_extension.granted", "margin_call.extended"):
        assert _events(world.firm_a, event) == 1, event


def test_a_house_extension_is_granted_inside_the_firm(client, world):
    call = _running(world.a, kind="house")
    new_due = business_days.add_business_days(call.due_date, 2, "XNYS")
    _as(client, world.a.users[DESK])
    client.post(f"/desk/calls/{call.pk}/extension/", {
        "new_due_date": new_due.isoformat(), "reason_code": "wire", "reason": "wire late"})
    _as(client, world.a.users[ADMIN])
    client.post(f"/desk/calls/{call.pk}/extension/decision/", {"decision": "approve"})
    with firm_scope(world.firm_a):
        call.refresh_from_db()
        assert (call.status, call.due_date) == ("extended", new_due)


# Waivers ----------------------------------------------------------------------------------------

def test_a_waiver_is_asked_by_one_officer_and_decided_by_another(client, world):
    call = _running(world.a)
    with firm_scope(world.firm_a):
        restriction = impose(account=world.a.account, kind="funds_on_hand_90d",
                             starts_on=_today(), cause="3 liquidations",
                             policy=active_policy(world.firm_a), call=call)
    url = f"/desk/calls/{call.pk}/restrictions/{restriction.pk}/waiver/"
    _as(client, world.a.users[COMPLIANCE])
    blank = client.post(url, {"reason": ""}, follow=True)
    assert "say why the restriction is waived" in _said(blank)
    client.post(url, {"reason": "documented hardship"})
    own = client.post(url + "decision/", {"decision": "approve"}, follow=True)
    assert "four eyes" in _said(own)
    _as(client, world.a.users[ADMIN])
    assert "1 restriction waiver awaiting a decision" in client.get("/desk/").content.decode()
    client.post(url + "decision/", {"decision": "approve", "reason": "agreed"})
    with firm_scope(world.firm_a):
        assert Restriction.objects.get(pk=restriction.pk).state == "waived"
    assert _events(world.firm_a, "restriction_waiver.approved") == 1


# The liquidation plan ---------------------------------------------------------------------------

def test_the_plan_shows_its_scenario_effect_and_a_second_person_approves_it(client, world):
    call = _overdue_with_book(world.a)
    _as(client, world.a.users[RISK])
    proposed = client.post(f"/desk/calls/{call.pk}/plan/propose/", follow=True)
    assert "proposed" in _said(proposed), _said(proposed)
    with firm_scope(world.firm_a):
        plan = LiquidationPlan.objects.get(call=call)
    assert plan.outcome == "cured" and plan.proposed_by == world.a.users[RISK]
    page = proposed.content.decode()
    for shown in ("Greedy alternative", "Effect on each scenario", "ACME down 15 %",
                  "After the plan", "You proposed this plan"):
        assert shown in page, shown
    assert page.count('class="bar plan"') == page.count('class="bar before"') > 0
    # the proposer's approval is refused in words by the four-eyes mechanism
    refused = client.post(f"/desk/calls/{call.pk}/plan/decision/",
                          {"plan": plan.pk, "decision": "approve"}, follow=True)
    assert "cannot approve it: a second person decides (four eyes)" in _said(refused)
    with firm_scope(world.firm_a):
        plan.refresh_from_db()
        assert plan.status == "proposed"
    # another firm's desk cannot see it or decide it
    _as(client, world.b.users[DESK])
    assert client.get(f"/desk/calls/{call.pk}/plan/").status_code == 404
    assert client.post(f"/desk/calls/{call.pk}/plan/decision/",
                       {"plan": plan.pk, "decision": "approve"}).status_code == 404
    _as(client, world.a.users[DESK])
    home = client.get("/desk/").content.decode()
    assert "1 liquidation plan awaiting your approval" in home
    unnamed = client.post(f"/desk/calls/{call.pk}/plan/decision/", {"decision": "approve"},
                          follow=True)
    assert "the form names no plan" in _said(unnamed)
    no_reason = client.post(f"/desk/calls/{call.pk}/plan/decision/",
                            {"plan": plan.pk, "decision": "reject"}, follow=True)
    assert "say why the plan is rejected" in _said(no_reason)
    approved = client.post(f"/desk/calls/{call.pk}/plan/decision/",
                           {"plan": plan.pk, "decision": "approve", "reason": "cure it"},
                           follow=True)
    assert "approved" in _said(approved) and "liquidation pending" in _said(approved)
    with firm_scope(world.firm_a):
        plan.refresh_from_db()
        call.refresh_from_db()
        assert (plan.status, plan.decided_by) == ("approved", world.a.users[DESK])
        assert call.status == "liquidation_pending"
    for event in ("liquidation_plan.proposed", "liquidation_plan.approved",
                  "margin_call.liquidation_pending"):
        assert _events(world.firm_a, event) == 1, event


def test_a_plan_stored_without_its_greedy_alternative_has_it_computed_not_saved(client, world):
    call = _overdue_with_book(world.a)
    with firm_scope(world.firm_a):
        plan = propose_plan(actor=world.a.users[RISK], call=call)
        stored = plan.greedy
        LiquidationPlan.objects.filter(pk=plan.pk).update(greedy={})
    _as(client, world.a.users[DESK])
    before = AuditEvent.objects.count()
    page = client.get(f"/desk/calls/{call.pk}/plan/").content.decode()
    assert "computed for this page, not stored" in page
    assert f"${Decimal(stored['cost']):,.2f}" in page  # the same inputs give the same answer
    assert AuditEvent.objects.count() == before
    with firm_scope(world.firm_a):
        assert LiquidationPlan.objects.get(pk=plan.pk).greedy == {}
