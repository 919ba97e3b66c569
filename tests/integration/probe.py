"""A task only the integration layer's workers load (``celery worker -I tests.integration.probe``):
it reports what the process that values chunks sees, into a file the test reads (the project
keeps no result backend)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from celery import shared_task


@shared_task(name="tests.integration.probe.numba_threads")
def numba_threads(path: str) -> None:
    import numba

    Path(path).write_text(json.dumps({
        "pid": os.getpid(),
        "environ": os.environ.get("NUMBA_NUM_THREADS"),
        "config": numba.config.NUMBA_NUM_THREADS,
        "threads": numba.get_num_threads(),
    }))
