"""`make serve`: the production stack on this machine, in the foreground until Ctrl-C.

gunicorn (the web, with static files by WhiteNoise), one Celery worker per queue (`sweep` for
the margin chunks, `default` for the rest) and one beat, all with production settings
(``DJANGO_DEBUG=0``) against the PostgreSQL database and Redis broker in the environment, over
plain HTTP at 127.0.0.1 (``SERVE_PLAIN_HTTP=1``: Secure cookies and the HTTPS redirect off, and
nothing else). Before starting it migrates, loads the demo (kept if already there) and
collects the static files. Each process runs in its own process group; when one exits, or on
Ctrl-C/SIGTERM, every group is stopped (SIGTERM, then SIGKILL after a grace period).

    python -m operations.serve            # DATABASE_URL and CELERY_BROKER_URL must be set
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".serve"  # the local secret key and prometheus' multiprocess files
GRACE_S = 20.0


def _local_secret(name: str, make: Callable[[], str]) -> Path:
    path = STATE / name
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path


def settings_environment() -> dict[str, str]:
    """The local stack's settings: production ones over plain HTTP with the demo, and the
    secrets it keeps (generated once into .serve/ unless the environment gives them). What every
    process of `make serve` runs under, and what a tool talking to its database uses
    (`make loadtest` issues its tokens with it, so its audit rows carry the stack's key)."""
    STATE.mkdir(exist_ok=True)
    key_file = _local_secret("secret_key", lambda: secrets.token_urlsafe(50))
    # Production settings refuse to start without the audit keys (issue 15).
    hmac_file = _local_secret("audit_hmac_key", lambda: secrets.token_hex(32))
    signing_file = _local_secret("audit_signing_key", lambda: secrets.token_hex(32))
    return {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or key_file.read_text(),
        "AUDIT_HMAC_KEY": os.environ.get("AUDIT_HMAC_KEY") or hmac_file.read_text(),
        "AUDIT_SIGNING_KEY": os.environ.get("AUDIT_SIGNING_KEY") or signing_file.read_text(),
        "AUDIT_ANCHOR_DIR": os.environ.get("AUDIT_ANCHOR_DIR") or str(STATE / "audit-anchors"),
        "SERVE_PLAIN_HTTP": "1",
        "PMARGIN_DEMO": "1",  # the demo data and its logins (brokerage.settings.DEMO)
        "DJANGO_ALLOWED_HOSTS": os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost"),
    }


def environment() -> dict[str, str]:
    for name in ("DATABASE_URL", "CELERY_BROKER_URL"):
        if not os.environ.get(name):
            sys.exit(f"make serve needs {name} (PostgreSQL and Redis): see README 'Production'")
    env = settings_environment()
    metrics_dir = STATE / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)  # a fresh run starts its counters at zero
    metrics_dir.mkdir()
    return {
        **env,
        "LOG_FORMAT": os.environ.get("LOG_FORMAT", "json"),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }


def processes(python: str) -> dict[str, list[str]]:
    celery = [python, "-m", "celery", "-A", "brokerage"]
    sweep_concurrency = os.environ.get("SWEEP_CONCURRENCY", "2")
    return {
        "web": [python, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"),
                "brokerage.wsgi:application"],
        "worker-sweep": [*celery, "worker", "-Q", "sweep", "-c", sweep_concurrency,
                         "-n", "sweep@%h", "-l", "INFO"],
        "worker-default": [*celery, "worker", "-Q", "default", "-c", "1", "-n", "default@%h",
                           "-l", "INFO"],
        "beat": [*celery, "beat", "-l", "INFO", "-s", str(STATE / "celerybeat-schedule")],
    }


def prepare(python: str, env: dict[str, str]) -> None:
    for step in (["migrate", "--noinput", "-v0"], ["seed_demo"],
                 ["collectstatic", "--noinput", "-v0"]):
        subprocess.run([python, "manage.py", *step], cwd=REPO, env=env, check=True)


def stop(running: dict[str, subprocess.Popen]) -> None:
    for process in running.values():
        _signal(process, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for process in running.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal(process, signal.SIGKILL)  # the group whole: pool children too


def _signal(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def create_database(url: str) -> None:
    """The database named by DATABASE_URL, created when it does not exist yet."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              [name]).fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def main() -> int:
    python = sys.executable
    env = environment()
    create_database(env["DATABASE_URL"])
    prepare(python, env)
    running = {name: subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True)
               for name, command in processes(python).items()}
    for stop_signal in (signal.SIGTERM, signal.SIGINT):  # SIGINT too: ignored when started in
        signal.signal(stop_signal, _interrupt)  # the background by a script, it is not here
    port = env.get("GUNICORN_BIND", "127.0.0.1:8000")
    print(f"serving on http://{port}/ (health: /healthz, /readyz; metrics: /metrics); "
          f"Ctrl-C stops {', '.join(running)}", file=sys.stderr, flush=True)
    try:
        while True:
            for name, process in running.items():
                if process.poll() is not None:
                    print(f"{name} exited ({process.returncode}): stopping the stack",
                          file=sys.stderr, flush=True)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        stop(running)


if __name__ == "__main__":
    sys.exit(main())
