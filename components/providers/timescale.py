"""Dynamic provider for one tenant's ``telemetry`` hypertable and its policies.

The schema itself is a ``pulumi_postgresql.Schema`` (it carries the grants);
this provider owns what pulumi-postgresql cannot express: the TimescaleDB
extension, the table and indexes from :mod:`telemetry_ddl`, the hypertable and
its retention and compression policies.  Every method opens its own
connection from the ``dsn`` input: the provider is pickled into the state and
runs in another process, so nothing may be captured at import time.

Connecting and error wording come from ``postgres.py``; interval comparison
from ``intervals.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import pulumi
import pulumi.dynamic
from psycopg import sql

from components.providers.intervals import interval_micros, same_interval, same_window
from components.providers.postgres import (
    DEFAULT_READY_TIMEOUT,
    ProviderError,
    connect,
    error_reason,
    is_unknown,
    server_host,
    sql_call,
)
from components.providers.telemetry_ddl import TELEMETRY_TABLE, telemetry_table_ddl

TELEMETRY_COLUMNS = ("time", "device_id", "topic", "payload", "msg_id", "received_at")


# How each interval input is compared with the server's value.
_SAME = {"chunk_interval": same_interval, "retention": same_window, "compress_after": same_window}


def _keep_spelling(actual: str | None, preferred: str | None, same=same_interval) -> str | None:
    """Report the user's own spelling when the server's value means the same span."""
    return preferred if actual is not None and same(actual, preferred) else actual


# --------------------------------------------------------------------------- hypertable state


@dataclass(frozen=True)
class HypertableState:
    """What exists on the server for one tenant's telemetry table."""

    table_exists: bool
    columns: tuple[str, ...] = ()
    timescaledb_version: str | None = None
    is_hypertable: bool = False
    chunk_interval: str | None = None
    compression_enabled: bool = False
    retention: str | None = None
    retention_job_id: int | None = None
    compress_after: str | None = None
    compression_job_id: int | None = None


def _resource_name(props: Mapping[str, Any]) -> str:
    return f"Hypertable {props.get('schema_name')}.{TELEMETRY_TABLE}"


def _relation(schema_name: str) -> sql.Composed:
    return sql.Identifier(schema_name, TELEMETRY_TABLE)


def _regclass(schema_name: str) -> sql.Composed:
    # regclass input parses a quoted identifier, so the quoting is done by sql.Identifier.
    return sql.SQL("{}::regclass").format(sql.Literal(_relation(schema_name).as_string(None)))


def _timescaledb_version(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row[0] if row else None


def read_state(conn: psycopg.Connection, schema_name: str) -> HypertableState:
    """The real state from the catalog and ``timescaledb_information`` (for read, diff and adopt)."""
    # Interval text follows the session's IntervalStyle, which a database or role may set to
    # iso_8601 ('P1D'); the policies this transaction adds store their windows in it too.
    conn.execute("SET LOCAL IntervalStyle = 'postgres'")
    columns = tuple(
        row[0]
        for row in conn.execute(
            "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (schema_name, TELEMETRY_TABLE),
        )
    )
    if not columns:
        return HypertableState(table_exists=False)
    version = _timescaledb_version(conn)
    if version is None:
        return HypertableState(table_exists=True, columns=columns)
    hypertable = conn.execute(
        "SELECT h.compression_enabled, d.time_interval::text "
        "FROM timescaledb_information.hypertables h "
        "LEFT JOIN timescaledb_information.dimensions d "
        "  ON d.hypertable_schema = h.hypertable_schema AND d.hypertable_name = h.hypertable_name "
        "  AND d.column_name = 'time' "
        "WHERE h.hypertable_schema = %s AND h.hypertable_name = %s",
        (schema_name, TELEMETRY_TABLE),
    ).fetchone()
    if hypertable is None:
        return HypertableState(table_exists=True, columns=columns, timescaledb_version=version)
    jobs = conn.execute(
        "SELECT proc_name, job_id, config->>'drop_after', config->>'compress_after' "
        "FROM timescaledb_information.jobs "
        "WHERE hypertable_schema = %s AND hypertable_name = %s "
        "AND proc_name IN ('policy_retention', 'policy_compression') ORDER BY job_id",
        (schema_name, TELEMETRY_TABLE),
    ).fetchall()
    retention = next(((job_id, drop) for proc, job_id, drop, _ in jobs if proc == "policy_retention"), (None, None))
    compression = next(
        ((job_id, after) for proc, job_id, _, after in jobs if proc == "policy_compression"), (None, None)
    )
    return HypertableState(
        table_exists=True,
        columns=columns,
        timescaledb_version=version,
        is_hypertable=True,
        chunk_interval=hypertable[1],
        compression_enabled=bool(hypertable[0]),
        retention=retention[1],
        retention_job_id=retention[0],
        compress_after=compression[1],
        compression_job_id=compression[0],
    )


def _differences(state: HypertableState, props: Mapping[str, Any]) -> list[str]:
    """How an existing hypertable conflicts with the inputs, one phrase per property.

    A policy missing on the server is no conflict (create adds it: that is how a
    tenant removed with its data kept comes back); a policy or chunk interval
    that is there with another value is.
    """
    found = []
    if not state.is_hypertable:
        return found
    for label, actual, wanted in (
        ("chunk_interval", state.chunk_interval, props.get("chunk_interval")),
        ("retention", state.retention, props.get("retention")),
        ("compress_after", state.compress_after, props.get("compress_after")),
    ):
        if label != "chunk_interval" and actual is None:
            continue
        if not _SAME[label](actual, wanted):
            found.append(f"{label} is {_show(actual)} on the server but {_show(wanted)} in the stack")
    return found


def _show(value: str | None) -> str:
    return "not set" if value is None else repr(value)


def _outputs(props: Mapping[str, Any], state: HypertableState) -> dict[str, Any]:
    return {
        "dsn": props["dsn"],
        "schema_name": props["schema_name"],
        "table": TELEMETRY_TABLE,
        "chunk_interval": _keep_spelling(state.chunk_interval, props.get("chunk_interval")),
        "retention": _keep_spelling(state.retention, props.get("retention"), same_window),
        "compress_after": _keep_spelling(state.compress_after, props.get("compress_after"), same_window),
        "retention_job_id": state.retention_job_id,
        "compression_job_id": state.compression_job_id,
        "timescaledb_version": state.timescaledb_version,
        "drop_data_on_delete": bool(props.get("drop_data_on_delete") or False),
        "ready_timeout": props.get("ready_timeout"),
    }


# --------------------------------------------------------------------------- provider


def _ensure_timescaledb(conn: psycopg.Connection, props: Mapping[str, Any]) -> None:
    """Create the extension, or raise the one error that names the cause and the fix."""
    host = server_host(props["dsn"])
    fix = "use the timescale/timescaledb image or add shared_preload_libraries=timescaledb"

    def unavailable(cause: str) -> ProviderError:
        return ProviderError(f"{_resource_name(props)}: TimescaleDB is not available on {host}: {cause}; {fix}")

    with sql_call(_resource_name(props), "checking for the timescaledb extension"):
        available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
        preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
    if available is None:
        raise unavailable("the timescaledb extension is not installed on the server (no timescaledb.control)")
    if "timescaledb" not in [lib.strip().strip('"') for lib in preload.split(",")]:
        raise unavailable("the server was not started with timescaledb in shared_preload_libraries")
    try:
        if _timescaledb_version(conn) is None:
            # Tenants are created in parallel; concurrent CREATE EXTENSION IF NOT EXISTS can still collide.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('telemetry:create extension timescaledb'))")
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as error:
        raise unavailable(f"CREATE EXTENSION timescaledb failed: {error_reason(error)}") from None


def _require_schema(conn: psycopg.Connection, props: Mapping[str, Any]) -> None:
    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (props["schema_name"],)).fetchone() is None:
        raise ProviderError(
            f"{_resource_name(props)}: schema {props['schema_name']!r} does not exist; it is created by the "
            "tenant's pulumi_postgresql.Schema: make the Hypertable depend on it (or create the schema first)"
        )


def _enable_compression(conn: psycopg.Connection, schema_name: str) -> None:
    conn.execute(
        sql.SQL(
            "ALTER TABLE {} SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id', "
            "timescaledb.compress_orderby = 'time DESC')"
        ).format(_relation(schema_name))
    )


def _set_retention(conn: psycopg.Connection, schema_name: str, retention: str | None) -> None:
    # if_not_exists keeps an existing policy with another window: remove, then add.
    conn.execute(sql.SQL("SELECT remove_retention_policy({}, if_exists => true)").format(_regclass(schema_name)))
    if retention is not None:
        conn.execute(
            sql.SQL("SELECT add_retention_policy({}, drop_after => %s::interval)").format(_regclass(schema_name)),
            (retention,),
        )


def _set_compression(
    conn: psycopg.Connection, schema_name: str, compress_after: str | None, compression_enabled: bool
) -> None:
    conn.execute(sql.SQL("SELECT remove_compression_policy({}, if_exists => true)").format(_regclass(schema_name)))
    if compress_after is not None:
        if not compression_enabled:
            _enable_compression(conn, schema_name)
        conn.execute(
            sql.SQL("SELECT add_compression_policy({}, compress_after => %s::interval)").format(_regclass(schema_name)),
            (compress_after,),
        )


def _converge(conn: psycopg.Connection, props: Mapping[str, Any], state: HypertableState) -> None:
    """Change chunk interval and policies of an existing hypertable to the inputs (one transaction)."""
    name, schema_name = _resource_name(props), props["schema_name"]
    if not same_interval(state.chunk_interval, props["chunk_interval"]):
        with sql_call(name, f"set_chunk_time_interval({props['chunk_interval']!r})"):
            conn.execute(
                sql.SQL("SELECT set_chunk_time_interval({}, %s::interval)").format(_regclass(schema_name)),
                (props["chunk_interval"],),
            )
    if not same_window(state.retention, props.get("retention")):
        with sql_call(name, f"setting the retention policy to {_show(props.get('retention'))}"):
            _set_retention(conn, schema_name, props.get("retention"))
    if not same_window(state.compress_after, props.get("compress_after")):
        with sql_call(name, f"setting the compression policy to {_show(props.get('compress_after'))}"):
            _set_compression(conn, schema_name, props.get("compress_after"), state.compression_enabled)


class HypertableProvider(pulumi.dynamic.ResourceProvider):
    """Creates, reads, updates and deletes one tenant's ``telemetry`` hypertable."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = []
        for key in ("chunk_interval", "retention", "compress_after"):
            value = news.get(key)
            if value is None or is_unknown(value):
                if key == "chunk_interval" and value is None:
                    failures.append(pulumi.dynamic.CheckFailure(key, "chunk_interval is required, e.g. '1 day'"))
                continue
            try:
                if interval_micros(value) <= 0:
                    failures.append(
                        pulumi.dynamic.CheckFailure(key, f"{key} must be a positive interval, not {value!r}")
                    )
            except ValueError as error:
                failures.append(
                    pulumi.dynamic.CheckFailure(key, f"{key}: {error}; write it like '1 day', '12 hours' or '365 days'")
                )
        return pulumi.dynamic.CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        name, schema_name = _resource_name(props), props["schema_name"]
        with connect(props["dsn"], name, props.get("ready_timeout") or DEFAULT_READY_TIMEOUT) as conn:
            _ensure_timescaledb(conn, props)
            with sql_call(name, "committing CREATE EXTENSION timescaledb"):
                conn.commit()
            with sql_call(name, "reading the existing schema and table"):
                _require_schema(conn, props)
                existing = read_state(conn, schema_name)
            missing = [column for column in TELEMETRY_COLUMNS if column not in existing.columns]
            if existing.table_exists and missing:
                raise ProviderError(
                    f"{name}: a table {schema_name}.{TELEMETRY_TABLE} already exists without the column(s) "
                    f"{', '.join(missing)}; rename or drop it, or give the tenant another schema"
                )
            differences = _differences(existing, props)
            if differences:
                raise ProviderError(
                    f"{name}: a hypertable already exists with different settings: {'; '.join(differences)}. "
                    "Set the stack config to the server's values to adopt it, or change the server "
                    "(set_chunk_time_interval, remove_retention_policy/remove_compression_policy) and run up again"
                )
            if existing.is_hypertable:
                pulumi.log.info(
                    f"{name}: adopting the existing hypertable (same chunk interval and policies; missing policies are added)"
                )
            with sql_call(name, "creating the telemetry table and indexes"):
                for statement in telemetry_table_ddl(schema_name):
                    conn.execute(statement)
            with sql_call(name, f"create_hypertable(chunk interval {props['chunk_interval']!r})"):
                conn.execute(
                    sql.SQL(
                        "SELECT create_hypertable({}, by_range('time', %s::interval), if_not_exists => true)"
                    ).format(_regclass(schema_name)),
                    (props["chunk_interval"],),
                )
            with sql_call(name, "reading the new hypertable"):
                state = read_state(conn, schema_name)
            _converge(conn, props, state)
            with sql_call(name, "committing the hypertable and its policies"):
                conn.commit()
                state = read_state(conn, schema_name)
        return pulumi.dynamic.CreateResult(f"{schema_name}.{TELEMETRY_TABLE}", _outputs(props, state))

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        name = _resource_name(props)
        with (
            connect(props["dsn"], name, props.get("ready_timeout") or DEFAULT_READY_TIMEOUT) as conn,
            sql_call(name, "reading timescaledb_information"),
        ):
            state = read_state(conn, props["schema_name"])
        if not state.table_exists:
            # An empty id tells the engine the resource is gone (refresh drops it from the state).
            return pulumi.dynamic.ReadResult("", {})
        return pulumi.dynamic.ReadResult(id_, _outputs(props, state))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = []
        if is_unknown(news.get("schema_name")) or olds.get("schema_name") != news.get("schema_name"):
            replaces.append("schema_name")
        changed = list(replaces)
        for key in ("chunk_interval", "retention", "compress_after"):
            if is_unknown(news.get(key)) or not _SAME[key](olds.get(key), news.get(key)):
                changed.append(key)
        for key in ("dsn", "ready_timeout"):
            if is_unknown(news.get(key)) or olds.get(key) != news.get(key):
                changed.append(key)
        if bool(olds.get("drop_data_on_delete")) != bool(news.get("drop_data_on_delete")):
            changed.append("drop_data_on_delete")
        return pulumi.dynamic.DiffResult(
            changes=bool(changed),
            replaces=replaces,
            stables=[] if replaces else ["schema_name", "table"],
            delete_before_replace=False,
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        name, schema_name = _resource_name(news), news["schema_name"]
        with connect(news["dsn"], name, news.get("ready_timeout") or DEFAULT_READY_TIMEOUT) as conn:
            with sql_call(name, "reading the current hypertable"):
                state = read_state(conn, schema_name)
            if not state.is_hypertable:
                raise ProviderError(
                    f"{name}: the hypertable no longer exists on the server; run `pulumi refresh` "
                    "so that the next `pulumi up` creates it again"
                )
            _converge(conn, news, state)
            with sql_call(name, "committing the new settings"):
                conn.commit()
                state = read_state(conn, schema_name)
        return pulumi.dynamic.UpdateResult(_outputs(news, state))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        name, schema_name = _resource_name(props), props["schema_name"]
        with connect(props["dsn"], name, props.get("ready_timeout") or DEFAULT_READY_TIMEOUT) as conn:
            with sql_call(name, "reading the hypertable before delete"):
                state = read_state(conn, schema_name)
            if not state.table_exists:
                return
            if props.get("drop_data_on_delete"):
                with sql_call(name, "DROP TABLE"):
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(_relation(schema_name)))
                    conn.commit()
                pulumi.log.warn(f"{name}: dropped the table and all its data (drop_data_on_delete is set)")
                return
            # The data stays; the background jobs go, because every job holds one of the
            # server's timescaledb.max_background_workers, which are sized from the tenant count.
            if state.is_hypertable:
                with sql_call(name, "removing the retention and compression policies"):
                    conn.execute(
                        sql.SQL("SELECT remove_retention_policy({}, if_exists => true)").format(_regclass(schema_name))
                    )
                    conn.execute(
                        sql.SQL("SELECT remove_compression_policy({}, if_exists => true)").format(
                            _regclass(schema_name)
                        )
                    )
                    conn.commit()
            pulumi.log.warn(
                f"{name}: kept the table {schema_name}.{TELEMETRY_TABLE} with its data, indexes and hypertable "
                "settings and removed its retention and compression policies; drop it by hand, or set "
                "drop_data_on_delete=true before deleting to have it dropped"
            )


# --------------------------------------------------------------------------- resource


@dataclass
class HypertableArgs:
    """Inputs of :class:`Hypertable` (each may be a ``pulumi.Input``)."""

    dsn: pulumi.Input[str]
    """Superuser DSN of the tenant database; stored as a secret."""
    schema_name: pulumi.Input[str]
    chunk_interval: pulumi.Input[str] = "1 day"
    retention: pulumi.Input[str] | None = None
    compress_after: pulumi.Input[str] | None = None
    drop_data_on_delete: pulumi.Input[bool] = False
    ready_timeout: pulumi.Input[float] | None = None


class Hypertable(pulumi.dynamic.Resource, module="telemetry", name="Hypertable"):
    """One tenant's ``telemetry`` hypertable with its retention and compression policies."""

    dsn: pulumi.Output[str]
    schema_name: pulumi.Output[str]
    table: pulumi.Output[str]
    chunk_interval: pulumi.Output[str]
    retention: pulumi.Output[str | None]
    compress_after: pulumi.Output[str | None]
    retention_job_id: pulumi.Output[int | None]
    compression_job_id: pulumi.Output[int | None]
    timescaledb_version: pulumi.Output[str]
    drop_data_on_delete: pulumi.Output[bool]

    def __init__(self, resource_name: str, args: HypertableArgs, opts: pulumi.ResourceOptions | None = None):
        props = {
            "dsn": pulumi.Output.secret(args.dsn),
            "schema_name": args.schema_name,
            "chunk_interval": args.chunk_interval,
            "retention": args.retention,
            "compress_after": args.compress_after,
            "drop_data_on_delete": args.drop_data_on_delete,
            "ready_timeout": args.ready_timeout,
            "table": None,
            "retention_job_id": None,
            "compression_job_id": None,
            "timescaledb_version": None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["dsn"]))
        super().__init__(HypertableProvider(), resource_name, props, opts)
