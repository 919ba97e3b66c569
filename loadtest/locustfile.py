"""The load `make loadtest` puts on `make serve`'s stack (run by loadtest/run.py, which sets the
environment below): demo clients reading their account page in the portal (session login),
and API clients reading an account's current margin with a Bearer token, plus the pre-trade
check when that route exists. One second of think time per user between requests.

    LOADTEST_TOKENS    JSON: firm prefix -> API token of a staff user of that firm
    LOADTEST_CLIENTS   JSON: list of demo client logins
    LOADTEST_PASSWORD  their password
    LOADTEST_PRETRADE  "1" when POST /api/v1/accounts/{number}/pre-trade is routed
    LOADTEST_RESULTS   where to write every request's time, by endpoint (JSON), at the end

Logging in (``SETUP``) happens once per user as it starts; run.py reports it apart, and
measures the endpoints from the end of the last login on (a password hash is deliberately
slow: twenty at once would weigh on the first seconds, and logging in is not what is measured).
"""

from __future__ import annotations

import json
import os
import random
import re
import time

from locust import HttpUser, constant, events, task

TOKENS: dict[str, str] = json.loads(os.environ.get("LOADTEST_TOKENS", "{}"))
CLIENTS: list[str] = json.loads(os.environ.get("LOADTEST_CLIENTS", "[]"))
PASSWORD = os.environ.get("LOADTEST_PASSWORD", "")
PRETRADE = os.environ.get("LOADTEST_PRETRADE") == "1"
ACCOUNT_LINK = re.compile(r'href="/portal/accounts/([A-Za-z0-9_-]+)/"')
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
SETUP = ("login page", "login", "/portal/")
_next_client = iter(range(1_000_000))
_requests: dict[str, list[tuple[float, float, str | None]]] = {}


@events.request.add_listener
def _record(name, response_time, exception, **_kwargs) -> None:
    # (when it ended, how long it took, whether it failed): run.py measures from the end of the
    # last login on, so the slow password hashes of the start weigh on no measured request.
    failure = repr(exception)[:200] if exception is not None else None
    _requests.setdefault(name, []).append((time.time(), response_time, failure))


@events.test_stop.add_listener
def _write(**_kwargs) -> None:
    path = os.environ.get("LOADTEST_RESULTS")
    if path:
        with open(path, "w") as handle:
            json.dump(_requests, handle)


class PortalClient(HttpUser):
    """A demo client, logged in once, reading the page of one of its accounts."""

    wait_time = constant(1)

    def on_start(self) -> None:
        username = CLIENTS[next(_next_client) % len(CLIENTS)]
        page = self.client.get("/accounts/login/", name="login page")
        token = CSRF.search(page.text)
        with self.client.post("/accounts/login/", name="login",
                              data={"username": username, "password": PASSWORD,
                                    "csrfmiddlewaretoken": token.group(1) if token else ""},
                              headers={"Referer": f"{self.host}/accounts/login/"},
                              allow_redirects=False, catch_response=True) as answer:
            if answer.status_code != 302:
                answer.failure(f"login of {username} answered {answer.status_code}")
        home = self.client.get("/portal/", name="/portal/")
        self.accounts = sorted(set(ACCOUNT_LINK.findall(home.text)))
        if not self.accounts:
            raise RuntimeError(f"{username} sees no account in the portal")

    @task
    def account_page(self) -> None:
        self.client.get(f"/portal/accounts/{random.choice(self.accounts)}/",
                        name="/portal/accounts/[number]/")


class ApiClient(HttpUser):
    """A script of a firm's staff reading current margin (and asking the pre-trade check)."""

    wait_time = constant(1)

    def on_start(self) -> None:
        self.prefix, token = random.choice(sorted(TOKENS.items()))
        self.client.headers["Authorization"] = f"Bearer {token}"

    def _number(self) -> str:
        return f"{self.prefix}{100000 + random.randint(1, 21)}"

    @task(3 if PRETRADE else 1)
    def margin(self) -> None:
        self.client.get(f"/api/v1/accounts/{self._number()}/margin",
                        name="/api/v1/accounts/[number]/margin")

    if PRETRADE:
        @task(1)
        def pre_trade(self) -> None:
            self.client.post(f"/api/v1/accounts/{self._number()}/pre-trade",
                             name="/api/v1/accounts/[number]/pre-trade",
                             json={"orders": [{"instrument": "AAPL", "side": "buy",
                                               "quantity": "1"}]})
