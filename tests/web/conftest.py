"""The portal tests' shared fixture: the two-firm world valued, its client logged in."""

from __future__ import annotations

import pytest

from tests.factories import PASSWORD, log_in, value_each_firms_account


@pytest.fixture
def alpha(client, world):
    """Firm A's client logged in to the portal, each firm's account holding 10 ACME and valued
    once (``value_each_firms_account``)."""
    value_each_firms_account(world)
    log_in(client, "alpha_client", password=PASSWORD)
    return world
