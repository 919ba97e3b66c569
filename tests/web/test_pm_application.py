"""The portfolio-margin application in the portal: the check rule by rule in words, the
disclosure acknowledged and the application submitted through the existing services (each
audited), a refusal shown in words with nothing changed, another firm's account a 404."""

from __future__ import annotations

import pytest

from accounts.models import RiskDisclosure
from brokerage.models import AuditEvent
from brokerage.scope import firm_scope
from eligibility.models import Application, Evaluation

pytestmark = pytest.mark.django_db
PAGE = "/portal/accounts/ALPHA-0001/portfolio-margin/"


def _audited(world, event_type: str) -> int:
    with firm_scope(world.firm_a):
        return AuditEvent.objects.filter(event_type=event_type).count()


def test_the_check_names_each_rule_in_words_and_writes_nothing(client, alpha):
    page = client.get(PAGE)
    text = page.content.decode()
    assert page.status_code == 200 and "The eligibility check, now" in text
    outcomes = [row["outcome"] for row in page.context["rules"]]
    assert {o.rule for o in outcomes} >= {"margin_type", "opening_equity"}
    for outcome in outcomes:
        assert outcome.sentence.replace("'", "&#x27;") in text
    assert "Reg T" in text  # the account's margin type
    with firm_scope(alpha.firm_a):
        assert not Application.objects.exists() and not Evaluation.objects.exists()


def test_the_disclosure_needs_the_box_ticked_then_is_signed(client, alpha):
    refused = client.post(PAGE, {"action": "acknowledge"}, follow=True)
    assert "tick the box" in refused.content.decode()
    with firm_scope(alpha.firm_a):
        assert not RiskDisclosure.objects.filter(document="portfolio_margin").exists()
    signed = client.post(PAGE, {"action": "acknowledge", "read": "yes"}, follow=True)
    assert "acknowledgement of the portfolio-margin risk disclosure is recorded" in \
        signed.content.decode()
    with firm_scope(alpha.firm_a):
        disclosure = RiskDisclosure.objects.get(document="portfolio_margin")
    assert disclosure.acknowledged_at is not None
    assert _audited(alpha, "disclosure.delivered") >= 1
    assert "You acknowledged this disclosure" in client.get(PAGE).content.decode()


def test_submitting_applies_once_and_shows_the_status(client, alpha):
    done = client.post(PAGE, {"action": "apply"}, follow=True)
    text = done.content.decode()
    with firm_scope(alpha.firm_a):
        application = Application.objects.get()
        assert application.state == Application.State.SUBMITTED
        assert Evaluation.objects.filter(application=application).exists()
    assert f"Application #{application.pk} is submitted" in text and "Submitted" in text
    assert _audited(alpha, "pm_application.submitted") == 1
    again = client.post(PAGE, {"action": "apply"}, follow=True).content.decode()
    assert "Nothing was changed" in again and "already has application" in again
    with firm_scope(alpha.firm_a):
        assert Application.objects.count() == 1


def test_an_unknown_action_changes_nothing(client, alpha):
    text = client.post(PAGE, {"action": "approve"}, follow=True).content.decode()
    assert "nothing was changed" in text
    with firm_scope(alpha.firm_a):
        assert not Application.objects.exists()


def test_applying_on_another_firms_account_is_a_404(client, alpha):
    # (every page's GET is walked in test_pages.py)
    assert client.post("/portal/accounts/BETA-0001/portfolio-margin/",
                       {"action": "apply"}).status_code == 404
