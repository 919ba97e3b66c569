"""``python -m margin.bench [NAME ...]``: print the benches' JSON lines."""

from margin.bench.runs import main

raise SystemExit(main())
