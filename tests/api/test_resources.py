"""What the resources of issue 14 do beyond the matrix: scoped filters, cash through the book's
service, the what-if, cursor-paginated histories, market-data loads, optimistic concurrency on
decisions, throttling, and the documentation pages."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from brokerage import audit
from brokerage.models import AuditEvent
from brokerage.roles import Role
from brokerage.scope import firm_scope
from tests.api.test_matrix import bearer, footprint, market_data_operator
from tests.api_body import errors_of, the_error
from tests.factories import shared_instrument, value_each_firms_account

V = "/api/v1/"


@pytest.fixture
def valued(world):
    """Each firm's account: 10 ACME at 100, valued once, granted to its client user."""
    return value_each_firms_account(world)


def test_an_account_filter_offers_only_the_firms_accounts(valued):
    admin = bearer(valued.a.users[Role.FIRM_ADMIN.value])
    own = admin.get(f"{V}positions/?account={valued.a.account.number}")
    assert own.status_code == 200
    assert [row["account"] for row in own.json()["results"]] == [valued.a.account.number]
    foreign = admin.get(f"{V}positions/?account={valued.b.account.number}")
    assert foreign.status_code == 400
    assert the_error(foreign)["field"] == "account"
    assert admin.get(f"{V}ledger-entries/?account={valued.b.account.number}").status_code == 400


def test_lists_order_and_filter(valued):
    admin = bearer(valued.a.users[Role.FIRM_ADMIN.value])
    listed = admin.get(f"{V}ledger-entries/?ordering=amount").json()["results"]
    amounts = [Decimal(row["amount"]) for row in listed]
    assert amounts == sorted(amounts)
    assert admin.get(f"{V}instruments/?kind=stock&symbol=ACME").json()["count"] == 1
    assert admin.get(f"{V}instruments/?kind=future").json()["count"] == 0


def test_a_deposit_and_a_withdrawal_post_audited_ledger_entries(valued):
    fw = valued.a
    desk = bearer(fw.users[Role.MARGIN_DESK.value])
    url = f"{V}accounts/{fw.account.number}/"
    deposit = desk.post(f"{url}deposits/", {"amount": "1000.00", "memo": "wire"},
                        content_type="application/json")
    assert deposit.status_code == 201, deposit.content
    assert (deposit.json()["kind"], deposit.json()["amount"]) == ("deposit", "1000.00")
    withdrawal = desk.post(f"{url}withdrawals/", {"amount": "400.00"},
                           content_type="application/json")
    assert withdrawal.status_code == 201, withdrawal.content
    assert withdrawal.json()["amount"] == "-400.00"  # a debit on the ledger
    with firm_scope(fw.firm):
        posted = audit.events_for(fw.firm).filter(event_type="ledger.posted")
        assert {e.after["amount"] for e in posted} >= {"1000.00", "-400.00"}
    # the book's rules: nothing or less is refused, naming the field, and nothing is written
    before = footprint()
    for amount in ("0", "-5"):
        refused = desk.post(f"{url}withdrawals/", {"amount": amount},
                            content_type="application/json")
        assert refused.status_code == 400 and the_error(refused)["field"] == "amount"
    assert footprint() == before


def test_the_what_if_values_the_book_with_the_change_and_writes_nothing(valued):
    fw = valued.a
    risk = bearer(fw.users[Role.RISK_OFFICER.value])
    url = f"{V}accounts/{fw.account.number}/what-if"
    before = footprint()
    more = risk.post(url, {"positions": [{"symbol": "ACME", "quantity": "10"}]},
                     content_type="application/json")
    assert more.status_code == 200, more.content
    body = more.json()
    assert body["positions_after"] == [{"symbol": "ACME", "quantity": "20.00000000"}]
    assert Decimal(body["after"]["requirement"]) > Decimal(body["before"]["requirement"])
    assert Decimal(body["change"]["excess"]) == (Decimal(body["after"]["excess"])
                                                 - Decimal(body["before"]["excess"]))
    # all of it taken off: no requirement left
    flat = risk.post(url, {"positions": [{"symbol": "ACME", "quantity": "-10"}]},
                     content_type="application/json").json()
    assert flat["positions_after"] == [] and Decimal(flat["after"]["requirement"]) == 0
    unknown = risk.post(url, {"positions": [{"symbol": "NOPE", "quantity": "1"}]},
                        content_type="application/json")
    assert unknown.status_code == 400
    assert the_error(unknown)["field"] == "positions[0].symbol"
    assert footprint() == before


def test_the_margin_history_is_newest_first_a_page_per_cursor(valued):
    from margin.market_data import load_prices
    from margin.tasks import recompute_accounts

    fw = valued.a
    for price in ("101", "102"):  # the price moves: a snapshot each time
        load_prices(observations=[{"symbol": "ACME", "price": price,
                                   "observed_at": timezone.now().isoformat()}],
                    source="vendor", actor=None)
        recompute_accounts(fw.firm.pk, [fw.account.pk])
    client = bearer(fw.users[Role.MARGIN_DESK.value])
    url = f"{V}accounts/{fw.account.number}/margin/history"
    first = client.get(f"{url}?limit=2").json()
    assert len(first["results"]) == 2 and first["next"]
    times = [row["computed_at"] for row in first["results"]]
    assert times == sorted(times, reverse=True)
    rest = client.get(first["next"]).json()
    assert rest["results"] and rest["results"][0]["id"] not in {r["id"] for r in first["results"]}
    bad = client.get(f"{url}?cursor=zz")
    assert bad.status_code == 400 and the_error(bad)["field"] == "cursor"


def test_the_audit_events_filter_by_type_actor_object_and_date(valued):
    fw = valued.a
    compliance = bearer(fw.users[Role.COMPLIANCE.value])
    desk = fw.users[Role.MARGIN_DESK.value]
    bearer(desk).post(f"{V}accounts/{fw.account.number}/deposits/", {"amount": "5.00"},
                      content_type="application/json")
    url = f"{V}audit/events"
    posted = compliance.get(f"{url}?event_type=ledger.posted&actor={desk.username}").json()
    assert [e["actor"] for e in posted["results"]] == [desk.username]
    seqs = [e["seq"] for e in compliance.get(url).json()["results"]]
    assert seqs == sorted(seqs, reverse=True)
    entry = posted["results"][0]
    by_object = compliance.get(f"{url}?object_type={entry['object_type']}"
                               f"&object_id={entry['object_id']}").json()["results"]
    assert [e["seq"] for e in by_object] == [entry["seq"]]
    tomorrow = (timezone.now() + timezone.timedelta(days=1)).isoformat()
    assert compliance.get(f"{url}?created_after={tomorrow.replace('+', '%2B')}").json()[
        "results"] == []
    # another firm's user is not a choice of this firm's actor filter
    other = valued.b.users[Role.MARGIN_DESK.value].username
    assert compliance.get(f"{url}?actor={other}").status_code == 400
    # an offset PostgreSQL cannot hold is read in UTC, not passed on (it was a 500)
    assert compliance.get(f"{url}?created_after=0208-06-11T04:43:14-19:23").status_code == 200
    assert bearer(desk).get(url).status_code == 403  # the desk does not read the trail


def test_market_data_is_loaded_by_the_operator_only_and_read_by_everyone(valued):
    operator = bearer(market_data_operator())
    now = timezone.now().isoformat()
    body = {"source": "vendor", "observations": [
        {"symbol": "ACME", "price": "105.25", "observed_at": now}]}
    admin = bearer(valued.a.users[Role.FIRM_ADMIN.value])
    refused = admin.post(f"{V}prices/", body, content_type="application/json")
    assert refused.status_code == 403
    loaded = operator.post(f"{V}prices/", body, content_type="application/json")
    assert loaded.status_code == 201, loaded.content
    assert loaded.json()[0]["price"] == "105.25000000"
    assert AuditEvent.objects.filter(event_type="prices.loaded", firm=None).exists()
    newest = admin.get(f"{V}prices/?symbol=ACME").json()["results"][0]
    assert newest["price"] == "105.25000000"
    assert operator.get(f"{V}instruments/").status_code == 200
    bad = operator.post(f"{V}prices/", {"source": "vendor", "observations": [
        {"symbol": "NOPE", "price": "-1", "observed_at": now}]}, content_type="application/json")
    assert bad.status_code == 400
    assert {e["field"] for e in errors_of(bad)} >= {"observations[0].symbol"}


def test_a_decision_needs_the_etag_it_read(world):
    from margin.services import propose_parameters

    fw = world.a
    with firm_scope(fw.firm):
        first = propose_parameters(firm=fw.firm, actor=fw.users[Role.RISK_OFFICER.value],
                                   overrides={}, reason="one")
        second = propose_parameters(firm=fw.firm, actor=fw.users[Role.RISK_OFFICER.value],
                                    overrides={}, reason="two")
    admin = bearer(fw.users[Role.FIRM_ADMIN.value])
    url = f"{V}risk-parameters/"
    first_tag = admin.get(f"{url}{first.pk}/")["ETag"]
    second_tag = admin.get(f"{url}{second.pk}/")["ETag"]
    missing = admin.post(f"{url}{first.pk}/approve/", {}, content_type="application/json")
    assert missing.status_code == 428 and the_error(missing)["field"] == "If-Match"
    approved = admin.post(f"{url}{first.pk}/approve/", {}, content_type="application/json",
                          HTTP_IF_MATCH=first_tag)
    assert approved.status_code == 200, approved.content
    before = footprint()
    stale = admin.post(f"{url}{second.pk}/approve/", {}, content_type="application/json",
                       HTTP_IF_MATCH=second_tag)
    assert stale.status_code == 412 and the_error(stale)["code"] == "precondition_failed"
    assert footprint() == before
    assert admin.get(f"{url}{second.pk}/")["ETag"] != second_tag


def test_over_the_rate_is_a_429_in_the_one_body_with_retry_after(world, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "token": "3/min"}
    client = bearer(world.a.users[Role.MARGIN_DESK.value])  # its first request counts
    answers = [client.get(f"{V}accounts/") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert the_error(answers[-1])["code"] == "throttled"
    assert int(answers[-1]["Retry-After"]) > 0


def test_the_documentation_is_served_without_inline_script(world):
    client = bearer(world.a.users[Role.CLIENT.value])
    root = client.get(V).json()
    assert {"docs", "docs/redoc", "schema", "firm", "positions", "audit/events"} <= set(root)
    for url in ("/api/docs/", "/api/docs/redoc/"):
        page = client.get(url)
        assert page.status_code == 200, url
        html = page.content.decode()
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
        assert scripts and all("src=" in attrs and not body.strip()
                               for attrs, body in scripts), (url, scripts)
        assert "https://" not in html  # every asset from here (the sidecar)
        assert "/static/drf_spectacular_sidecar/" in html
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()
    assert Client().get("/api/docs/").status_code == 401  # no login: the one 401 body


def test_the_firm_is_the_callers_own(world):
    body = bearer(world.b.users[Role.CLIENT.value]).get(f"{V}firm").json()
    assert (body["slug"], body["id"]) == ("beta", world.firm_b.pk)


def test_instruments_of_another_firm_are_not_listed(world):
    from accounts import services as book

    shared_instrument("ACME")
    with firm_scope(world.firm_b):
        book.create_instrument(symbol="BETA-OWN", kind="stock", firm=world.firm_b,
                               actor=world.b.users[Role.FIRM_ADMIN.value],
                               product_class="equity", class_group="B", product_group="B")
    symbols = {row["symbol"] for row in bearer(world.a.users[Role.CLIENT.value]).get(
        f"{V}instruments/").json()["results"]}
    assert "ACME" in symbols and "BETA-OWN" not in symbols
    assert json.dumps(sorted(symbols))  # (a plain list, for the message on failure)
