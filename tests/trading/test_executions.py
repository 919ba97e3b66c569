"""Trade capture: executions booked through the service, the API and the CSV import; idempotent
by the client's execution id, busts and corrections as linked rows, refusals named and nothing
written, the pre-trade check's rejection and its audited override."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.models import LedgerEntry, Position
from accounts.services import cash_balance
from brokerage.models import AuditEvent
from brokerage.scope import firm_scope
from brokerage.tokens import create_api_token
from margin.calls.policy import active_policy
from margin.calls.restrictions import impose
from margin.executions.models import Execution
from margin.executions.services import book_execution, bust_execution, parse_ticket
from margin.models import AccountMargin
from tests.trading.conftest import pm_account

pytestmark = pytest.mark.django_db


def bearer(user) -> Client:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {create_api_token(user=user, actor=None).secret}")
    assert client.get("/api/v1/").status_code == 200  # its first use is audited
    return client


def post(client: Client, url: str, body) -> object:
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json")


def footprint(account) -> tuple[int, ...]:
    return (Execution.cross_firm.count(), LedgerEntry.cross_firm.filter(account=account).count(),
            Position.cross_firm.filter(account=account).count(),
            AuditEvent.objects.count())


def ticket(holder, market, key: str = "AAA put 0.9", **changes) -> dict:
    return {"client_execution_id": "x-1", "account": holder.number,
            "instrument": market[key].symbol, "side": "buy", "quantity": "5", "price": "2.50",
            "fees": "1.30", **changes}


def held(account, instrument) -> Decimal:
    found = Position.cross_firm.filter(account=account, instrument=instrument).first()
    return found.quantity if found else Decimal(0)


def test_a_booking_moves_the_position_and_cash_once_audited_and_marks_the_account(
        world, market):
    account = pm_account(world, market)
    desk = world.a.users["margin_desk"]
    put = market["AAA put 0.9"]
    with firm_scope(world.firm_a):
        cash = cash_balance(account)
        version = AccountMargin.objects.get(account=account).dirty_version
        execution, created = book_execution(firm=world.firm_a, actor=desk,
                                            ticket=parse_ticket(ticket(account, market)))
        assert created and execution.position_before == -20 and execution.position_after == -15
        assert held(account, put) == -15
        # 5 contracts x 100 x $2.50 paid, and $1.30 of fees
        assert cash_balance(account) == cash - Decimal("1250.00") - Decimal("1.30")
        assert execution.pretrade["decision"] == "accept"
        assert AccountMargin.objects.get(account=account).dirty_version > version
        assert AuditEvent.objects.filter(event_type="execution.booked",
                                         object_id=str(execution.pk)).exists()
        again, created = book_execution(firm=world.firm_a, actor=desk,
                                        ticket=parse_ticket(ticket(account, market)))
        assert not created and again.pk == execution.pk
        assert held(account, put) == -15
        assert cash_balance(account) == cash - Decimal("1251.30")
        assert Execution.objects.filter(client_execution_id="x-1").count() == 1


def test_the_api_books_one_resends_return_the_original_and_a_batch_is_all_or_nothing(
        world, market):
    account = pm_account(world, market)
    client = bearer(world.a.users["margin_desk"])
    first = post(client, "/api/v1/executions/", ticket(account, market))
    assert first.status_code == 201, first.content
    assert first.json()["duplicate"] is False and first.json()["position_after"] == "-15.00000000"
    resent = post(client, "/api/v1/executions/", ticket(account, market))
    assert resent.status_code == 200 and resent.json()["duplicate"] is True
    assert resent.json()["id"] == first.json()["id"]
    before = footprint(account)
    batch = post(client, "/api/v1/executions/", {"executions": [
        ticket(account, market, client_execution_id="b-1"),
        ticket(account, market, client_execution_id="b-2", instrument="NOPE")]})
    assert batch.status_code == 400, batch.content
    assert batch.json()["errors"][0]["field"] == "executions[1].instrument"
    assert footprint(account) == before
    batch = post(client, "/api/v1/executions/", {"executions": [
        ticket(account, market, client_execution_id="b-1"),
        ticket(account, market, client_execution_id="b-2", quantity="2")]})
    assert batch.status_code == 201, batch.content
    assert [row["position_after"] for row in batch.json()["executions"]] == [
        "-10.00000000", "-8.00000000"]
    listed = client.get(f"/api/v1/executions/?account={account.number}").json()
    assert listed["count"] == 3 if isinstance(listed, dict) else len(listed) == 3
    detail = client.get(f"/api/v1/executions/{first.json()['id']}/")
    assert detail.status_code == 200 and detail.json()["client_execution_id"] == "x-1"


BAD = [({"quantity": "-5"}, "quantity"), ({"quantity": "0"}, "quantity"),
       ({"price": "-1"}, "price"), ({"price": "NaN"}, "price"),
       ({"quantity": "Infinity"}, "quantity"), ({"fees": "-1"}, "fees"),
       ({"instrument": "NOPE"}, "instrument"), ({"side": "hold"}, "side"),
       ({"account": "NO-SUCH"}, "account"), ({"client_execution_id": ""}, "client_execution_id")]


def test_bad_input_is_named_and_writes_nothing(world, market):
    account = pm_account(world, market)
    client = bearer(world.a.users["margin_desk"])
    before = footprint(account)
    for changes, field in BAD:
        response = post(client, "/api/v1/executions/", ticket(account, market, **changes))
        assert response.status_code in (400, 404), (changes, response.content)
        assert response.json()["errors"][0]["field"] == field, (changes, response.content)
    assert footprint(account) == before


def test_malformed_json_and_another_firms_account_write_nothing(world, market):
    account = pm_account(world, market)
    desk, outsider = bearer(world.a.users["margin_desk"]), bearer(world.b.users["margin_desk"])
    before = footprint(account)
    response = post(desk, "/api/v1/executions/", '{"side": ')
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == \
        "malformed_json"
    response = post(outsider, "/api/v1/executions/", ticket(account, market))
    assert response.status_code == 404, response.content
    response = post(outsider, f"/api/v1/accounts/{account.number}/pre-trade",
                    {"orders": [{"instrument": "AAA", "side": "buy", "quantity": "1"}]})
    assert response.status_code == 404, response.content
    assert footprint(account) == before


def test_a_bust_reverses_with_a_linked_row_and_a_correction_replaces_it(world, market):
    account = pm_account(world, market)
    desk = world.a.users["margin_desk"]
    put = market["AAA put 0.9"]
    with firm_scope(world.firm_a):
        cash = cash_balance(account)
        execution, _ = book_execution(firm=world.firm_a, actor=desk,
                                      ticket=parse_ticket(ticket(account, market)))
        with pytest.raises(Exception, match="say why"):
            bust_execution(execution=execution, actor=desk, reason=" ")
        bust = bust_execution(execution=execution, actor=desk, reason="wrong price",
                              corrected=parse_ticket(ticket(account, market,
                                                            client_execution_id="x-1c",
                                                            price="2.40")))
        assert bust.reverses_id == execution.pk and bust.side == "sell"
        corrected = Execution.objects.get(client_execution_id="x-1c")
        assert corrected.corrects_id == execution.pk
        assert held(account, put) == -15  # the bust took the 5 back, the correction bought 5
        # the original's $1,251.30 came back; the correction paid $1,200 and $1.30
        assert cash_balance(account) == cash - Decimal("1201.30")
        assert LedgerEntry.objects.filter(corrects=execution.settlement).exists()
        with pytest.raises(Exception, match="already busted"):
            bust_execution(execution=execution, actor=desk, reason="again")
    with pytest.raises(PermissionError):
        execution.save()


def test_a_rejected_order_is_a_422_unless_an_override_role_gives_a_reason(world, market):
    account = pm_account(world, market)
    order = ticket(account, market, side="sell", quantity="40", price="2.00")
    desk, risk = bearer(world.a.users["margin_desk"]), bearer(world.a.users["risk_officer"])
    before = footprint(account)
    response = post(desk, "/api/v1/executions/", order)
    assert response.status_code == 422, response.content
    assert {e["code"] for e in response.json()["errors"]} == {"deficit"}
    assert response.json()["errors"][0]["field"] == "pretrade"
    response = post(desk, "/api/v1/executions/", {**order, "override_reason": "client wired"})
    assert response.status_code == 403, response.content
    assert footprint(account) == before
    response = post(risk, "/api/v1/executions/", {**order, "override_reason": "wire arriving"})
    assert response.status_code == 201, response.content
    assert response.json()["override_reason"] == "wire arriving"
    assert response.json()["override_by"] == world.a.users["risk_officer"].username
    with firm_scope(world.firm_a):
        event = AuditEvent.objects.get(event_type="execution.pretrade_overridden")
        assert event.after["reason"] == "wire arriving"
        assert event.after["reasons"][0]["code"] == "deficit"


def test_closing_only_refuses_new_puts_and_takes_a_buy_to_close(world, market):
    account = pm_account(world, market, cash="500000")
    with firm_scope(world.firm_a):
        impose(account=account, kind="closing_only", starts_on=account.opened_on,
               cause="PM minimum equity unmet", policy=active_policy(world.firm_a))
    desk = bearer(world.a.users["margin_desk"])
    response = post(desk, "/api/v1/executions/", ticket(account, market, side="sell"))
    assert response.status_code == 422
    assert [e["code"] for e in response.json()["errors"]] == ["restricted"]
    response = post(desk, "/api/v1/executions/", ticket(account, market))
    assert response.status_code == 201, response.content


def test_the_csv_import_books_a_file_once_and_names_a_bad_line(world, market, tmp_path):
    account = pm_account(world, market)
    path = tmp_path / "fills.csv"
    path.write_text("client_execution_id,account,instrument,side,quantity,price,fees,trade_time\n"
                    f"c-1,{account.number},{market['AAA put 0.9'].symbol},buy,5,2.5,1,"
                    "2026-12-04T15:30:00-05:00\n"
                    f"c-2,{account.number},CCC,sell,10,310,,\n")
    out = StringIO()
    call_command("import_executions", str(path), firm="alpha",
                 user=world.a.users["margin_desk"].username, stdout=out)
    assert "Booked 2 executions" in out.getvalue()
    call_command("import_executions", str(path), firm="alpha",
                 user=world.a.users["margin_desk"].username, stdout=out)
    assert "Booked 0 executions" in out.getvalue()
    bad = tmp_path / "bad.csv"
    bad.write_text("client_execution_id,account,instrument,side,quantity,price,fees,trade_time\n"
                   f"c-3,{account.number},CCC,buy,5,310,,\n"
                   f"c-4,{account.number},CCC,buy,-5,310,,\n")
    before = footprint(account)
    with pytest.raises(CommandError, match=r"line 3 \(quantity\)"):
        call_command("import_executions", str(bad), firm="alpha",
                     user=world.a.users["margin_desk"].username)
    assert footprint(account) == before
