#!/usr/bin/env bash
# Embedded smoke, as a new user would try it: with DATABASE_URL unset, `make run` starts the embedded
# PostgreSQL (.pgdata/), migrates, seeds and serves; one billed turn goes through the HTTP API
# (register, session, turn: 201 with usage.cost); a SIGTERM to make then ends it all, and no postgres
# process of this checkout may remain. Run it with no other `make run` up in this checkout (a second
# run would share the server and keep it up). Called by .ci/run; SMOKE_PORT picks the port.
set -euo pipefail
cd "$(dirname "$0")/.."
unset DATABASE_URL
PORT=${SMOKE_PORT:-18765}
BASE="http://127.0.0.1:$PORT/api/v1"
DATA="${EMBEDDED_PG_DIR:-$PWD/.pgdata}/data"
LOG=$(mktemp)
began=$(date +%s%N)

make install >/dev/null
setsid make run PORT="$PORT" >"$LOG" 2>&1 &
MAKE_PID=$!
fail() {
  echo "smoke: FAILED: $*" >&2
  echo "--- make run output ---" >&2
  tail -n 40 "$LOG" >&2
  kill -TERM "$MAKE_PID" 2>/dev/null || true
  exit 1
}
json() { .venv/bin/python -c "import json, sys; print(json.load(sys.stdin)$1)"; }

for _ in $(seq 1 240); do
  curl -sf "$BASE/health" >/dev/null && break
  kill -0 "$MAKE_PID" 2>/dev/null || fail "make run ended before serving"
  sleep 0.5
done
curl -sf "$BASE/health" >/dev/null || fail "no answer on $BASE/health after 120 s"
grep -m1 "embedded-pg: PostgreSQL on" "$LOG" | sed 's/^/smoke: /'

# The server and its children, to check afterwards that every one of them is gone.
POSTMASTER=$(head -n 1 "$DATA/postmaster.pid")
SERVER_PIDS="$POSTMASTER $(pgrep -P "$POSTMASTER" | tr '\n' ' ')"

user="smoke$(date +%s%N)"
token=$(curl -sf -H 'Content-Type: application/json' "$BASE/auth/register" \
  -d "{\"username\": \"$user\", \"email\": \"$user@example.com\", \"password\": \"a-Long-smoke-pass-42\"}" \
  | json '["token"]') || fail "register"
session=$(curl -sf -H "Authorization: Token $token" -H 'Content-Type: application/json' \
  "$BASE/sessions/" -d '{}' | json '["id"]') || fail "create a session"
status=$(curl -s -o "$LOG.turn" -w '%{http_code}' -H "Authorization: Token $token" \
  -H 'Content-Type: application/json' "$BASE/sessions/$session/turns/" -d '{"content": "hi"}')
[ "$status" = 201 ] || fail "turn answered $status: $(cat "$LOG.turn")"
cost=$(json '["usage"]["cost"]' <"$LOG.turn") || fail "no usage.cost in $(cat "$LOG.turn")"
echo "smoke: billed turn: 201, usage.cost = $cost"

kill -TERM "$MAKE_PID"
for _ in $(seq 1 600); do kill -0 "$MAKE_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$MAKE_PID" 2>/dev/null && fail "make run still running 60 s after SIGTERM"
grep -q "embedded-pg: PostgreSQL stopped" "$LOG" || fail "the embedded server was not stopped"

left() {  # processes of this checkout's server still alive (zombies awaiting their reaper are gone)
  for pid in $SERVER_PIDS; do
    state=$(ps -o stat= -p "$pid" 2>/dev/null || true)
    [ -n "$state" ] && [ "${state#Z}" = "$state" ] && echo "$pid"
  done
  pgrep -f -- "-D $DATA" || true
}
for _ in $(seq 1 100); do [ -z "$(left)" ] && break; sleep 0.1; done
[ -z "$(left)" ] || fail "postgres processes left: $(left | tr '\n' ' ')"
rm -f "$LOG" "$LOG.turn"
echo "smoke: passed in $((($(date +%s%N) - began) / 1000000)) ms; no postgres process of the checkout left"
