#!/bin/sh
# The production server, as `make serve` runs it and bench/bench_server.py measures it: uvicorn with
# httptools and uvloop, WEB_CONCURRENCY processes (default 2, one per core here), each sending streams
# to Django's async handler and every other request to WEB_THREADS threads of its WSGI handler
# (config/asgi.py, core/asgi.py). No access log: the proxy in front keeps it (gunicorn keeps none either).
exec "${VENV_BIN:-.venv/bin}/uvicorn" config.asgi:application \
  --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" \
  --workers "${WEB_CONCURRENCY:-2}" \
  --http httptools --loop uvloop --no-access-log \
  --proxy-headers --timeout-graceful-shutdown 30
