#!/usr/bin/env bash
# Start script of the stack's EMQX container (uploaded by components/emqx.py).
#
# EMQX creates its dashboard user `admin` from dashboard.default_password on the first boot
# only and keeps it on the data volume afterwards, so a password generated anew (after
# `make destroy` kept the volume) would never apply. This script reads the password and the
# Erlang node cookie from files (the container's environment shows in `docker inspect`),
# hands them to the EMQX process alone, and once the node answers sets the admin password
# with `emqx ctl admins passwd`. The healthcheck waits for TELEMETRY_READY_FILE, so the
# container is healthy only when the password in the stack's state is the one EMQX checks.
set -Eeuo pipefail

log() { printf 'telemetry-start: %s\n' "$*" >&2; }

password="$(< "$TELEMETRY_DASHBOARD_PASSWORD_FILE")"
EMQX_NODE__COOKIE="$(< "$TELEMETRY_NODE_COOKIE_FILE")"
export EMQX_NODE__COOKIE
ready_file="${TELEMETRY_READY_FILE:-/tmp/telemetry-dashboard-ready}"
rm -f "$ready_file"

set_admin_password() {
    local deadline=$((SECONDS + ${TELEMETRY_ADMIN_PASSWORD_TIMEOUT:-600})) output=""
    while ((SECONDS < deadline)); do
        # Fails until the node runs and the dashboard registered its commands.
        if output="$(emqx ctl admins passwd admin "$password" 2>&1)" && [ "$output" = ok ]; then
            touch "$ready_file"
            log "the dashboard user admin has the stack's password"
            return 0
        fi
        sleep 2
    done
    log "could not set the password of the dashboard user admin: ${output:-no answer from emqx ctl}"
    return 1
}

# Detached (the subshell exits at once), so the container's init reaps it when it ends.
(set_admin_password &)

# First boot: EMQX creates admin with this password (quoted: EMQX reads the value as HOCON).
EMQX_DASHBOARD__DEFAULT_PASSWORD="\"$password\"" exec docker-entrypoint.sh emqx foreground
