"""The database path of ``make bench``: the synthetic book in PostgreSQL, swept by a real worker.

``end_to_end_recompute``: the end-of-day run (``margin.end_of_day.start_end_of_day``: every
account marked dirty and due for history) until every account's current margin is written and
its history snapshot stored, by the product's own sweep on a Celery worker; beside it the
engine-only full recompute of the same synthetic book (what ``pm_full_recompute`` measures), so
the cost of the database is a ratio.

``tick_to_snapshot``: a price load through the product's service (``load_prices``, what
``manage.py load_prices`` and the API call) on the underlyings held by 1 % of the accounts (the
most held first, as many as it takes: one synthetic underlying is held by about 0.2 %), until
each holder's current margin is committed at the version the load marked it with; 20 ticks. Twice: each tick a debounce window after the last (what one tick costs), then
ticks 0.2 s apart after each completes (each held to the window of the sweep before it).

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

    def __init__(self, worker: Worker, interval_s: float = 0.1, database: str | None = None
                 ) -> None:
        super().__init__(daemon=True)
        self.worker, self.interval_s, self.database = worker, interval_s, database
        self.rss_kb = self.pss_kb = 0
        self._cpu: dict[int, tuple[float, float]] = {}  # pid -> (first, last) CPU seconds
        #: the same for the PostgreSQL backends serving ``database`` (its server processes)
        self._db_cpu: dict[int, tuple[float, float]] = {}
        self._done = threading.Event()
        self._conn = None
        self._sample_cpu(self.worker.pids())

    def _sample_cpu(self, pids: list[int], into: dict | None = None) -> None:
        into = self._cpu if into is None else into
        for pid in pids:
            used = _cpu_s(pid)
            if used is not None:
                into[pid] = (into.get(pid, (used, used))[0], used)

    @property
    def worker_cpu_s(self) -> float:
        return round(sum(last - first for first, last in self._cpu.values()), 2)

    @property
    def db_cpu_s(self) -> float:
        """CPU seconds of the database's server processes meanwhile (sampled: a backend that
        ends between two samples loses its last tenth of a second)."""
        return round(sum(last - first for first, last in self._db_cpu.values()), 2)

    def _backends(self) -> list[int]:
        if self.database is None:
            return []
        import psycopg

        if self._conn is None:  # one connection for the run: a new backend a second is load
            self._conn = psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True)
        return [pid for (pid,) in self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> "
            "pg_backend_pid()", [self.database])]

    def run(self) -> None:
        pids: list[int] = []
        backends: list[int] = []
        refreshed = 0.0
        while not self._done.is_set():
            if time.monotonic() - refreshed > 1.0:  # pool children may be replaced
                pids, refreshed = [os.getpid(), *self.worker.pids()], time.monotonic()
                backends = self._backends()
            sizes = [_memory_kb(pid) for pid in pids]
            self.rss_kb = max(self.rss_kb, sum(rss for rss, _ in sizes))
            self.pss_kb = max(self.pss_kb, sum(pss for _, pss in sizes))
            self._sample_cpu(pids[1:])
            self._sample_cpu(backends, self._db_cpu)
            self._done.wait(self.interval_s)
        self._sample_cpu(self.worker.pids())
        self._sample_cpu(backends, self._db_cpu)
        if self._conn is not None:
            self._conn.close()

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
    #: the synthetic book until it is loaded; then dropped (``_database``)
    synthetic: SyntheticBook | None
    loaded: Any = None  # margin.bench.loader.LoadedBook
    #: the underlyings a tick moves (``moved_underlyings``) and their synthetic spots
    moved: list[int] = field(default_factory=list)
    moved_spots: list[float] = field(default_factory=list)
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
    db.moved = moved_underlyings(db.synthetic)
    db.moved_spots = [float(db.synthetic.spot[j]) for j in db.moved]
    # The peaks sum this process's memory with the worker's: the book is the loader's input,
    # not the system's (150 MB at 100k accounts); the engine-only figure makes it again.
    db.synthetic = None
    _release_freed_memory()
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


def _dirty(firm_id: int) -> bool:
    from django.db.models import F

    return _current_rows(firm_id).filter(dirty_version__gt=F("computed_version")).exists()


def _release_freed_memory() -> None:
    """Give the loader's freed memory back to the system: the peaks sum this process's RSS
    with the worker's, and glibc keeps a freed heap mapped (the COPY buffers of 1.8 million
    positions: 570 MB of RSS where the book itself is some 60 MB)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


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
    memory = MemoryPeak(db.worker, database=db.name)
    memory.start()
    t0 = time.perf_counter()
    start_end_of_day(firm=firm, calendar="XNYS", session=exchange_date(), now=timezone.now())
    # Polled with EXISTS (the first dirty row found ends it): a count walks every dirty row,
    # 100,000 at the start, ten times a second, on the cores the run is measured on.
    dirty = True
    while dirty and time.perf_counter() - t0 < timeout:
        time.sleep(0.1)
        dirty = _dirty(firm.pk)
    seconds = time.perf_counter() - t0
    left = _dirty_count(firm.pk) if dirty else 0
    rss_mb, pss_mb = memory.stop()
    snapshots = MarginSnapshot.cross_firm.for_compliance(
        reason="the bench counts its own firm's snapshots").filter(
        firm=firm, reason="end_of_day").count()
    completed = (n - left) / n
    line = {
        "accounts": n, "positions": db.loaded.positions, "seconds": round(seconds, 2),
        "snapshots": snapshots, "snapshots_per_s": round(snapshots / seconds, 1),
        "peak_rss_mb": rss_mb, "peak_pss_mb": pss_mb, "worker_cpu_s": memory.worker_cpu_s,
        "db_cpu_s": memory.db_cpu_s,
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
    line = db.end_of_day or run_end_of_day(db)
    # after the run (the worker idles: a quiet machine), on the book made again (seeded)
    n = bench_accounts()
    engine_s = engine_only_seconds(make_book(n_accounts=n,
                                             n_positions=POSITIONS_PER_ACCOUNT * n))
    yield {"bench": "end_to_end_recompute", **line, "engine_only_s": round(engine_s, 4),
           "db_over_engine_ratio": round(line["seconds"] / engine_s, 1),
           "load_s": round(db.load_s, 1), "target_s": 30.0, "aim_s": 10.0, "target_mb": 2048,
           "note": "end-of-day run through a real prefork worker: every account's current "
                   "margin and history snapshot written; peak_rss_mb sums the RSS of the bench "
                   "process and the worker's processes (sampled: shared pages count once per "
                   "process), peak_pss_mb their PSS; engine_only_s is pm_full_recompute "
                   "on the same synthetic book"}


# --------------------------------------------------------------------------- ticks


def moved_underlyings(sb: SyntheticBook, share: float = HOLDER_SHARE) -> list[int]:
    """The most held underlyings, as many as it takes for their holders to reach ``share``
    of the accounts (indexes into the synthetic book's underlyings)."""
    from .loader import netted_positions

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

    db = _database(ctx)  # Django is set up here: the product's modules import after it
    from margin.dirty import holders_of

    if not db.end_of_day:
        run_end_of_day(db)  # the book valued once first, as every morning finds it
    if db.end_of_day["timed_out"]:
        yield {"bench": "tick_to_snapshot", "skipped": "the end-of-day run did not finish "
               f"within {db.end_of_day['timeout_s']} s: the book is not valued yet"}
        return
    moved = db.moved
    ids = [int(db.loaded.underlying_ids[j]) for j in moved]
    touched = sorted(_current_rows(db.loaded.firm.pk).filter(
        account_id__in=holders_of(ids)).values_list("account_id", flat=True))
    debounce = float(settings.MARGIN_SWEEP_DEBOUNCE_S)

    def series(pause_s: float) -> list[float]:
        times: list[float] = []
        for k in range(TICKS):
            move = 1 + TICK_MOVE * (1 if k % 2 == 0 else -1)
            observations = [{"symbol": db.loaded.symbols[j],
                             "price": f"{spot * move:.4f}",
                             "observed_at": timezone.now().isoformat()}
                            for j, spot in zip(moved, db.moved_spots, strict=True)]
            seconds = _tick(db, observations, touched)
            if seconds is None:
                break
            times.append(seconds)
            time.sleep(pause_s)
        return times

    def percentiles(times: list[float], prefix: str = "") -> dict[str, float | None]:
        ms = np.array(times) * 1e3
        return {f"{prefix}{name}_ms": round(float(f(ms)), 1) if times else None
                for name, f in (("p50", lambda a: np.percentile(a, 50)),
                                ("p95", lambda a: np.percentile(a, 95)), ("max", np.max))}

    # Each tick after the last sweep's debounce window: what one tick costs. Then ticks 0.2 s
    # after each other completes: each waits for the window of the sweep before it (at most
    # one sweep per window is the debounce's point), so their latency is the window's.
    spaced = series(debounce + 0.2)
    back_to_back = series(0.2)
    yield {"bench": "tick_to_snapshot", "accounts": db.loaded.accounts,
           "accounts_touched": len(touched), "underlyings_moved": len(moved),
           "ticks": len(spaced), "timed_out": len(spaced) < TICKS
           or len(back_to_back) < TICKS, **percentiles(spaced),
           **percentiles(back_to_back, "back_to_back_"),
           "debounce_s": debounce, "target_p95_ms": 1000, "aim_p95_ms": 250,
           "note": "load_prices on the most held underlyings (together 1 % of the accounts) "
                   "until every holder's current margin is committed at the load's version; "
                   "p50/p95/max: ticks each a debounce window after the last (swept at once, "
                   "the debounce is leading-edge: margin.dirty); back_to_back_*: ticks 0.2 s "
                   "after each completes, each held to the end of the last sweep's window"}


BENCHES.extend([bench_end_to_end_recompute, bench_tick_to_snapshot])
