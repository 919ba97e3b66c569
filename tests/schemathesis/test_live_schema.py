"""The live schema against the app (issue 14): schemathesis generates requests for every
operation of ``/api/schema/`` and sends them through the WSGI app with a firm admin's token, on
a seeded two-firm world. Every answer must be documented (status code, content type, headers)
and match its documented body; none may be a server error.

A bounded budget: a few examples per operation (`EXAMPLES`), derandomized (the same cases on
every run, so a failure reproduces), no example database. Failures are collected for every
operation and reported together, so one run shows all of them.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.db import transaction
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from brokerage.roles import Role
from brokerage.scope import firm_scope
from brokerage.tokens import create_api_token
from tests.factories import value_each_firms_account

#: examples per operation: some 90 operations, each case a request through the whole stack
EXAMPLES = 3
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture
def seeded(world, settings):
    """Each firm's account valued (10 ACME at 100), its defaults adopted; no throttling in
    the way of a few hundred requests a minute."""
    from eligibility.services import active_rule_set
    from margin.calls.policy import active_policy

    settings.API_THROTTLE_RATES = {"anon": "100000/min", "user": "100000/min",
                                   "token": "100000/min"}
    value_each_firms_account(world)
    for fw in (world.a, world.b):
        with firm_scope(fw.firm):
            active_policy(fw.firm)
            active_rule_set(firm=fw.firm)
    return world


@pytest.fixture
def wsgi_app():
    """Django's WSGI app on the test's connection: as Django's test client does, the request
    signals do not close the connection (it holds the test's transaction)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_every_operation_answers_as_the_schema_says(seeded, wsgi_app):
    admin = seeded.a.users[Role.FIRM_ADMIN.value]
    auth = {"Authorization": f"Bearer {create_api_token(user=admin, actor=None).secret}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json",
                                            wsgi_app, headers=auth)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operations += 1
        _exercise(result.ok(), auth, failures)
    assert operations > 50, operations
    assert not failures, f"{len(failures)} failures\n\n" + "\n\n".join(failures)


def _exercise(operation, auth: dict[str, str], failures: list[str]) -> None:
    """`EXAMPLES` generated cases of one operation, each failure noted in `failures`."""

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def exercise(case):
        # Each case on its own: what it writes is undone, so no case sees another's rows and a
        # database error (a 500, reported) does not abort the cases after it.
        savepoint = transaction.savepoint()
        try:
            response = case.call(headers=auth)
        finally:
            transaction.savepoint_rollback(savepoint)
        try:
            case.validate_response(response, checks=CHECKS, headers=auth)
        # (schemathesis raises a group when one response fails several checks)
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every one collected
            failures.append(f"{operation.label}: {response.status_code} "
                            f"{type(exc).__name__}: {str(exc)[:600]}")

    exercise()
