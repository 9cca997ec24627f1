# creditdesk: `make run` serves the product, `make test` runs the suite. Both install what they need.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
MANAGE := $(BIN)/python manage.py
# Runs its arguments with a database: DATABASE_URL's, or (unset) an embedded PostgreSQL in .pgdata/
# (EMBEDDED_PG_DIR) that is started before and stopped after, also on Ctrl-C / SIGTERM. `exec` lets
# make's SIGTERM reach it directly. See scripts/embedded_pg.py.
WITH_DB := exec $(BIN)/python scripts/embedded_pg.py

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

# Local product: embedded PostgreSQL and the offline echo provider unless DATABASE_URL / LLM_PROVIDER
# say otherwise. RUN_CMD is one shell command line run inside the database's lifetime: the background
# worker (notifications, periodic chores) runs beside the web server, and `banner` prints the URLs and
# demo logins once the server listens (migrate and the demo seed log only warnings); whatever is left
# in the command's process group when the server ends is terminated before the database stops. The
# server is uvicorn, as in production, so chat answers stream (runserver would buffer them); it reloads
# on code changes in the apps. Logs are one readable line each in DEBUG (LOG_FORMAT); uvicorn itself
# says only warnings, so an idle `make run` prints nothing.
SOURCE_DIRS := config core accounts billing sessions_app reporting notifications web
# Buying credits: in DEBUG, unless STRIPE_API_KEY is set (environment or .env), the local Stripe double
# (scripts/stripe_double.py, docs/purchases.md) runs beside the server and the settings point at it.
STRIPE_DOUBLE_PORT ?= 12111
ifeq ($(STRIPE_API_KEY)$(shell grep -s '^STRIPE_API_KEY=.' .env),)
ifneq ($(DEBUG),false)
STRIPE_DOUBLE = $(BIN)/python scripts/stripe_double.py --port $(STRIPE_DOUBLE_PORT) --webhook-secret whsec_double \
	--webhook-url http://$(HOST):$(PORT)/api/v1/payments/stripe/webhook &
run: export STRIPE_API_KEY = sk_test_double
run: export STRIPE_WEBHOOK_SECRET = whsec_double
run: export STRIPE_API_BASE = http://127.0.0.1:$(STRIPE_DOUBLE_PORT)
endif
endif
RUN_CMD = LOG_LEVEL=WARNING $(MANAGE) migrate --noinput -v 0 && LOG_LEVEL=WARNING $(MANAGE) seed_demo -v 0 \
	&& { $(MANAGE) procrastinate worker & $(STRIPE_DOUBLE) $(MANAGE) banner --host $(HOST) --port $(PORT) & \
	     exec $(BIN)/uvicorn config.asgi:application --host $(HOST) --port $(PORT) --lifespan off \
	       --log-level warning --reload $(addprefix --reload-dir ,$(SOURCE_DIRS)); }
run: export DEBUG ?= true
run: install
	$(WITH_DB) sh -c '$(RUN_CMD)'

# Production-style server (scripts/serve.sh): uvicorn, every request on Django's WSGI handler's
# threads, a streamed turn relayed on the event loop (it holds no thread), behind WhiteNoise (set
# SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL: no embedded database here, settings refuse to start
# without it). docs/performance.md: why, measured.
serve: install
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py migrate_locked
	VENV_BIN=$(BIN) HOST=$(HOST) PORT=$(PORT) exec sh scripts/serve.sh

# The background worker (docs/notifications.md): webhook and email deliveries, periodic chores.
# Run one or more beside the web server, on any machine with the same settings; they connect by
# WORKER_DATABASE_URL when set (PostgreSQL itself, not PgBouncer), else DATABASE_URL.
worker: install
	$(BIN)/python manage.py procrastinate worker

test: install-dev
	@if [ -n "$$DATABASE_URL" ]; then echo "make test: database = $$DATABASE_URL"; \
	  else echo "make test: database = embedded PostgreSQL in .pgdata/ (DATABASE_URL unset)"; fi
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(WITH_DB) $(BIN)/pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

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
	$(BIN)/python bench/bench_server.py --hot

check-ledger: install
	$(WITH_DB) $(MANAGE) check_ledger

# The embedded server is stopped first (refused while a make run / make test uses it).
clean:
	if [ -d .pgdata ] && [ -x $(BIN)/python ]; then $(BIN)/python scripts/embedded_pg.py --stop; fi
	rm -rf $(VENV) .pgdata staticfiles .pytest_cache test-artifacts

# The reliability campaign at full size, by hand (make test runs a reduced size): schemathesis with
# RELIABILITY_EXAMPLES examples per operation and role, then load and faults through gunicorn on
# scratch PostgreSQL databases. Figures and what they prove: docs/reliability.md.
.PHONY: reliability
reliability: install-dev
	$(WITH_DB) sh -c 'RELIABILITY_EXAMPLES=$${RELIABILITY_EXAMPLES:-1000} $(BIN)/pytest -q tests/reliability/test_schemathesis.py \
	  && $(BIN)/python bench/load.py --full && $(BIN)/python bench/faults.py --full'
