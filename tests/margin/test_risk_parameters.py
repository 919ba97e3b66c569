"""A firm's own risk parameters (e.g. its crypto haircut table): proposed, approved by a second
person, applied to that firm's snapshots only; bad changes refused with nothing written."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from accounts import services as book
from brokerage import audit
from brokerage.errors import FourEyesViolation
from brokerage.scope import firm_scope
from margin import services
from margin.figures import parameters_for
from margin.market_data import load_prices
from margin.models import RiskParameterSet
from margin.reproduce import explanation
from margin.snapshots import latest_snapshot
from margin.tasks import recompute_accounts
from tests.api_body import decide, the_error
from tests.factories import PASSWORD, log_in, shared_instrument

pytestmark = pytest.mark.django_db

STRICTER = {"defi": {"haircut_tiers": {"large_cap": [[1000000, 0.10], [10000000, 0.15],
                                                     [None, 0.25]]}}}


def _eth_books(world) -> None:
    eth = shared_instrument("ETH", kind="crypto", product_class="crypto")
    load_prices(observations=[{"symbol": "ETH", "price": "3000",
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)
    for fw in (world.a, world.b):
        with firm_scope(fw.firm):
            book.set_position(account=fw.account, instrument=eth, quantity=Decimal(100),
                              actor=fw.users["margin_desk"])


def _eth_stressed_loss(world, fw) -> float:
    recompute_accounts(fw.firm.pk, [fw.account.pk])
    with firm_scope(fw.firm):
        snapshot = latest_snapshot(fw.account)
    (row,) = explanation(snapshot)["collateral"]["positions"]
    return row["stressed_loss"]


def test_an_approved_haircut_table_applies_to_that_firm_only(world):
    _eth_books(world)
    assert _eth_stressed_loss(world, world.a) == 15000.0  # 5 % of $300,000 (default table)
    with firm_scope(world.firm_a):
        proposal = services.propose_parameters(firm=world.firm_a,
                                               actor=world.a.users["risk_officer"],
                                               overrides=STRICTER, reason="house view on ETH")
        assert proposal.status == RiskParameterSet.Status.PROPOSED
        # proposed is not yet in force
        assert parameters_for(world.firm_a)[1] == "default-2026.1"
        services.approve_parameters(proposal=proposal, actor=world.a.users["firm_admin"])
        params, label = parameters_for(world.firm_a)
    assert label == "default-2026.1/firm-v1"
    assert params.defi.haircut_tiers["large_cap"][0] == (1000000, 0.10)
    assert _eth_stressed_loss(world, world.a) == 30000.0  # 10 % under the firm's table
    assert _eth_stressed_loss(world, world.b) == 15000.0  # the other firm keeps the default
    story = list(audit.events_for(world.firm_a).filter(event_type__startswith="risk_parameters")
                 .values_list("event_type", "actor__username"))
    assert story == [("risk_parameters.proposed", "alpha_risk_officer"),
                     ("risk_parameters.approved", "alpha_firm_admin")]


def test_a_new_version_supersedes_the_active_one(world):
    with firm_scope(world.firm_a):
        admin, risk = world.a.users["firm_admin"], world.a.users["risk_officer"]
        first = services.propose_parameters(firm=world.firm_a, actor=risk, overrides=STRICTER,
                                            reason="v1")
        services.approve_parameters(proposal=first, actor=admin)
        second = services.propose_parameters(firm=world.firm_a, actor=admin,
                                             overrides={"house": {"vol_shift": 0.3}},
                                             reason="v2")
        services.approve_parameters(proposal=second, actor=risk)
        statuses = dict(RiskParameterSet.objects.values_list("version", "status"))
        params, _ = parameters_for(world.firm_a)
    assert statuses == {1: "superseded", 2: "active"}
    assert params.house.vol_shift == 0.3
    assert params.defi.haircut_tiers["large_cap"][0] == (1000000, 0.05)  # v2 is complete


def test_the_proposer_cannot_approve_and_a_decided_version_cannot_be_decided_again(world):
    with firm_scope(world.firm_a):
        risk = world.a.users["risk_officer"]
        proposal = services.propose_parameters(firm=world.firm_a, actor=risk,
                                               overrides=STRICTER, reason="x")
        with pytest.raises(FourEyesViolation, match="alpha_risk_officer proposed risk "
                                                    "parameters v1 and so cannot approve"):
            services.approve_parameters(proposal=proposal, actor=risk)
        services.reject_parameters(proposal=proposal, actor=world.a.users["firm_admin"],
                                   reason="too strict")
        with pytest.raises(services.Conflict):
            services.approve_parameters(proposal=proposal, actor=world.a.users["firm_admin"])
        assert parameters_for(world.firm_a)[1] == "default-2026.1"


@pytest.mark.parametrize("role", ["margin_desk", "compliance_officer", "client"])
def test_only_admins_and_risk_officers_propose(world, role):
    with firm_scope(world.firm_a), pytest.raises(services.NotPermitted):
        services.propose_parameters(firm=world.firm_a, actor=world.a.users[role],
                                    overrides=STRICTER, reason="x")


@pytest.mark.parametrize("overrides, field", [
    ({"reg_t": {"long_stock_maintenance": 0.1}}, "overrides.reg_t"),
    ({"defi": {"max_ltv": float("nan")}}, "overrides.defi.max_ltv"),
    ({"defi": {"haircut_tiers": {"large_cap": [[1000000, 0.3], [None, 0.1]]}}},
     "overrides.defi.haircut_tiers.large_cap"),
    ({"defi": {"max_ltvv": 0.5}}, "overrides.defi.max_ltvv"),
])
def test_bad_overrides_are_refused_and_nothing_is_written(world, overrides, field):
    before = audit.events_for(world.firm_a).count()
    with firm_scope(world.firm_a):
        with pytest.raises(services.RiskParameterError) as refused:
            services.propose_parameters(firm=world.firm_a, actor=world.a.users["risk_officer"],
                                        overrides=overrides, reason="x")
        assert not RiskParameterSet.objects.exists()
    assert [e["field"] for e in refused.value.errors] == [field]
    assert audit.events_for(world.firm_a).count() == before


def test_the_api_door(client, world):
    log_in(client, "alpha_risk_officer", password=PASSWORD)
    made = client.post("/api/v1/risk-parameters/", {"overrides": STRICTER, "reason": "ETH"},
                       content_type="application/json")
    assert made.status_code == 201, made.json()
    url = f"/api/v1/risk-parameters/{made.json()['id']}/"
    own = decide(client, url + "approve/", {}, content_type="application/json")
    assert own.status_code == 403 and the_error(own)["code"] == "four_eyes"
    bad = client.post("/api/v1/risk-parameters/",
                      {"overrides": {"defi": {"max_ltv": 2}}, "reason": "x"},
                      content_type="application/json")
    assert bad.status_code == 400
    assert the_error(bad)["field"] == "overrides.defi.max_ltv"
    client.logout()

    log_in(client, "beta_firm_admin", password=PASSWORD)
    assert client.get(url).status_code == 404  # another firm's version
    foreign = decide(client, url + "approve/", {}, content_type="application/json")
    assert foreign.status_code == 404 and the_error(foreign)["code"] == "not_found"
    client.logout()

    log_in(client, "alpha_client", password=PASSWORD)
    staff_only = client.get("/api/v1/risk-parameters/")
    assert staff_only.status_code == 403 and the_error(staff_only)["code"] == "permission_denied"
    client.logout()

    log_in(client, "alpha_firm_admin", password=PASSWORD)
    approved = decide(client, url + "approve/", {"reason": "agreed"},
                           content_type="application/json")
    assert approved.status_code == 200, approved.json()
    assert approved.json()["status"] == "active"
    assert approved.json()["decided_by"] == "alpha_firm_admin"


def _v1_then_two_drafts(world) -> tuple[RiskParameterSet, RiskParameterSet]:
    """v1 active; v2 and v3 both drafted on v1 (the regression: approving v3 then v2 made v2,
    drafted before v3 existed, active, silently undoing v3)."""
    admin, risk = world.a.users["firm_admin"], world.a.users["risk_officer"]
    v1 = services.propose_parameters(firm=world.firm_a, actor=risk, overrides=STRICTER,
                                     reason="v1")
    services.approve_parameters(proposal=v1, actor=admin)
    v2 = services.propose_parameters(firm=world.firm_a, actor=risk, reason="v2",
                                     overrides={"house": {"vol_shift": 0.3}})
    v3 = services.propose_parameters(firm=world.firm_a, actor=risk, reason="v3",
                                     overrides={**STRICTER, "house": {"vol_shift": 0.4}})
    assert (v2.drafted_on, v3.drafted_on) == (1, 1)
    services.approve_parameters(proposal=v3, actor=admin)
    return v2, v3


def test_approving_a_stale_proposal_is_refused_and_changes_nothing(world):
    with firm_scope(world.firm_a):
        v2, v3 = _v1_then_two_drafts(world)
        events = audit.events_for(world.firm_a).count()
        with pytest.raises(services.Conflict, match="risk parameters v2 was drafted on version 1 "
                                                    ".*version 3 is in force now"):
            services.approve_parameters(proposal=v2, actor=world.a.users["firm_admin"])
        statuses = dict(RiskParameterSet.objects.values_list("version", "status"))
        params, label = parameters_for(world.firm_a)
    assert statuses == {1: "superseded", 2: "proposed", 3: "active"}
    assert label == "default-2026.1/firm-v3" and params.house.vol_shift == 0.4
    assert audit.events_for(world.firm_a).count() == events
    with firm_scope(world.firm_a):  # a stale proposal can still be turned down, and leaves
        rejected = services.reject_parameters(proposal=v2, actor=world.a.users["firm_admin"],
                                              reason="overtaken by v3")
    assert rejected.status == "rejected"


def test_a_stale_approval_through_the_api_is_a_409_and_changes_nothing(client, world):
    with firm_scope(world.firm_a):
        v2, _ = _v1_then_two_drafts(world)
    log_in(client, "alpha_firm_admin", password=PASSWORD)
    url = f"/api/v1/risk-parameters/{v2.pk}/"
    assert client.get(url).json()["drafted_on"] == 1
    refused = decide(client, url + "approve/", {"reason": "late"}, content_type="application/json")
    assert refused.status_code == 409, refused.json()
    (error,) = refused.json()["errors"]
    assert error["code"] == "conflict" and "propose the change again" in error["message"]
    assert client.get(url).json()["status"] == "proposed"
    listed = client.get("/api/v1/risk-parameters/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert {row["version"]: row["status"] for row in rows} == {1: "superseded", 2: "proposed",
                                                              3: "active"}


def test_the_proposer_withdraws_by_rejecting(world):
    with firm_scope(world.firm_a):
        risk = world.a.users["risk_officer"]
        proposal = services.propose_parameters(firm=world.firm_a, actor=risk,
                                               overrides=STRICTER, reason="x")
        withdrawn = services.reject_parameters(proposal=proposal, actor=risk, reason="wrong table")
        assert withdrawn.status == "rejected"
        events = list(audit.events_for(world.firm_a).filter(
            event_type__startswith="risk_parameters").values_list("event_type", flat=True))
    assert events == ["risk_parameters.proposed", "risk_parameters.withdrawn"]


def test_the_data_migration_gives_pending_proposals_what_they_were_drafted_on(world):
    import importlib

    from django.apps import apps

    from brokerage.models import ApprovalRequest

    with firm_scope(world.firm_a):
        v2, _ = _v1_then_two_drafts(world)
        fresh = services.propose_parameters(firm=world.firm_a, actor=world.a.users["firm_admin"],
                                            overrides=STRICTER, reason="v4")
        RiskParameterSet.objects.filter(pk__in=[v2.pk, fresh.pk]).update(drafted_on=0)
        ApprovalRequest.objects.filter(state="pending").delete()  # as before the migration
        migration = importlib.import_module("margin.migrations.0006_risk_parameter_drafted_on")
        migration.pending_proposals_to_requests(apps, None)
        drafted = dict(RiskParameterSet.objects.filter(status="proposed")
                       .values_list("version", "drafted_on"))
        pending = {r.subject_id: r.drafted_on
                   for r in ApprovalRequest.objects.filter(state="pending")}
        assert drafted == {2: 1, 4: 3}
        assert pending == {v2.pk: 1, fresh.pk: 3}
        with pytest.raises(services.Conflict):  # the migrated stale one is refused too
            services.approve_parameters(proposal=v2, actor=world.a.users["firm_admin"])
