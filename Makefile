# creditdesk: `make run` serves the product, `make test` runs the suite. Both install what they need.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test serve worker lint format install install-dev migrate seed check-ledger clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime-installed $@

install: $(VENV)/.runtime-installed
install-dev: $(VENV)/.dev-installed

# Local product: SQLite file and the offline echo provider unless DATABASE_URL / LLM_PROVIDER say otherwise.
run: export DEBUG ?= true
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

# Production-style server: gunicorn behind WhiteNoise (set SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL).
serve: install
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/gunicorn config.wsgi --bind $(HOST):$(PORT) --workers $${WEB_CONCURRENCY:-3} --access-logfile -

# The background worker (docs/notifications.md): webhook and email deliveries, periodic chores.
# Run one or more beside the web server, on any machine with the same settings; they connect by
# WORKER_DATABASE_URL when set (PostgreSQL itself, not PgBouncer), else DATABASE_URL.
worker: install
	$(BIN)/python manage.py procrastinate worker

test: install-dev
	@if [ -n "$$DATABASE_URL" ]; then echo "make test: database = $$DATABASE_URL"; \
	  else echo "make test: database = SQLite (set DATABASE_URL for PostgreSQL)"; fi
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Benchmarks (docs/performance.md) against a seeded PostgreSQL bench database, never the test ones:
#   createdb creditdesk_bench; DATABASE_URL=... manage.py migrate; DATABASE_URL=... bench/seed.py
bench: export DATABASE_URL = $(BENCH_DATABASE_URL)
bench: export SECRET_KEY ?= bench-not-secret
bench: export ALLOWED_HOSTS = testserver
bench: export LOG_LEVEL = WARNING
bench: install
	@test -n "$(BENCH_DATABASE_URL)" || { echo "make bench: set BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/creditdesk_bench"; exit 2; }
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python bench/bench_billing.py
	$(BIN)/python bench/bench_reads.py
	$(BIN)/python bench/bench_memory.py export
	$(BIN)/python bench/bench_memory.py check
	$(BIN)/python bench/bench_server.py

check-ledger: install
	$(BIN)/python manage.py check_ledger

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache test-artifacts

# The reliability campaign at full size, by hand (make test runs a reduced size): schemathesis with
# RELIABILITY_EXAMPLES examples per operation and role, then load and faults through gunicorn on
# scratch PostgreSQL databases. Figures and what they prove: docs/reliability.md.
.PHONY: reliability
reliability: install-dev
	RELIABILITY_EXAMPLES=$${RELIABILITY_EXAMPLES:-1000} $(BIN)/pytest -q tests/reliability/test_schemathesis.py
	$(BIN)/python bench/load.py --full
	$(BIN)/python bench/faults.py --full
