"""Stale detection: what the reviewer judged changed after the review started."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts import services as book
from brokerage.models import AuditEvent
from eligibility import services
from eligibility.models import Application
from margin.market_data import load_prices
from tests.factories import shared_instrument

from .conftest import deposit, reviewed_application


@pytest.fixture
def under_review(in_desk_firm):
    return reviewed_application(in_desk_firm)


def state_of(application: Application) -> str:
    return Application.objects.get(pk=application.pk).state


def test_a_change_to_the_clients_financial_profile_makes_it_stale(
        in_desk_firm, under_review, django_capture_on_commit_callbacks):
    desk = in_desk_firm
    with django_capture_on_commit_callbacks(execute=True):
        book.update_client(client=desk.client, actor=desk.admin, annual_income=Decimal("90000"))
    stale = Application.objects.get(pk=under_review.pk)
    assert stale.state == "stale"
    assert "client data changed after review started: annual_income" in stale.closed_reason
    event = AuditEvent.objects.get(event_type="pm_application.stale")
    assert event.actor is None and event.actor_role == "system"
    # A stale application goes back through submission, review and a second person.
    again = services.submit_application(application=stale, actor=desk.client_user)
    assert again.state == "submitted" and again.reviewed_by is None and again.recommendation == ""


def test_a_change_that_does_not_touch_eligibility_leaves_it_under_review(
        in_desk_firm, under_review, django_capture_on_commit_callbacks):
    desk = in_desk_firm
    with django_capture_on_commit_callbacks(execute=True):
        book.update_client(client=desk.client, actor=desk.admin, phone="+1 212 555 0100")
    assert state_of(under_review) == "under_review"


def test_a_deposit_after_the_review_started_makes_it_stale(
        in_desk_firm, under_review, django_capture_on_commit_callbacks):
    desk = in_desk_firm
    with django_capture_on_commit_callbacks(execute=True):
        deposit(desk.account, "1000")
    stale = Application.objects.get(pk=under_review.pk)
    assert stale.state == "stale"
    assert "equity changed after review started: 200000.00 -> 201000.00" in stale.closed_reason


def test_a_position_change_makes_it_stale(in_desk_firm, under_review,
                                          django_capture_on_commit_callbacks):
    desk = in_desk_firm
    stock = shared_instrument("STALEX")
    load_prices(observations=[{"symbol": "STALEX", "price": "10",
                               "observed_at": timezone.now() - timedelta(minutes=5)}],
                source="exchange", actor=None)
    with django_capture_on_commit_callbacks(execute=True):
        book.set_position(account=desk.account, instrument=stock, quantity=Decimal("100"),
                          actor=desk.margin_desk)
    assert state_of(under_review) == "stale"


def test_changes_before_the_review_started_do_not_make_it_stale(
        in_desk_firm, django_capture_on_commit_callbacks):
    desk = in_desk_firm
    submitted = services.create_application(account=desk.account, actor=desk.client_user,
                                            submit=True)
    with django_capture_on_commit_callbacks(execute=True):
        book.update_client(client=desk.client, actor=desk.admin, net_worth=Decimal("3000000"))
        deposit(desk.account, "5000")
    assert state_of(submitted) == "submitted"  # evaluation at review and approval sees the news


def test_a_price_move_alone_does_not_make_it_stale(in_desk_firm, under_review,
                                                   django_capture_on_commit_callbacks):
    shared_instrument("TICK")
    with django_capture_on_commit_callbacks(execute=True):
        load_prices(observations=[{"symbol": "TICK", "price": "11",
                                   "observed_at": timezone.now() - timedelta(minutes=1)}],
                    source="exchange", actor=None)
    assert state_of(under_review) == "under_review"


def test_a_stale_application_cannot_be_approved(in_desk_firm, under_review):
    desk = in_desk_firm
    services.mark_stale(application=under_review, reason="test")
    assert services.mark_stale(application=under_review, reason="again") is None  # idempotent
    with pytest.raises(services.IllegalTransition, match="it is stale"):
        services.approve_application(application=under_review, approver=desk.admin)
