#!/usr/bin/env bash
# Local PostgreSQL and Redis for the admin tests, without Docker.
#
#   scripts/services.sh install   apt-get install postgresql redis-server (only when missing)
#   scripts/services.sh start     start both on 127.0.0.1 (PG :55432, Redis :56379), idempotent
#   scripts/services.sh stop      stop both
#   scripts/services.sh env       print the export lines the tests read
#   scripts/services.sh pg-stop   stop PostgreSQL only (the database-restart test; 'start' brings it back)
#
# Data lives under ${DH_CACHE:-$HOME/.cache/dh-agent}/{pg,redis}. PostgreSQL refuses to
# run as root, so when we are root the cluster belongs to (and runs as) the `postgres` user.
set -euo pipefail

CACHE="${DH_CACHE:-$HOME/.cache/dh-agent}"
PGDATA="$CACHE/pg"
PGPORT="${DH_PG_PORT:-55432}"
REDIS_DIR="$CACHE/redis"
REDIS_PORT="${DH_REDIS_PORT:-56379}"
DB_NAME="${DH_PG_DB:-dh_test}"
DB_USER="${DH_PG_USER:-dh}"
DB_PASS="${DH_PG_PASSWORD:-dh}"

log() { echo "[services] $*" >&2; }

pg_bin() {
    # Newest installed server binaries (Debian keeps them off PATH).
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    if [[ -n "$d" && -x "$d/$1" ]]; then echo "$d/$1"; else command -v "$1"; fi
}

as_pg_owner() {
    # Run a command as the cluster owner: `postgres` when we are root, else ourselves.
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

cmd_install() {
    local need=()
    [[ -n "$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null || true)" ]] || command -v postgres >/dev/null || need+=(postgresql)
    command -v redis-server >/dev/null || need+=(redis-server)
    if [[ ${#need[@]} -eq 0 ]]; then
        log "postgresql and redis-server already installed"
        return
    fi
    log "installing: ${need[*]}"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
    log "installed: ${need[*]}"
}

pg_running() { as_pg_owner "$(pg_bin pg_ctl)" -D "$PGDATA" status >/dev/null 2>&1; }

cmd_start() {
    mkdir -p "$CACHE"
    if [[ $(id -u) -eq 0 ]]; then
        # The postgres user must be able to reach the data directory.
        id postgres >/dev/null 2>&1 || { log "no 'postgres' OS user; run '$0 install' first"; exit 1; }
        chmod o+x "$CACHE" 2>/dev/null || true
        local p="$CACHE"
        while [[ "$p" != "/" ]]; do chmod o+x "$p" 2>/dev/null || true; p=$(dirname "$p"); done
    fi
    if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
        log "initdb $PGDATA"
        mkdir -p "$PGDATA"
        [[ $(id -u) -eq 0 ]] && chown postgres: "$PGDATA"
        chmod 700 "$PGDATA"
        as_pg_owner "$(pg_bin initdb)" -D "$PGDATA" -U postgres -A trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null \
            || as_pg_owner "$(pg_bin initdb)" -D "$PGDATA" -U postgres -A trust --encoding=UTF8 --no-locale >/dev/null
    fi
    if pg_running; then
        log "PostgreSQL already running on 127.0.0.1:$PGPORT"
    else
        log "starting PostgreSQL on 127.0.0.1:$PGPORT"
        as_pg_owner "$(pg_bin pg_ctl)" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 \
            -o "-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
    fi
    local psql
    psql=$(pg_bin psql)
    local q=(as_pg_owner "$psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtAc)
    if [[ "$("${q[@]}" "SELECT 1 FROM pg_roles WHERE rolname='$DB_USER'")" != "1" ]]; then
        log "creating role $DB_USER"
        "${q[@]}" "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASS' CREATEDB"
    fi
    if [[ "$("${q[@]}" "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'")" != "1" ]]; then
        log "creating database $DB_NAME"
        "${q[@]}" "CREATE DATABASE $DB_NAME OWNER $DB_USER"
    fi

    mkdir -p "$REDIS_DIR"
    if command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
        log "Redis already running on 127.0.0.1:$REDIS_PORT"
    else
        command -v redis-server >/dev/null || { log "redis-server missing; run '$0 install' first"; exit 1; }
        log "starting Redis on 127.0.0.1:$REDIS_PORT"
        redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" --daemonize yes \
            --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" --save "" --appendonly no
        for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    fi
    log "ready"
}

cmd_stop() {
    if [[ -f "$PGDATA/PG_VERSION" ]] && pg_running; then
        log "stopping PostgreSQL"
        as_pg_owner "$(pg_bin pg_ctl)" -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    if command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
        log "stopping Redis"
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    fi
}

cmd_pg_stop() {
    # Used by the test that restarts the database mid-call.
    if [[ -f "$PGDATA/PG_VERSION" ]] && pg_running; then
        log "stopping PostgreSQL"
        as_pg_owner "$(pg_bin pg_ctl)" -D "$PGDATA" -m fast -w stop >/dev/null
    fi
}

cmd_env() {
    echo "export DH_TEST_DATABASE_URL=postgresql+psycopg://$DB_USER:$DB_PASS@127.0.0.1:$PGPORT/$DB_NAME"
    echo "export DH_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    pg-stop) cmd_pg_stop ;;
    env) cmd_env ;;
    *) echo "usage: $0 {install|start|stop|env|pg-stop}" >&2; exit 2 ;;
esac
