"""The sweep's write path stores what the reference definitions give: a snapshot built by
``margin.figures.new_snapshot`` (its plain JSON serialized once) and inserted as COPY text a
column at a time (``margin.copy_rows``) reads back with the values it was built with, the
content hash the original normalisation gives and the inputs hash the original document gives
(so a snapshot stored before the change still verifies, and a redelivered chunk finds its
inputs already stored)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import connection, models

from accounts.models import Account
from brokerage import audit
from brokerage.scope import firm_scope
from margin.figures import END_OF_DAY, inputs_hash, money, new_snapshot
from margin.models import AccountMargin, MarginSnapshot
from margin.snapshots import CHUNK_EVENT, History, compute_snapshots, content_hash, verify_chunk
from margin.sweep import FIELDS, _update_current
from tests.margin.test_batch_sweep import _random_book

pytestmark = pytest.mark.django_db


# -- the definitions as first written: every stored hash rests on them ---------------------------

def _reference_content_hash(snapshot: MarginSnapshot) -> str:
    document = {}
    for field in MarginSnapshot._meta.concrete_fields:
        if field.attname in {"id", "content_hash"}:
            continue
        value = getattr(snapshot, field.attname)
        if field.attname == "market_state_id" and value is None:
            continue  # added since: rows written before it (and rows without one) hash as then
        document[field.attname] = None if value is None else _reference_normalised(field, value)
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _reference_normalised(field, value):
    if isinstance(field, models.DecimalField):
        places = Decimal(1).scaleb(-field.decimal_places)
        return str(Decimal(str(value)).quantize(places))
    if isinstance(field, models.DateTimeField):
        return value.astimezone(UTC).isoformat()
    if isinstance(field, models.DateField):
        return value.isoformat()
    if isinstance(field, models.JSONField):
        return _reference_json(value)
    return value


def _reference_json(value):
    if isinstance(value, dict):
        return {str(k): _reference_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reference_json(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _reference_inputs_hash(snapshot: MarginSnapshot) -> str:
    document = {
        "end_of_day": snapshot.reason == END_OF_DAY,
        "account": snapshot.account_id, "margin_type": snapshot.margin_type,
        "cash": str(money(snapshot.cash)), "parameters": snapshot.parameter_set,
        "engine": snapshot.engine_version, "methods": list(snapshot.methods),
        "valuation_date": snapshot.valuation_date.isoformat()
        if snapshot.valuation_date else None,
        "positions": snapshot.positions, "prices": snapshot.price_ids, "vols": snapshot.vol_ids,
        "rate": snapshot.rate_id,
        "rate_used": None if snapshot.rate_used is None
        else str(Decimal(str(snapshot.rate_used)).normalize()),
        "history": snapshot.history,
    }
    if snapshot.market_state is not None:
        # the chunk's market rows, recorded once (added since): named by their digest
        del document["prices"], document["vols"]
        document["market"] = snapshot.market_state.digest
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


# -- stored by the sweep ---------------------------------------------------------------------

def _stored(snapshot: MarginSnapshot) -> MarginSnapshot:
    return MarginSnapshot.cross_firm.for_compliance(reason="test").get(pk=snapshot.pk)


@pytest.mark.parametrize("history", [History.FORCED, History.END_OF_DAY])
def test_a_stored_snapshot_reads_back_as_built_with_the_reference_hashes(world, four,
                                                                          history):
    """The batch path (portfolio-margin books) and the calculator's (the Reg T ones)."""
    batch = _random_book(world, 6, 11)
    with firm_scope(world.firm_a):
        accounts = list(Account.objects.filter(pk__in=[a.pk for a in [*batch, *four.values()]])
                        .select_related("firm").order_by("pk"))
        outcomes = compute_snapshots(accounts=accounts, history=history)
    built = [o.snapshot for o in outcomes if o.snapshot is not None]
    assert len(built) == len(accounts)
    for snapshot in built:
        assert snapshot.content_hash == _reference_content_hash(snapshot)
        assert snapshot.inputs_hash == _reference_inputs_hash(snapshot) == inputs_hash(snapshot)
        row = _stored(snapshot)
        for field in MarginSnapshot._meta.concrete_fields:
            stored, value = getattr(row, field.attname), getattr(snapshot, field.attname)
            assert stored == value, field.attname
            if isinstance(field, models.DecimalField) and value is not None:
                assert str(stored) == str(value), field.attname  # the same places
        # read back from the database: the hashes stored, by the reference and by the product
        assert row.content_hash == _reference_content_hash(row) == content_hash(row)
        assert row.inputs_hash == _reference_inputs_hash(row) == inputs_hash(row)
    event = audit.events_for(world.firm_a).filter(event_type=CHUNK_EVENT).latest("pk")
    assert event.after["count"] == len(built) and verify_chunk(event) is None


def test_a_redelivered_chunk_finds_its_snapshots_stored(world):
    batch = _random_book(world, 4, 13)
    with firm_scope(world.firm_a):
        accounts = list(Account.objects.filter(pk__in=[a.pk for a in batch])
                        .select_related("firm").order_by("pk"))
        first = compute_snapshots(accounts=accounts, history=History.FORCED)
        again = compute_snapshots(accounts=accounts, history=History.FORCED)
    assert [o.snapshot.pk for o in again] == [o.snapshot.pk for o in first]
    assert MarginSnapshot.cross_firm.for_compliance(reason="test").filter(
        account__in=batch).count() == 4


# -- values the sweep does not build: the general path -----------------------------------------

def _odd_values(world) -> dict:
    """Fields as a snapshot written before the batch sweep could hold them: floats in JSON
    (integral ones, which jsonb gives back as integers), keys that are not text, a tuple, a
    time in another zone, amounts with more places than stored."""
    account = world.a.account
    return {
        "firm": account.firm, "account": account,
        "computed_at": datetime(2026, 3, 2, 16, 5, 7, 123, tzinfo=timezone(timedelta(hours=-5))),
        "inputs_hash": "x" * 64, "engine_version": "1.0", "parameter_set": "p\u00e9 \"q\"",
        "margin_type": "reg_t", "cash": Decimal("10.005"), "net_liquidation_value": 1.25,
        "equity": Decimal("11"), "requirement": Decimal("-0.00"), "excess": Decimal("1E+2"),
        "health_factor": 1.5, "flags": ("a\tb", "c\\d"),
        "result": {"x": 1.0, "y": [1e20, -0.0, 0.5, float("nan")], 3: {"z": True}},
        "methods": ["reg_t"], "positions": [[1, "2.0", "0"], [2, 3.0, None]],
        "price_ids": {5: 7, 40: 8}, "vol_ids": {}, "history": {"returns": 499, "w": 2.0},
        "add_ons": {"h": "1.00"}, "risk_arrays": {"CG1": "AAAA"}, "rate_used": 0.04,
        "valuation_date": datetime(2026, 3, 2).date(), "reason": "forced",
    }


def test_the_content_hash_of_values_that_are_not_plain_is_the_reference(world):
    snapshot = MarginSnapshot(**_odd_values(world))
    assert content_hash(snapshot) == _reference_content_hash(snapshot)
    assert inputs_hash(snapshot) == _reference_inputs_hash(snapshot)


def test_new_snapshot_is_the_model_constructor(world):
    values = _odd_values(world)
    built, made = new_snapshot(dict(values)), MarginSnapshot(**values)
    state = {k: v for k, v in built.__dict__.items() if k not in {"_state", "_json_texts"}}
    assert state == {k: v for k, v in made.__dict__.items() if k != "_state"}
    assert (built._state.adding, built._state.db) == (made._state.adding, made._state.db)
    assert built.account is values["account"] and built.firm is values["firm"]
    assert built.rate is None and built.parameter_version is None
    # plain JSON declared: the text written once is the one the hashes read
    plain = {"positions": [[1, "2.0", "0.00"]], "price_ids": {"1": 9}, "methods": ["reg_t"],
             "flags": [], "add_ons": {"h": "1.00"}, "risk_arrays": {"CG1": "AAAA"}}
    declared = new_snapshot({**values, **plain}, plain_json=tuple(plain))
    assert content_hash(declared) == _reference_content_hash(declared)
    assert inputs_hash(declared) == _reference_inputs_hash(declared)
    declared.price_ids = {"1": 10}  # set since: the text written then is not used
    assert content_hash(declared) == _reference_content_hash(declared)
    with pytest.raises(TypeError):
        new_snapshot({**values, "not_a_field": 1})


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_copy_text_keeps_what_it_escapes(world, four):
    """Tabs, newlines, backslashes, quotes and non-ASCII text in a text column and in JSON
    reach the row as they were (COPY's text format escapes them)."""
    from margin.sweep import sweep_now

    sweep_now()
    account = four["big"]
    row = AccountMargin.cross_firm.for_compliance(reason="test").get(account=account)
    flag = "tab\there\nnew line \\ back \"quoted\" caf\u00e9 \u2603"
    arrays = {"CG \"1\"\t\\": "A\nB", "caf\u00e9": "\u2603"}
    written = _update_current([{
        "account_id": account.pk, "computed_version": row.computed_version + 1,
        "computed_at": datetime.now(UTC), "equity": Decimal("1.50"), "requirement": 2.25,
        "excess": None, "health_factor": None, "risk_arrays": arrays, "flag": flag}],
        FIELDS["valued"])
    assert written == 1
    row.refresh_from_db()
    assert (row.flag, row.risk_arrays) == (flag, arrays)
    assert (row.equity, row.requirement, row.excess) == (Decimal("1.50"), Decimal("2.25"), None)
