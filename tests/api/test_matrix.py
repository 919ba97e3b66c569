"""The generic API matrix (issue 14), in the manner of NetBox's ``APIViewTestCases``: every
endpoint in `tests.api.endpoints.ENDPOINTS` is run through anonymous (401 with the Bearer
challenge), a role it refuses (403), another firm's object (404), its own firm (2xx), a
malformed JSON body and an unknown field (400); every refusal is the one error body and
writes nothing (no row of any of the project's tables, audit events included)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.apps import apps
from django.test import Client

from brokerage.roles import Role
from brokerage.scope import firm_scope
from brokerage.tokens import create_api_token
from tests.api.endpoints import ENDPOINTS, Endpoint
from tests.api_body import errors_of, the_error
from tests.factories import FirmWorld, World

# DRF's permission classes, and brokerage.errors.NotPermitted with its FourEyesViolation
REFUSED_CODES = {"permission_denied", "not_permitted", "four_eyes"}
# Routed endpoints the table does not take yet, each with why; the completeness test below
# fails when an endpoint is routed without an entry (or listed here once it has one).
NOT_YET: set[tuple[str, str]] = set()
PROJECT_APPS = ("brokerage", "accounts", "margin", "eligibility", "auth", "guardian")


def _params(applies) -> list[Any]:
    return [pytest.param(e, id=e.id) for e in ENDPOINTS if applies(e)]


def footprint() -> dict[str, int]:
    """Rows in every table of the project (audit events, approvals, tokens, the book...), read
    in one query."""
    from django.db import connection

    tables = sorted({model._meta.db_table for label in PROJECT_APPS
                     for model in apps.get_app_config(label).get_models()
                     if model._meta.managed and not model._meta.proxy})
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(f"(SELECT count(*) FROM {quote(t)})" for t in tables))
        return dict(zip(tables, cursor.fetchone(), strict=True))


def bearer(user) -> Client:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {create_api_token(user=user, actor=None).secret}")
    assert client.get("/api/v1/").status_code == 200  # its first use from this address: audited
    return client


def target(endpoint: Endpoint, fw: FirmWorld) -> str:
    if endpoint.make is None:
        return endpoint.url
    with firm_scope(fw.firm):
        return endpoint.url.format(obj=endpoint.make(fw))


def send(client: Client, endpoint: Endpoint, url: str, body: Any = None, raw: str | None = None):
    if not endpoint.writes:
        return client.get(url)
    data = raw if raw is not None else json.dumps(body)
    headers = {}
    if endpoint.if_match:
        # A decision rests on what was read: the ETag of the object as this caller reads it
        # (none where it may not read it: the refusal comes before the precondition).
        read = client.get(url.rstrip("/").rsplit("/", 1)[0] + "/")
        if read.has_header("ETag"):
            headers["HTTP_IF_MATCH"] = read["ETag"]
    return client.generic(endpoint.method, url, data, content_type="application/json",
                          **headers)


def market_data_operator():
    """The platform's market-data operator (no firm): who loads prices and vols."""
    from brokerage.tenancy import create_platform_user

    return create_platform_user(username="feed", role="market_data")


def valid_body(endpoint: Endpoint, fw: FirmWorld) -> dict[str, Any] | None:
    return endpoint.body(fw) if endpoint.body else None


def _nothing_written(before: dict[str, int]) -> None:
    after = footprint()
    assert after == before, {k: (before[k], after[k]) for k in after if after[k] != before[k]}


@pytest.fixture
def matrix_world(world) -> World:
    # Adopt each firm's defaults first, so that no read below adopts one (a write) on first use.
    from eligibility.services import active_rule_set
    from margin.calls.policy import active_policy
    from tests.factories import shared_instrument

    shared_instrument("ACME")  # what the market-data loads name
    for fw in (world.a, world.b):
        with firm_scope(fw.firm):
            active_policy(fw.firm)
            active_rule_set(firm=fw.firm)
    # Reference data the trading endpoints book against (shared, written before any count).
    from tests.api.endpoints import listed_for_trading

    listed_for_trading()
    return world


@pytest.mark.parametrize("endpoint", _params(lambda e: True))
def test_anonymous_is_a_401_with_the_bearer_challenge(request, endpoint):
    if endpoint.make is None and endpoint.body is None:
        request.getfixturevalue("db")  # a list or a report: no object, no body, no world
        url, body = endpoint.url, None
    else:
        fw = request.getfixturevalue("matrix_world").a
        url, body = target(endpoint, fw), valid_body(endpoint, fw)
    before = footprint()
    response = send(Client(), endpoint, url, body)
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert the_error(response)["code"] == "not_authenticated"
    _nothing_written(before)


@pytest.mark.parametrize("endpoint", _params(lambda e: e.refused))
def test_a_role_it_refuses_is_a_403(matrix_world, endpoint):
    fw = matrix_world.a
    url = target(endpoint, fw)
    clients = {role: bearer(fw.users[role.value]) for role in endpoint.refused}
    before = footprint()
    for role, client in clients.items():
        response = send(client, endpoint, url, valid_body(endpoint, fw))
        assert response.status_code == 403, (role, response.content)
        assert the_error(response)["code"] in REFUSED_CODES, role
    _nothing_written(before)


@pytest.mark.parametrize("endpoint", _params(lambda e: e.make is not None))
def test_another_firms_object_is_a_404(matrix_world, endpoint):
    url = target(endpoint, matrix_world.a)
    role = _first_role(endpoint)
    outsider = bearer(matrix_world.b.users[role.value])
    before = footprint()
    response = send(outsider, endpoint, url, valid_body(endpoint, matrix_world.b))
    assert response.status_code == 404, response.content
    assert the_error(response)["code"] == "not_found"
    _nothing_written(before)


@pytest.mark.parametrize("endpoint", _params(lambda e: e.narrowed and e.make is not None))
def test_a_role_narrowed_to_its_own_objects_gets_a_404(matrix_world, endpoint):
    fw = matrix_world.a
    url = target(endpoint, fw)
    clients = {role: bearer(fw.users[role.value]) for role in endpoint.narrowed}
    before = footprint()
    for role, client in clients.items():
        response = send(client, endpoint, url, valid_body(endpoint, fw))
        assert response.status_code == 404, (role, response.content)
        assert errors_of(response)
    _nothing_written(before)


@pytest.mark.parametrize("endpoint", _params(lambda e: not e.writes))
def test_its_own_firm_is_served_to_every_role_it_serves(matrix_world, endpoint):
    fw = matrix_world.a
    url = target(endpoint, fw)
    for role in _roles(endpoint):
        response = send(bearer(fw.users[role.value]), endpoint, url)
        assert response.status_code == endpoint.ok, (role, response.content)


@pytest.mark.parametrize(("endpoint", "role"), [
    *(pytest.param(e, role, id=f"{e.id} as {role.value}")
      for e in ENDPOINTS if e.writes for role in sorted(e.roles, key=list(Role).index)),
    *(pytest.param(e, None, id=f"{e.id} as the market-data operator")
      for e in ENDPOINTS if e.writes and e.platform)])
def test_its_own_firm_may_write_in_every_role_it_serves(matrix_world, endpoint, role):
    """A write moves its object on, so each role gets a world of its own."""
    fw = matrix_world.a
    url = target(endpoint, fw)
    client = bearer(market_data_operator() if role is None else fw.users[role.value])
    before = footprint()
    response = send(client, endpoint, url, valid_body(endpoint, fw))
    assert response.status_code == endpoint.ok, response.content
    # the control of every "nothing written" above: a write that succeeds is seen
    assert (footprint() != before) == endpoint.records


def _roles(endpoint: Endpoint) -> list[Role]:
    return sorted(endpoint.roles, key=list(Role).index)


def _first_role(endpoint: Endpoint) -> Role:
    return _roles(endpoint)[0]


@pytest.mark.parametrize("endpoint", _params(lambda e: e.writes))
def test_a_malformed_body_or_an_unknown_field_is_a_400_and_writes_nothing(matrix_world,
                                                                          endpoint):
    fw = matrix_world.a
    url = target(endpoint, fw)
    client = bearer(market_data_operator() if not endpoint.roles
                    else fw.users[_first_role(endpoint).value])
    before = footprint()
    response = send(client, endpoint, url, raw='{"reason": "x",')
    assert response.status_code == 400, response.content
    assert the_error(response)["code"] == "malformed_json"
    response = send(client, endpoint, url, {**valid_body(endpoint, fw), "zz_unknown": 1})
    assert response.status_code == 400, response.content
    assert the_error(response) == {"field": "zz_unknown", "code": "unknown_field",
                                   "message": "unknown field 'zz_unknown'"}
    _nothing_written(before)


# The table is complete --------------------------------------------------------------------------

def _routed() -> set[tuple[str, str]]:
    """(route, method) of every endpoint routed under /api/v1/."""
    from django.urls import URLResolver, get_resolver

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern), pattern.callback

    routed = set()
    for route, view in walk(get_resolver().url_patterns):
        if not route.startswith("api/v1/"):
            continue
        actions = getattr(view, "actions", None)
        methods = (actions or {m: m for m in ("get", "post", "put", "patch", "delete")
                               if hasattr(view.view_class, m)})
        # (DRF adds HEAD beside GET to a viewset's actions at its first request)
        routed |= {(_plain(route), method.upper()) for method in methods if method != "head"}
    return routed


def _plain(route: str) -> str:
    """A route with its regex anchors dropped and every parameter as ``{}``."""
    import re

    route = route.replace("^", "").replace("$", "")
    return re.sub(r"\(\?P<\w+>[^)]*\)|<[^>]+>", "{}", route)


def test_every_routed_endpoint_has_its_entry_in_the_table():
    listed = {(_plain(e.url.split("?")[0].removeprefix("/").replace("{obj}", "{}")), e.method)
              for e in ENDPOINTS}
    routed = _routed()
    assert not listed - routed, f"entries for no route: {sorted(listed - routed)}"
    assert routed - listed == NOT_YET, sorted(routed - listed)
