#!/usr/bin/env bash
# Point-in-time restore drill for the fleet (scripts/fleet.sh up must be running; docs/deployment.md).
#
#   scripts/fleet_restore_drill.sh [--rows-after N] [--keep]
#
# 1. writes a few grants (billing's own command), then marks an instant T on the primary: the ledger's
#    row count, max id, sum and a digest of every row, and T = clock_timestamp() right after;
# 2. writes N more grants after T (they must not come back);
# 3. switches the WAL segment and waits until the archive holds it;
# 4. restores the fleet's latest base backup into a new folder, replays the archived WAL up to T
#    (recovery_target_time) and promotes it, on a spare port (FLEET_RESTORE_PORT, default 15434);
# 5. runs `manage.py check_ledger` there, and compares its ledger with the primary's at T.
# Exit status 0 only when check_ledger is clean and the ledger is exactly the one marked at T. Run it on
# a quiet fleet (no load): a commit landing between the mark and T would be restored but not marked.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

FLEET_DIR=${FLEET_DIR:-$ROOT/.fleet}
FLEET_PG_PORT=${FLEET_PG_PORT:-15432}
FLEET_RESTORE_PORT=${FLEET_RESTORE_PORT:-15434}
FLEET_DB=${FLEET_DB:-creditdesk}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
VENV_BIN=${VENV_BIN:-$ROOT/.venv/bin}
ROWS_AFTER=5
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rows-after) ROWS_AFTER=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done

PG_DIR=$FLEET_DIR/pg
ARCHIVE=$PG_DIR/archive
say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
sql() {  # sql PORT STATEMENT: one value
  "$PG_BIN/psql" -h 127.0.0.1 -p "$1" -U postgres -d "$FLEET_DB" -AtqX -v ON_ERROR_STOP=1 -c "$2"
}
# The ledger as one line: rows, max id, sum of amounts, and an md5 over every row's money columns.
LEDGER="SELECT count(*) || ' rows, max id ' || coalesce(max(id), 0) || ', sum ' || coalesce(sum(amount), 0)
  || ', md5 ' || md5(coalesce(string_agg(id || ':' || wallet_id || ':' || kind || ':' || amount || ':'
  || balance_after, ',' ORDER BY id), '')) FROM billing_credittransaction"

"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$FLEET_PG_PORT" || die "the fleet's primary is not running: scripts/fleet.sh up"
base=$(ls -d "$PG_DIR"/base/*/ 2>/dev/null | sort | tail -n 1)
[ -n "$base" ] || die "no base backup in $PG_DIR/base: scripts/fleet.sh backup"
fleet_env=$(bash scripts/fleet.sh env | sed 's/^export //')
manage() {  # manage PORT ARGS...: manage.py with the fleet's settings, directly on that server
  local port=$1; shift
  env $fleet_env DATABASE_URL="postgres://postgres@127.0.0.1:$port/$FLEET_DB" "$VENV_BIN/python" manage.py "$@"
}
grant() { manage "$FLEET_PG_PORT" grant_credits bob "$1" --reason "$2" --initiated-by support >/dev/null; }

started=$(date +%s)
say "base backup: $base"
for n in 1 2 3; do grant "1.0000$n" "restore drill: before the mark ($n)"; done
marked=$(sql "$FLEET_PG_PORT" "$LEDGER")
target=$(sql "$FLEET_PG_PORT" "SELECT clock_timestamp()")
say "mark T = $target: $marked"
sleep 1
for n in $(seq 1 "$ROWS_AFTER"); do grant "2.0000$n" "restore drill: after the mark ($n)"; done
now=$(sql "$FLEET_PG_PORT" "$LEDGER")
say "primary now (after $ROWS_AFTER more grants): $now"

segment=$(sql "$FLEET_PG_PORT" "SELECT pg_walfile_name(pg_switch_wal())")
for _ in $(seq 1 300); do
  [ -f "$ARCHIVE/$segment" ] && break
  sleep 0.2
done
[ -f "$ARCHIVE/$segment" ] || die "WAL segment $segment was not archived within 60 s (archive_command, $ARCHIVE)"
say "archived through WAL segment $segment"

restore=$PG_DIR/restore-$(date -u +%Y%m%dT%H%M%SZ)
as_pg cp -a "$base" "$restore"
as_pg rm -f "$restore/postmaster.pid" "$restore/standby.signal"
as_pg tee -a "$restore/postgresql.auto.conf" >/dev/null <<EOF
# scripts/fleet_restore_drill.sh: replay the archive up to T, then open read-write; archive nothing.
port = $FLEET_RESTORE_PORT
archive_mode = off
restore_command = 'cp $ARCHIVE/%f %p'
recovery_target_time = '$target'
recovery_target_action = 'promote'
EOF
as_pg touch "$restore/recovery.signal"
cleanup() {
  if [ "$KEEP" = 0 ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$restore" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$restore"
  else  # left running to look at (it was stopped before it was said to be kept)
    say "kept running: $restore on port $FLEET_RESTORE_PORT (stop: pg_ctl -D $restore stop)"
  fi
}
trap cleanup EXIT
as_pg "$PG_BIN/pg_ctl" -D "$restore" -l "$FLEET_DIR/log/restore.log" -w -t 120 start >/dev/null \
  || die "the restored server did not start: $FLEET_DIR/log/restore.log"
for _ in $(seq 1 600); do
  [ "$(sql "$FLEET_RESTORE_PORT" "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ] && break
  sleep 0.2
done
[ "$(sql "$FLEET_RESTORE_PORT" "SELECT pg_is_in_recovery()")" = f ] || die "recovery did not finish within 120 s"
say "restored to T on port $FLEET_RESTORE_PORT in $(( $(date +%s) - started )) s since the drill began"

check=$(manage "$FLEET_RESTORE_PORT" check_ledger 2>&1) || die "check_ledger on the restored server: $check"
say "check_ledger on the restored server: $check"
restored=$(sql "$FLEET_RESTORE_PORT" "$LEDGER")
say "restored ledger: $restored"
[ "$restored" = "$marked" ] || die "the restored ledger differs from the primary's at T ($marked)"
[ "$restored" != "$now" ] || die "the restored ledger includes the grants made after T"
say "OK: the restored ledger equals the primary's at T, without the $ROWS_AFTER grants made after it"
