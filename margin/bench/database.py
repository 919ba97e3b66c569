"""The database path of ``make bench``: the synthetic book in PostgreSQL, swept by a real worker.

``end_to_end_recompute``: the end-of-day run (``margin.end_of_day.start_end_of_day``: every
account marked dirty and due for history) until every account's current margin is written and
its history snapshot stored, by the product's own sweep on a Celery worker; beside it the
engine-only full recompute of the same synthetic book (what ``pm_full_recompute`` measures), so
the cost of the database is a ratio.

``tick_to_snapshot``: a price load through the product's service (``load_prices``, what
``manage.py load_prices`` and the API call) on the underlyings held by 1 % of the accounts (the
most held first, as many as it takes: one synthetic underlying is held by about 0.2 %), until
each holder's current margin is committed at the version the load marked it with; 20 ticks.

Nothing is read from the environment but ``BENCH_ACCOUNTS`` (default 100,000),
``BENCH_TIMEOUT_S`` (how long the end-of-day run may take before the line says how far it got)
and ``BENCH_REDIS_DB`` (the broker's Redis database, default 9: two benches on one machine each
need their own, or one's worker takes the other's chunks and its purge drops them):
the bench creates its own database on PostgreSQL at 127.0.0.1:5432 (user postgres), migrates
it, loads the book (``margin.bench.loader``), starts its own prefork worker (``-Q
sweep,default``, concurrency 2, ``NUMBA_NUM_THREADS=1``) on its Redis database, and stops the
worker and drops the database at the end. The product's settings (chunk size, debounce) are
its defaults unless the environment sets them, as for any process of the product.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .book import N_ACCOUNTS, N_POSITIONS, SyntheticBook, make_book
from .runs import BENCHES, BenchContext, full_recompute
from .worker import REPO, Worker, start_worker

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
BROKER = f"redis://127.0.0.1:6379/{int(os.environ.get('BENCH_REDIS_DB', 9))}"
WORKER_PROCESSES = 2
TICKS = 20
HOLDER_SHARE = 0.01  # of the accounts, held by the underlyings a tick moves
TICK_MOVE = 0.01  # each tick moves the price 1 % from its start, up and down in turn
TICK_TIMEOUT_S = 120.0
DEFAULT_TIMEOUT_S = 1800.0
POSITIONS_PER_ACCOUNT = N_POSITIONS // N_ACCOUNTS


def bench_accounts() -> int:
    return int(os.environ.get("BENCH_ACCOUNTS", N_ACCOUNTS))


def _timeout_s() -> float:
    return float(os.environ.get("BENCH_TIMEOUT_S", DEFAULT_TIMEOUT_S))


# --------------------------------------------------------------------------- memory


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in kB: resident pages, and the same with each shared page
    divided among the processes sharing it (prefork children share their parent's)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0, 0  # the process is gone
    fields = {line.split(":")[0]: line.split()[1] for line in lines[1:] if ":" in line}
    return int(fields.get("Rss", 0)), int(fields.get("Pss", 0))


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user and system) a process has used, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MemoryPeak(threading.Thread):
    """The peaks of the summed resident memory (RSS, and PSS) of this process and the worker's
    processes, sampled every ``interval_s`` while it runs (psutil is not among the
    dependencies: /proc); and the CPU seconds the worker's processes used meanwhile (on a
    shared machine the wall time says more about the neighbours than about the sweep)."""

    def __init__(self, worker: Worker, interval_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.worker, self.interval_s = worker, interval_s
        self.rss_kb = self.pss_kb = 0
        self._cpu: dict[int, tuple[float, float]] = {}  # pid -> (first, last) CPU seconds
        self._done = threading.Event()
        self._sample_cpu(self.worker.pids())

    def _sample_cpu(self, pids: list[int]) -> None:
        for pid in pids:
            used = _cpu_s(pid)
            if used is not None:
                self._cpu[pid] = (self._cpu.get(pid, (used, used))[0], used)

    @property
    def worker_cpu_s(self) -> float:
        return round(sum(last - first for first, last in self._cpu.values()), 2)

    def run(self) -> None:
        pids: list[int] = []
        refreshed = 0.0
        while not self._done.is_set():
            if time.monotonic() - refreshed > 1.0:  # pool children may be replaced
                pids, refreshed = [os.getpid(), *self.worker.pids()], time.monotonic()
            sizes = [_memory_kb(pid) for pid in pids]
            self.rss_kb = max(self.rss_kb, sum(rss for rss, _ in sizes))
            self.pss_kb = max(self.pss_kb, sum(pss for _, pss in sizes))
            self._sample_cpu(pids[1:])
            self._done.wait(self.interval_s)
        self._sample_cpu(self.worker.pids())

    def stop(self) -> tuple[float, float]:
        """Stop sampling; the peaks (RSS, PSS) in MB."""
        self._done.set()
        self.join()
        return round(self.rss_kb / 1024, 1), round(self.pss_kb / 1024, 1)


# --------------------------------------------------------------------------- the database


@dataclass
class BenchDatabase:
    """The bench's own database, its loaded book and its worker (one per bench process)."""

    name: str
    synthetic: SyntheticBook
    loaded: Any = None  # margin.bench.loader.LoadedBook
    worker: Worker | None = None
    load_s: float = 0.0
    end_of_day: dict[str, Any] = field(default_factory=dict)  # the end-of-day line, once run
    logs: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pmargin-bench-")))

    @property
    def url(self) -> str:
        return f"{PG_SERVER}/{self.name}"

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        from django.db import connections

        connections.close_all()
        _server(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        shutil.rmtree(self.logs, ignore_errors=True)


def _server(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def _setup_django(url: str) -> None:
    """Point this process at the bench's database and broker, then set Django up: the bench
    needs nothing from the environment and must never touch another database."""
    from django.conf import settings

    if settings.configured:
        raise RuntimeError("the database benches run in a process of their own "
                           "(python -m margin.bench), before Django is set up")
    os.environ["DATABASE_URL"] = url
    os.environ["CELERY_BROKER_URL"] = BROKER
    os.environ["DJANGO_SETTINGS_MODULE"] = "brokerage.settings"
    # brokerage.celery pins NUMBA_NUM_THREADS=1 for worker processes unless it is set; numba
    # re-reads it on every compile and refuses a change once its threads run. This process
    # keeps the threads it has (the engine-only figure is pm_full_recompute's); the worker
    # is started with 1.
    import numba

    os.environ.setdefault("NUMBA_NUM_THREADS", str(numba.config.NUMBA_NUM_THREADS))
    import django

    django.setup()


def _database(ctx: BenchContext) -> BenchDatabase:
    """The bench's database, made once per process: created, migrated, the book loaded, a
    worker started; dropped when the benches end (``ctx.close``)."""
    if "database" in ctx.cache:
        return ctx.cache["database"]
    n = bench_accounts()
    db = BenchDatabase(f"pmargin_bench_{os.getpid()}",
                       make_book(n_accounts=n, n_positions=POSITIONS_PER_ACCOUNT * n))
    _server(f'CREATE DATABASE "{db.name}"')
    ctx.cache["database"] = db
    ctx.closers.append(db.close)
    _setup_django(db.url)
    from celery import current_app
    from django.core.management import call_command

    from .loader import load_book

    call_command("migrate", verbosity=0)
    t0 = time.perf_counter()
    db.loaded = load_book(db.synthetic)
    db.load_s = time.perf_counter() - t0
    current_app.control.purge()  # messages of an earlier run on the bench's broker database
    env = {**os.environ, "DATABASE_URL": db.url, "CELERY_BROKER_URL": BROKER,
           "NUMBA_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "LOG_LEVEL": "INFO"}
    name = f"bench-{uuid.uuid4().hex[:8]}@localhost"
    db.worker = start_worker(app=current_app, name=name, env=env, log=db.logs / "worker.log",
                             concurrency=WORKER_PROCESSES)
    return db


def _current_rows(firm_id: int):
    from margin.models import AccountMargin

    return AccountMargin.cross_firm.for_compliance(
        reason="the bench watches its own firm's current margin").filter(firm_id=firm_id)


def _dirty_count(firm_id: int) -> int:
    from django.db.models import F

    return _current_rows(firm_id).filter(dirty_version__gt=F("computed_version")).count()


def _flag_counts(firm_id: int) -> dict[str, int]:
    """Accounts not valued, by the code their flag starts with (a clean book has none)."""
    counts: dict[str, int] = {}
    for flag in _current_rows(firm_id).filter(flag__gt="").values_list("flag", flat=True):
        code = flag.split(":", 1)[0]
        counts[code] = counts.get(code, 0) + 1
    return counts


# --------------------------------------------------------------------------- end of day


def engine_only_seconds(sb: SyntheticBook) -> float:
    """The engine-only full recompute of the book (``pm_full_recompute``): best of 3, warm."""
    full_recompute(sb)
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        full_recompute(sb)
        best = min(best, time.perf_counter() - t0)
    return float(best)


def run_end_of_day(db: BenchDatabase) -> dict[str, Any]:
    """Start the firm's end-of-day run and wait until every account is written (or the
    timeout): seconds from the start to the last current-margin row committed."""
    from django.conf import settings
    from django.utils import timezone

    from margin.end_of_day import start_end_of_day
    from margin.market_data import exchange_date
    from margin.models import MarginSnapshot

    firm = db.loaded.firm
    n = db.loaded.accounts
    timeout = _timeout_s()
    memory = MemoryPeak(db.worker)
    memory.start()
    t0 = time.perf_counter()
    start_end_of_day(firm=firm, calendar="XNYS", session=exchange_date(), now=timezone.now())
    left = n
    while left and time.perf_counter() - t0 < timeout:
        time.sleep(0.1)
        left = _dirty_count(firm.pk)
    seconds = time.perf_counter() - t0
    rss_mb, pss_mb = memory.stop()
    snapshots = MarginSnapshot.cross_firm.for_compliance(
        reason="the bench counts its own firm's snapshots").filter(
        firm=firm, reason="end_of_day").count()
    completed = (n - left) / n
    line = {
        "accounts": n, "positions": db.loaded.positions, "seconds": round(seconds, 2),
        "snapshots": snapshots, "snapshots_per_s": round(snapshots / seconds, 1),
        "peak_rss_mb": rss_mb, "peak_pss_mb": pss_mb, "worker_cpu_s": memory.worker_cpu_s,
        "load_average": round(os.getloadavg()[0], 2), "completed": round(completed, 4),
        "flagged": _flag_counts(firm.pk),
        "timeout_s": timeout, "timed_out": bool(left),
        "worker_processes": WORKER_PROCESSES, "chunk": int(settings.MARGIN_SWEEP_CHUNK),
        "debounce_s": float(settings.MARGIN_SWEEP_DEBOUNCE_S),
    }
    if left and completed > 0:
        line["extrapolated_s"] = round(seconds / completed, 1)
    db.end_of_day = line
    return line


def bench_end_to_end_recompute(ctx: BenchContext) -> Iterable[dict]:
    db = _database(ctx)
    engine_s = engine_only_seconds(db.synthetic)  # the worker idles: a quiet machine
    line = run_end_of_day(db)
    yield {"bench": "end_to_end_recompute", **line, "engine_only_s": round(engine_s, 4),
           "db_over_engine_ratio": round(line["seconds"] / engine_s, 1),
           "load_s": round(db.load_s, 1), "target_s": 30.0, "aim_s": 10.0, "target_mb": 2048,
           "note": "end-of-day run through a real prefork worker: every account's current "
                   "margin and history snapshot written; peak_rss_mb sums the RSS of the bench "
                   "process and the worker's processes (sampled: shared pages count once per "
                   "process), peak_pss_mb their PSS; engine_only_s is pm_full_recompute "
                   "on the same synthetic book"}


# --------------------------------------------------------------------------- ticks


def moved_underlyings(db: BenchDatabase, share: float = HOLDER_SHARE) -> list[int]:
    """The most held underlyings, as many as it takes for their holders to reach ``share``
    of the accounts (indexes into the synthetic book's underlyings)."""
    from .loader import netted_positions

    sb = db.synthetic
    n_und = sb.spot.shape[0]
    account, series, _ = netted_positions(sb)
    pairs = np.unique(account * n_und + sb.series_und[series])
    by_und: dict[int, set[int]] = {}
    for a, j in zip((pairs // n_und).tolist(), (pairs % n_und).tolist(), strict=True):
        by_und.setdefault(j, set()).add(a)
    wanted = max(int(np.ceil(share * sb.book.n_accounts)), 1)
    chosen: list[int] = []
    held: set[int] = set()
    for j in sorted(by_und, key=lambda u: (-len(by_und[u]), u)):
        chosen.append(j)
        held |= by_und[j]
        if len(held) >= wanted:
            break
    return chosen


def _tick(db: BenchDatabase, observations: list[dict], touched: list[int]) -> float | None:
    """One price load until each touched account's current margin is at the version the load
    marked it with; seconds, or None past the tick timeout."""
    from django.db.models import F

    from margin.market_data import load_prices

    t0 = time.perf_counter()
    load_prices(observations=observations, source="vendor", actor=None)  # marks on commit
    rows = _current_rows(db.loaded.firm.pk).filter(account_id__in=touched)
    while rows.filter(computed_version__lt=F("dirty_version")).exists():
        if time.perf_counter() - t0 > TICK_TIMEOUT_S:
            return None
        time.sleep(0.005)
    return time.perf_counter() - t0


def bench_tick_to_snapshot(ctx: BenchContext) -> Iterable[dict]:
    from django.conf import settings
    from django.utils import timezone

    from margin.dirty import holders_of

    db = _database(ctx)
    if not db.end_of_day:
        run_end_of_day(db)  # the book valued once first, as every morning finds it
    if db.end_of_day["timed_out"]:
        yield {"bench": "tick_to_snapshot", "skipped": "the end-of-day run did not finish "
               f"within {db.end_of_day['timeout_s']} s: the book is not valued yet"}
        return
    moved = moved_underlyings(db)
    ids = [int(db.loaded.underlying_ids[j]) for j in moved]
    touched = sorted(_current_rows(db.loaded.firm.pk).filter(
        account_id__in=holders_of(ids)).values_list("account_id", flat=True))
    times: list[float] = []
    for k in range(TICKS):
        move = 1 + TICK_MOVE * (1 if k % 2 == 0 else -1)
        observations = [{"symbol": db.loaded.symbols[j],
                         "price": f"{db.synthetic.spot[j] * move:.4f}",
                         "observed_at": timezone.now().isoformat()} for j in moved]
        seconds = _tick(db, observations, touched)
        if seconds is None:
            break
        times.append(seconds)
        time.sleep(0.2)  # ticks apart: each its own debounced sweep
    ms = np.array(times) * 1e3
    yield {"bench": "tick_to_snapshot", "accounts": db.loaded.accounts,
           "accounts_touched": len(touched), "underlyings_moved": len(moved),
           "ticks": len(times), "timed_out": len(times) < TICKS,
           "p50_ms": round(float(np.percentile(ms, 50)), 1) if times else None,
           "p95_ms": round(float(np.percentile(ms, 95)), 1) if times else None,
           "max_ms": round(float(ms.max()), 1) if times else None,
           "debounce_s": float(settings.MARGIN_SWEEP_DEBOUNCE_S),
           "target_p95_ms": 1000, "aim_p95_ms": 250,
           "note": "load_prices on the most held underlyings (together 1 % of the accounts) "
                   "until every holder's current margin is committed at the load's version; "
                   "the debounce is leading-edge (margin.dirty): a tick after a quiet spell "
                   "is swept at once, one within debounce_s of the last sweep's start waits "
                   "for the window's end (ticks here are 0.2 s apart after each completes)"}


BENCHES.extend([bench_end_to_end_recompute, bench_tick_to_snapshot])
