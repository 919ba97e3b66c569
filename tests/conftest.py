"""Shared fixtures: a two-firm world on the real PostgreSQL test database.

Tests run against PostgreSQL and Redis (`make test` sets DATABASE_URL and CELERY_BROKER_URL).
Engine tests (tests/engine, tests/acceptance) need neither, and also run with `-p no:django`,
so nothing here imports Django at module level.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fast_password_hashing(request):
    # PBKDF2's deliberate slowness buys nothing in tests; logins still check real passwords.
    if request.config.pluginmanager.hasplugin("django"):
        settings = request.getfixturevalue("settings")
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    yield


@pytest.fixture
def world(db):
    """Two firms, a user of every role in each, a client with an account in each."""
    from tests.factories import make_world

    return make_world()


@pytest.fixture
def firm_a(world):
    return world.firm_a


@pytest.fixture
def firm_b(world):
    return world.firm_b


@pytest.fixture
def in_firm_a(world):
    from brokerage.scope import firm_scope

    with firm_scope(world.firm_a):
        yield world.firm_a
