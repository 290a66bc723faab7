"""Dynamic providers for the tenant registry the ingest service reads.

``TenantRegistry`` is one stack-wide resource owning the registry schema,
tables, NOTIFY trigger and the functions EMQX authenticates devices with (from
:func:`telemetry_ddl.registry_ddl`), so that the grants on them can depend on
it.
``TenantRegistration`` is one row per tenant.  Only the SHA-256 of a tenant's
token is ever written to the database or to the outputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pulumi
import pulumi.dynamic
from psycopg import sql

from components.providers.intervals import interval_micros
from components.providers.postgres import (
    DEFAULT_READY_TIMEOUT,
    ProviderError,
    connect,
    error_reason,
    is_unknown,
    sql_call,
)
from components.providers.telemetry_ddl import (
    DEVICES_TABLE,
    EMQX_ACL_FUNCTION,
    EMQX_AUTHN_FUNCTION,
    REGISTRY_CHANNEL,
    REGISTRY_DDL_VERSION,
    REGISTRY_NOTIFY_TRIGGER,
    REGISTRY_SCHEMA,
    REGISTRY_TABLE,
    registry_ddl,
)

DEFAULT_TOKEN_GRACE = "15 minutes"
_TABLE = sql.Identifier(REGISTRY_SCHEMA, REGISTRY_TABLE)
_DEVICES = sql.Identifier(REGISTRY_SCHEMA, DEVICES_TABLE)


def token_sha256(token: str) -> str:
    """The hash stored in the registry and compared by the ingest service."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _create_registry(conn: psycopg.Connection) -> None:
    # Tenants are created in parallel; concurrent CREATE ... IF NOT EXISTS can still collide.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (REGISTRY_SCHEMA,))
    for statement in registry_ddl():
        conn.execute(statement)


def _registry_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (_TABLE.as_string(conn),)).fetchone()
    return row is not None and row[0] is not None


def _notifies(conn: psycopg.Connection) -> bool:
    """Whether the NOTIFY trigger the ingest service reloads on is there and enabled."""
    row = conn.execute(
        "SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname = %s AND tgenabled <> 'D'",
        (_TABLE.as_string(conn), REGISTRY_NOTIFY_TRIGGER),
    ).fetchone()
    return row is not None


def _has_device_objects(conn: psycopg.Connection) -> bool:
    """Whether the devices table and both EMQX functions exist (a registry from before devices has none)."""
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL AND to_regprocedure(%s) IS NOT NULL AND to_regprocedure(%s) IS NOT NULL",
        (
            _DEVICES.as_string(conn),
            f"{REGISTRY_SCHEMA}.{EMQX_AUTHN_FUNCTION}(text,text)",
            f"{REGISTRY_SCHEMA}.{EMQX_ACL_FUNCTION}(text,text)",
        ),
    ).fetchone()
    return bool(row and row[0])


def _timeout(props: Mapping[str, Any]) -> float:
    return props.get("ready_timeout") or DEFAULT_READY_TIMEOUT


# --------------------------------------------------------------------------- the registry itself


class TenantRegistryProvider(pulumi.dynamic.ResourceProvider):
    """The stack-wide ``telemetry_registry`` schema: ``tenants`` and its NOTIFY trigger, ``devices`` and
    the EMQX authentication/authorization functions."""

    _name = f"TenantRegistry {REGISTRY_SCHEMA}.{REGISTRY_TABLE}"

    def _outputs(self, props: Mapping[str, Any], notifies: bool = True, devices: bool = True) -> dict[str, Any]:
        return {
            "dsn": props["dsn"],
            "ready_timeout": props.get("ready_timeout"),
            "schema_name": REGISTRY_SCHEMA,
            "table": REGISTRY_TABLE,
            # None when the NOTIFY trigger is gone: refresh shows it, and the next up restores it.
            "channel": REGISTRY_CHANNEL if notifies else None,
            "devices_table": DEVICES_TABLE,
            # The DDL generation this registry has; older or damaged (objects missing) shows as a
            # diff, and the update re-runs the idempotent DDL.  Registries created before devices
            # existed have no such output at all, which is a diff too.
            "ddl_version": REGISTRY_DDL_VERSION if devices else None,
        }

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        with (
            connect(props["dsn"], self._name, _timeout(props)) as conn,
            sql_call(self._name, "creating the registry schema, tables, triggers and functions"),
        ):
            _create_registry(conn)
            conn.commit()
        return pulumi.dynamic.CreateResult(f"{REGISTRY_SCHEMA}.{REGISTRY_TABLE}", self._outputs(props))

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        with (
            connect(props["dsn"], self._name, _timeout(props)) as conn,
            sql_call(self._name, "looking up the registry table and its NOTIFY trigger"),
        ):
            exists = _registry_exists(conn)
            notifies = exists and _notifies(conn)
            devices = exists and _has_device_objects(conn)
        if not exists:
            return pulumi.dynamic.ReadResult("", {})
        return pulumi.dynamic.ReadResult(id_, self._outputs(props, notifies, devices))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changed = [
            key for key in ("dsn", "ready_timeout") if is_unknown(news.get(key)) or olds.get(key) != news.get(key)
        ]
        if "channel" in olds and olds["channel"] != REGISTRY_CHANNEL:
            changed.append("channel")  # refresh found the NOTIFY trigger missing: update re-creates it
        if olds.get("ddl_version") != REGISTRY_DDL_VERSION:
            changed.append("ddl_version")  # created by an older program, or objects dropped by hand
        return pulumi.dynamic.DiffResult(
            changes=bool(changed), replaces=[], stables=["schema_name", "table", "devices_table"]
        )

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        # Re-running the idempotent DDL also repairs a trigger dropped by hand.
        self.create(news)
        return pulumi.dynamic.UpdateResult(self._outputs(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        with (
            connect(props["dsn"], self._name, _timeout(props)) as conn,
            sql_call(self._name, "dropping the registry"),
        ):
            if not _registry_exists(conn):
                return
            rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_TABLE)).fetchone()[0]
            if rows:
                pulumi.log.warn(
                    f"{self._name}: kept the registry because it still lists {rows} tenant(s); "
                    "delete their TenantRegistration resources first"
                )
                return
            devices = 0
            if conn.execute("SELECT to_regclass(%s)", (_DEVICES.as_string(conn),)).fetchone()[0]:
                devices = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_DEVICES)).fetchone()[0]
            if devices:
                # Device credentials are state: losing them means re-provisioning every device.
                pulumi.log.warn(
                    f"{self._name}: kept the registry because it still holds {devices} device(s); "
                    "remove them with `python -m tools.devices remove` first if they are really to go"
                )
                return
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(REGISTRY_SCHEMA)))
            conn.commit()


@dataclass
class TenantRegistryArgs:
    dsn: pulumi.Input[str]
    """Superuser DSN; stored as a secret."""
    ready_timeout: pulumi.Input[float] | None = None


class TenantRegistry(pulumi.dynamic.Resource, module="telemetry", name="TenantRegistry"):
    """The stack-wide tenant and device registry; grant roles on it as ``components.grants`` plans."""

    dsn: pulumi.Output[str]
    schema_name: pulumi.Output[str]
    table: pulumi.Output[str]
    channel: pulumi.Output[str]
    devices_table: pulumi.Output[str]
    ddl_version: pulumi.Output[int]

    def __init__(self, resource_name: str, args: TenantRegistryArgs, opts: pulumi.ResourceOptions | None = None):
        props = {
            "dsn": pulumi.Output.secret(args.dsn),
            "ready_timeout": args.ready_timeout,
            "schema_name": None,
            "table": None,
            "channel": None,
            "devices_table": None,
            "ddl_version": None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["dsn"]))
        super().__init__(TenantRegistryProvider(), resource_name, props, opts)


# --------------------------------------------------------------------------- one tenant's row

_IDENTITY = ("schema_name", "topic_prefix")


def _name(props: Mapping[str, Any]) -> str:
    return f"TenantRegistration {props.get('slug')}"


def _row(conn: psycopg.Connection, slug: str) -> dict[str, Any] | None:
    cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
    return cursor.execute(
        sql.SQL(
            "SELECT slug, schema_name, topic_prefix, token_sha256, previous_token_sha256, "
            "previous_token_expires_at, enabled FROM {} WHERE slug = %s"
        ).format(_TABLE),
        (slug,),
    ).fetchone()


def _registration_outputs(props: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    expires: datetime | None = row["previous_token_expires_at"]
    return {
        "dsn": props["dsn"],
        "ready_timeout": props.get("ready_timeout"),
        "token_grace": props.get("token_grace") or DEFAULT_TOKEN_GRACE,
        "slug": row["slug"],
        "schema_name": row["schema_name"],
        "topic_prefix": row["topic_prefix"],
        "enabled": row["enabled"],
        "token_sha256": row["token_sha256"],
        "previous_token_sha256": row["previous_token_sha256"],
        # psycopg returns it in the session's TimeZone (PGTZ, the role's or the server's):
        # UTC makes the output the same whoever runs `pulumi refresh`.
        "previous_token_expires_at": expires.astimezone(UTC).isoformat() if expires else None,
    }


def _explain_conflict(conn: psycopg.Connection, props: Mapping[str, Any], error: psycopg.Error) -> ProviderError:
    """A unique violation on schema or prefix: name the tenant that already holds it."""
    conn.rollback()
    for column in _IDENTITY:
        holder = conn.execute(
            sql.SQL("SELECT slug FROM {} WHERE {} = %s AND slug <> %s").format(_TABLE, sql.Identifier(column)),
            (props[column], props["slug"]),
        ).fetchone()
        if holder:
            return ProviderError(
                f"{_name(props)}: {column} {props[column]!r} already belongs to tenant {holder[0]!r} in the "
                f"registry; give this tenant another {column.replace('_', ' ')} or remove tenant {holder[0]!r}"
            )
    return ProviderError(f"{_name(props)}: writing the registry row failed: {error_reason(error)}")


class TenantRegistrationProvider(pulumi.dynamic.ResourceProvider):
    """One tenant's row in ``telemetry_registry.tenants``."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = []
        grace = news.get("token_grace")
        if grace is not None and not is_unknown(grace):
            try:
                if interval_micros(grace) < 0:
                    failures.append(pulumi.dynamic.CheckFailure("token_grace", "token_grace must not be negative"))
            except ValueError as error:
                failures.append(pulumi.dynamic.CheckFailure("token_grace", f"token_grace: {error}; e.g. '15 minutes'"))
        for key in ("slug", "schema_name", "topic_prefix", "token"):
            value = news.get(key)
            if not is_unknown(value) and (not isinstance(value, str) or not value):
                failures.append(pulumi.dynamic.CheckFailure(key, f"{key} is required and must be a non-empty string"))
        return pulumi.dynamic.CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        name, wanted_hash = _name(props), token_sha256(props["token"])
        enabled = True if props.get("enabled") is None else bool(props["enabled"])
        with connect(props["dsn"], name, _timeout(props)) as conn:
            with sql_call(name, "creating the registry"):
                if not _registry_exists(conn):
                    _create_registry(conn)
            with sql_call(name, "reading the registry row"):
                existing = _row(conn, props["slug"])
            if existing is not None:
                different = [key for key in _IDENTITY if existing[key] != props[key]]
                if different:
                    raise ProviderError(
                        f"{name}: tenant {props['slug']!r} is already registered with "
                        + ", ".join(f"{key} {existing[key]!r} (the stack wants {props[key]!r})" for key in different)
                        + "; change the stack config to match, or delete the registry row first"
                    )
                # Same tenant (e.g. state lost): adopt it, and treat a different token as a rotation.
                with sql_call(name, "adopting the existing registry row"):
                    self._write(conn, props, existing, wanted_hash, enabled)
            else:
                try:
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (slug, schema_name, topic_prefix, token_sha256, enabled) "
                            "VALUES (%s, %s, %s, %s, %s)"
                        ).format(_TABLE),
                        (props["slug"], props["schema_name"], props["topic_prefix"], wanted_hash, enabled),
                    )
                except psycopg.errors.UniqueViolation as error:
                    raise _explain_conflict(conn, props, error) from None
                except psycopg.Error as error:
                    raise ProviderError(f"{name}: inserting the registry row failed: {error_reason(error)}") from None
            with sql_call(name, "committing the registry row"):
                conn.commit()
                row = _row(conn, props["slug"])
        return pulumi.dynamic.CreateResult(props["slug"], _registration_outputs(props, row))

    @staticmethod
    def _write(
        conn: psycopg.Connection,
        props: Mapping[str, Any],
        current: Mapping[str, Any],
        wanted_hash: str,
        enabled: bool,
    ) -> None:
        rotate = current["token_sha256"] != wanted_hash
        conn.execute(
            sql.SQL(
                "UPDATE {} SET schema_name = %(schema)s, topic_prefix = %(prefix)s, enabled = %(enabled)s, "
                "token_sha256 = %(hash)s, "
                # The previous token stays valid for the grace period, so messages already queued
                # in EMQX with the old bearer token are not refused while the action is updated.
                "previous_token_sha256 = CASE WHEN %(rotate)s THEN token_sha256 ELSE previous_token_sha256 END, "
                "previous_token_expires_at = CASE WHEN %(rotate)s THEN now() + %(grace)s::interval "
                "ELSE previous_token_expires_at END "
                "WHERE slug = %(slug)s"
            ).format(_TABLE),
            {
                "schema": props["schema_name"],
                "prefix": props["topic_prefix"],
                "enabled": enabled,
                "hash": wanted_hash,
                "rotate": rotate,
                "grace": props.get("token_grace") or DEFAULT_TOKEN_GRACE,
                "slug": props["slug"],
            },
        )

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        name = _name(props)
        with connect(props["dsn"], name, _timeout(props)) as conn, sql_call(name, "reading the registry row"):
            row = _row(conn, props["slug"]) if _registry_exists(conn) else None
        if row is None:
            return pulumi.dynamic.ReadResult("", {})
        return pulumi.dynamic.ReadResult(id_, _registration_outputs(props, row))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = ["slug"] if is_unknown(news.get("slug")) or olds.get("slug") != news.get("slug") else []
        changed = list(replaces)
        for key in ("schema_name", "topic_prefix", "dsn", "ready_timeout", "token_grace"):
            if is_unknown(news.get(key)) or olds.get(key) != news.get(key):
                changed.append(key)
        old_enabled = True if olds.get("enabled") is None else bool(olds["enabled"])
        new_enabled = news.get("enabled")
        if is_unknown(new_enabled) or old_enabled != (True if new_enabled is None else bool(new_enabled)):
            changed.append("enabled")
        token = news.get("token")
        if is_unknown(token) or token_sha256(token) != olds.get("token_sha256"):
            changed.append("token")
        return pulumi.dynamic.DiffResult(
            changes=bool(changed),
            replaces=replaces,
            stables=[] if replaces else ["slug"],
            # The new row may carry the same schema and prefix, which are unique in the registry.
            delete_before_replace=bool(replaces),
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        name = _name(news)
        enabled = True if news.get("enabled") is None else bool(news["enabled"])
        with connect(news["dsn"], name, _timeout(news)) as conn:
            with sql_call(name, "reading the registry row"):
                current = _row(conn, news["slug"]) if _registry_exists(conn) else None
            if current is None:
                raise ProviderError(
                    f"{name}: the registry row is gone from the server; run `pulumi refresh` so that the "
                    "next `pulumi up` registers the tenant again"
                )
            try:
                self._write(conn, news, current, token_sha256(news["token"]), enabled)
            except psycopg.errors.UniqueViolation as error:
                raise _explain_conflict(conn, news, error) from None
            except psycopg.Error as error:
                raise ProviderError(f"{name}: updating the registry row failed: {error_reason(error)}") from None
            with sql_call(name, "committing the registry row"):
                conn.commit()
                row = _row(conn, news["slug"])
        return pulumi.dynamic.UpdateResult(_registration_outputs(news, row))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        name = _name(props)
        with connect(props["dsn"], name, _timeout(props)) as conn, sql_call(name, "deleting the registry row"):
            if _registry_exists(conn):
                conn.execute(sql.SQL("DELETE FROM {} WHERE slug = %s").format(_TABLE), (props["slug"],))
            conn.commit()


@dataclass
class TenantRegistrationArgs:
    """Inputs of :class:`TenantRegistration` (each may be a ``pulumi.Input``)."""

    dsn: pulumi.Input[str]
    """Superuser DSN; stored as a secret."""
    slug: pulumi.Input[str]
    schema_name: pulumi.Input[str]
    topic_prefix: pulumi.Input[str]
    token: pulumi.Input[str]
    """The tenant's bearer token (e.g. ``pulumi_random.RandomPassword.result``); only its hash leaves the provider."""
    enabled: pulumi.Input[bool] = True
    token_grace: pulumi.Input[str] = DEFAULT_TOKEN_GRACE
    ready_timeout: pulumi.Input[float] | None = None


class TenantRegistration(pulumi.dynamic.Resource, module="telemetry", name="TenantRegistration"):
    """One tenant's row in the registry the ingest service reads."""

    dsn: pulumi.Output[str]
    slug: pulumi.Output[str]
    schema_name: pulumi.Output[str]
    topic_prefix: pulumi.Output[str]
    enabled: pulumi.Output[bool]
    token_grace: pulumi.Output[str]
    token_sha256: pulumi.Output[str]
    previous_token_sha256: pulumi.Output[str | None]
    previous_token_expires_at: pulumi.Output[str | None]

    def __init__(self, resource_name: str, args: TenantRegistrationArgs, opts: pulumi.ResourceOptions | None = None):
        props = {
            "dsn": pulumi.Output.secret(args.dsn),
            "slug": args.slug,
            "schema_name": args.schema_name,
            "topic_prefix": args.topic_prefix,
            "token": pulumi.Output.secret(args.token),
            "enabled": args.enabled,
            "token_grace": args.token_grace,
            "ready_timeout": args.ready_timeout,
            "token_sha256": None,
            "previous_token_sha256": None,
            "previous_token_expires_at": None,
        }
        secret_outputs = ["dsn", "token", "token_sha256", "previous_token_sha256"]
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=secret_outputs))
        super().__init__(TenantRegistrationProvider(), resource_name, props, opts)
