"""Large id and text sets reach PostgreSQL as one array parameter and select what a list does."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from brokerage.id_sets import id_set, text_set
from brokerage.models import Firm

pytestmark = pytest.mark.django_db


def test_an_id_set_selects_as_the_list_does_with_one_parameter():
    firms = [Firm.objects.create(name=f"Firm {n}", slug=f"f{n}") for n in range(3)]
    wanted = [firms[0].pk, firms[2].pk, 10**12]
    with CaptureQueriesContext(connection) as queries:
        found = set(Firm.objects.filter(pk__in=id_set(wanted)).values_list("pk", flat=True))
    assert found == {firms[0].pk, firms[2].pk}
    assert "unnest" in queries.captured_queries[0]["sql"]


def test_a_text_set_keeps_quotes_and_backslashes():
    names = ['plain', 'with "quotes"', "back\\slash", "comma, brace }"]
    for name in names:
        Firm.objects.create(name=name, slug=f"s{abs(hash(name)) % 10**8}")
    found = set(Firm.objects.filter(name__in=text_set(names)).values_list("name", flat=True))
    assert found == set(names)
