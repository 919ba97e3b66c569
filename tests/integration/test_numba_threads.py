"""DESIGN.md "Scale": the processes that value chunks run numba with one thread (parallel
kernels collapse when the cores are shared); parallelism comes from more worker processes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import wait_for
from tests.integration.probe import numba_threads


def test_a_sweep_worker_process_runs_numba_on_one_thread(start_worker, tmp_path: Path):
    worker = start_worker()  # no NUMBA_NUM_THREADS in its environment
    report = tmp_path / "numba.json"
    numba_threads.apply_async(args=[str(report)], queue="sweep")
    wait_for(report.exists, "the probe's report", worker=worker)
    seen = json.loads(report.read_text())
    assert seen["pid"] != worker.process.pid  # run in the prefork child, where chunks run
    assert (seen["environ"], seen["config"], seen["threads"]) == ("1", 1, 1)
