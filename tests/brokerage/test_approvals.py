"""The one maker-checker (brokerage.approvals): requester refused, one decision per person,
stale versions refused, re-validation at apply time, concurrent deciders (one wins).

The mechanism is exercised through a kind registered here (renaming a firm: the subject is the
firm row, the new name the request's payload, the version the number of renames approved) so
every rule is seen without any app's own rules in the way; then through the real kinds (risk
parameters, rule sets, applications) for the one-queue read and for races on PostgreSQL.
"""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path

import pytest

from brokerage import approvals, audit
from brokerage.errors import (
    Conflict,
    FourEyesViolation,
    InvalidInput,
    NotFound,
    NotPermitted,
    Unprocessable,
)
from brokerage.models import ApprovalDecision, ApprovalRequest, AuditEvent, Firm
from brokerage.roles import Role
from brokerage.scope import firm_scope
from brokerage.tenancy import role_of
from tests.concurrency import race

RENAME = "test.rename_firm"
RENAME_BY_TWO = "test.rename_firm_by_two"


def _renames(firm: Firm) -> int:
    return ApprovalRequest.objects.filter(kind__in=[RENAME, RENAME_BY_TWO], subject_id=firm.pk,
                                          state="approved").count()


def _authorize(ruling: approvals.Ruling) -> None:
    if role_of(ruling.decider) not in (Role.FIRM_ADMIN, Role.RISK_OFFICER):
        raise NotPermitted(f"{ruling.decider.username} may not {ruling.verb} a rename")


def _revalidate(ruling: approvals.Ruling) -> approvals.Refusal | None:
    name = ruling.request.payload["name"]
    if Firm.objects.filter(name=name).exclude(pk=ruling.subject.pk).exists():
        raise InvalidInput(f"another firm is called {name}", field="name")
    if name.startswith("Refused"):
        return approvals.Refusal(Unprocessable("refused, and the refusal kept"),
                                 record={"looked_at": name})
    return None


def _apply(ruling: approvals.Ruling) -> approvals.Change:
    firm, before = ruling.subject, ruling.subject.name
    firm.name = ruling.request.payload["name"]
    firm.save(update_fields=["name"])
    return approvals.Change(before={"name": before}, after={"name": firm.name})


def _kind(name: str, required: int) -> approvals.ApprovalKind:
    return approvals.ApprovalKind(
        name=name, subject_model="brokerage.firm", audit_prefix=name, required_approvals=required,
        lock=lambda request: Firm.objects.select_for_update().get(pk=request.subject_id),
        current_version=_renames, describe=lambda firm: f"the rename of {firm.slug}",
        authorize=_authorize, revalidate=_revalidate, apply=_apply,
        reject=lambda ruling: approvals.Change(), target="the firm's name")


@pytest.fixture
def renames():
    for kind in (_kind(RENAME, 1), _kind(RENAME_BY_TWO, 2)):
        approvals.register(kind)
    yield
    approvals.unregister(RENAME)
    approvals.unregister(RENAME_BY_TWO)


def ask(world, name: str, *, kind: str = RENAME, by: str = "risk_officer",
        drafted_on: int | None = None) -> ApprovalRequest:
    from django.db import transaction

    firm = world.firm_a
    with transaction.atomic():
        return approvals.request_approval(
            kind=kind, firm=firm, subject=firm, requested_by=world.a.users[by],
            drafted_on=_renames(firm) if drafted_on is None else drafted_on, payload={"name": name}, summary=f"rename to {name}",
            makers=approvals.makers_of((world.a.users[by], "drafted")))


@pytest.fixture
def in_a(world, renames):
    with firm_scope(world.firm_a):
        yield world


pytestmark = pytest.mark.django_db


def _name(world) -> str:
    return Firm.objects.get(pk=world.firm_a.pk).name


# The rules ------------------------------------------------------------------------------------

def test_the_requester_never_decides_and_nothing_is_written(in_a):
    world = in_a
    request = ask(world, "Alpha Two")
    events = AuditEvent.objects.count()
    for approve in (True, False):
        with pytest.raises(FourEyesViolation, match="alpha_risk_officer drafted the rename of "
                                                    "alpha and so cannot"):
            approvals.decide(request=request, decider=world.a.users["risk_officer"],
                             approve=approve, reason="mine")
    request.refresh_from_db()
    assert request.state == "pending" and not request.decisions.exists()
    assert AuditEvent.objects.count() == events and _name(world) == "Firm ALPHA"

    done = approvals.decide(request=request, decider=world.a.users["firm_admin"], approve=True,
                            reason="agreed")
    assert done.state == "approved" and done.decided_by == world.a.users["firm_admin"]
    assert _name(world) == "Alpha Two"
    event = audit.events_for(world.firm_a).get(event_type=f"{RENAME}.approved")
    assert event.before == {"name": "Firm ALPHA"}
    assert event.after == {"name": "Alpha Two", "approval_request": request.pk,
                           "reason": "agreed"}


def test_every_maker_is_refused_not_only_the_requester(in_a):
    world = in_a
    from django.db import transaction

    with transaction.atomic():
        request = approvals.request_approval(
            kind=RENAME, firm=world.firm_a, subject=world.firm_a,
            requested_by=world.a.users["risk_officer"], drafted_on=0, payload={"name": "X"},
            makers=approvals.makers_of((world.a.users["firm_admin"], "drafted"),
                                       (world.a.users["firm_admin"], "submitted")))
    assert request.makers == {str(world.a.users["firm_admin"].pk): ["drafted", "submitted"],
                              str(world.a.users["risk_officer"].pk): ["asked for"]}
    with pytest.raises(FourEyesViolation, match="alpha_firm_admin drafted and submitted"):
        approvals.decide(request=request, decider=world.a.users["firm_admin"], approve=True)


def test_the_kind_decides_who_may_decide(in_a):
    world = in_a
    request = ask(world, "Alpha Two")
    with pytest.raises(NotPermitted, match="alpha_margin_desk may not approve"):
        approvals.decide(request=request, decider=world.a.users["margin_desk"], approve=True)


def test_one_decision_per_person_and_the_quorum_decides(in_a):
    world = in_a
    request = ask(world, "Alpha Two", kind=RENAME_BY_TWO, by="margin_desk")
    first = approvals.decide(request=request, decider=world.a.users["firm_admin"], approve=True)
    assert first.state == "pending" and _name(world) == "Firm ALPHA"  # one of two
    with pytest.raises(Conflict, match="alpha_firm_admin has already decided .* one decision "
                                       "per person"):
        approvals.decide(request=request, decider=world.a.users["firm_admin"], approve=True)
    assert list(approvals.pending().values_list("pk", flat=True)) == [request.pk]

    admin, risk = world.a.users["firm_admin"], world.a.users["risk_officer"]
    assert not approvals.awaiting(user=admin).exists()  # decided already
    assert not approvals.awaiting(user=world.a.users["margin_desk"]).exists()  # asked
    assert list(approvals.awaiting(user=risk)) == [request]
    second = approvals.decide(request=request, decider=risk, approve=True)
    assert second.state == "approved" and _name(world) == "Alpha Two"
    assert sorted(ApprovalDecision.objects.filter(request=request)
                  .values_list("user__username", flat=True)) == ["alpha_firm_admin",
                                                                 "alpha_risk_officer"]
    trail = list(audit.events_for(world.firm_a).filter(event_type__startswith=RENAME_BY_TWO)
                 .values_list("event_type", flat=True))
    assert trail == [f"{RENAME_BY_TWO}.approval_recorded", f"{RENAME_BY_TWO}.approved"]
    assert not approvals.pending().exists()


def test_a_decision_is_never_changed_not_even_in_sql(in_a):
    from django.db import DatabaseError, connection, transaction

    request = ask(in_a, "Alpha Two")
    approvals.decide(request=request, decider=in_a.a.users["firm_admin"], approve=True)
    decision = ApprovalDecision.objects.get(request=request)
    with pytest.raises(PermissionError):
        ApprovalDecision.objects.filter(pk=decision.pk).update(approve=False)
    with pytest.raises(PermissionError):
        decision.save()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), \
            connection.cursor() as cursor:
        cursor.execute("UPDATE brokerage_approvaldecision SET approve = false WHERE id = %s",
                       [decision.pk])


def test_a_decided_request_is_a_conflict_for_anyone_after(in_a):
    world = in_a
    request = ask(world, "Alpha Two")
    approvals.decide(request=request, decider=world.a.users["firm_admin"], approve=False,
                     reason="no")
    with pytest.raises(Conflict, match="the rename of alpha was already rejected by "
                                       "alpha_firm_admin"):
        approvals.decide(request=request, decider=world.a.users["firm_admin"], approve=True)
    assert _name(world) == "Firm ALPHA"


def test_a_request_drafted_on_an_old_version_is_refused_and_nothing_changes(in_a):
    world = in_a
    admin, risk = world.a.users["firm_admin"], world.a.users["risk_officer"]
    newer = ask(world, "Alpha New", by="firm_admin")
    approvals.decide(request=newer, decider=risk, approve=True)
    assert _name(world) == "Alpha New"
    older = ask(world, "Alpha Old", drafted_on=0)  # drafted before the rename above
    events = AuditEvent.objects.count()
    with pytest.raises(Conflict, match="drafted on version 0 of the firm's name; version 1 is in "
                                       "force now"):
        approvals.decide(request=older, decider=admin, approve=True)
    older.refresh_from_db()
    assert older.state == "pending" and not older.decisions.exists()
    assert _name(world) == "Alpha New" and AuditEvent.objects.count() == events
    # Turning a stale request down changes nothing, so it is allowed: how it leaves the queue.
    assert approvals.decide(request=older, decider=admin, approve=False,
                            reason="overtaken").state == "rejected"


def test_the_version_the_decider_read_is_checked_too(in_a):
    world = in_a
    request = ask(world, "Alpha Two")
    with pytest.raises(Conflict, match="is at version 0, not 3: it changed since you read it"):
        approvals.decide(request=request, decider=world.a.users["firm_admin"], approve=True,
                         expected_version=3)
    assert approvals.decide(request=request, decider=world.a.users["firm_admin"], approve=True,
                            expected_version=0).state == "approved"


def test_revalidated_at_apply_time(in_a):
    world = in_a
    request = ask(world, "Firm BETA")  # the other firm took the name meanwhile
    with pytest.raises(InvalidInput, match="another firm is called Firm BETA"):
        approvals.decide(request=request, decider=world.a.users["firm_admin"], approve=True)
    request.refresh_from_db()
    assert request.state == "pending" and not request.decisions.exists()


def test_a_refusal_that_keeps_its_record_commits_the_record_only(in_a):
    world = in_a
    request = ask(world, "Refused Name")
    with pytest.raises(Unprocessable, match="refusal kept"):
        approvals.decide(request=request, decider=world.a.users["firm_admin"], approve=True)
    request.refresh_from_db()
    assert request.state == "pending" and not request.decisions.exists()
    refused = audit.events_for(world.firm_a).get(event_type=f"{RENAME}.approval_refused")
    assert refused.after["looked_at"] == "Refused Name"
    assert refused.after["approval_request"] == request.pk
    assert _name(world) == "Firm ALPHA"


def test_whoever_asked_may_withdraw_nobody_else(in_a):
    world = in_a
    request = ask(world, "Alpha Two")
    with pytest.raises(NotPermitted, match="only whoever asked"):
        approvals.withdraw(request=request, actor=world.a.users["firm_admin"], reason="no")
    done = approvals.withdraw(request=request, actor=world.a.users["risk_officer"],
                              reason="changed my mind")
    assert done.state == "withdrawn" and not approvals.pending().exists()
    with pytest.raises(Conflict, match="already withdrawn by alpha_risk_officer"):
        approvals.decide(request=request, decider=world.a.users["firm_admin"], approve=True)


def test_another_firms_request_reads_as_missing(world, renames):
    with firm_scope(world.firm_a):
        request = ask(world, "Alpha Two")
    with firm_scope(world.firm_b), pytest.raises(NotFound):
        approvals.decide(request=request, decider=world.b.users["firm_admin"], approve=True)
    with firm_scope(world.firm_b):
        assert not approvals.pending().exists()


def test_one_pending_request_per_subject(in_a):
    from django.db import IntegrityError

    ask(in_a, "Alpha Two")
    with pytest.raises(IntegrityError):
        ask(in_a, "Alpha Three")


# One queue for every kind ---------------------------------------------------------------------

def test_awaiting_a_second_person_is_one_query_over_every_kind(world, django_assert_num_queries):
    from eligibility import services as eligibility
    from margin import services as parameters

    with firm_scope(world.firm_a):
        risk = world.a.users["risk_officer"]
        parameters.propose_parameters(firm=world.firm_a, actor=risk, reason="x",
                                      overrides={"house": {"vol_shift": 0.3}})
        eligibility.propose_rule_set(firm=world.firm_a, proposer=risk, reason="y",
                                     min_net_worth=Decimal("600000"))
        with django_assert_num_queries(1):
            queue = list(approvals.pending().values_list("kind", "requested_by__username"))
    assert queue == [("risk_parameters", "alpha_risk_officer"),
                     ("rule_set", "alpha_risk_officer")]


def test_the_core_module_imports_no_app():
    source = Path(approvals.__file__).read_text()
    imported = {node.module for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module}
    imported |= {alias.name for node in ast.walk(ast.parse(source))
                 if isinstance(node, ast.Import) for alias in node.names}
    assert {name.split(".")[0] for name in imported} <= {"__future__", "collections", "dataclasses",
                                                        "typing", "django"}, imported


# Races on PostgreSQL: two connections, exactly one decision stands -----------------------------

@pytest.mark.django_db(transaction=True)
def test_two_deciders_of_one_request_at_once_exactly_one_wins(world, renames):
    with firm_scope(world.firm_a):
        request = ask(world, "Alpha Two", by="margin_desk")

    def decide_as(role: str, approve: bool):
        def call():
            with firm_scope(world.firm_a):
                return approvals.decide(request=request, decider=world.a.users[role],
                                        approve=approve, reason="race")
        return call

    outcomes = race(decide_as("firm_admin", True), decide_as("risk_officer", False))
    decided = [o for o in outcomes if isinstance(o, ApprovalRequest)]
    assert len(decided) == 1 and isinstance(next(o for o in outcomes if o not in decided),
                                            Conflict), outcomes
    with firm_scope(world.firm_a):
        assert ApprovalDecision.objects.filter(request=request).count() == 1
        closing = audit.events_for(world.firm_a).filter(
            event_type__in=[f"{RENAME}.approved", f"{RENAME}.rejected"])
        assert closing.count() == 1
        assert audit.verify_chain(audit.chain_key(world.firm_a)) is None


@pytest.mark.django_db(transaction=True)
def test_two_proposals_on_one_version_approved_at_once_only_one_becomes_active(world):
    """v1 and v2 both drafted on the platform default, approved at the same moment by two
    people: one becomes active, the other is refused as stale (it would have undone it)."""
    from margin import services as parameters
    from margin.models import RiskParameterSet

    admin, risk = world.a.users["firm_admin"], world.a.users["risk_officer"]
    with firm_scope(world.firm_a):
        v1 = parameters.propose_parameters(firm=world.firm_a, actor=admin, reason="a",
                                           overrides={"house": {"vol_shift": 0.3}})
        v2 = parameters.propose_parameters(firm=world.firm_a, actor=admin, reason="b",
                                           overrides={"house": {"vol_shift": 0.4}})

    def approve(proposal):
        def call():
            with firm_scope(world.firm_a):
                return parameters.approve_parameters(proposal=proposal, actor=risk)
        return call

    outcomes = race(approve(v1), approve(v2))
    winners = [o for o in outcomes if isinstance(o, RiskParameterSet)]
    losers = [o for o in outcomes if isinstance(o, Exception)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert isinstance(losers[0], Conflict) and "propose the change again" in str(losers[0])
    with firm_scope(world.firm_a):
        active = RiskParameterSet.objects.filter(status="active")
        assert list(active.values_list("pk", flat=True)) == [winners[0].pk]
        assert RiskParameterSet.objects.filter(status="proposed").count() == 1
