# Two commands for a new user: `make demo` and `make test` (see README.md).
PY        ?= python3.11
VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
PG_URL    ?= postgres://postgres@127.0.0.1:5432/pmargin
BROKER    ?= redis://127.0.0.1:6379/0

# Production settings are the default (brokerage/settings.py); each target below says what it
# runs under: the demo, the tests and the benches are development runs over plain HTTP.
DEV_ENV   := DJANGO_DEBUG=1

.PHONY: demo demo-code test bench bench-e2e lint schema audit-deps clean serve loadtest

# The audit trail's keys (README "The audit trail's keys and anchors"). The demo and the benches
# use the development keys generated once into var/ (DJANGO_DEBUG=1); the suite uses its own
# fixed, non-secret HMAC key (its signing key is var/'s; each test sends its checkpoints to a
# temporary AUDIT_ANCHOR_DIR). Production sets real ones.
TEST_AUDIT_ENV := AUDIT_HMAC_KEY_ID=test \
	AUDIT_HMAC_KEY=7465737420686d6163206b6579206f6e6c7920666f72207468652073756974652e

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The embedded default: SQLite in the repo, Celery eager (no broker), one process. Only here is
# the published demo password accepted (PMARGIN_DEMO=1); staff log in with the code that
# `manage.py demo_otp_code USERNAME` prints (the same env: see the seed's output).
DEMO_ENV  := env -u DATABASE_URL -u CELERY_BROKER_URL $(DEV_ENV) PMARGIN_DEMO=1
demo: $(STAMP)
	$(DEMO_ENV) $(BIN)/python manage.py migrate --noinput -v0
	$(DEMO_ENV) $(BIN)/python manage.py seed_demo
	$(DEMO_ENV) $(BIN)/python manage.py runserver 127.0.0.1:8000

# The code a demo staff user's authenticator shows now: make demo-code WHO=northwind.risk1
WHO ?= northwind.risk1
demo-code: $(STAMP)
	@$(DEMO_ENV) $(BIN)/python manage.py demo_otp_code $(WHO)

# The whole suite against real PostgreSQL and a real Redis broker on this machine.
test: $(STAMP)
	$(DEV_ENV) DATABASE_URL=$(PG_URL) CELERY_BROKER_URL=$(BROKER) $(TEST_AUDIT_ENV) $(BIN)/python -m pytest -q -p no:cacheprovider

# Engine benches, then the database path (its own PostgreSQL database and Celery worker).
# ONLY=name,name runs only those; BENCH_ACCOUNTS=2000 a smaller book for the database benches.
ONLY ?=
bench: $(STAMP)
	$(DEV_ENV) $(BIN)/python -m margin.bench $(ONLY)

bench-e2e: $(STAMP)
	$(MAKE) bench ONLY=end_to_end_recompute,tick_to_snapshot

lint: $(STAMP)
	$(BIN)/ruff check .

# The committed OpenAPI document (docs/openapi.yaml), regenerated after an API change; the suite
# fails while it differs from what the code generates (tests/brokerage/test_schema_drift.py).
schema: $(STAMP)
	env -u DATABASE_URL -u CELERY_BROKER_URL $(DEV_ENV) $(BIN)/python manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml

# Known vulnerabilities of the pinned packages, from PyPI's advisory data: run before a release
# (not part of .ci/run, whose result changes only with the code). Needs the network.
audit-deps: $(STAMP)
	$(BIN)/pip-audit --requirement requirements.lock --no-deps --disable-pip --vulnerability-service pypi --progress-spinner off

# The production stack on this machine (README "Production"): gunicorn, a Celery worker per queue
# and beat, production settings over plain HTTP at 127.0.0.1:8000, on PostgreSQL (database
# created, migrated, demo loaded) and Redis. Ctrl-C stops it all.
SERVE_PG_URL ?= $(PG_URL)
serve: $(STAMP)
	DATABASE_URL=$(SERVE_PG_URL) CELERY_BROKER_URL=$(BROKER) $(BIN)/python -m operations.serve

# Locust against `make serve`'s stack (loopback only): LOADTEST_USERS users for LOADTEST_SECONDS seconds, one second
# of think time; one JSON line per endpoint (`bench` = `loadtest`). Locust has its own venv.
LOADTEST_USERS   ?= 20
LOADTEST_SECONDS ?= 60
LOADTEST_VENV := loadtest/.venv
$(LOADTEST_VENV)/.installed: loadtest/requirements.lock
	test -x $(LOADTEST_VENV)/bin/python || $(PY) -m venv $(LOADTEST_VENV)
	$(LOADTEST_VENV)/bin/python -m pip install --quiet -r loadtest/requirements.lock
	touch $@
loadtest: $(STAMP) $(LOADTEST_VENV)/.installed
	DATABASE_URL=$(SERVE_PG_URL) $(BIN)/python loadtest/run.py --users $(LOADTEST_USERS) --seconds $(LOADTEST_SECONDS)

clean:
	rm -rf $(VENV) $(LOADTEST_VENV) db.sqlite3 .pytest_cache .serve staticfiles
