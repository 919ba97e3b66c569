"""Every desk URL: a client and a staff member without the role get a 403, each role its pages;
the navigation names only sections that resolve, with the roles their views admit."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, reverse

from brokerage.roles import STAFF_ROLES, Role
from tests.factories import log_in, make_world
from web.desk import urls as desk_urls
from web.desk.nav import SECTIONS

pytestmark = pytest.mark.django_db


def _patterns(patterns, prefix: str = "") -> list[tuple[str, URLPattern]]:
    found = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            found += _patterns(entry.url_patterns, prefix + str(entry.pattern))
        else:
            found.append((prefix + str(entry.pattern), entry))
    return found


DESK_PATTERNS = _patterns(desk_urls.urlpatterns)


def test_every_desk_view_names_its_roles():
    for route, pattern in DESK_PATTERNS:
        roles = getattr(pattern.callback, "desk_roles", None)
        assert roles, f"/desk/{route} is not a desk_view (web/desk/access.py)"
        assert roles <= STAFF_ROLES


def test_the_navigation_matches_the_pages():
    views = {p.name: p.callback for _, p in DESK_PATTERNS if p.name}
    for section in SECTIONS:
        assert section.url_name in views, f"{section.url_name} is not mounted"
        assert section.roles == views[section.url_name].desk_roles, section.url_name


@pytest.fixture
def staff_by_role():
    world = make_world()
    return world, {role: world.a.users[role] for role in STAFF_ROLES}


def test_each_role_opens_its_pages_and_is_refused_the_others(client, staff_by_role):
    world, staff = staff_by_role
    plain = [(route, p) for route, p in DESK_PATTERNS if "<" not in route]
    for role, user in staff.items():
        client.logout()
        assert log_in(client, user)
        for route, pattern in plain:
            status = client.get(f"/desk/{route}").status_code
            expected = 200 if role in pattern.callback.desk_roles else 403
            assert status == expected, f"{Role(role).label} on /desk/{route}: {status}"


def test_a_client_is_refused_every_desk_page(client, staff_by_role):
    world, _ = staff_by_role
    client_user = world.a.users[Role.CLIENT]
    assert log_in(client, client_user)
    for route, _pattern in DESK_PATTERNS:
        if "<" not in route:
            assert client.get(f"/desk/{route}").status_code == 403, route


def test_a_staff_login_lands_on_the_desk(client, staff_by_role):
    _, staff = staff_by_role
    assert log_in(client, staff[Role.MARGIN_DESK])
    assert client.get("/").url == reverse("desk-home")
