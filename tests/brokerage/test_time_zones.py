"""Times are stored in UTC and shown in the firm's own zone, with the zone's name: a snapshot
taken at a known instant reads as that instant in each firm's zone, never as a local time
labelled "UTC"."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from brokerage.models import Firm
from brokerage.scope import firm_scope
from margin.models import MarginSnapshot, MarketState
from margin.snapshots import compute_snapshots
from tests.factories import PASSWORD, log_in, value_each_firms_account

pytestmark = pytest.mark.django_db

SUMMER = datetime(2026, 7, 1, 14, 40, tzinfo=UTC)
WINTER = datetime(2026, 1, 15, 15, 40, tzinfo=UTC)


@pytest.fixture
def valued(world):
    """Each firm's account booked; each test values it at a known instant (``_dated``)."""
    return value_each_firms_account(world, value=False)


def _dated(account, instant: datetime) -> None:
    """The account valued as the sweep values it, its snapshot written as of ``instant``.

    Snapshots are append-only (never re-dated), so the sweep's row is computed inside a
    savepoint that is rolled back, and the same row is written at the instant instead.
    """
    with firm_scope(account.firm):
        with transaction.atomic():
            [outcome] = compute_snapshots(accounts=[account])
            computed = {field.attname: getattr(outcome.snapshot, field.attname)
                        for field in MarginSnapshot._meta.concrete_fields if not field.primary_key}
            state = outcome.snapshot.market_state  # the market rows it names, rolled back too
            state = {"digest": state.digest, "price_ids": state.price_ids,
                     "vol_ids": state.vol_ids} if state else None
            transaction.set_rollback(True)
        if state is not None:
            # market rows are shared: another firm's account at the same rows has it already
            computed["market_state_id"] = MarketState.objects.get_or_create(
                digest=state.pop("digest"), defaults=state)[0].pk
        MarginSnapshot.objects.create(**{**computed, "computed_at": instant})


def _zone(firm, name: str) -> None:
    Firm.objects.filter(pk=firm.pk).update(time_zone=name)


@pytest.mark.parametrize(("zone", "instant", "shown"), [
    ("America/New_York", SUMMER, "2026-07-01 10:40 EDT"),
    ("America/New_York", WINTER, "2026-01-15 10:40 EST"),
    ("Europe/London", SUMMER, "2026-07-01 15:40 BST"),
    ("UTC", SUMMER, "2026-07-01 14:40 UTC"),
])
def test_the_portal_shows_a_snapshot_time_in_the_firms_zone(client, valued, zone, instant, shown):
    _zone(valued.firm_a, zone)
    _dated(valued.a.account, instant)
    log_in(client, "alpha_client", password=PASSWORD)
    for url in ("/portal/", "/portal/accounts/ALPHA-0001/"):
        html = client.get(url).content.decode()
        assert shown in html, url
        # The machine-readable <time datetime=...> is the same instant, with the zone's offset.
        stamps = {datetime.fromisoformat(v) for v in re.findall(r'<time datetime="([^"]+)"', html)}
        assert stamps == {instant}, url


def test_two_firms_in_two_zones_each_see_their_own(client, valued):
    _zone(valued.firm_a, "America/New_York")
    _zone(valued.firm_b, "Asia/Tokyo")
    for fw in (valued.a, valued.b):
        _dated(fw.account, SUMMER)
    log_in(client, "alpha_client", password=PASSWORD)
    assert "2026-07-01 10:40 EDT" in client.get("/portal/accounts/ALPHA-0001/").content.decode()
    client.logout()
    log_in(client, "beta_client", password=PASSWORD)
    page = client.get("/portal/accounts/BETA-0001/").content.decode()
    assert "2026-07-01 23:40 JST" in page and "10:40" not in page


def test_the_desk_shows_times_in_the_firms_zone_and_names_it(client, valued):
    _zone(valued.firm_a, "Europe/London")
    _dated(valued.a.account, SUMMER)
    log_in(client, "alpha_risk_officer", password=PASSWORD)
    page = client.get("/admin/margin/marginsnapshot/").content.decode()
    assert "Times in Europe/London" in page
    assert "3:40 p.m." in page  # 14:40 UTC in London in summer


def test_the_zone_is_not_left_active_after_the_request(client, valued):
    _zone(valued.firm_a, "Asia/Tokyo")
    log_in(client, "alpha_client", password=PASSWORD)
    client.get("/portal/")
    assert timezone.get_current_timezone_name() == "America/New_York"  # settings.TIME_ZONE


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "UTC+3", "../etc/passwd", ""])
def test_a_firms_zone_is_an_iana_name(world, name):
    firm = Firm.objects.get(pk=world.firm_a.pk)
    firm.time_zone = name
    with pytest.raises(ValidationError) as refused:
        firm.full_clean()
    assert "time_zone" in refused.value.message_dict


def test_a_new_firm_defaults_to_new_york(db):
    assert Firm.objects.create(name="Gamma", slug="gamma").time_zone == "America/New_York"


def test_the_firm_admin_sets_the_firms_zone_audited(client, world):
    from django.urls import reverse

    from brokerage import audit

    log_in(client, "alpha_firm_admin", password=PASSWORD)
    url = reverse("admin:brokerage_firm_change", args=[world.firm_a.pk])
    assert client.post(url, {"time_zone": "Mars/Olympus_Mons"}).status_code == 200  # refused
    assert client.post(url, {"time_zone": "Europe/Zurich"}).status_code == 302
    assert Firm.objects.get(pk=world.firm_a.pk).time_zone == "Europe/Zurich"
    event = audit.events_for(world.firm_a).get(event_type="firm.time_zone_set")
    assert (event.before, event.after) == ({"time_zone": "America/New_York"},
                                           {"time_zone": "Europe/Zurich"})
    other = reverse("admin:brokerage_firm_change", args=[world.firm_b.pk])
    assert client.post(other, {"time_zone": "Asia/Tokyo"}).status_code == 404
    client.logout()
    log_in(client, "alpha_risk_officer", password=PASSWORD)
    assert client.post(url, {"time_zone": "Asia/Tokyo"}).status_code == 403
    assert Firm.objects.get(pk=world.firm_b.pk).time_zone == "America/New_York"
    assert Firm.objects.get(pk=world.firm_a.pk).time_zone == "Europe/Zurich"


def test_the_api_gives_times_in_the_firms_zone_whatever_the_authentication(world):
    """Token users are known only once DRF authenticates (after the middleware): their times
    are the firm's zone too, the same instant as a session user's."""
    from django.test import Client

    from brokerage.scope import firm_scope
    from brokerage.tokens import create_api_token
    from margin import services

    _zone(world.firm_a, "Asia/Tokyo")
    firm = Firm.objects.get(pk=world.firm_a.pk)
    with firm_scope(firm):
        proposal = services.propose_parameters(firm=firm, actor=world.a.users["risk_officer"],
                                               overrides={"house": {"vol_shift": 0.3}},
                                               reason="zone test")
    session = Client()
    log_in(session, world.a.users["risk_officer"])
    token = create_api_token(user=world.a.users["risk_officer"], actor=None).secret
    bearer = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    url = f"/api/v1/risk-parameters/{proposal.pk}/"
    stamps = [door.get(url).json()["created_at"] for door in (session, bearer)]
    assert all(stamp.endswith("+09:00") for stamp in stamps), stamps
    assert {datetime.fromisoformat(s) for s in stamps} == {proposal.created_at}
    assert timezone.get_current_timezone_name() != "Asia/Tokyo"  # nothing leaks past a request
