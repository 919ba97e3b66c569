"""A backup is only as good as its restore: dump the database with pg_dump (custom format, as
README "Production" says), restore it into a fresh database with pg_restore, and the restored
audit trail verifies (`manage.py verify_audit_chain`) with its append-only guard in place."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings

from tests.integration.conftest import REPO, _test_database_url


def _pg_env() -> dict[str, str]:
    from django.db import connection

    params = connection.settings_dict
    env = {**os.environ, "PGHOST": params["HOST"] or "127.0.0.1",
           "PGPORT": str(params["PORT"] or 5432), "PGUSER": params["USER"] or "postgres"}
    if params["PASSWORD"]:
        env["PGPASSWORD"] = params["PASSWORD"]
    return env


def _run(*command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)}: {done.stderr or done.stdout}"
    return done


@pytest.mark.django_db(transaction=True)
def test_a_dump_restored_into_a_fresh_database_verifies(tmp_path):
    from django.db import connection

    from brokerage.models import AuditEvent
    from tests.factories import make_world, value_each_firms_account

    value_each_firms_account(make_world())  # audit events of every kind, snapshot digests too
    events = AuditEvent.objects.count()
    assert events > 10
    source = connection.settings_dict["NAME"]
    restored = f"{source}_restored_{uuid.uuid4().hex[:8]}"
    env = _pg_env()
    dump = tmp_path / "pmargin.dump"
    _run("pg_dump", "--format=custom", "--no-owner", f"--file={dump}", source, env=env)
    _run("createdb", restored, env=env)
    try:
        _run("pg_restore", "--no-owner", "--exit-on-error", f"--dbname={restored}", str(dump),
             env=env)
        url = urlunsplit(urlsplit(_test_database_url())._replace(path=f"/{restored}"))
        # the verifier reads this test's anchors, not those of a demo run in the same checkout
        verified = subprocess.run([sys.executable, "manage.py", "verify_audit_chain"], cwd=REPO,
                                  env={**os.environ, "DATABASE_URL": url,
                                       "AUDIT_ANCHOR_DIR": str(settings.AUDIT_ANCHOR_DIR)},
                                  capture_output=True, text=True, timeout=300)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        lines = verified.stdout.splitlines()
        assert lines and all(": OK (" in line for line in lines), verified.stdout
        assert sum(int(line.split("OK (")[1].split()[0]) for line in lines) == events
        # The append-only guard came back with the rows: the restored trail refuses an edit.
        edit = subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-d", restored, "-c",
                               "UPDATE brokerage_auditevent SET event_type = 'forged'"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert edit.returncode != 0 and "append-only" in (edit.stderr + edit.stdout).lower(), \
            edit.stderr
    finally:
        subprocess.run(["dropdb", "--if-exists", restored], env=env, capture_output=True,
                       timeout=120)
