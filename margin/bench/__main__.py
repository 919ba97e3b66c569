"""``python -m margin.bench [NAME[,NAME] ...]``: print the benches' JSON lines."""

from margin.bench import (
    database,  # noqa: F401  (registers the database benches)
    firm_simulation,  # noqa: F401  (registers the firm-wide simulator's bench)
    pretrade,  # noqa: F401  (registers the pre-trade check's bench)
)
from margin.bench.runs import main

raise SystemExit(main())
