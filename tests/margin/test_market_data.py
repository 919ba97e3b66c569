"""Price loads: bad rows are refused with the row and field named, and nothing is written."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from brokerage.models import AuditEvent
from margin.market_data import MarketDataError, latest_prices, load_prices
from margin.models import PriceObservation
from tests.factories import shared_instrument

pytestmark = pytest.mark.django_db


def _now():
    return timezone.now().isoformat()


def test_a_good_load_stores_every_row_and_is_audited():
    acme = shared_instrument("ACME")
    created = load_prices(observations=[{"symbol": "ACME", "price": "101.25",
                                         "observed_at": _now()}], source="vendor", actor=None)
    assert len(created) == 1
    assert latest_prices([acme.pk])[acme.pk].price == Decimal("101.25")
    assert AuditEvent.objects.filter(event_type="prices.loaded", chain="platform").count() == 1


@pytest.mark.parametrize("bad,code", [
    ({"price": "-1"}, "not_positive"),
    ({"price": "0"}, "not_positive"),
    ({"price": "NaN"}, "not_finite"),
    ({"price": "Infinity"}, "not_finite"),
    ({"price": "abc"}, "invalid"),
    ({"symbol": "NOPE"}, "unknown_symbol"),
    ({"observed_at": "2999-01-01T00:00:00Z"}, "future"),
    ({"observed_at": "yesterday"}, "invalid"),
    ({"volume": 10}, "unknown_field"),
])
def test_bad_rows_are_refused_and_nothing_is_written(bad, code):
    shared_instrument("ACME")
    good = {"symbol": "ACME", "price": "100", "observed_at": _now()}
    rows = [good, {**good, **bad}]
    with pytest.raises(MarketDataError) as caught:
        load_prices(observations=rows, source="vendor", actor=None)
    assert caught.value.errors[0]["code"] == code
    assert caught.value.errors[0]["field"].startswith("observations[1]")
    assert not PriceObservation.objects.exists()
    assert not AuditEvent.objects.filter(event_type="prices.loaded").exists()
