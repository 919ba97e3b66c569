"""`make loadtest`: locust against `make serve`'s stack on this machine, then one JSON line per
endpoint (``bench`` = ``loadtest``): requests per second, p50 and p95 in ms, failures.

Loopback only (the host must be 127.0.0.1, ::1 or localhost), a fixed number of users started
at once, a fixed number of seconds, one second of think time per user (loadtest/locustfile.py).
It issues two read-only API tokens valid for a day (a staff user of each demo firm, audited as
any token) and uses the demo's client logins; the pre-trade check runs only where its route
exists, and a line says so when it does not.

    DATABASE_URL=<the serve database> .venv/bin/python loadtest/run.py --users 20 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
LOCUST = REPO / "loadtest" / ".venv" / "bin" / "locust"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
TARGET_P95_MS = 500.0
STAFF = {"NO": "northwind.risk1", "BL": "bluewater.risk1"}
CLIENTS = [f"{firm}.{login}" for firm in ("northwind", "bluewater")
           for login in ("client1", "client2", "client3", "applicant", "crypto")]
PRETRADE_PATH = "/api/v1/accounts/NO100001/pre-trade"
SETUP = ("login page", "login", "/portal/")  # as loadtest/locustfile.py names them


def django_side() -> tuple[dict[str, str], bool, str]:
    """Tokens for the API users, whether the pre-trade route exists, the demo password."""
    sys.path.insert(0, str(REPO))
    from operations.serve import settings_environment

    os.environ.update(settings_environment())  # `make serve`'s settings and audit keys
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerage.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.urls import Resolver404, resolve

    from brokerage.tokens import create_api_token
    from demo.seed import PASSWORD

    tokens = {}
    for prefix, username in STAFF.items():
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            sys.exit(f"no demo user {username}: start `make serve` (it loads the demo) first")
        tokens[prefix] = create_api_token(user=user, actor=None, read_only=True,
                                          expires_days=1).secret
    try:
        match = resolve(PRETRADE_PATH)
        pretrade = "post" in getattr(match.func, "actions", {}) or hasattr(
            getattr(match.func, "view_class", None), "post")
    except Resolver404:
        pretrade = False
    return tokens, pretrade, PASSWORD


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 1)


def summary(results: Path, *, users: int, seconds: int) -> list[dict]:
    """One line per endpoint and one for the measured endpoints together (`all`), counted from
    the end of the last login (setup, reported apart) to the end of the run."""
    recorded = json.loads(results.read_text())
    setup_end = max((end for name in SETUP for end, _, _ in recorded.get(name, [])), default=0.0)
    last = max((end for rows in recorded.values() for end, _, _ in rows), default=setup_end)
    window = max(1e-9, last - setup_end)
    groups: list[tuple[str, list, bool]] = []
    measured_all: list = []
    for name, rows in sorted(recorded.items()):
        setup = name in SETUP
        kept = rows if setup else [row for row in rows if row[0] > setup_end]
        groups.append((name, kept, setup))
        if not setup:
            measured_all += kept
    groups.append(("all", measured_all, False))
    lines = []
    for name, rows, setup in groups:
        times = [took for _, took, _ in rows]
        errors = [failure for _, _, failure in rows if failure]
        line = {"bench": "loadtest", "endpoint": name, "users": users, "seconds": seconds,
                # the machine is shared: its load at the end of the run says what else ran
                "load_average_1m": round(os.getloadavg()[0], 1),
                "requests": len(rows), "failures": len(errors),
                "p50_ms": _percentile(times, 0.50) if times else None,
                "p95_ms": _percentile(times, 0.95) if times else None}
        if errors and name != "all":
            line["errors"] = sorted(set(errors))[:5]
        if setup:
            line["setup"] = True  # once per user as it starts, not measured
        else:
            line["measured_s"] = round(window, 1)
            line["requests_per_s"] = round(len(rows) / window, 2)
            line["target"] = f"0 errors, p95 < {TARGET_P95_MS:.0f} ms"
            line["met"] = not errors and bool(times) and line["p95_ms"] < TARGET_P95_MS
        lines.append(line)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default=os.environ.get("LOADTEST_HOST", "http://127.0.0.1:8000"))
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=60)
    options = parser.parse_args()
    if urlsplit(options.host).hostname not in LOOPBACK:
        sys.exit(f"loadtest runs against this machine only (loopback), not {options.host}")
    try:
        with urllib.request.urlopen(f"{options.host}/healthz", timeout=5) as answer:
            assert answer.status == 200
    except Exception:
        sys.exit(f"nothing answers {options.host}/healthz: start `make serve` first")
    tokens, pretrade, password = django_side()
    if not pretrade:
        print(json.dumps({"bench": "loadtest", "endpoint": "/api/v1/accounts/[number]/pre-trade",
                          "run": False,
                          "why": "POST /api/v1/accounts/{number}/pre-trade is not routed"}),
              flush=True)
    env = {**os.environ, "LOADTEST_TOKENS": json.dumps(tokens),
           "LOADTEST_CLIENTS": json.dumps(CLIENTS), "LOADTEST_PASSWORD": password,
           "LOADTEST_PRETRADE": "1" if pretrade else "0"}
    with tempfile.TemporaryDirectory(prefix="loadtest-") as folder:
        results = Path(folder) / "results.json"
        env["LOADTEST_RESULTS"] = str(results)
        done = subprocess.run(
            [str(LOCUST), "-f", str(REPO / "loadtest" / "locustfile.py"), "--headless",
             "--host", options.host, "--users", str(options.users),
             "--spawn-rate", str(options.users), "--run-time", f"{options.seconds}s",
             "--stop-timeout", "5", "--only-summary",
             "--loglevel", "WARNING", "--exit-code-on-error", "0"],
            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if not results.exists():
            sys.stderr.write(done.stderr)
            return 1
        lines = summary(results, users=options.users, seconds=options.seconds)
    for line in lines:
        print(json.dumps(line), flush=True)
    return 0 if all(line["met"] for line in lines if line["endpoint"] == "all") else 1


if __name__ == "__main__":
    sys.exit(main())
