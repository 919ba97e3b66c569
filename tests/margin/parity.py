"""The sweep's batch path beside the calculator, account by account, on books in the database."""

from __future__ import annotations

from collections.abc import Sequence

from accounts.models import Account
from margin.market_cache import MarketCache
from margin.reproduce import MONEY_FIELDS
from margin.risk_arrays import unpack, within_precision
from margin.valuing import PM_ONLY, ChunkInputs, record_inputs, value_alone, value_in_batch


def assert_batch_equals_calculator(accounts: Sequence[Account],
                                   market: MarketCache | None = None) -> int:
    """Every account the batch values has the snapshot the calculator gives it alone: money to
    the cent, add-ons, risk arrays within float32, the same recorded inputs (hash). Returns
    how many the batch valued. ``market``: the kept market data the chunk reads, as a sweep
    worker's does (synced by the caller)."""
    inputs = ChunkInputs.load(accounts, market=market)
    candidates = [a for a in accounts if inputs.batchable(a)]
    batched, _ = value_in_batch(inputs, candidates)
    for snapshot in batched:
        alone = record_inputs(value_alone(inputs, snapshot.account))
        record_inputs(snapshot)
        assert not hasattr(alone, "flag"), alone
        number = snapshot.account.number
        for name in MONEY_FIELDS:
            assert getattr(snapshot, name) == getattr(alone, name), (number, name)
        assert snapshot.add_ons == alone.add_ons, number
        assert snapshot.flags == alone.flags == [], number
        assert snapshot.methods == alone.methods == list(PM_ONLY), number
        assert snapshot.inputs_hash == alone.inputs_hash, number
        assert snapshot.risk_arrays.keys() == alone.risk_arrays.keys(), number
        for group, packed in snapshot.risk_arrays.items():
            assert within_precision(unpack(packed), unpack(alone.risk_arrays[group])), \
                (number, group)
    return len(batched)
