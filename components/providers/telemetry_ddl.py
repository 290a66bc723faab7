"""The database shapes the stack and the ingest service agree on.

The tenant registry and each tenant's ``telemetry`` table are created by the
dynamic providers (``registry.py``, ``timescale.py``) and read or written by
the bundled ingest service, which ships as its own image and therefore cannot
import this module: this file is the single statement of that contract, and
the ingest tests build their databases from it.
"""

from __future__ import annotations

from psycopg import sql

REGISTRY_SCHEMA = "telemetry_registry"
REGISTRY_TABLE = "tenants"
# The ingest service LISTENs here; the payload is the changed tenant's slug.
REGISTRY_CHANNEL = "telemetry_registry"
REGISTRY_NOTIFY_TRIGGER = "notify_tenant_change"
# Bumped whenever registry_ddl() gains objects, so that `pulumi up` re-runs it on existing stacks.
REGISTRY_DDL_VERSION = 2

# Devices are rows, not stack resources: one per MQTT identity (username = client id = device_id).
DEVICES_TABLE = "devices"
DEVICES_TENANT_INDEX = "devices_tenant_device_id_idx"
# What EMQX calls, as a role that may execute these two functions and nothing else (grants.py).
# SECURITY DEFINER functions rather than a view: a view would let that role list every device
# and hash; a function answers for one (username, client id) pair at a time.
EMQX_AUTHN_FUNCTION = "emqx_device_authn"
EMQX_ACL_FUNCTION = "emqx_device_acl"
# The same rule as components.config.DEVICE_PATTERN, enforced by the database for every writer.
DEVICE_ID_SQL_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Topic prefixes as components.config validates them; the ACL function returns nothing for any
# other prefix, so a hand-edited registry row cannot widen a device's topics (no wildcards,
# no EMQX placeholders).
TOPIC_PREFIX_SQL_PATTERN = "^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"

TELEMETRY_TABLE = "telemetry"
TELEMETRY_UNIQUE_INDEX = "telemetry_msg_id_time_key"
TELEMETRY_DEVICE_INDEX = "telemetry_device_id_time_idx"


def registry_ddl() -> list[sql.Composed]:
    """Idempotent statements that create the registry schema, table and NOTIFY trigger."""
    schema = sql.Identifier(REGISTRY_SCHEMA)
    table = sql.Identifier(REGISTRY_SCHEMA, REGISTRY_TABLE)
    notify_fn = sql.Identifier(REGISTRY_SCHEMA, "notify_tenant_change")
    touch_fn = sql.Identifier(REGISTRY_SCHEMA, "touch_updated_at")
    touch_trigger = sql.Identifier("touch_updated_at")
    notify_trigger = sql.Identifier(REGISTRY_NOTIFY_TRIGGER)
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema),
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                slug text PRIMARY KEY,
                schema_name text NOT NULL UNIQUE,
                topic_prefix text NOT NULL UNIQUE,
                token_sha256 text NOT NULL,
                previous_token_sha256 text,
                previous_token_expires_at timestamptz,
                enabled boolean NOT NULL DEFAULT true,
                updated_at timestamptz NOT NULL DEFAULT now()
            )"""
        ).format(table),
        sql.SQL(
            """CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                NEW.updated_at := now();
                RETURN NEW;
            END $$"""
        ).format(touch_fn),
        sql.SQL(
            """CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify({}, COALESCE(NEW.slug, OLD.slug));
                RETURN NULL;
            END $$"""
        ).format(notify_fn, sql.Literal(REGISTRY_CHANNEL)),
        sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(touch_trigger, table),
        sql.SQL("CREATE TRIGGER {} BEFORE UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            touch_trigger, table, touch_fn
        ),
        sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(notify_trigger, table),
        sql.SQL(
            "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}()"
        ).format(notify_trigger, table, notify_fn),
        *devices_ddl(),
    ]


def devices_ddl() -> list[sql.Composed]:
    """The devices table, its index and the two functions EMQX's PostgreSQL sources call.

    ``tenant`` is the tenant's slug without a foreign key on purpose: a tenant
    leaving the stack deletes its registry row, and its devices must survive
    that (a tenant re-added by mistake or on purpose gets its devices back
    without re-flashing any of them).  The functions join ``tenants``, so the
    devices of a missing or disabled tenant get no rows: they cannot connect.
    """
    devices = sql.Identifier(REGISTRY_SCHEMA, DEVICES_TABLE)
    tenants = sql.Identifier(REGISTRY_SCHEMA, REGISTRY_TABLE)
    touch_fn = sql.Identifier(REGISTRY_SCHEMA, "touch_updated_at")
    touch_trigger = sql.Identifier("touch_updated_at")
    authn_fn = sql.Identifier(REGISTRY_SCHEMA, EMQX_AUTHN_FUNCTION)
    acl_fn = sql.Identifier(REGISTRY_SCHEMA, EMQX_ACL_FUNCTION)
    # Both functions run as their owner (the registry's creator) with a fixed search_path, and
    # return rows only when the MQTT username and client id are both the device's id: a device
    # that presents another device's client id gets no row, so EMQX refuses the CONNECT before
    # it could end that device's session.
    match = sql.SQL(
        "FROM {devices} d JOIN {tenants} t ON t.slug = d.tenant "
        "WHERE d.device_id = username AND d.device_id = clientid AND d.enabled AND t.enabled"
    ).format(devices=devices, tenants=tenants)
    return [
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                device_id text PRIMARY KEY CHECK (device_id ~ {}),
                tenant text NOT NULL,
                password_hash text NOT NULL CHECK (password_hash ~ '^[0-9a-f]{{64}}$'),
                salt text NOT NULL CHECK (salt <> ''),
                enabled boolean NOT NULL DEFAULT true,
                label text CHECK (length(label) <= 200),
                created_at timestamptz NOT NULL DEFAULT now(),
                rotated_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now()
            )"""
        ).format(devices, sql.Literal(DEVICE_ID_SQL_PATTERN)),
        # The connect-time lookups use the primary key; this one serves list/export per tenant.
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (tenant, device_id)").format(
            sql.Identifier(DEVICES_TENANT_INDEX), devices
        ),
        sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(touch_trigger, devices),
        sql.SQL("CREATE TRIGGER {} BEFORE UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            touch_trigger, devices, touch_fn
        ),
        sql.SQL(
            """CREATE OR REPLACE FUNCTION {fn}(username text, clientid text)
            RETURNS TABLE (password_hash text, salt text, is_superuser boolean)
            LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
            AS $$
            BEGIN
                RETURN QUERY SELECT d.password_hash, d.salt, false {match} LIMIT 1;
            END $$"""
        ).format(fn=authn_fn, match=match),
        sql.SQL(
            """CREATE OR REPLACE FUNCTION {fn}(username text, clientid text)
            RETURNS TABLE (permission text, action text, topic text)
            LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
            AS $$
            BEGIN
                RETURN QUERY SELECT 'allow'::text, 'all'::text, 'tenants/' || t.topic_prefix || '/#'
                    {match} AND t.topic_prefix ~ {prefix};
            END $$"""
        ).format(fn=acl_fn, match=match, prefix=sql.Literal(TOPIC_PREFIX_SQL_PATTERN)),
        # PostgreSQL lets PUBLIC execute new functions; only the roles of grants.py may.
        sql.SQL("REVOKE ALL ON FUNCTION {}(text, text) FROM PUBLIC").format(authn_fn),
        sql.SQL("REVOKE ALL ON FUNCTION {}(text, text) FROM PUBLIC").format(acl_fn),
    ]


def telemetry_table_ddl(schema_name: str) -> list[sql.Composed]:
    """Idempotent statements for one tenant's ``telemetry`` table and its indexes (not the hypertable)."""
    table = sql.Identifier(schema_name, TELEMETRY_TABLE)
    return [
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                time timestamptz NOT NULL,
                device_id text NOT NULL,
                topic text NOT NULL,
                payload jsonb NOT NULL,
                msg_id text NOT NULL,
                received_at timestamptz NOT NULL DEFAULT now()
            )"""
        ).format(table),
        # EMQX retries a message with the same id: this index makes the retry a no-op.
        sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (msg_id, time)").format(
            sql.Identifier(TELEMETRY_UNIQUE_INDEX), table
        ),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (device_id, time DESC)").format(
            sql.Identifier(TELEMETRY_DEVICE_INDEX), table
        ),
    ]
