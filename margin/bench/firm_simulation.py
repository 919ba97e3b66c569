"""``firm_simulation``: the desk's firm-wide price-move simulator (``margin.simulation.simulate``,
what /desk/risk/simulate/ calls) on the 100,000-account synthetic book in PostgreSQL, the
database the end-to-end benches build (``margin.bench.database``: its own database, the book
loaded with COPY).

Three lines, each timed around the one call the view makes: the first move of the most held
underlying by -10 % reads the firm's books from the database (``books`` = "database"); the same
move again, and the named scenario "2008-10" across every underlying, find them resident in
the process (``books`` = "resident cache": kept while the firm's margin version does not move).
``seconds`` is the whole answer; ``load_seconds`` reading and preparing the books (0 when
resident), ``compute_seconds`` the shock, the revaluation and the answer's rows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from .runs import BENCHES, BenchContext

TARGET_S, AIM_S = 5.0, 1.0


def bench_firm_simulation(ctx: BenchContext) -> Iterable[dict]:
    from .database import _database

    db = _database(ctx)  # sets Django up on the bench's database first
    from margin.simulation import forget_books, simulate

    firm = db.loaded.firm
    symbol = db.loaded.symbols[db.moved[0]]
    forget_books()
    for ask in ({"symbol": symbol, "move": -0.10}, {"symbol": symbol, "move": -0.10},
                {"scenario": "2008-10"}):
        started = time.perf_counter()
        result = simulate(firm, **ask)
        seconds = time.perf_counter() - started
        yield {"bench": "firm_simulation", "accounts": result.accounts,
               "simulated": result.simulated, "shock": result.shock.label,
               "seconds": round(seconds, 3), "load_seconds": round(result.load_seconds, 3),
               "compute_seconds": round(result.compute_seconds, 3), "books": result.books,
               "in_deficit_after": result.in_deficit_after,
               "newly_in_deficit": result.newly_in_deficit,
               "load_average": round(os.getloadavg()[0], 2), "target_s": TARGET_S,
               "aim_s": AIM_S}


BENCHES.append(bench_firm_simulation)
