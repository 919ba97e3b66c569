"""A real Celery worker as a subprocess (prefork) on the broker and database its environment
names: what the integration tests kill mid-chunk and what the database benches sweep with.

The worker runs in its own process group, so stopping it stops its pool children too; its
output goes to a log file (read back by ``tail`` when a wait fails).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
READY_S = 60.0  # a cold worker imports Django, numba and the engine


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def pids(self) -> list[int]:
        """The worker's main process and its pool children (read from /proc)."""
        main = self.process.pid
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            # the command name (field 2) may hold spaces: the parent id follows its ")"
            if int(stat.rsplit(")", 1)[1].split()[1]) == main:
                children.append(int(entry.name))
        return [main, *sorted(children)]

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once (a machine lost mid-task)."""
        self._signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, seconds: float = 20.0) -> None:
        """A warm shutdown (SIGTERM: the running task finishes), SIGKILL after ``seconds``."""
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.kill()
        # the pool children may outlive the main process by a moment: the group goes whole
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass


def wait_for(condition: Callable[[], object], what: str, seconds: float = 30.0,
             worker: Worker | None = None, poll_s: float = 0.02) -> float:
    """Seconds until `condition()` holds, polled; fails naming `what` after `seconds`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            detail = f"\n--- {worker.name} log ---\n{worker.tail()}" if worker else ""
            raise AssertionError(f"{what} not within {seconds:.0f} s{detail}")
        time.sleep(poll_s)
    return time.monotonic() - start


def start_worker(*, app, name: str, env: dict[str, str], log: Path, concurrency: int = 1,
                 queues: str = "sweep,default", extra: Sequence[str] = (),
                 ready_s: float = READY_S) -> Worker:
    """Start `celery -A brokerage worker -Q <queues> --pool prefork` with exactly ``env`` and
    wait until it answers a ping through ``app`` (the caller's Celery app, on the same
    broker)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "brokerage", "worker",
             "-Q", queues, "--concurrency", str(concurrency), "--pool", "prefork",
             *extra, "-n", name, "-l", "INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: stopped whole
    worker = Worker(name, process, log)
    try:
        wait_for(lambda: process.poll() is not None
                 or app.control.ping(destination=[name], timeout=0.2), f"worker {name} ready",
                 ready_s, worker)
    except BaseException:
        worker.kill()
        raise
    if process.poll() is not None:
        raise RuntimeError(f"worker {name} exited:\n{worker.tail()}")
    return worker
