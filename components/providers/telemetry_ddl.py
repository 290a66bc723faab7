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
