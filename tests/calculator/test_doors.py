"""Both doors, one engine: CLI and API print the same bytes, errors exit 2 / answer 400."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from margin.calculator import run

from .requests import BASE, REPO, base, body

URL = "/api/v1/margin/calculate"
PASSWORD = "calculator-test-password"
TOP_KEYS = ["valuation_date", "parameter_set", "net_liquidation_value", "warnings", "positions",
            "portfolio_margin", "reg_t", "span", "var", "stress", "collateral"]


def cli(raw: bytes) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of ``margin_calc -`` run in-process."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("margin_calc", "-", stdin=io.BytesIO(raw), stdout=out, stderr=err)
        status = 0
    except SystemExit as exc:
        status = int(exc.code)
    return status, out.getvalue().encode(), err.getvalue().encode()


@pytest.fixture
def api(db) -> Client:
    get_user_model().objects.create_user(username="integrator", password=PASSWORD)
    client = Client()
    token = base64.b64encode(f"integrator:{PASSWORD}".encode()).decode()
    client.defaults["HTTP_AUTHORIZATION"] = f"Basic {token}"
    return client


def post(client: Client, raw: bytes):
    return client.generic("POST", URL, raw, content_type="application/json")


def test_url_is_named():
    assert reverse("margin-calculate") == URL


def test_cli_and_api_print_the_same_bytes(api):
    raw = body(base())
    status, stdout, stderr = cli(raw)
    response = post(api, raw)
    assert (status, stderr) == (0, b"")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.content == stdout == run(raw)[1]
    assert stdout.endswith(b"}\n")


def test_bad_input_exit_2_and_400_with_the_same_errors(api):
    raw = body(base(methods=["reg_t", "magic"]))
    status, stdout, stderr = cli(raw)
    response = post(api, raw)
    assert (status, stdout) == (2, b"")
    assert response.status_code == 400
    assert response.content == stderr
    assert json.loads(stderr) == {"errors": [{"field": "methods[1]", "code": "invalid_choice",
                                              "message": json.loads(stderr)["errors"][0]["message"]}]}


def test_api_reads_the_raw_body_big_integers_survive(api):
    response = post(api, b'{"valuation_date": "2007-02-23", "underlyings": {}, "positions": [],'
                         b' "methods": ["reg_t"], "rate": 1e999}')
    assert response.status_code == 400
    assert json.loads(response.content)["errors"][0]["field"] == "rate"


def test_session_login_works_too(db):
    user = get_user_model().objects.create_user(username="staff", password=PASSWORD)
    client = Client()
    client.force_login(user)
    raw = body(base(methods=["reg_t"]))
    response = post(client, raw)
    assert response.status_code == 200
    assert response.content == run(raw)[1]


@pytest.mark.django_db
def test_unauthenticated_is_refused():
    response = post(Client(), body(base()))
    assert response.status_code in (401, 403)
    assert b"net_liquidation_value" not in response.content


def test_cli_reads_a_file(tmp_path):
    path = tmp_path / "portfolio.json"
    path.write_bytes(body(base()))
    out = io.StringIO()
    call_command("margin_calc", str(path), stdout=out)
    assert out.getvalue().encode() == run(path.read_bytes())[1]


def test_cli_missing_file_is_an_error_on_stderr(tmp_path):
    err = io.StringIO()
    with pytest.raises(SystemExit) as caught:
        call_command("margin_calc", str(tmp_path / "absent.json"), stderr=err)
    assert caught.value.code == 2
    assert json.loads(err.getvalue())["errors"][0]["code"] == "unreadable"


def test_real_process_bad_input_exits_2_with_nothing_on_stdout():
    done = subprocess.run([sys.executable, "manage.py", "margin_calc", "-"], cwd=REPO,
                          input=b'{"valuation_date": "2007-02-23", "underlyings": {},'
                                b' "positions": [], "methds": []}',
                          capture_output=True, timeout=120)
    assert done.returncode == 2, done.stderr.decode()
    assert done.stdout == b""
    assert json.loads(done.stderr) == {"errors": [
        {"field": "methds", "code": "unknown_field", "message": "unknown field 'methds'"}]}


def test_response_keys_in_contract_order():
    request = base(methods=["portfolio_margin", "reg_t"])
    status, out = run(body(request))
    assert status == 200
    document = json.loads(out)
    assert list(document) == TOP_KEYS
    assert document["valuation_date"] == BASE["valuation_date"]
    assert document["parameter_set"] == "default-2026.1"
    assert list(document["positions"][0]) == ["id", "market_value", "delta"]
    assert list(document["positions"][1]) == ["id", "market_value", "theoretical_price",
                                              "implied_vol", "delta", "gamma", "vega", "theta"]
    pm = document["portfolio_margin"]
    assert list(pm) == ["requirement", "regulatory_requirement", "house_requirement",
                        "house_components", "minimum_charge", "product_groups",
                        "class_groups", "driver"]
    assert list(pm["product_groups"][0]) == ["product_group", "offset", "class_groups", "pnl",
                                             "worst_loss", "minimum_charge", "requirement"]
    assert list(pm["class_groups"][0]) == ["class_group", "product_group", "points", "pnl",
                                           "worst_loss", "minimum_charge"]
    assert list(pm["driver"]) == ["product_group", "point"]
    assert list(document["reg_t"]) == ["initial", "maintenance", "minimum_equity",
                                       "strategies", "excluded"]
    assert [document[k] for k in ("span", "var", "stress", "collateral")] == [None] * 4


def test_blocks_not_asked_for_are_null():
    document = json.loads(run(body(base(methods=["reg_t"])))[1])
    assert document["portfolio_margin"] is None
    assert document["reg_t"] is not None


def _walk(value, key=None):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, key)
    else:
        yield key, value


def test_money_in_cents_prices_and_greeks_unrounded():
    from margin.calculator.render import MONEY_KEYS

    document = json.loads(run(body(base()))[1])
    money = [(k, v) for k, v in _walk(document) if k in MONEY_KEYS and isinstance(v, float)]
    assert money and all(round(v, 2) == v for _, v in money)
    option = document["positions"][1]
    assert round(option["implied_vol"], 4) != option["implied_vol"]
    assert round(option["delta"], 2) != option["delta"]
