"""The demo as a new user meets it (`make demo` runs seed_demo): the stories of the issues.

One test seeds once (about 10 s on PostgreSQL) and walks every story, so the demo can never
quietly stop telling them.
"""

from __future__ import annotations

import re
from datetime import date
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Account, Client, Instrument
from brokerage import audit
from brokerage.models import AuditEvent, Firm, Membership
from brokerage.roles import Role
from brokerage.scope import firm_scope
from eligibility.calendar import add_business_days, next_business_day
from eligibility.calendar import today as business_today
from margin.models import MarginSnapshot
from margin.reproduce import explanation
from tests.api_body import decide
from tests.factories import log_in
from tests.margin.parity import assert_batch_equals_calculator

pytestmark = pytest.mark.django_db(transaction=False)
PASSWORD = "demo-pass-2026"


def _login(client, username: str) -> None:
    assert log_in(client, username, password=PASSWORD), username


def _every_row_has_its_audit_event(firms: list[Firm]) -> None:
    """Firms and shared instruments on the platform chain; members and a firm's own
    instruments on the firm's chain; no tenant member is a superuser."""
    platform = AuditEvent.objects.filter(chain=audit.PLATFORM_CHAIN)
    assert set(platform.filter(event_type="firm.created").values_list("object_id", flat=True)
               ) == {str(f.pk) for f in firms}
    instruments = Instrument.cross_firm.for_compliance(reason="the demo's trail")
    listed = set(platform.filter(event_type="instrument.created").values_list(
        "object_id", flat=True))
    assert listed == {str(pk) for pk in instruments.filter(firm=None).values_list("pk", flat=True)}
    assert audit.verify_chain(audit.PLATFORM_CHAIN) is None
    for firm in firms:
        trail = audit.events_for(firm)
        with firm_scope(firm):
            members = list(Membership.objects.select_related("user"))
        created = set(trail.filter(event_type="user.created").values_list("object_id", flat=True))
        assert created == {str(m.user_id) for m in members}
        assert not any(m.user.is_superuser for m in members)
        own = set(trail.filter(event_type="instrument.created").values_list("object_id", flat=True))
        assert own == {str(pk) for pk in instruments.filter(firm=firm).values_list("pk", flat=True)}
        assert own, "the crypto client's LP position is the firm's own instrument"


def _as_the_readme_says() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    demo = readme[readme.index("## The demo"):readme.index("## Try the calculator")]
    assert f"`{PASSWORD}`" in demo
    logins = set(re.findall(r"`((?:northwind|bluewater|platform)\.[a-z0-9]+)`", demo))
    numbers = set(re.findall(r"`((?:NO|BL)1000[0-9]{2})`", demo))
    assert len(logins) >= 12 and {"NO100001", "NO100013", "NO100020", "BL100001"} <= numbers
    for username in logins:
        assert get_user_model().objects.get(username=username).check_password(PASSWORD)
    for number in numbers:
        firm = Firm.objects.get(slug="northwind" if number.startswith("NO") else "bluewater")
        with firm_scope(firm):
            assert Account.objects.filter(number=number).exists(), number
    with firm_scope(Firm.objects.get(slug="northwind")):
        assert MarginSnapshot.objects.filter(account__number="NO100013").latest().excess < 0


def _every_snapshot_reproduces() -> None:
    """`recompute_snapshot` on every snapshot the demo wrote: each recomputed from the inputs
    it recorded matches field by field (the command raises CommandError on any difference)."""
    ids = sorted(MarginSnapshot.cross_firm.for_compliance(
        reason="the demo's snapshots, all firms").values_list("pk", flat=True))
    out = StringIO()
    call_command("recompute_snapshot", *map(str, ids), stdout=out)
    assert out.getvalue().count("  MATCH: ") == len(ids) >= 40


def _the_batch_values_the_demo_as_the_calculator_does() -> None:
    """Every demo book the sweep's batch path values (portfolio-margin books of stocks, ETFs,
    options and futures) has the figures the calculator gives the account alone."""
    batched = 0
    for firm in Firm.objects.all():
        with firm_scope(firm):
            accounts = list(Account.objects.select_related("firm").order_by("pk"))
            batched += assert_batch_equals_calculator(accounts)
    assert batched >= 5


def _margin_calls_story(client, northwind: Firm) -> None:
    """Issue 11, as of the last close whatever the weekday: NO100013's open PM deficiency with
    its due date, an overdue call elsewhere, a met call in history, a crypto account in the
    health-factor warning band; the desk lists calls by due date through the API."""
    from margin.calls.policy import active_policy
    from margin.end_of_day import last_closed_session
    from margin.models import MarginCall

    session = last_closed_session(northwind.exchange_calendar, timezone.now())
    with firm_scope(northwind):
        calls = {(c.account.number, c.kind): c for c in
                 MarginCall.objects.select_related("account")}
        policy = active_policy(northwind)
    deficiency = calls["NO100013", "pm_deficiency"]
    assert deficiency.status == "issued" and deficiency.as_of == session
    assert deficiency.due_date == add_business_days(
        session, policy.value("pm_deficiency_due_days"), northwind.exchange_calendar)
    assert calls["NO100013", "pm_minimum_equity"].status == "issued"
    # issued by earlier closes on books a withdrawal left short: one unmet, one met by a deposit
    assert calls["NO100002", "maintenance"].status == "overdue"
    assert calls["NO100001", "maintenance"].status == "met"
    assert calls["NO100009", "maintenance"].status == "issued"
    _login(client, "northwind.desk")
    listed = client.get("/api/v1/margin-calls/", {"status": ["issued", "overdue"]}).json()
    dues = [c["due_date"] for c in listed["results"]]
    assert dues == sorted(dues) and len(dues) == 4  # NO100009's running call too (issue 19)
    warned = client.get("/api/v1/accounts/NO100021/margin").json()["warnings"]
    assert [w["kind"] for w in warned] == ["health_factor"]
    client.logout()


def test_the_demo_tells_every_story(client) -> None:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    printed = out.getvalue()
    assert "northwind.risk1" in printed and "platform.auditor" in printed

    # -- issue 9: no superuser; the platform auditor holds a platform role and no firm
    from django.contrib.auth import get_user_model

    from brokerage.tenancy import is_platform_auditor

    assert not get_user_model().objects.filter(is_superuser=True).exists()
    assert is_platform_auditor(get_user_model().objects.get(username="platform.auditor"))

    # -- two firms, a user of every role in each, about 20 clients with valued books
    firms = list(Firm.objects.order_by("slug"))
    assert [f.slug for f in firms] == ["bluewater", "northwind"]
    for firm in firms:
        with firm_scope(firm):
            assert set(Membership.objects.values_list("role", flat=True)) == {r.value for r in Role}
            assert Client.objects.count() >= 18
            accounts = list(Account.objects.all())
            valued = set(MarginSnapshot.objects.values_list("account_id", flat=True))
            assert valued >= {a.pk for a in accounts if a.margin_type != "cash"}
            assert MarginSnapshot.objects.filter(excess__lt=0).exists(), "an under-margined account"
        assert audit.verify_chain(audit.chain_key(firm)) is None
    # -- issue 15: the seed ends on a signed checkpoint of every chain, which verifies
    from brokerage.audit_anchors import read_anchors
    from brokerage.models import AuditChainHead

    assert "chains checkpointed" in printed
    checkpoints, problems = read_anchors()
    assert not problems
    for firm in firms:
        head = AuditChainHead.objects.get(chain=audit.chain_key(firm))
        checkpoint = checkpoints[head.chain]
        assert (checkpoint.seq, checkpoint.hash) == (head.seq, head.last_hash)

    # -- issue 10: every snapshot the demo wrote reproduces from what it recorded
    _every_snapshot_reproduces()
    _the_batch_values_the_demo_as_the_calculator_does()

    # -- written through the services: every row the seed made has its audit event
    _every_row_has_its_audit_event(firms)

    # -- what README's demo section promises: its logins and accounts, NO100013 under-margined
    _as_the_readme_says()

    # -- issue 2: the staff desk shows one firm's book only
    _login(client, "northwind.admin")
    page = client.get("/admin/accounts/account/")
    assert page.status_code == 200
    assert b"NO100001" in page.content and b"BL100001" not in page.content
    client.logout()

    # -- issue 4: the crypto-native client sees LP, ETH and the perp stressed, with LTV
    _login(client, "northwind.crypto")
    page = client.get("/portal/accounts/NO100020/why/")  # the collateral view is on Why
    assert page.status_code == 200
    html = page.content.decode()
    for text in ("UNIV3-USDC/ETH", "ETH-PERP", "Stressed loss", "Effective value", "LTV", "80.0 %"):
        assert text in html, text
    assert client.get("/portal/accounts/BL100020/").status_code == 404
    client.logout()

    # ... and Bluewater's own haircut table (approved by its two risk officers) counts the same
    # ETH for less than Northwind's platform default does
    def eth_row(slug: str, number: str) -> dict:
        firm = Firm.objects.get(slug=slug)
        with firm_scope(firm):
            snapshot = MarginSnapshot.objects.filter(account__number=number).latest()
        assert snapshot.parameter_set == ("default-2026.1/firm-v1" if slug == "bluewater"
                                          else "default-2026.1")
        return next(p for p in explanation(snapshot)["collateral"]["positions"] if p["id"] == "ETH")

    assert eth_row("northwind", "NO100020")["stressed_loss"] == 1800.0  # 5 % of $36,000
    assert eth_row("bluewater", "BL100020")["stressed_loss"] == 3600.0  # 10 %

    # -- issue 5: the $180,000 options-level-4 applicant applied (the seed submits it from the
    # portal, issue 19: it waits on the desk); four eyes decide
    northwind = Firm.objects.get(slug="northwind")
    with firm_scope(northwind):
        applicant = Client.objects.get(portal_user__username="northwind.applicant")
        account = Account.objects.get(client=applicant)
    assert account.margin_type == "reg_t"
    _login(client, "northwind.applicant")
    (made,) = client.get("/api/v1/applications/").json()["results"]
    app_id = made["id"]
    assert made["state"] == "submitted" and made["account"] == account.pk
    assert made["latest_evaluation"]["passed"] is True
    client.logout()

    _login(client, "northwind.risk1")
    url = f"/api/v1/applications/{app_id}/"
    reviewed = client.post(url + "review/", {"recommendation": "approve", "notes": "meets all"},
                           content_type="application/json")
    assert reviewed.status_code == 200, reviewed.json()
    refused = decide(client, url + "approve/", {}, content_type="application/json")
    assert refused.status_code == 403, refused.json()
    client.logout()

    _login(client, "northwind.risk2")
    approved = decide(client, url + "approve/", {"reasons": "second pair of eyes"},
                      content_type="application/json")
    assert approved.status_code == 200, approved.json()
    today = business_today()
    assert approved.json()["effective_on"] == next_business_day(
        today, northwind.exchange_calendar).isoformat()
    assert date.fromisoformat(approved.json()["effective_on"]) > today
    client.logout()

    _margin_calls_story(client, northwind)

    _login(client, "bluewater.risk2")  # another firm's application is a 404
    assert client.get(url).status_code == 404
    client.logout()

    story = [(e.event_type, e.actor.username if e.actor else None)
             for e in audit.events_for(northwind).filter(event_type__startswith="pm_application")]
    assert story == [("pm_application.created", "northwind.applicant"),
                     ("pm_application.submitted", "northwind.applicant"),
                     ("pm_application.reviewed", "northwind.risk1"),
                     ("pm_application.approved", "northwind.risk2")]

    # -- issue 16: as a new user tries it
    _issue_16_logins(printed, northwind)


def _issue_16_logins(printed: str, northwind: Firm) -> None:
    """A risk officer logs in with the password, is asked the code, and gets it from
    `manage.py demo_otp_code`; its secret is printed beside the login. Five wrong passwords
    as another user lock that user out, and the lockout is in the firm's audit trail."""
    from django.test import Client as Browser
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from brokerage.second_factor import base32_secret

    risk1 = get_user_model().objects.get(username="northwind.risk1")
    secret = base32_secret(TOTPDevice.objects.get(user=risk1, confirmed=True))
    assert re.search(rf"northwind\.risk1 .*TOTP secret {secret}\b", printed)
    assert "demo_otp_code" in printed

    browser = Browser()
    step = browser.post("/accounts/login/?next=/admin/",
                        {"username": "northwind.risk1", "password": PASSWORD})
    assert step.status_code == 302 and step.url == "/admin/"
    asked = browser.get("/admin/")
    assert asked.status_code == 302 and asked.url.startswith("/accounts/otp/")
    code = StringIO()
    call_command("demo_otp_code", "northwind.risk1", stdout=code)
    done = browser.post(asked.url, {"otp_token": code.getvalue().strip(), "next": "/admin/"})
    assert done.status_code == 302 and browser.get("/admin/").status_code == 200

    attacker = Browser()
    for _ in range(5):
        attacker.post("/accounts/login/", {"username": "northwind.desk", "password": "guess"})
    assert attacker.post("/accounts/login/", {"username": "northwind.desk",
                                              "password": PASSWORD}).status_code == 429
    trail = browser.get("/admin/brokerage/auditevent/?event_type=login.locked_out")
    assert trail.status_code == 200 and b"login.locked_out" in trail.content
    (lockout,) = audit.events_for(northwind).filter(event_type="login.locked_out")
    assert lockout.after["username"] == "northwind.desk"
