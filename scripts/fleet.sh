#!/usr/bin/env bash
# The fleet on one machine, on stock engines (docs/deployment.md): its own PostgreSQL primary (WAL
# archived, a base backup taken) and a streaming replica, PgBouncer in transaction mode in front of
# the primary, FLEET_APPS app instances (scripts/serve.sh), nginx in front of them on FLEET_PORT, and
# FLEET_WORKERS procrastinate workers connected to the primary directly.
#
#   scripts/fleet.sh up [--fresh]     start what is not running (--fresh: wipe FLEET_DIR first)
#   scripts/fleet.sh down             stop every process it started (pid files), nothing else; data kept
#   scripts/fleet.sh status           what runs, and the settings
#   scripts/fleet.sh restart NAME     NAME: app1, app2, worker1, worker2, pgbouncer, replica, nginx
#   scripts/fleet.sh stop NAME        the same names: stop one (drills)
#   scripts/fleet.sh env              the app's environment, as `export` lines (for manage.py by hand)
#   scripts/fleet.sh backup           a base backup now (the restore drill replays the archive from one)
#   scripts/fleet.sh rebuild-replica  the replica made again from the primary (one that cannot catch up)
#
# Data, logs and pid files live in FLEET_DIR (default .fleet/, gitignored). Every port can be moved
# by its variable; none of them is 5432 (the system cluster stays untouched) or 8000. `up` keeps the
# settings it ran with in FLEET_DIR/fleet.env for later commands (delete it to return to the defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

FLEET_DIR=${FLEET_DIR:-$ROOT/.fleet}
# What `up` resolved (ports, database, counts, secrets: every FLEET_* but FLEET_EXTRA_ENV, which each
# process keeps apart) is kept in FLEET_DIR/fleet.env: a later command in another shell (a 3 a.m.
# `restart app1`) runs with the fleet's own settings, not the defaults. The environment still wins.
if [ -f "$FLEET_DIR/fleet.env" ]; then
  while IFS= read -r saved; do
    saved_name=${saved%%=*}
    if [ -n "$saved_name" ] && [ -z "${!saved_name+set}" ]; then export "$saved"; fi
  done <"$FLEET_DIR/fleet.env"
fi
FLEET_PORT=${FLEET_PORT:-8080}
FLEET_PG_PORT=${FLEET_PG_PORT:-15432}
FLEET_REPLICA_PORT=${FLEET_REPLICA_PORT:-15433}
FLEET_PGBOUNCER_PORT=${FLEET_PGBOUNCER_PORT:-16432}
FLEET_APP_PORT_BASE=${FLEET_APP_PORT_BASE:-18000}  # app N listens on base + N
FLEET_WEBHOOK_PORT=${FLEET_WEBHOOK_PORT:-18090}    # bench/fleet_load.py's receiver
FLEET_APPS=${FLEET_APPS:-2}
FLEET_WORKERS=${FLEET_WORKERS:-2}
FLEET_PGBOUNCER_POOL_SIZE=${FLEET_PGBOUNCER_POOL_SIZE:-10}  # server connections to the primary
FLEET_DB=${FLEET_DB:-creditdesk}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
VENV_BIN=${VENV_BIN:-$ROOT/.venv/bin}
NGINX=${NGINX:-/usr/sbin/nginx}
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}

PG_DIR=$FLEET_DIR/pg          # owned by the postgres user when run as root
PRIMARY=$PG_DIR/primary
REPLICA=$PG_DIR/replica
ARCHIVE=$PG_DIR/archive
BASE=$PG_DIR/base
SOCKETS=$PG_DIR/sockets
RUN=$FLEET_DIR/run
LOGS=$FLEET_DIR/log
CONF=$FLEET_DIR/conf
NGINX_DIR=$FLEET_DIR/nginx

PRIMARY_URL=postgres://postgres@127.0.0.1:$FLEET_PG_PORT/$FLEET_DB
REPLICA_URL=postgres://postgres@127.0.0.1:$FLEET_REPLICA_PORT/$FLEET_DB
POOLED_URL=postgres://postgres@127.0.0.1:$FLEET_PGBOUNCER_PORT/$FLEET_DB

say() { printf 'fleet: %s\n' "$*"; }
die() { printf 'fleet: %s\n' "$*" >&2; exit 1; }

# PostgreSQL and PgBouncer refuse to run as root: as root, they run as the postgres user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The app's settings, one per line (also what `up` prints). Secrets here are the fleet's own.
app_env() {
  cat <<EOF
DATABASE_URL=$POOLED_URL
DATABASE_SERVER_PREPARE=false
DATABASE_POOL_MAX_SIZE=${FLEET_POOL_SIZE:-4}
DATABASE_POOL_CHECK=${FLEET_POOL_CHECK:-true}
WORKER_DATABASE_URL=$PRIMARY_URL
DATABASE_REPLICA_URL=$REPLICA_URL
TRUSTED_PROXY_COUNT=1
DEBUG=false
SECRET_KEY=${FLEET_SECRET_KEY:-fleet-local-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz}
ALLOWED_HOSTS=127.0.0.1,localhost
CSRF_TRUSTED_ORIGINS=http://127.0.0.1:$FLEET_PORT,http://localhost:$FLEET_PORT
SECURE_SSL_REDIRECT=false
SESSION_COOKIE_SECURE=false
CSRF_COOKIE_SECURE=false
SECURE_HSTS_SECONDS=0
LOG_LEVEL=${FLEET_LOG_LEVEL:-WARNING}
WEB_CONCURRENCY=${FLEET_WEB_CONCURRENCY:-1}
WEB_THREADS=${FLEET_WEB_THREADS:-4}
CREDIT_HOLD_TTL_SECONDS=${FLEET_HOLD_TTL_SECONDS:-30}
WEBHOOK_URL=http://127.0.0.1:$FLEET_WEBHOOK_PORT/hook
WEBHOOK_SECRET=${FLEET_WEBHOOK_SECRET:-fleet-webhook-secret}
WEBHOOK_TIMEOUT_SECONDS=30
WEBHOOK_RETRY_BASE_SECONDS=2
WORKER_STALLED_SECONDS=${FLEET_WORKER_STALLED_SECONDS:-6}
EMAIL_URL=${FLEET_EMAIL_URL:-consolemail://}
EOF
  local word
  for word in ${FLEET_EXTRA_ENV:-}; do echo "$word"; done  # NAME=value words, one a line
}

# Runs "$@" with the app's environment (a later NAME=value among "$@" wins).
with_app_env() { env $(app_env) "$@"; }

render() {  # render TEMPLATE OUT: fill @NAME@ from the variables above
  sed -e "s|@PG_PORT@|$FLEET_PG_PORT|g" -e "s|@SOCKET_DIR@|$SOCKETS|g" -e "s|@ARCHIVE_DIR@|$ARCHIVE|g" \
      -e "s|@PGBOUNCER_PORT@|$FLEET_PGBOUNCER_PORT|g" -e "s|@PGBOUNCER_POOL_SIZE@|$FLEET_PGBOUNCER_POOL_SIZE|g" -e "s|@CONF_DIR@|$CONF|g" -e "s|@LOG_DIR@|$LOGS|g" \
      -e "s|@RUN_DIR@|$RUN|g" -e "s|@NGINX_DIR@|$NGINX_DIR|g" -e "s|@FLEET_PORT@|$FLEET_PORT|g" \
      "$1" >"$2"
}

pid_of() { [ -f "$RUN/$1.pid" ] && head -n 1 "$RUN/$1.pid" || true; }
# running PID: the process has not exited. Not `kill -0`: an exited process stays a zombie until its
# parent reaps it, and ours are orphans reaped by PID 1, which on some machines (a VM's init) reaps
# only every second or two; every stop then waited that long.
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }  # the fields after "PID (COMMAND) "
  [ "${stat%% *}" != Z ]
}
alive() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && running "$pid"; }

# wait_for SECONDS NAME LOG COMMAND...: poll until the command succeeds. Gives up at once when the
# process NAME (started by start_process) has exited, and either way prints the end of its LOG, so
# a failure in CI says why without the fleet's folder, which the tests remove.
wait_for() {
  local seconds=$1 what=$2 log=$3 pid; shift 3
  local reason="did not come up within ${seconds}s"
  for _ in $(seq 1 $((seconds * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    pid=$(pid_of "$what")  # none (yet) for a process not started by start_process
    if [ -n "$pid" ] && ! running "$pid"; then reason="exited before it answered"; break; fi
    sleep 0.2
  done
  printf 'fleet: %s %s; the end of %s:\n' "$what" "$reason" "$log" >&2
  tail -n 40 "$log" 2>/dev/null | sed 's/^/  | /' >&2
  die "$what $reason (logs: $LOGS)"
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

# --- PostgreSQL -------------------------------------------------------------------------------

pg_running() { as_pg "$PG_BIN/pg_ctl" -D "$1" status >/dev/null 2>&1; }

start_primary() {
  if [ ! -f "$PRIMARY/PG_VERSION" ]; then
    say "initdb: the primary in $PRIMARY"
    as_pg "$PG_BIN/initdb" -D "$PRIMARY" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$LOGS/initdb.log"
    render deploy/postgresql.conf "$CONF/postgresql.conf"
    cat "$CONF/postgresql.conf" | as_pg tee -a "$PRIMARY/postgresql.conf" >/dev/null
  fi
  if pg_running "$PRIMARY"; then say "primary: already running"; else
    as_pg "$PG_BIN/pg_ctl" -D "$PRIMARY" -l "$LOGS/primary.log" -w -t 60 start >/dev/null
    say "primary: started on $FLEET_PG_PORT"
  fi
  "$PG_BIN/psql" -h 127.0.0.1 -p "$FLEET_PG_PORT" -U postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname = '$FLEET_DB'" | grep -q 1 \
    || "$PG_BIN/createdb" -h 127.0.0.1 -p "$FLEET_PG_PORT" -U postgres "$FLEET_DB"
}

take_base_backup() {
  # The base backup a point-in-time restore starts from (scripts/fleet_restore_drill.sh); WAL after
  # it comes from the archive. Taken once per fleet; `fleet.sh backup` takes a new one.
  local target=$BASE/$(date -u +%Y%m%dT%H%M%SZ)
  as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$FLEET_PG_PORT" -U postgres -D "$target" -X stream -c fast
  say "base backup: $target"
}

start_replica() {
  if [ ! -f "$REPLICA/PG_VERSION" ]; then
    say "pg_basebackup -R: the replica in $REPLICA"
    as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$FLEET_PG_PORT" -U postgres -D "$REPLICA" -R -X stream -c fast
    # A replica down longer than wal_keep_size covers fetches what it missed from the archive (it
    # looped on "requested WAL segment ... has already been removed" for ever without it).
    printf "port = %s\nrestore_command = 'cp %s/%%f %%p'\n" "$FLEET_REPLICA_PORT" "$ARCHIVE" \
      | as_pg tee -a "$REPLICA/postgresql.auto.conf" >/dev/null
  fi
  if pg_running "$REPLICA"; then say "replica: already running"; else
    as_pg "$PG_BIN/pg_ctl" -D "$REPLICA" -l "$LOGS/replica.log" -w -t 60 start >/dev/null
    say "replica: started on $FLEET_REPLICA_PORT (streaming from the primary)"
  fi
}

stop_pg() {  # stop_pg DATADIR NAME
  if [ -f "$1/PG_VERSION" ] && pg_running "$1"; then
    as_pg "$PG_BIN/pg_ctl" -D "$1" -m fast -w -t 60 stop >/dev/null && say "$2: stopped"
  fi
}

# --- PgBouncer, the app, workers, nginx ---------------------------------------------------------

# start_process NAME LOG COMMAND...: in its own session (so `down` can end its whole process group),
# its pid (= its process group) in run/NAME.pid.
start_process() {
  local name=$1 log=$2; shift 2
  if alive "$name"; then say "$name: already running (pid $(pid_of "$name"))"; return 0; fi
  setsid "$@" >>"$log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

stop_process() {  # TERM the process group, KILL it after 30 s
  local name=$1 pid
  pid=$(pid_of "$name")
  if [ -z "$pid" ] || ! running "$pid"; then rm -f "$RUN/$name.pid"; return 0; fi
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do running "$pid" || break; sleep 0.2; done
  if running "$pid"; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
  rm -f "$RUN/$name.pid"
  say "$name: stopped"
}

start_pgbouncer() {
  render deploy/pgbouncer.ini "$CONF/pgbouncer.ini"
  printf '"postgres" ""\n' >"$CONF/pgbouncer_users.txt"
  if [ "$(id -u)" = 0 ]; then
    start_process pgbouncer "$LOGS/pgbouncer.out" "$PGBOUNCER" -u postgres "$CONF/pgbouncer.ini"
  else
    start_process pgbouncer "$LOGS/pgbouncer.out" "$PGBOUNCER" "$CONF/pgbouncer.ini"
  fi
  # pgbouncer writes the same pid to its own pidfile; ours is the one `down` reads.
  wait_for 20 pgbouncer "$LOGS/pgbouncer.log" "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$FLEET_PGBOUNCER_PORT" -U postgres -d "$FLEET_DB"
  say "pgbouncer: transaction pooling on $FLEET_PGBOUNCER_PORT"
}

# An app's or worker's FLEET_EXTRA_ENV is kept in run/NAME.extra: a restart without FLEET_EXTRA_ENV
# in the environment (a drill's) keeps what the process had; FLEET_EXTRA_ENV= (empty) clears it.
extra_env_for() {
  local value=${FLEET_EXTRA_ENV:-}
  if [ -z "${FLEET_EXTRA_ENV+set}" ] && [ -f "$RUN/$1.extra" ]; then value=$(cat "$RUN/$1.extra"); fi
  alive "$1" || printf '%s' "$value" >"$RUN/$1.extra"
  printf '%s' "$value"
}

start_app() {  # start_app N
  local port=$((FLEET_APP_PORT_BASE + $1)) extra
  extra=$(extra_env_for "app$1")
  local FLEET_EXTRA_ENV=$extra  # seen by app_env below (bash's locals are dynamically scoped)
  start_process "app$1" "$LOGS/app$1.log" env HOST=127.0.0.1 PORT="$port" VENV_BIN="$VENV_BIN" \
    $(app_env) sh scripts/serve.sh
  wait_for 120 "app$1" "$LOGS/app$1.log" http_ok "http://127.0.0.1:$port/api/v1/health"
  say "app$1: scripts/serve.sh on $port"
}

start_worker() {  # start_worker N
  local extra
  extra=$(extra_env_for "worker$1")
  local FLEET_EXTRA_ENV=$extra
  start_process "worker$1" "$LOGS/worker$1.log" env $(app_env) \
    "$VENV_BIN/python" manage.py procrastinate worker
  say "worker$1: procrastinate worker (direct to the primary)"
}

start_nginx() {
  local servers="" n
  for n in $(seq 1 "$FLEET_APPS"); do
    servers+="        server 127.0.0.1:$((FLEET_APP_PORT_BASE + n)) max_fails=1 fail_timeout=5s;"$'\n'
  done
  mkdir -p "$NGINX_DIR"/{client_body,proxy,fastcgi,uwsgi,scgi}
  chmod 777 "$NGINX_DIR"/*  # nginx's workers (nobody when started as root) write request bodies here
  render deploy/nginx.conf "$CONF/nginx.conf.tmp"
  awk -v servers="$servers" '{ if ($0 == "@UPSTREAM_SERVERS@") printf "%s", servers; else print }' \
    "$CONF/nginx.conf.tmp" >"$CONF/nginx.conf" && rm "$CONF/nginx.conf.tmp"
  "$NGINX" -t -q -p "$NGINX_DIR" -c "$CONF/nginx.conf" -e "$LOGS/nginx-error.log"
  # In the foreground of its own session (daemon off): its pid is ours, like every other process.
  start_process nginx "$LOGS/nginx.out" "$NGINX" -p "$NGINX_DIR" -c "$CONF/nginx.conf" \
    -e "$LOGS/nginx-error.log" -g "daemon off;"
  wait_for 20 nginx "$LOGS/nginx-error.log" http_ok "http://127.0.0.1:$FLEET_PORT/api/v1/health"
  say "nginx: http://127.0.0.1:$FLEET_PORT -> $FLEET_APPS app instances"
}

manage() { with_app_env DATABASE_URL="$PRIMARY_URL" "$VENV_BIN/python" manage.py "$@"; }

# --- commands ---------------------------------------------------------------------------------

up() {
  if { [ ! -x "$NGINX" ] || [ ! -x "$PGBOUNCER" ]; } && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's nginx and pgbouncer"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx pgbouncer >/dev/null
  fi
  for tool in "$PG_BIN/initdb" "$NGINX" "$PGBOUNCER"; do
    [ -x "$tool" ] || die "$tool is missing: apt-get install -y nginx pgbouncer postgresql-15"
  done
  if [ "${1:-}" = "--fresh" ]; then down; rm -rf "$FLEET_DIR"; fi
  mkdir -p "$PG_DIR" "$ARCHIVE" "$BASE" "$SOCKETS" "$RUN" "$LOGS" "$CONF"
  local name
  (umask 077; for name in ${!FLEET_@}; do
    case "$name" in FLEET_DIR | FLEET_EXTRA_ENV) ;; *) printf '%s=%s\n' "$name" "${!name}" ;; esac
  done >"$FLEET_DIR/fleet.env")
  if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_DIR" "$ARCHIVE" "$BASE" "$SOCKETS" "$LOGS"; fi
  chmod 700 "$PG_DIR"
  start_primary
  # Migrations and the seed go to the primary directly (DDL, session state), never through PgBouncer.
  say "migrate (direct to the primary)"
  manage migrate --noinput -v 0
  manage collectstatic --noinput -v 0
  LOG_LEVEL=WARNING manage seed_demo -v 0
  [ -n "$(ls -A "$BASE")" ] || take_base_backup
  start_replica
  start_pgbouncer
  local n
  for n in $(seq 1 "$FLEET_APPS"); do start_app "$n"; done
  for n in $(seq 1 "$FLEET_WORKERS"); do start_worker "$n"; done
  start_nginx
  echo
  echo "creditdesk fleet: http://127.0.0.1:$FLEET_PORT  (demo logins: manage.py seed_demo)"
  echo "settings of the app instances and workers:"
  app_env | grep -v '^$' | sed 's/^/  /'
  echo "  primary $PRIMARY_URL, replica $REPLICA_URL, pgbouncer $POOLED_URL"
  echo "  data and logs: $FLEET_DIR; stop with: scripts/fleet.sh down"
}

down() {
  [ -d "$RUN" ] || { say "nothing to stop ($FLEET_DIR)"; return 0; }
  stop_process nginx
  local name
  for name in $(cd "$RUN" && ls app*.pid worker*.pid 2>/dev/null | sed 's/\.pid$//'); do stop_process "$name"; done
  stop_process pgbouncer
  stop_pg "$REPLICA" replica
  stop_pg "$PRIMARY" primary
  # A restore drill's server that was left behind (scripts/fleet_restore_drill.sh).
  for dir in "$PG_DIR"/restore-*; do [ -d "$dir" ] && stop_pg "$dir" "restore $(basename "$dir")"; done
  return 0
}

status() {
  local name pid state=0
  for name in primary replica; do
    local dir=$PRIMARY; [ "$name" = replica ] && dir=$REPLICA
    if [ -f "$dir/PG_VERSION" ] && pg_running "$dir"; then
      echo "$name: running (pid $(as_pg head -n 1 "$dir/postmaster.pid"))"
    else echo "$name: stopped"; state=1; fi
  done
  for name in pgbouncer $(seq -f app%g 1 "$FLEET_APPS") $(seq -f worker%g 1 "$FLEET_WORKERS") nginx; do
    pid=$(pid_of "$name")
    if alive "$name"; then echo "$name: running (pid $pid)"; else echo "$name: stopped"; state=1; fi
  done
  if pg_running "$REPLICA" 2>/dev/null; then
    local receiving
    receiving=$("$PG_BIN/psql" -h 127.0.0.1 -p "$FLEET_REPLICA_PORT" -U postgres -Atqc \
      "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')" "$FLEET_DB" 2>/dev/null || echo unknown)
    if [ "$receiving" != streaming ]; then  # running, but not following the primary: say so, fail
      echo "replica WAL receiver: $receiving, not streaming (see $LOGS/replica.log; to rebuild it: scripts/fleet.sh rebuild-replica)"
      state=1
    fi
    echo "replica lag: $("$PG_BIN/psql" -h 127.0.0.1 -p "$FLEET_REPLICA_PORT" -U postgres -Atqc \
      "SELECT coalesce(round(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::numeric, 1), 0) || ' s since the last replayed commit'" "$FLEET_DB" 2>/dev/null || echo unknown)"
  fi
  echo "url: http://127.0.0.1:$FLEET_PORT"
  return $state
}

one() {  # one stop|restart NAME
  local action=$1 name=${2:?name one of app1, app2, worker1, worker2, pgbouncer, replica, nginx}
  case "$name" in
    replica) stop_pg "$REPLICA" replica; [ "$action" = restart ] && start_replica ;;
    pgbouncer) stop_process pgbouncer; [ "$action" = restart ] && start_pgbouncer ;;
    nginx) stop_process nginx; [ "$action" = restart ] && start_nginx ;;
    app[0-9]*) stop_process "$name"; [ "$action" = restart ] && start_app "${name#app}" ;;
    worker[0-9]*) stop_process "$name"; [ "$action" = restart ] && start_worker "${name#worker}" ;;
    *) die "unknown process $name" ;;
  esac
  return 0
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  status) status ;;
  stop | restart) one "$@" ;;
  backup) take_base_backup ;;
  rebuild-replica) stop_pg "$REPLICA" replica; as_pg rm -rf "$REPLICA"; start_replica ;;
  env) app_env | grep -v '^$' | sed 's/^/export /' ;;
  *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
