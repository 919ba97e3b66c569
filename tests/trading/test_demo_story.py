"""The issue's story on a book like the demo's NO100013 (a portfolio-margin account short puts,
in deficit, with a PM deficiency call), through the API as the margin desk: selling more puts
is rejected with the reason, buying part of them back is accepted and shrinks the deficit,
booking that buy-to-close lowers the call's amount at once, by what it added to the excess. (The seeded demo
itself is not used: the demo layer's budget holds two seedings.)"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest

from brokerage.scope import firm_scope
from margin.models import MarginCall
from tests.margin.calls.conftest import T, close
from tests.trading.conftest import pm_account
from tests.trading.test_executions import bearer

pytestmark = pytest.mark.django_db


def test_the_desk_checks_and_books_a_buy_to_close_and_the_call_shrinks(world, market):
    account = pm_account(world, market, number="NO100013", cash="15000",
                         holdings={"AAA put 0.9": -20, "BBB put 1.0": -30})
    close(world.firm_a, T)
    with firm_scope(world.firm_a):
        call = MarginCall.objects.get(account=account, kind="pm_deficiency")
    owed = call.amount_due
    assert owed > 0
    desk = bearer(world.a.users["margin_desk"])
    url = f"/api/v1/accounts/{account.number}/pre-trade"
    put = market["AAA put 0.9"].symbol

    def ask(side: str, quantity: str) -> dict:
        response = desk.post(url, json.dumps({"orders": [
            {"instrument": put, "side": side, "quantity": quantity}]}),
            content_type="application/json")
        assert response.status_code == 200, response.content
        return response.json()

    more = ask("sell", "5")
    assert more["decision"] == "reject"
    reasons = {r["code"]: r["message"] for r in more["reasons"]}
    assert "increase the deficit" in reasons["deficit"]
    # the call was due three business days after T, before today: past due as well
    assert set(reasons) == {"deficit", "pm_deficiency_past_due"}
    back = ask("buy", "10")
    assert back["decision"] == "accept" and back["reasons"] == []
    deficit_before = -float(back["before"]["excess_liquidity"])
    deficit_after = -float(back["after"]["excess_liquidity"])
    assert 0 < deficit_after < deficit_before

    # at the mark the check used: the cash it paid for 10 contracts of 100
    mark = (float(back["before"]["cash"]) - float(back["after"]["cash"])) / 1000
    booked = desk.post("/api/v1/executions/", json.dumps({
        "client_execution_id": "NO100013-btc-1", "account": account.number,
        "instrument": put, "side": "buy", "quantity": "10", "price": f"{mark:.2f}"}),
        content_type="application/json")
    assert booked.status_code == 201, booked.content
    # the trade met the call by what it added to the excess at the prices it was checked at
    # (a risk-reducing trade after the deficiency day: a liquidation, rule book 3)
    with firm_scope(world.firm_a):
        call.refresh_from_db()
        [credit] = call.satisfactions.all()
    improvement = Decimal(booked.json()["pretrade"]["excess_liquidity"][1]) - Decimal(
        booked.json()["pretrade"]["excess_liquidity"][0])
    assert (credit.manner, credit.amount) == ("liquidation", improvement.quantize(credit.amount))
    assert call.amount_due == owed - credit.amount and call.status == "partially_met"
    assert "NO100013-btc-1" in credit.note
    # a resend books nothing and credits nothing twice
    again = desk.post("/api/v1/executions/", json.dumps({
        "client_execution_id": "NO100013-btc-1", "account": account.number,
        "instrument": put, "side": "buy", "quantity": "10", "price": f"{mark:.2f}"}),
        content_type="application/json")
    assert again.status_code == 200
    with firm_scope(world.firm_a):
        assert call.satisfactions.count() == 1
    close(world.firm_a, T + timedelta(days=1))
    with firm_scope(world.firm_a):
        call.refresh_from_db()
    assert 0 < call.amount_due < owed
