"""The approvals queue through the test client: an application reviewed by one risk officer and
decided by another (the reviewer refused in words), a rule-set and a risk-parameter change
shown as old and new values and decided by a second person; a wrong role is a 403, another
firm's application or change a 404, and a bad or stale POST says what is wrong and changes
nothing (the services write every audit event)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from html import unescape

import pytest
from django.utils import timezone

from accounts import services as book
from brokerage.models import ApprovalRequest, AuditEvent
from brokerage.roles import Role
from brokerage.scope import firm_scope
from brokerage.tenancy import add_member
from eligibility import services as eligibility
from eligibility.models import Application, RuleSet
from margin import services as risk_parameters
from margin.models import RiskParameterSet
from tests.factories import log_in, make_user, make_world

pytestmark = pytest.mark.django_db


class Firm:
    """One firm's cast: its staff by role, a second risk officer, an eligible application."""

    def __init__(self, fw, *, suffix: str) -> None:
        self.firm, self.users = fw.firm, fw.users
        self.risk = fw.users[Role.RISK_OFFICER]
        self.admin = fw.users[Role.FIRM_ADMIN]
        with firm_scope(fw.firm):
            self.risk2 = make_user(f"{suffix}_risk_officer_2")
            add_member(firm=fw.firm, user=self.risk2, role=Role.RISK_OFFICER)
            book.update_client(client=fw.client, actor=self.admin,
                               portal_user=fw.users[Role.CLIENT])
            book.deliver_disclosure(client=fw.client, document="portfolio_margin",
                                    actor=self.admin, acknowledged=True,
                                    at=timezone.make_aware(datetime(2026, 11, 2, 10, 0)))
            # Cash only: equity is the cash, $200,000, over the $125,000 opening minimum.
            book.post_ledger_entry(account=fw.account, kind="deposit",
                                   amount=Decimal("200000"), actor=self.admin)
            self.application = eligibility.create_application(
                account=fw.account, actor=fw.users[Role.CLIENT], submit=True)
        self.account = fw.account

    def state(self) -> str:
        with firm_scope(self.firm):
            return Application.objects.get(pk=self.application.pk).state

    def events(self, prefix: str = "") -> list[tuple[str, str]]:
        with firm_scope(self.firm):
            return [(e.event_type, e.actor.username if e.actor else "")
                    for e in AuditEvent.objects.filter(event_type__startswith=prefix)
                    .select_related("actor").order_by("pk")]


@pytest.fixture
def firms():
    world = make_world()
    return Firm(world.a, suffix="alpha"), Firm(world.b, suffix="beta")


def _as(client, user):
    client.logout()
    assert log_in(client, user)
    return client


def _text(response) -> str:
    return unescape(response.content.decode())


def _page(pk: int) -> str:
    return f"/desk/approvals/applications/{pk}/"


def test_risk_officer_reviews_and_a_second_approves(client, firms):
    a, _ = firms
    pk = a.application.pk
    page = _page(pk)

    _as(client, a.risk)
    queue = _text(client.get("/desk/approvals/"))
    assert f"Application #{pk}" in queue and "Client of alpha" in queue and "$200,000.00" in queue
    home = _text(client.get("/desk/"))
    assert "1 application to review" in home
    shown = _text(client.get(page))
    # the evaluation rule by rule in words, the profile, the disclosure, the margin
    assert "Equity of $200,000.00 meets the $125,000.00 opening minimum." in shown
    assert "at least $125,000.00" in shown and "Annual income" in shown
    assert "Version 2026-01" in shown and "signed 2026-11-02" in shown
    assert "Record the review" in shown and "Approve</button>" not in shown

    done = client.post(f"{page}review/", {"recommendation": "approve", "notes": "all good",
                                          "version": a.application.version}, follow=True)
    assert "You reviewed application" in _text(done)
    assert a.state() == Application.State.UNDER_REVIEW
    assert ("pm_application.reviewed", a.risk.username) in a.events("pm_application")

    # The reviewer may not decide: the page says so in the maker-checker's words ...
    shown = _text(client.get(page))
    refusal = (f"{a.risk.username} reviewed application #{pk} and so cannot approve or reject "
               "it: a second person decides (four eyes)")
    assert refusal in shown and "Approve</button>" not in shown
    assert "1 application to approve" not in _text(client.get("/desk/"))
    # ... and the service refuses the POST anyway, nothing changed
    before = a.events()
    refused = client.post(f"{page}decide/", {"decision": "approve",
                                             "version": a.application.version + 1}, follow=True)
    assert f"Not approved: {a.risk.username} reviewed application #{pk}" in _text(refused)
    assert a.state() == Application.State.UNDER_REVIEW and a.events() == before

    _as(client, a.risk2)
    assert "1 application to approve" in _text(client.get("/desk/"))
    with firm_scope(a.firm):
        version = Application.objects.get(pk=pk).version
    done = client.post(f"{page}decide/", {"decision": "approve", "reasons": "second pair",
                                          "version": version}, follow=True)
    with firm_scope(a.firm):
        approved = Application.objects.get(pk=pk)
    assert approved.state == Application.State.APPROVED and approved.decided_by == a.risk2
    assert f"moves to portfolio margin on {approved.effective_on:%A %Y-%m-%d}" in _text(done)
    assert ("pm_application.approved", a.risk2.username) in a.events("pm_application")
    history = _text(client.get("/desk/approvals/history/?state=approved"))
    assert "Portfolio-margin application" in history and a.risk2.username in history
    assert f"{a.risk.username} reviewed" in history


def test_wrong_roles_are_refused(client, firms):
    a, _ = firms
    page = _page(a.application.pk)
    for role in (Role.MARGIN_DESK, Role.CLIENT):
        _as(client, a.users[role])
        assert client.get("/desk/approvals/").status_code == 403
        assert client.get(page).status_code == 403
    _as(client, a.users[Role.MARGIN_DESK])
    assert "application" not in _text(client.get("/desk/"))  # no item it cannot act on
    _as(client, a.users[Role.COMPLIANCE])  # reads, never acts
    assert client.get(page).status_code == 200
    assert "It waits for a risk officer's review" in _text(client.get(page))
    assert "application" not in _text(client.get("/desk/"))
    assert client.post(f"{page}review/", {"recommendation": "approve",
                                          "version": 1}).status_code == 403
    assert client.post(f"{page}decide/", {"decision": "approve",
                                          "version": 1}).status_code == 403
    _as(client, a.admin)  # decides, but a risk officer reviews
    assert client.post(f"{page}review/", {"recommendation": "approve",
                                          "version": 1}).status_code == 403
    _as(client, a.risk)  # a form's address is posted to, never opened
    assert client.get(f"{page}review/").status_code == 405
    assert a.state() == Application.State.SUBMITTED


def test_another_firms_application_and_change_are_404(client, firms):
    a, b = firms
    with firm_scope(b.firm):
        proposal = risk_parameters.propose_parameters(
            firm=b.firm, actor=b.risk, overrides={"house": {"stress_range": 0.3}},
            reason="wider")
        change = ApprovalRequest.objects.get(subject_id=proposal.pk, kind="risk_parameters")
    _as(client, a.risk2)
    page = _page(b.application.pk)
    assert client.get(page).status_code == 404
    assert client.post(f"{page}review/", {"recommendation": "approve",
                                          "version": 1}).status_code == 404
    assert client.post(f"{page}decide/", {"decision": "approve",
                                          "version": 1}).status_code == 404
    assert client.get(f"/desk/approvals/changes/{change.pk}/").status_code == 404
    assert client.post(f"/desk/approvals/changes/{change.pk}/decide/",
                       {"decision": "approve", "version": 0}).status_code == 404
    assert b.state() == Application.State.SUBMITTED
    with firm_scope(b.firm):
        assert RiskParameterSet.objects.get(pk=proposal.pk).status == "proposed"


def test_bad_and_stale_posts_say_why_and_change_nothing(client, firms):
    a, _ = firms
    pk = a.application.pk
    page = _page(pk)
    _as(client, a.risk)
    before = a.events()
    said = _text(client.post(f"{page}review/", {"version": a.application.version},
                             follow=True))
    assert "Nothing was recorded: recommendation: choose a recommendation" in said
    said = _text(client.post(f"{page}review/", {"recommendation": "reject",
                                                "version": a.application.version}, follow=True))
    assert "Not reviewed: a recommendation to reject says why." in said
    said = _text(client.post(f"{page}review/", {"recommendation": "approve",
                                                "version": a.application.version - 1},
                             follow=True))
    assert f"application #{pk} changed since you read it" in said
    assert a.state() == Application.State.SUBMITTED and a.events() == before

    client.post(f"{page}review/", {"recommendation": "approve",
                                   "version": a.application.version})
    with firm_scope(a.firm):
        version = Application.objects.get(pk=pk).version
    _as(client, a.risk2)
    before = a.events()
    said = _text(client.post(f"{page}decide/", {"decision": "reject", "reasons": " ",
                                                "version": version}, follow=True))
    assert "Not rejected: a rejection gives its reasons." in said
    said = _text(client.post(f"{page}decide/", {"decision": "approve",
                                                "version": version - 1}, follow=True))
    assert "changed since you read it" in said
    said = _text(client.post(f"{page}decide/", {"decision": "maybe", "version": version},
                             follow=True))
    assert "Nothing was decided: decision:" in said
    assert a.state() == Application.State.UNDER_REVIEW and a.events() == before

    client.post(f"{page}decide/", {"decision": "reject", "reasons": "too concentrated",
                                   "version": version})
    assert a.state() == Application.State.REJECTED
    _as(client, a.admin)  # a stale page: it was decided meanwhile
    before = a.events()
    said = _text(client.post(f"{page}decide/", {"decision": "approve", "version": version},
                             follow=True))
    assert f"application #{pk} was already rejected by {a.risk2.username}" in said
    assert a.events() == before
    assert "too concentrated" in _text(client.get(page))


def test_a_parameter_change_is_a_diff_decided_by_a_second_person(client, firms):
    a, _ = firms
    with firm_scope(a.firm):
        proposal = risk_parameters.propose_parameters(
            firm=a.firm, actor=a.risk,
            overrides={"house": {"stress_range": 0.30},
                       "defi": {"haircut_tiers": {"large_cap": [[1000000, 0.10],
                                                                [10000000, 0.20],
                                                                [None, 0.30]]}}},
            reason="house view")
        change = ApprovalRequest.objects.get(subject_id=proposal.pk, kind="risk_parameters")
    page = f"/desk/approvals/changes/{change.pk}/"

    _as(client, a.risk)
    shown = _text(client.get(page))
    assert "Proposed by <strong>alpha_risk_officer</strong>" in shown and "house view" in shown
    assert ("<td class=\"l\">House › stress range</td><td>0.25</td><td>0.3</td>"
            "<td>+0.05 (+20.0 %)</td>") in shown
    assert "DeFi › haircut tiers › large cap › tier 1 rate" in shown
    assert "proposed risk parameters v1 and so cannot approve it" in shown
    assert "Withdraw</button>" in shown and "Approve</button>" not in shown
    assert "awaiting a second person" not in _text(client.get("/desk/"))

    _as(client, a.risk2)
    assert "1 rule-set or risk-parameter change awaiting a second person" in _text(
        client.get("/desk/"))
    before = a.events()
    said = _text(client.post(f"{page}decide/", {"decision": "reject", "version": 0},
                             follow=True))
    assert "Not rejected: reason: say why the proposal is rejected." in said
    said = _text(client.post(f"{page}decide/", {"decision": "approve", "version": 3},
                             follow=True))
    assert "is at version 0, not 3: it changed since you read it" in said
    assert a.events() == before
    said = _text(client.post(f"{page}decide/", {"decision": "approve", "version": 0},
                             follow=True))
    assert "You approved risk parameters v1: it is in force now." in said
    with firm_scope(a.firm):
        assert RiskParameterSet.objects.get(pk=proposal.pk).status == "active"
    assert ("risk_parameters.approved", a.risk2.username) in a.events("risk_parameters")


def test_a_rule_set_change_and_its_withdrawal(client, firms):
    a, _ = firms
    with firm_scope(a.firm):
        proposal = eligibility.propose_rule_set(firm=a.firm, proposer=a.admin,
                                                reason="a higher bar",
                                                opening_equity_minimum=Decimal("150000"))
        change = ApprovalRequest.objects.get(subject_id=proposal.pk, kind="rule_set")
    page = f"/desk/approvals/changes/{change.pk}/"
    _as(client, a.risk)
    shown = _text(client.get(page))
    assert ("<td>$125,000.00</td><td>$150,000.00</td><td>+$25,000.00 (+20.0 %)</td>"
            in shown)
    assert "Drafted on version 1, still in force" in shown
    _as(client, a.admin)
    said = _text(client.post(f"{page}decide/", {"decision": "reject", "reasons": "not now",
                                                "version": 1}, follow=True))
    assert "You withdrew rule set v2; nothing changed." in said
    with firm_scope(a.firm):
        assert RuleSet.objects.get(pk=proposal.pk).status == "rejected"
    assert ("ruleset.withdrawn", a.admin.username) in a.events("ruleset")
    history = _text(client.get("/desk/approvals/history/?state=withdrawn"))
    assert "Rule set" in history and "not now" in history
    refused = client.get("/desk/approvals/history/?state=bogus")
    assert refused.status_code == 400
    assert "There is no decided state 'bogus': choose approved" in _text(refused)
