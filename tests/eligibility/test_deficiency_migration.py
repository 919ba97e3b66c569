"""Eligibility 0003 drops its ``Deficiency``: the open ones become open ``pm_minimum_equity``
margin calls first (issued as of the day they opened, due on their timeline, the steps taken
carried over, a restriction they imposed kept as the call's), with their 4220 row and audit
events; closed ones stay history only. Run with the migration executor on the real database:
back to 0002, deficiencies written with the historical models, forward again."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts import services as book
from accounts.models import Account
from brokerage import audit
from brokerage.scope import firm_scope
from margin.calls.issuance import CallRun, move_on
from margin.models import CallRecord, MarginCall, Restriction

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("eligibility", "0002_approval_requests")


def _state_of(executor: MigrationExecutor):
    executor.loader.build_graph()
    return executor.loader.project_state(sorted(executor.loader.applied_migrations)).apps


@pytest.fixture
def rolled_back(world):
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate([BEFORE])
    try:
        yield executor
    finally:
        executor.loader.build_graph()
        executor.migrate(leaves)


def _deficiency(apps, world, account, *, state: str, opened_on: date, **extra):
    RuleSet = apps.get_model("eligibility", "RuleSet")
    Deficiency = apps.get_model("eligibility", "Deficiency")
    rule_set = (RuleSet._base_manager.filter(firm_id=world.firm_a.pk, status="active").first()
                or RuleSet._base_manager.create(firm_id=world.firm_a.pk, version=1,
                                                status="active",
                                                deficiency_conversion_day=7))
    return Deficiency._base_manager.create(
        firm_id=world.firm_a.pk, account_id=account.pk, rule_set=rule_set, state=state,
        opened_on=opened_on, minimum=Decimal("100000.00"), equity_at_open=Decimal("60000.00"),
        equity_source="snapshot", last_equity=Decimal("58000.00"),
        last_evaluated_on=date(2026, 11, 27), notice_due_on=date(2026, 11, 25),
        restriction_due_on=date(2026, 11, 30), downgrade_due_on=date(2026, 12, 3), **extra)


def test_open_deficiencies_become_open_minimum_equity_calls(world, rolled_back):
    admin = world.a.users["firm_admin"]
    with firm_scope(world.firm_a):
        accounts = [book.open_account(client=world.a.client, number=f"PM-MIG-{n}",
                                      registration="individual",
                                      margin_type="portfolio_margin", actor=admin)
                    for n in range(3)]
        Account.objects.filter(pk=accounts[1].pk).update(status="restricted")
    apps = _state_of(rolled_back)
    T = date(2026, 11, 24)
    opened = _deficiency(apps, world, accounts[0], state="open", opened_on=T,
                         noticed_on=date(2026, 11, 25))
    restricted = _deficiency(apps, world, accounts[1], state="restricted", opened_on=T,
                             noticed_on=date(2026, 11, 25), restricted_on=date(2026, 11, 30),
                             restricted_by_timeline=True)
    _deficiency(apps, world, accounts[2], state="cured", opened_on=T,
                cured_on=date(2026, 11, 25))

    rolled_back.loader.build_graph()
    rolled_back.migrate(rolled_back.loader.graph.leaf_nodes())

    with firm_scope(world.firm_a):
        calls = {c.account_id: c for c in MarginCall.objects.order_by("pk")}
        assert set(calls) == {accounts[0].pk, accounts[1].pk}  # the cured one is history
        call = calls[accounts[0].pk]
        assert (call.kind, call.status, call.as_of, call.due_date) == (
            "pm_minimum_equity", "issued", T, date(2026, 11, 30))
        assert call.amount == call.amount_due == Decimal("42000.00")  # 100,000 - 58,000
        assert (call.equity, call.requirement) == (Decimal("58000.00"), Decimal("100000.00"))
        assert (call.notice_due_on, call.restriction_due_on, call.downgrade_due_on) == (
            date(2026, 11, 25), date(2026, 11, 30), date(2026, 12, 3))
        assert call.noticed_on == date(2026, 11, 25) and call.restricted_on is None
        assert call.last_evaluated_on == date(2026, 11, 27)
        # the firm's rule-set timeline is its call policy (a house downgrade day of 7)
        assert call.policy.version == 1 and call.policy.status == "active"
        assert call.policy.rows["pm_minimum_equity_downgrade_day"]["value"] == "7"
        assert call.policy.rows["pm_minimum_equity_downgrade_day"]["source"] == "H"
        assert "FINRA Portfolio Margin FAQ" in call.rule and call.rule_source == "regulatory"
        assert list(CallRecord.objects.filter(call=call).values_list(
            "day", "event", "amount_required")) == [(T, "issued", Decimal("42000.00"))]
        [restriction] = Restriction.objects.all()
        held = calls[accounts[1].pk]
        assert (restriction.call_id, restriction.kind, restriction.state,
                restriction.starts_on, restriction.restricted_account) == (
            held.pk, "closing_only", "active", date(2026, 11, 30), True)
        assert held.restricted_on == date(2026, 11, 30)
        events = audit.events_for(world.firm_a).filter(
            event_type="margin_call.converted_from_deficiency").order_by("seq")
        assert [(e.object_id, e.before["deficiency"]) for e in events] == [
            (str(call.pk), opened.pk), (str(held.pk), restricted.pk)]
        assert audit.events_for(world.firm_a).filter(event_type="restriction.imposed").count() == 1
    assert audit.verify_chain(audit.chain_key(world.firm_a)) is None  # the chain holds
    # the converted calls run on as margin's own: the close after their T+3 makes them overdue
    # and restricts the account that was not restricted yet
    run = CallRun(session=date(2026, 12, 1))
    with firm_scope(world.firm_a):
        move_on(account_ids=[a.pk for a in accounts], session=run.session, run=run)
        assert sorted(run.steps) == sorted([
            ("PM-MIG-0", "restricted"), ("PM-MIG-0", "overdue"), ("PM-MIG-1", "overdue")])
        assert Restriction.objects.filter(state="active").count() == 2
