"""Every API error is one body, ``{"errors": [{"field", "code", "message"}]}``, and bad input
changes nothing: strict JSON, unknown fields, query values out of range, 401/403/404/405, and
the schema for every kind of logged-in user (none for anonymous ones)."""

from __future__ import annotations

import base64
import json
from datetime import date
from decimal import Decimal

import pytest
import yaml
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.test import Client
from drf_spectacular.checks import schema_check
from rest_framework import serializers
from rest_framework.exceptions import Throttled

from brokerage import audit
from brokerage.api import InputSerializer
from brokerage.api_errors import exception_handler, flatten
from brokerage.parsers import MAX_DEPTH
from brokerage.roles import Role
from brokerage.scope import firm_scope
from brokerage.tenancy import create_platform_user
from brokerage.tokens import create_api_token
from eligibility.models import Application, RuleSet
from margin.calls.policy import active_policy
from margin.calls.restrictions import impose
from margin.calls.services import issue_call
from margin.models import RiskParameterSet
from tests.api.endpoints import _execution, listed_for_trading
from tests.api_body import decide, errors_of, the_error
from tests.factories import PASSWORD, log_in, make_user

APPLICATIONS = "/api/v1/applications/"
RISK_PARAMETERS = "/api/v1/risk-parameters/"
SCHEMA = "/api/schema/"
BIGINT_OVERFLOW = str(2**63)


def logged_in(user) -> Client:
    client = Client()
    log_in(client, user)
    return client


def basic(username: str, password: str = PASSWORD) -> Client:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return Client(HTTP_AUTHORIZATION=f"Basic {token}")


def bearer(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {create_api_token(user=user, actor=None).secret}")


def post_raw(client: Client, url: str, raw: bytes | str,
             content_type: str = "application/json"):
    return client.generic("POST", url, raw, content_type=content_type)


def application_count() -> int:
    return Application.cross_firm.for_compliance(reason="test: nothing written").count()


@pytest.fixture
def admin(world):
    return world.a.users[Role.FIRM_ADMIN.value]


@pytest.fixture
def api(admin) -> Client:
    return logged_in(admin)


@pytest.fixture
def application(world, api):
    created = api.post(APPLICATIONS, {"account": world.a.account.pk},
                       content_type="application/json")
    assert created.status_code == 201, created.content
    return created.json()


# Strict JSON ----------------------------------------------------------------------------------

@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_non_finite_numbers_are_a_400_naming_them_and_write_nothing(world, api, literal):
    before = application_count()
    response = post_raw(api, APPLICATIONS, f'{{"account": {world.a.account.pk}, '
                                           f'"submit": false, "x": {literal}}}')
    assert response.status_code == 400
    error = the_error(response)
    assert error["code"] == "not_finite" and literal.lstrip("-") in error["message"]
    assert application_count() == before


def test_malformed_json_is_a_400(world, api):
    response = post_raw(api, APPLICATIONS, '{"account": 1,')
    assert response.status_code == 400
    assert the_error(response)["code"] == "malformed_json"
    assert "not valid JSON" in the_error(response)["message"]


def test_a_body_that_is_not_utf8_is_a_400(world, api):
    response = post_raw(api, APPLICATIONS, b'{"account": "\xff"}')
    assert response.status_code == 400 and the_error(response)["code"] == "malformed_json"


def test_three_thousand_deep_nesting_is_a_400_not_a_500(world, api):
    before = application_count()
    for deep in ("[" * 3000 + "]" * 3000, '{"a":' * 3000 + "1" + "}" * 3000):
        response = post_raw(api, APPLICATIONS, deep)
        assert response.status_code == 400
        assert the_error(response)["code"] == "too_deep"
        assert str(MAX_DEPTH) in the_error(response)["message"]
    assert application_count() == before


def test_nesting_up_to_the_limit_parses_and_brackets_inside_strings_do_not_count(world, api):
    def nested(depth: int) -> str:
        return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)

    response = post_raw(api, APPLICATIONS, nested(MAX_DEPTH))  # parsed, then judged
    assert {e["code"] for e in errors_of(response)} == {"required", "unknown_field"}
    response = post_raw(api, APPLICATIONS, nested(MAX_DEPTH + 1))
    assert the_error(response)["code"] == "too_deep"
    quoted = json.dumps({"account": world.a.account.pk, "note": "[" * 500 + '\\"{' * 100})
    response = post_raw(api, APPLICATIONS, quoted)
    assert the_error(response) == {"field": "note", "code": "unknown_field",
                                   "message": "unknown field 'note'"}


def test_a_key_given_twice_is_a_400(world, api):
    response = post_raw(api, APPLICATIONS, '{"account": 1, "account": 2}')
    assert response.status_code == 400
    assert the_error(response)["code"] == "duplicate_key"
    assert "'account'" in the_error(response)["message"]


@pytest.mark.parametrize("body, kind", [("[]", "an array"), ('"pm"', "a string"), ("7", "a number"),
                                        ("null", "null"), ("true", "a boolean")])
def test_a_body_that_is_not_an_object_is_a_400(world, api, body, kind):
    before = application_count()
    response = post_raw(api, APPLICATIONS, body)
    assert response.status_code == 400
    assert the_error(response) == {"field": "", "code": "not_an_object",
                                   "message": f"the body must be a JSON object, not {kind}"}
    assert application_count() == before


def test_a_body_past_the_upload_limit_is_a_413(world, api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    before = application_count()
    padded = json.dumps({"account": world.a.account.pk, "pad": "x" * 2000})
    response = post_raw(api, APPLICATIONS, padded)
    assert response.status_code == 413
    assert the_error(response)["code"] == "too_large" and "1000" in the_error(response)["message"]
    assert application_count() == before


def test_a_form_body_is_a_415(world, api):
    before = application_count()
    response = api.post(APPLICATIONS, {"account": world.a.account.pk})  # multipart form
    assert response.status_code == 415
    assert the_error(response)["code"] == "unsupported_media_type"
    assert application_count() == before


# Unknown fields -------------------------------------------------------------------------------

def test_a_misspelt_field_is_a_400_naming_it_and_writes_nothing(world, api):
    before = application_count()
    response = api.post(APPLICATIONS, {"account": world.a.account.pk, "acount_type": "pm"},
                        content_type="application/json")
    assert response.status_code == 400
    assert the_error(response) == {"field": "acount_type", "code": "unknown_field",
                                   "message": "unknown field 'acount_type'"}
    assert application_count() == before
    # The same request without the typo is fine: it was the typo that was refused.
    assert api.post(APPLICATIONS, {"account": world.a.account.pk},
                    content_type="application/json").status_code == 201
    assert application_count() == before + 1


def test_unknown_fields_are_listed_beside_other_problems(world, api):
    response = api.post(APPLICATIONS, {"submit": "perhaps", "acount": 7},
                        content_type="application/json")
    assert response.status_code == 400
    assert {(e["field"], e["code"]) for e in errors_of(response)} == {
        ("account", "required"), ("submit", "invalid"), ("acount", "unknown_field")}


def test_an_unknown_field_on_an_action_is_refused_and_the_state_does_not_move(world, api,
                                                                               application):
    url = f"{APPLICATIONS}{application['id']}/"
    for action, body in (("submit", {"now": True}), ("withdraw", {"reasons": "typo"})):
        response = api.post(f"{url}{action}/", body, content_type="application/json")
        assert response.status_code == 400, action
        assert the_error(response)["code"] == "unknown_field"
        assert api.get(url).json()["state"] == "draft"


def test_an_unknown_field_on_a_risk_parameter_proposal_writes_nothing(world):
    risk = logged_in(world.a.users[Role.RISK_OFFICER.value])
    count = RiskParameterSet.cross_firm.for_compliance(reason="test").count
    before = count()
    response = risk.post(RISK_PARAMETERS, {"overrides": {}, "reason": "x", "reasn": "typo"},
                         content_type="application/json")
    assert response.status_code == 400 and the_error(response)["field"] == "reasn"
    assert count() == before


def test_every_write_of_the_api_refuses_an_unknown_field_and_writes_nothing(world, api,
                                                                             application):
    """Walks the schema: every POST, on an object that exists, with one unknown field."""
    risk = logged_in(world.a.users[Role.RISK_OFFICER.value])
    proposal = risk.post(RISK_PARAMETERS, {"overrides": {}, "reason": "baseline"},
                         content_type="application/json")
    assert proposal.status_code == 201, proposal.content
    with firm_scope(world.firm_a):
        call = issue_call(account=world.a.account, kind="maintenance", amount=Decimal("100"),
                          as_of=date(2026, 11, 24), equity=Decimal("0"),
                          requirement=Decimal("100"), policy=active_policy(world.firm_a))
        restriction = impose(account=world.a.account, kind="funds_on_hand_90d",
                             starts_on=date(2026, 11, 24), cause="a practice",
                             policy=active_policy(world.firm_a))
    token = create_api_token(user=world.a.users[Role.MARGIN_DESK.value], actor=None).token
    listed_for_trading()
    with firm_scope(world.firm_a):
        execution = _execution(world.a)
    ids = {"/api/v1/executions/": execution,"/api/v1/applications/": application["id"],
           "/api/v1/rule-sets/": api.get("/api/v1/rule-sets/active/").json()["id"],
           RISK_PARAMETERS: proposal.json()["id"], "/api/v1/margin-calls/": call.pk,
           "/api/v1/call-policies/": call.policy_id, "/api/v1/restrictions/": restriction.pk,
           "/api/v1/tokens/": token.pk}
    schema = _schema(api)
    with firm_scope(world.firm_a):
        before = (application_count(), audit.events_for(world.firm_a).count(),
                  RiskParameterSet.objects.count(), RuleSet.objects.count())
    posts = [path for path, operations in schema["paths"].items() if "post" in operations]
    assert len(posts) >= 12
    # market data is loaded by the platform's market-data operator, no firm's user
    operator = create_api_token(user=create_platform_user(username="feed", role="market_data"),
                                actor=None).secret
    loads = Client(HTTP_AUTHORIZATION=f"Bearer {operator}")
    for path in posts:
        prefix = path.split("{id}")[0]
        url = path.replace("{id}", str(ids.get(prefix, ""))).replace(
            "{number}", world.a.account.number)
        client = loads if path in ("/api/v1/prices/", "/api/v1/vols/") else api
        response = client.post(url, {"zz_unknown": 1}, content_type="application/json")
        assert response.status_code == 400, (url, response.content)
        assert "zz_unknown" in {e["field"] for e in errors_of(response)}, url
    with firm_scope(world.firm_a):
        after = (application_count(), audit.events_for(world.firm_a).count(),
                 RiskParameterSet.objects.count(), RuleSet.objects.count())
    assert after == before


class Item(InputSerializer):
    qty = serializers.IntegerField(min_value=1)


class House(InputSerializer):
    vol_shift = serializers.FloatField(min_value=0)


class Overrides(InputSerializer):
    house = House()


class Order(InputSerializer):
    items = Item(many=True)
    overrides = Overrides()
    tags = serializers.ListField(child=serializers.CharField(max_length=3))


def test_nested_errors_are_named_by_path():
    order = Order(data={"items": [{"qty": 1}, {"qty": 2}, {"qty": 0}, {"qty": 1, "qtty": 1}],
                        "overrides": {"house": {"vol_shift": -1, "vol_shitf": 1}},
                        "tags": ["ok", "toolong"]})
    assert not order.is_valid()
    assert sorted((e["field"], e["code"]) for e in flatten(order.errors)) == [
        ("items[2].qty", "min_value"),
        ("items[3].qtty", "unknown_field"),
        ("overrides.house.vol_shift", "min_value"),
        ("overrides.house.vol_shitf", "unknown_field"),
        ("tags[1]", "max_length"),
    ]


@pytest.mark.parametrize("body, field, expected", [
    ('{"account": %(pk)s, "submit": 0}', "submit", "a boolean (true or false), not a number"),
    ('{"account": "%(pk)s"}', "account", "an integer, not a string"),
    ('{"account": true}', "account", "an integer, not a boolean"),
    ('{"account": %(pk)s.0}', "account", "an integer, not a number"),
])
def test_a_value_of_the_wrong_json_type_is_refused_not_coerced(world, api, body, field,
                                                               expected):
    before = application_count()
    response = post_raw(api, APPLICATIONS, body % {"pk": world.a.account.pk})
    assert response.status_code == 400
    assert the_error(response) == {"field": field, "code": "invalid",
                                   "message": f"must be {expected}"}
    assert application_count() == before


def test_an_integer_beyond_the_database_range_in_a_body_is_a_400(world, api):
    response = post_raw(api, APPLICATIONS, f'{{"account": {BIGINT_OVERFLOW}}}')
    assert response.status_code == 400
    assert the_error(response)["field"] == "account"
    assert the_error(response)["code"] == "max_value"


# Query values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("query, field", [
    ("account=1e30", "account"), (f"account={BIGINT_OVERFLOW}", "account"),
    ("account=abc", "account"), ("account=1.5", "account"),
    (f"limit={BIGINT_OVERFLOW}", "limit"), ("limit=9223372036854775808", "limit"),
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=-1", "limit"), ("limit=ten", "limit"),
    ("limit=+5", "limit"), ("offset=-1", "offset"), (f"offset={BIGINT_OVERFLOW}", "offset"),
    ("offset=1e3", "offset"), ("state=bogus", "state"),
])
def test_query_values_out_of_range_are_a_400_naming_the_parameter(world, api, application,
                                                                  query, field):
    response = api.get(f"{APPLICATIONS}?{query}")
    assert response.status_code == 400, response.content
    assert the_error(response)["field"] == field


def test_query_values_in_range_still_page_and_filter(world, api, application):
    assert api.get(f"{APPLICATIONS}?limit=1000&offset=0").json()["count"] == 1
    assert api.get(f"{APPLICATIONS}?limit=&offset=").json()["count"] == 1  # empty: the default
    page = api.get(f"{APPLICATIONS}?limit=1&offset=5").json()
    assert page["count"] == 1 and page["results"] == []
    mine = api.get(f"{APPLICATIONS}?account={world.a.account.pk}").json()
    assert [a["id"] for a in mine["results"]] == [application["id"]]
    assert api.get(f"{APPLICATIONS}?account={2**63 - 1}").json()["results"] == []
    for url in (RISK_PARAMETERS, "/api/v1/rule-sets/"):
        assert api.get(f"{url}?limit={BIGINT_OVERFLOW}").status_code == 400


def test_an_id_out_of_range_in_the_path_is_a_404(world, api):
    for pk in (BIGINT_OVERFLOW, "1e30", "abc", "0.5", "-1"):
        response = api.get(f"{APPLICATIONS}{pk}/")
        assert response.status_code == 404, pk
        assert the_error(response)["code"] == "not_found"


# 401, 403, 404, 405, 429 ----------------------------------------------------------------------

def test_anonymous_is_a_401_with_the_bearer_challenge(world):
    response = Client().get(APPLICATIONS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert the_error(response) == {"field": "", "code": "not_authenticated",
                                   "message": "Authentication credentials were not provided."}


def test_wrong_credentials_are_a_401(world, admin):
    response = Client(HTTP_AUTHORIZATION="Bearer pmt_wrong").get(APPLICATIONS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert the_error(response)["code"] == "authentication_failed"


def test_http_basic_is_off_even_with_the_right_password(world, admin):
    response = basic(admin.username).get(APPLICATIONS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert the_error(response)["code"] == "not_authenticated"


def test_a_role_the_endpoint_refuses_is_a_403(world):
    response = logged_in(world.a.users[Role.CLIENT.value]).get(RISK_PARAMETERS)
    assert response.status_code == 403
    assert the_error(response) == {"field": "", "code": "permission_denied",
                                   "message": "only the firm's staff use this endpoint"}


def test_a_user_of_no_firm_gets_a_403_from_tenant_endpoints(db):
    response = logged_in(make_user("drifter", staff=False)).get(APPLICATIONS)
    assert response.status_code == 403
    assert the_error(response)["message"] == "only members of a firm use this endpoint"


def test_a_session_write_without_its_csrf_token_is_a_403(world, admin):
    client = Client(enforce_csrf_checks=True)
    log_in(client, admin)
    before = application_count()
    response = client.post(APPLICATIONS, {"account": world.a.account.pk},
                           content_type="application/json")
    assert response.status_code == 403
    assert the_error(response)["code"] == "permission_denied"
    assert "CSRF" in the_error(response)["message"]
    assert application_count() == before


def test_another_firms_object_is_a_404(world, application):
    outsider = logged_in(world.b.users[Role.FIRM_ADMIN.value])
    response = outsider.get(f"{APPLICATIONS}{application['id']}/")
    assert response.status_code == 404
    assert the_error(response)["code"] == "not_found"


def test_a_method_the_endpoint_lacks_is_a_405(world, api, application):
    for method in ("DELETE", "PUT", "PATCH"):
        response = api.generic(method, f"{APPLICATIONS}{application['id']}/", "{}",
                               content_type="application/json")
        assert response.status_code == 405, method
        assert the_error(response)["code"] == "method_not_allowed"
        assert f'"{method}"' in the_error(response)["message"]


def test_a_refusal_of_a_service_keeps_its_status_code_and_field(world, api, application):
    response = decide(api, f"{APPLICATIONS}{application['id']}/approve/", {},
                        content_type="application/json")
    assert response.status_code == 409
    assert the_error(response)["code"] == "illegal_transition"


def test_throttling_gives_429_with_retry_after():
    response = exception_handler(Throttled(wait=7), {})
    assert response.status_code == 429 and response["Retry-After"] == "7"
    assert response.data["errors"][0]["code"] == "throttled"


def test_djangos_own_refusals_get_the_one_body_and_bugs_stay_500s():
    denied = exception_handler(DjangoPermissionDenied("no"), {})
    assert denied.status_code == 403
    assert denied.data == {"errors": [{"field": "", "code": "permission_denied", "message": "no"}]}
    assert exception_handler(Http404("gone"), {}).status_code == 404
    assert exception_handler(RuntimeError("a bug"), {}) is None  # Django's 500, with traceback


# The schema -----------------------------------------------------------------------------------

def test_the_schema_refuses_anonymous_users_with_a_401(db):
    response = Client().get(SCHEMA)
    assert response.status_code == 401
    assert the_error(response)["code"] == "not_authenticated"


def _schema(client: Client) -> dict:
    response = client.get(SCHEMA)
    assert response.status_code == 200, response.content[:500]
    return yaml.safe_load(response.content)


def test_the_schema_for_staff_clients_and_users_of_no_firm(world):
    no_firm = make_user("platform_person", staff=False)  # no Membership at all
    users = [world.a.users[Role.FIRM_ADMIN.value], world.b.users[Role.CLIENT.value], no_firm]
    schemas = [_schema(logged_in(user)) for user in users]
    assert schemas[0] == schemas[1] == schemas[2]  # one schema, whoever asks
    platform = create_platform_user(username="platform_script", role="auditor")
    assert _schema(bearer(platform)) == schemas[0]
    assert "/api/v1/applications/" in schemas[0]["paths"]


def test_the_schema_documents_the_error_body(world):
    schema = _schema(logged_in(world.a.users[Role.FIRM_ADMIN.value]))
    errors = schema["components"]["schemas"]["Errors"]
    assert errors["required"] == ["errors"]
    assert errors["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/Error"}
    assert schema["components"]["schemas"]["Error"]["required"] == ["code", "field", "message"]

    def statuses(path: str, method: str) -> set[str]:
        responses = schema["paths"][path][method]["responses"]
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Errors", (path, method, status)
        return {s for s in responses if s.startswith("4")}

    # (429: every view is throttled; 412 and 428: a decision needs If-Match)
    assert statuses("/api/v1/applications/", "get") == {"400", "401", "403", "429"}
    assert statuses("/api/v1/applications/{id}/", "get") == {"401", "403", "404", "429"}
    assert statuses("/api/v1/applications/{id}/approve/", "post") == {
        "400", "401", "403", "404", "409", "412", "422", "428", "429"}
    assert statuses("/api/v1/risk-parameters/", "post") == {"400", "401", "403", "409", "429"}
    assert statuses("/api/v1/margin/calculate", "post") == {"400", "401", "403", "429"}
    limit = next(p for p in schema["paths"]["/api/v1/applications/"]["get"]["parameters"]
                 if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
    account = next(p for p in schema["paths"]["/api/v1/applications/"]["get"]["parameters"]
                   if p["name"] == "account")
    assert account["schema"]["type"] == "integer"
    # Input bodies refuse what they do not declare, and say so.
    assert schema["components"]["schemas"]["ApplicationCreateRequest"][
        "additionalProperties"] is False


def test_every_operation_refuses_anonymous_callers_in_the_one_body(world):
    schema = _schema(logged_in(world.a.users[Role.FIRM_ADMIN.value]))
    anonymous = Client()
    seen = 0
    for path, operations in schema["paths"].items():
        for method in operations:
            url = path.replace("{id}", "1")
            response = anonymous.generic(method.upper(), url, "{}",
                                         content_type="application/json")
            assert response.status_code == 401, (method, url)
            assert the_error(response)["code"] == "not_authenticated"
            seen += 1
    assert seen >= 20


def test_schema_generation_needs_no_firm_so_the_deploy_check_passes(db):
    # `manage.py check --deploy` runs this check: it generated the schema without a request
    # or a firm and failed with NoFirmInScope.
    problems = schema_check(None)
    assert [p.msg for p in problems] == []
