"""Races on PostgreSQL: calls released at the same moment, each thread on its own connection.

Django's connections are per thread and context variables (the firm scope) do not cross
threads, so each call enters its own scope. A barrier releases them together; row locks make
the later ones wait, which is what the tests that use this show.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connections


def race(*calls: Callable[[], object]) -> list[object]:
    """Run the calls in threads released at the same moment; return results or exceptions."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[object] = [None] * len(calls)

    def worker(index: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes[index] = call()
        except BaseException as exc:  # the test inspects what each thread got
            outcomes[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (deadlock?)"
    return outcomes
