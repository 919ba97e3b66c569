"""Concurrent decisions on one application: two real connections, exactly one wins.

Each thread has its own database connection (Django's connections are per thread) and its own
firm scope (context variables do not cross threads). A barrier releases them together; the row
lock makes the second wait, then it finds the application decided and gets a conflict.
"""

from __future__ import annotations

import time

import pytest
from rest_framework.test import APIClient

from brokerage import audit
from brokerage.scope import firm_scope
from eligibility import services
from eligibility.errors import Conflict
from eligibility.models import Application
from tests.api_body import decide
from tests.concurrency import race
from tests.factories import log_in

from .conftest import reviewed_application

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_approvers_at_once_exactly_one_wins(desk, monkeypatch):
    with firm_scope(desk.firm):
        application = reviewed_application(desk)
    # Make the winner dwell inside its transaction, holding the row lock, so the other approver
    # is certainly blocked on it (not merely running later).
    judge = services._judge

    def slow_judge(*args, **kwargs):
        result = judge(*args, **kwargs)
        time.sleep(0.4)
        return result

    monkeypatch.setattr(services, "_judge", slow_judge)
    elapsed: dict[int, float] = {}

    def approve(approver):
        def call():
            started = time.monotonic()
            try:
                with firm_scope(desk.firm):
                    return services.approve_application(
                        application=Application.objects.get(pk=application.pk), approver=approver)
            finally:
                elapsed[approver.pk] = time.monotonic() - started
        return call

    outcomes = race(approve(desk.admin), approve(desk.risk2))
    winners = [o for o in outcomes if isinstance(o, Application)]
    losers = [o for o in outcomes if isinstance(o, Exception)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert isinstance(losers[0], Conflict), losers[0]
    assert "already approved" in str(losers[0])
    assert min(elapsed.values()) > 0.3  # the loser waited for the winner's lock
    with firm_scope(desk.firm):
        final = Application.objects.get(pk=application.pk)
        assert final.state == "approved" and final.decided_by_id == winners[0].decided_by_id
        approvals = audit.events_for(desk.firm).filter(event_type="pm_application.approved")
        assert approvals.count() == 1
        assert audit.verify_chain(audit.chain_key(desk.firm)) is None


def test_approve_and_reject_at_once_exactly_one_decision_stands(desk):
    with firm_scope(desk.firm):
        application = reviewed_application(desk)

    def approve():
        with firm_scope(desk.firm):
            return services.approve_application(
                application=Application.objects.get(pk=application.pk), approver=desk.admin)

    def reject():
        with firm_scope(desk.firm):
            return services.reject_application(
                application=Application.objects.get(pk=application.pk), approver=desk.risk2,
                reasons="no")

    outcomes = race(approve, reject)
    decided = [o for o in outcomes if isinstance(o, Application)]
    assert len(decided) == 1 and any(isinstance(o, Conflict) for o in outcomes), outcomes
    with firm_scope(desk.firm):
        assert Application.objects.get(pk=application.pk).state == decided[0].state
        decisions = audit.events_for(desk.firm).filter(
            event_type__in=["pm_application.approved", "pm_application.rejected"])
        assert decisions.count() == 1


def test_two_api_approvals_at_once_one_200_one_refused(desk):
    with firm_scope(desk.firm):
        application = reviewed_application(desk)

    def post_as(user):
        def call():
            client = APIClient()
            log_in(client, user)
            return decide(client, f"/api/v1/applications/{application.pk}/approve/", {},
                               format="json").status_code
        return call

    codes = race(post_as(desk.admin), post_as(desk.risk2))
    # the loser is refused either at its If-Match (412: the ETag it read went stale before its
    # request arrived) or under the lock (409: both passed If-Match, one decided first)
    assert sorted(codes) in ([200, 409], [200, 412]), codes
