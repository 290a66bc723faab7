#!/usr/bin/env bash
# Entrypoint of the stack's TimescaleDB container (uploaded by components/timescaledb.py).
#
# On an existing data directory the official entrypoint skips initialisation, so a
# superuser password generated anew (say, after `make destroy` kept the volume) would never
# reach the database. Before handing over to the official entrypoint, this sets the
# superuser's password to the one in POSTGRES_PASSWORD_FILE, through a temporary server that
# listens on a private Unix socket only (local connections are `trust` in the official
# image's pg_hba.conf); TCP clients see the server only once the real one starts.
set -Eeuo pipefail

log() { printf 'telemetry-entrypoint: %s\n' "$*"; }

as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        # The official images step down with gosu (su-exec before PostgreSQL 17).
        local step_down
        step_down="$(command -v gosu || command -v su-exec)"
        "$step_down" postgres "$@"
    else
        "$@"
    fi
}

sql_literal() { local value="${1//\'/\'\'}"; printf "'%s'" "$value"; }
sql_identifier() { local value="${1//\"/\"\"}"; printf '"%s"' "$value"; }

reset_superuser_password() {
    local user="${POSTGRES_USER:-postgres}" socket_dir
    socket_dir="$(as_postgres mktemp -d)"
    log "existing database in $PGDATA: setting the password of role $user from POSTGRES_PASSWORD_FILE"
    as_postgres pg_ctl -D "$PGDATA" -w -t 300 \
        -o "-c listen_addresses='' -c unix_socket_directories='$socket_dir' -p ${PGPORT:-5432}" start
    printf 'ALTER ROLE %s PASSWORD %s;\n' "$(sql_identifier "$user")" "$(sql_literal "$POSTGRES_PASSWORD")" |
        as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$socket_dir" -p "${PGPORT:-5432}" -U "$user" -d postgres
    as_postgres pg_ctl -D "$PGDATA" -m fast -w -t 300 stop
    rmdir "$socket_dir"
}

if [ "${1:-}" = postgres ]; then
    : "${PGDATA:=/var/lib/postgresql/data}"
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        # The file is readable by root only; the official entrypoint reads it the same way,
        # as root, before it steps down to postgres.
        POSTGRES_PASSWORD="$(< "$POSTGRES_PASSWORD_FILE")"
        export POSTGRES_PASSWORD
        unset POSTGRES_PASSWORD_FILE
    fi
    if [ -s "$PGDATA/PG_VERSION" ] && [ -n "${POSTGRES_PASSWORD:-}" ]; then
        reset_superuser_password
    fi
fi

exec docker-entrypoint.sh "$@"
