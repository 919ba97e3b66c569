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

from brokerage.tenancy import create_platform_user
from brokerage.tokens import create_api_token
from margin.calculator import run
from tests.api_body import the_error
from tests.factories import log_in

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
    """An integrator's script: a user of no firm (a platform user) with an API token."""
    integrator = create_platform_user(username="integrator", role="market_data",
                                      password=PASSWORD)
    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = (
        f"Bearer {create_api_token(user=integrator, actor=None).secret}")
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


def session_with_csrf(username: str) -> tuple[Client, str]:
    """A browser-like session: CSRF enforced, the token from the login page's cookie."""
    client = Client(enforce_csrf_checks=True)
    log_in(client, get_user_model().objects.get(username=username))
    client.get(reverse("login"))
    return client, client.cookies["csrftoken"].value


# The same request through each door of authentication. Session authentication's CSRF check
# used to make DRF parse the body before the view: a session caller got DRF's parser's answers
# (NaN in DRF's words, 3,000-deep nesting a 500, a text/plain body a 415) where a token caller
# got the calculator's own.
SAME_BYTES_CASES = {
    "valid": (body(base(methods=["reg_t", "portfolio_margin"])), "application/json"),
    "nan": (b'{"valuation_date": "2007-02-23", "underlyings": {}, "positions": [],'
            b' "rate": NaN}', "application/json"),
    "infinity": (b'{"valuation_date": "2007-02-23", "underlyings": {}, "positions": [],'
                 b' "rate": -Infinity}', "application/json"),
    "deep": (b"[" * 3000 + b"]" * 3000, "application/json"),
    "malformed": (b'{"valuation_date": ', "application/json"),
    "unknown_field": (b'{"valuation_date": "2007-02-23", "underlyings": {}, "positions": [],'
                      b' "methds": []}', "application/json"),
    "overflow": (b'{"valuation_date": "2007-02-23", "underlyings": {}, "positions": [],'
                 b' "rate": 1e999}', "application/json"),
    "text_plain": (body(base(methods=["reg_t"])), "text/plain"),
    "form": (b"valuation_date=2007-02-23", "application/x-www-form-urlencoded"),
    "empty": (b"", "application/json"),
}


@pytest.mark.parametrize("case", sorted(SAME_BYTES_CASES))
def test_the_same_bytes_whatever_the_authentication(api, case):
    raw, content_type = SAME_BYTES_CASES[case]
    session, token = session_with_csrf("integrator")
    by_session = session.generic("POST", URL, raw, content_type=content_type,
                                 HTTP_X_CSRFTOKEN=token)
    by_token = api.generic("POST", URL, raw, content_type=content_type)
    assert by_session.status_code == by_token.status_code, (by_session.content, by_token.content)
    assert by_session.content == by_token.content
    assert by_session["Content-Type"] == by_token["Content-Type"] == "application/json"
    # ... and the same as the CLI's answer for the same bytes.
    assert (by_token.status_code, by_token.content) == run(raw)
    if case in ("valid", "text_plain"):  # the calculator reads the bytes, whatever the label
        assert by_token.status_code == 200
    else:
        assert by_token.status_code == 400
        assert json.loads(by_token.content)["errors"][0]["code"] in (
            "malformed_json", "not_finite", "unknown_field", "invalid", "required")


def test_a_body_past_the_upload_limit_is_a_413_through_either_door(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 500
    raw = body(base(methods=["reg_t"]))
    assert len(raw) > 500
    session, token = session_with_csrf("integrator")
    by_session = session.generic("POST", URL, raw, content_type="application/json",
                                 HTTP_X_CSRFTOKEN=token)
    by_token = post(api, raw)
    assert by_session.status_code == by_token.status_code == 413
    assert by_session.content == by_token.content
    assert the_error(by_token)["code"] == "too_large"


def test_a_session_without_its_csrf_token_is_a_403_in_the_one_body(api):
    session, _ = session_with_csrf("integrator")
    response = post(session, body(base()))
    assert response.status_code == 403
    assert the_error(response)["code"] == "permission_denied"
    assert "CSRF" in the_error(response)["message"]


@pytest.mark.django_db
def test_unauthenticated_is_a_401_in_the_one_body():
    response = post(Client(), body(base()))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert the_error(response)["code"] == "not_authenticated"


def test_a_read_only_token_may_use_the_calculator(api):
    integrator = get_user_model().objects.get(username="integrator")
    read_only = create_api_token(user=integrator, actor=None, read_only=True).secret
    raw = body(base())
    response = post(Client(HTTP_AUTHORIZATION=f"Bearer {read_only}"), raw)
    assert (response.status_code, response.content) == run(raw)


def test_a_wrong_token_is_a_401(api):
    response = post(Client(HTTP_AUTHORIZATION="Bearer pmt_not-a-token"), body(base()))
    assert response.status_code == 401
    assert the_error(response)["code"] == "authentication_failed"


def test_http_basic_is_off_even_with_the_right_password(api):
    token = base64.b64encode(f"integrator:{PASSWORD}".encode()).decode()
    response = post(Client(HTTP_AUTHORIZATION=f"Basic {token}"), body(base()))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert the_error(response)["code"] == "not_authenticated"


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
