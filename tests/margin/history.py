"""Helpers of the history tests: ACME's price loaded and its holders swept."""

from __future__ import annotations

from django.utils import timezone

from margin.dirty import mark_holders
from margin.market_data import load_prices
from margin.sweep import ChunkResult, sweep_now
from tests.factories import shared_instrument


def set_price(value: str) -> None:
    load_prices(observations=[{"symbol": "ACME", "price": value,
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)


def price_tick(value: str) -> ChunkResult:
    """A price load on ACME reaching its holders' current margin (the marks run on commit,
    which a test transaction never reaches: marked here)."""
    set_price(value)
    mark_holders([shared_instrument("ACME").pk], request=False)
    return sweep_now()
