"""/healthz and /readyz: unauthenticated JSON for a load balancer, telling nothing sensitive."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.api_body import decide
from tests.operations.conftest import CLOSED_BROKER, READY_S, wait_for

EVERY_CHECK = {"database", "broker", "workers", "beat", "dirty_accounts", "audit"}
# What the body must never carry: addresses, ports, schemes, product names, versions.
SENSITIVE = re.compile(r"127\.0\.0\.1|localhost|redis|postgres|6379|5432|celery|django|"
                       r"version|\d+\.\d+\.\d+|@", re.I)


def _ready(client: Client | None = None):
    response = (client or Client()).get("/readyz")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    body = response.json()
    assert set(body["checks"]) == EVERY_CHECK
    assert not SENSITIVE.search(response.content.decode()), response.content
    return response.status_code, body


def test_healthz_answers_without_the_database_or_a_login(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert Client().post("/healthz").status_code == 405


@pytest.mark.django_db
def test_a_broker_that_cannot_be_reached_is_unready_and_healthz_stays_up(broker_at):
    broker_at(CLOSED_BROKER)
    status, body = _ready()
    assert status == 503 and body["status"] == "unready"
    assert body["checks"]["broker"] == {"ok": False}
    assert body["checks"]["database"] == {"ok": True}
    assert Client().get("/healthz").status_code == 200


@pytest.mark.django_db
def test_no_worker_and_no_beat_is_unready_naming_them(broker_at, settings):
    from brokerage.celery import app

    broker_at(app.conf.broker_url)  # the real broker, tasks sent (no worker consumes them)
    status, body = _ready()
    assert status == 503
    assert body["checks"]["broker"] == {"ok": True}
    assert body["checks"]["workers"] == {"ok": False, "queues": {
        "default": {"ok": False, "age_s": None}, "sweep": {"ok": False, "age_s": None}}}
    assert body["checks"]["beat"] == {"ok": False, "age_s": None}


def test_an_account_left_dirty_too_long_is_unready(world, settings):
    from margin.dirty import mark_accounts
    from margin.models import AccountMargin

    mark_accounts([world.a.account.pk], request=False)
    _, body = _ready()
    assert body["checks"]["dirty_accounts"]["ok"] is True
    assert 0 <= body["checks"]["dirty_accounts"]["oldest_age_s"] < 60
    AccountMargin.cross_firm.for_compliance(reason="test: an old mark").filter(
        pk=world.a.account.pk).update(marked_at=timezone.now() - timedelta(minutes=20))
    status, body = _ready()
    assert status == 503 and body["checks"]["dirty_accounts"]["ok"] is False
    assert body["checks"]["dirty_accounts"]["oldest_age_s"] >= 1200
    # The audit trail's latest signed checkpoint: none yet, then the one just taken.
    assert body["checks"]["audit"] == {"ok": True, "kind": "signed_checkpoint", "age_s": None}
    from brokerage.audit_anchors import take_checkpoint

    take_checkpoint(reason="test: a checkpoint")
    _, body = _ready()
    assert body["checks"]["audit"]["ok"] is True and body["checks"]["audit"]["age_s"] < 60


def test_ready_with_a_worker_and_beat_and_a_request_id_reaches_the_task(
        start_worker, start_beat, broker_at, settings):
    """Every dependency up: ready. A request that causes a task (approving risk parameters
    marks the firm's accounts; the sweep is sent on commit) hands its X-Request-ID to the
    worker, which logs the task under it."""
    from brokerage.celery import app
    from brokerage.scope import firm_scope
    from brokerage.tokens import create_api_token
    from margin.services import propose_parameters
    from operations.models import TaskTally
    from tests.factories import make_world

    broker_at(app.conf.broker_url)
    world = make_world()
    worker = start_worker(LOG_FORMAT="json")
    start_beat()
    wait_for(lambda: _ready()[0] == 200, "/readyz ready", READY_S, worker, poll_s=0.5)
    _, body = _ready()
    assert body["status"] == "ready"
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["workers"]["queues"]["sweep"]["age_s"] <= 30

    with firm_scope(world.firm_a):
        proposal = propose_parameters(firm=world.firm_a, actor=world.a.users["risk_officer"],
                                      overrides={}, reason="baseline")
    admin = world.a.users["firm_admin"]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {create_api_token(user=admin, actor=None).secret}")
    request_id = f"ops-{uuid.uuid4().hex[:12]}"
    answer = decide(api, f"/api/v1/risk-parameters/{proposal.pk}/approve/",
                    data={"reason": "agreed"}, content_type="application/json",
                    HTTP_X_REQUEST_ID=request_id)
    assert answer.status_code == 200, answer.content
    assert answer["X-Request-ID"] == request_id

    def task_lines() -> list[dict]:
        lines = [json.loads(line) for line in worker.log.read_text().splitlines()
                 if line.startswith("{")]
        return [line for line in lines if line.get("request_id") == request_id]

    wait_for(lambda: any(line.get("task") == "margin.tasks.sweep_dirty_chunk"
                         and line.get("state") == "SUCCESS" for line in task_lines()),
             "the sweep's chunk logged under the request id", 60, worker, poll_s=0.2)
    logged = task_lines()
    assert {"margin.tasks.sweep_dirty", "margin.tasks.sweep_dirty_chunk"} <= {
        line.get("task") for line in logged}
    assert all({"time", "level", "logger", "message"} <= set(line) for line in logged)
    # The tally is counted by the worker's task signal after the task's SUCCESS line is
    # logged (operations.celery_signals): wait for its commit rather than race it.
    wait_for(lambda: TaskTally.objects.filter(task="margin.tasks.sweep_dirty_chunk",
                                              succeeded__gte=1).exists(),
             "the sweep's chunk counted in the task tally", 30, worker, poll_s=0.2)
