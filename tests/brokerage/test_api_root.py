"""The API root, ``/api/v1/``: a link to every resource for any logged-in user, 401 (with the
Bearer challenge) for anyone else."""

from __future__ import annotations

from django.test import Client

from brokerage.roles import Role
from brokerage.tokens import create_api_token
from tests.api_body import the_error
from tests.factories import log_in

ROOT = "/api/v1/"
RESOURCES = ("accounts", "applications", "rule-sets", "margin-calls", "call-policies",
             "restrictions", "risk-parameters", "margin/calculate", "margin-record", "margin-report",
             "audit/export", "tokens", "schema")


def test_anonymous_is_a_401_with_the_bearer_challenge(db):
    response = Client().get(ROOT)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert the_error(response)["code"] == "not_authenticated"


def test_the_root_links_every_resource_for_any_logged_in_user(world):
    client = Client()
    log_in(client, world.a.users[Role.CLIENT.value])
    response = client.get(ROOT)
    assert response.status_code == 200
    links = response.json()
    assert set(RESOURCES) <= set(links), set(RESOURCES) - set(links)
    assert links["tokens"] == "http://testserver/api/v1/tokens/"
    assert links["schema"] == "http://testserver/api/schema/"
    # no object's URL and no list's action (rule-sets/propose) is a resource of its own
    assert not [name for name in links if "{" in name or name.endswith("propose")]

    admin = world.a.users[Role.FIRM_ADMIN.value]
    secret = create_api_token(user=admin, actor=None, read_only=True).secret
    script = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert script.get(ROOT).json() == links
    # every link answers the firm admin: a 200, a 400 for a missing query value, or a 405 for
    # the calculator, which only takes a POST; never a 404
    for name, url in links.items():
        status = script.get(url).status_code
        assert status == 200 or (name, status) in {("margin-record", 400), ("margin-report", 400),
                                                   ("margin/calculate", 405)}, (name, status)


def test_the_schema_documents_the_root(world):
    client = Client()
    log_in(client, world.a.users[Role.CLIENT.value])
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert set(schema["paths"]["/api/v1/"]["get"]["responses"]) == {"200", "401", "429"}
