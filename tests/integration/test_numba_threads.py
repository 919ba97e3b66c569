"""DESIGN.md "Scale": the processes that value chunks run numba with one thread (parallel
kernels collapse when the cores are shared); parallelism comes from more worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import REPO, wait_for
from tests.integration.probe import numba_threads


def test_a_sweep_worker_process_runs_numba_on_one_thread(start_worker, tmp_path: Path):
    worker = start_worker()  # no NUMBA_NUM_THREADS in its environment
    report = tmp_path / "numba.json"
    numba_threads.apply_async(args=[str(report)], queue="sweep")
    wait_for(report.exists, "the probe's report", worker=worker)
    seen = json.loads(report.read_text())
    assert seen["pid"] != worker.process.pid  # run in the prefork child, where chunks run
    assert (seen["environ"], seen["config"], seen["threads"]) == ("1", 1, 1)


def test_an_explicit_numba_num_threads_wins_over_the_pin():
    # A machine given whole to one worker may choose more threads: the pin is only a default.
    probe = ("import brokerage.celery, numba; "
             "print(numba.config.NUMBA_NUM_THREADS, numba.get_num_threads())")
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    seen = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, check=True,
                          capture_output=True, text=True, timeout=60).stdout.split()
    assert seen == ["2", "2"]
