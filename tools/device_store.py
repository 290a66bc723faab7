"""The device rows of the registry, as the device-manager role reads and writes them.

Every write is one transaction: an import either adds every line or none, and
a command naming several devices changes all of them or none.  Errors a user
can meet are :class:`tools.ToolError` sentences.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from components.devices import device_id_problem, new_credential
from components.providers.postgres import error_reason, server_address
from components.providers.telemetry_ddl import DEVICES_TABLE, REGISTRY_SCHEMA, REGISTRY_TABLE
from tools import ToolError

DEVICES = sql.Identifier(REGISTRY_SCHEMA, DEVICES_TABLE)
TENANTS = sql.Identifier(REGISTRY_SCHEMA, REGISTRY_TABLE)
COPY_COLUMNS = ("device_id", "tenant", "password_hash", "salt", "enabled", "label")


@dataclass(frozen=True)
class Tenant:
    slug: str
    topic_prefix: str
    enabled: bool


@dataclass(frozen=True)
class Device:
    device_id: str
    tenant: str
    enabled: bool
    label: str | None
    created_at: datetime
    rotated_at: datetime
    password_hash: str
    salt: str


@dataclass(frozen=True)
class NewDevice:
    """One row to insert; ``password`` is None when the row came with a hash (a restore)."""

    device_id: str
    password_hash: str
    salt: str
    enabled: bool = True
    label: str | None = None
    password: str | None = None
    line: int | None = None  # where it came from in an import file


@dataclass(frozen=True)
class Credential:
    tenant: str
    topic_prefix: str
    device_id: str
    password: str


def generated(device_id: str, *, label: str | None = None, enabled: bool = True, password: str | None = None,
              line: int | None = None) -> NewDevice:
    password, salt, password_hash = new_credential(password)
    return NewDevice(device_id, password_hash, salt, enabled, label, password, line)


def connect(dsn: str) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn, connect_timeout=10)
    except psycopg.ProgrammingError:
        raise ToolError(
            "the database connection string is not valid (its text is not shown: it may hold a password); "
            "check --dsn, or the stack's deviceManagerDsn output"
        ) from None
    except psycopg.OperationalError as error:
        raise ToolError(
            f"cannot connect to PostgreSQL at {server_address(dsn)}: {error_reason(error)}; "
            "check that the stack is up and that --dsn (or the stack's deviceManagerDsn) is current",
            exit_code=1,
        ) from None


def _sql_error(call: str, error: psycopg.Error) -> ToolError:
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return ToolError(
            f"{call} was refused by the database ({error_reason(error)}): connect as the stack's device-manager "
            "role (deviceManagerDsn), and deploy the current program so that its grants exist"
        )
    if isinstance(error, psycopg.errors.UndefinedTable):
        return ToolError(
            f"{call} failed: the registry has no devices table ({error_reason(error)}); "
            "deploy the current program (`pulumi up`) first"
        )
    return ToolError(f"{call} failed: {error_reason(error)}", exit_code=1)


def _tenants(conn: psycopg.Connection) -> list[Tenant]:
    cursor = conn.cursor(row_factory=class_row(Tenant))
    return cursor.execute(sql.SQL("SELECT slug, topic_prefix, enabled FROM {} ORDER BY slug").format(TENANTS)).fetchall()


def require_tenant(conn: psycopg.Connection, slug: str) -> Tenant:
    """The tenant, or a sentence naming the known ones."""
    tenant, tenants = _find_tenant(conn, slug)
    if tenant is None:
        known = ", ".join(t.slug for t in tenants) or "none"
        raise ToolError(
            f"unknown tenant '{slug}' (tenants in the registry: {known}): check --tenant, or add the tenant to "
            "telemetry:tenants and run `pulumi up`"
        )
    return tenant


def _find_tenant(conn: psycopg.Connection, slug: str) -> tuple[Tenant | None, list[Tenant]]:
    try:
        tenants = _tenants(conn)
    except psycopg.Error as error:
        conn.rollback()
        raise _sql_error("reading the tenant registry", error) from None
    return next((t for t in tenants if t.slug == slug), None), tenants


def tenant_or_orphans(conn: psycopg.Connection, slug: str) -> Tenant | None:
    """The tenant; None if it left the registry but still has devices (they can no longer connect)."""
    tenant, _ = _find_tenant(conn, slug)
    if tenant is None and devices_of(conn, slug, limit=1):
        return None
    return tenant or require_tenant(conn, slug)


def devices_of(conn: psycopg.Connection, slug: str, limit: int | None = None) -> list[Device]:
    query = sql.SQL(
        "SELECT device_id, tenant, enabled, label, created_at, rotated_at, password_hash, salt "
        "FROM {} WHERE tenant = %s ORDER BY device_id"
    ).format(DEVICES)
    if limit is not None:
        query = sql.SQL("{} LIMIT {}").format(query, sql.Literal(limit))
    try:
        return conn.cursor(row_factory=class_row(Device)).execute(query, (slug,)).fetchall()
    except psycopg.Error as error:
        raise _sql_error("reading the devices", error) from None


def owners(conn: psycopg.Connection, device_ids: Sequence[str]) -> dict[str, str]:
    """device id -> tenant, for those of ``device_ids`` that exist (in any tenant)."""
    rows = conn.execute(
        sql.SQL("SELECT device_id, tenant FROM {} WHERE device_id = ANY(%s)").format(DEVICES), (list(device_ids),)
    ).fetchall()
    return dict(rows)


def _where(line: int | None) -> str:
    return f"line {line}: " if line is not None else ""


def add_devices(conn: psycopg.Connection, tenant: Tenant, devices: Sequence[NewDevice],
                progress: Callable[[int], None] | None = None) -> None:
    """Insert every device or none: ids are checked first, so a duplicate is named with its line."""
    for device in devices:
        problem = device_id_problem(device.device_id)
        if problem:
            raise ToolError(f"{_where(device.line)}{problem}")
    try:
        taken = owners(conn, [d.device_id for d in devices])
    except psycopg.Error as error:
        raise _sql_error("checking the device ids", error) from None
    if taken:
        clashes = [d for d in devices if d.device_id in taken]
        shown = "; ".join(
            f"{_where(d.line)}'{d.device_id}' already exists"
            + (f" in tenant '{taken[d.device_id]}'" if taken[d.device_id] != tenant.slug else "")
            for d in clashes[:10]
        )
        more = f" (and {len(clashes) - 10} more)" if len(clashes) > 10 else ""
        raise ToolError(
            f"{shown}{more}: device ids are unique in the whole stack; choose other ids, or `rotate` the "
            "existing device to give it a new password. Nothing was added."
        )
    try:
        with conn.cursor() as cursor:
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
                DEVICES, sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS))
            )
            with cursor.copy(copy_sql) as copy:
                for done, device in enumerate(devices, 1):
                    copy.write_row(
                        (device.device_id, tenant.slug, device.password_hash, device.salt, device.enabled, device.label)
                    )
                    if progress and done % 500 == 0:
                        progress(500)
        conn.commit()
    except psycopg.errors.UniqueViolation:
        conn.rollback()
        raise ToolError(
            "another run added some of these device ids meanwhile; nothing was added: run the command again",
            exit_code=1,
        ) from None
    except psycopg.Error as error:
        conn.rollback()
        raise _sql_error("adding the devices", error) from None
    if progress:
        progress(len(devices) % 500)


def _only_in_tenant(conn: psycopg.Connection, tenant_slug: str, device_ids: Sequence[str]) -> None:
    """Refuse ids that do not exist or belong to another tenant: name each."""
    if len(set(device_ids)) != len(device_ids):
        repeated = sorted({d for d in device_ids if device_ids.count(d) > 1})
        raise ToolError(f"{', '.join(map(repr, repeated))} given more than once: name each device once")
    try:
        taken = owners(conn, device_ids)
    except psycopg.Error as error:
        raise _sql_error("looking up the devices", error) from None
    missing = [d for d in device_ids if d not in taken]
    elsewhere = [d for d in device_ids if d in taken and taken[d] != tenant_slug]
    problems = []
    if missing:
        problems.append(f"no device {', '.join(map(repr, missing))} in tenant '{tenant_slug}'")
    if elsewhere:
        problems.append(
            f"{', '.join(map(repr, elsewhere))} belong(s) to another tenant, not '{tenant_slug}'"
        )
    if problems:
        raise ToolError("; ".join(problems) + ": check the ids with `list` (nothing was changed)")


def set_enabled(conn: psycopg.Connection, tenant_slug: str, device_ids: Sequence[str], enabled: bool) -> int:
    _only_in_tenant(conn, tenant_slug, device_ids)
    try:
        changed = conn.execute(
            sql.SQL("UPDATE {} SET enabled = %s WHERE tenant = %s AND device_id = ANY(%s) AND enabled <> %s").format(
                DEVICES
            ),
            (enabled, tenant_slug, list(device_ids), enabled),
        ).rowcount
        conn.commit()
    except psycopg.Error as error:
        conn.rollback()
        raise _sql_error("updating the devices", error) from None
    return changed


def rotate(conn: psycopg.Connection, tenant: Tenant, device_ids: Sequence[str]) -> list[Credential]:
    _only_in_tenant(conn, tenant.slug, device_ids)
    credentials = []
    try:
        for device_id in device_ids:
            password, salt, password_hash = new_credential()
            conn.execute(
                sql.SQL(
                    "UPDATE {} SET password_hash = %s, salt = %s, rotated_at = now() WHERE tenant = %s AND device_id = %s"
                ).format(DEVICES),
                (password_hash, salt, tenant.slug, device_id),
            )
            credentials.append(Credential(tenant.slug, tenant.topic_prefix, device_id, password))
        conn.commit()
    except psycopg.Error as error:
        conn.rollback()
        raise _sql_error("rotating the passwords", error) from None
    return credentials


def remove(conn: psycopg.Connection, tenant_slug: str, device_ids: Sequence[str]) -> int:
    _only_in_tenant(conn, tenant_slug, device_ids)
    try:
        removed = conn.execute(
            sql.SQL("DELETE FROM {} WHERE tenant = %s AND device_id = ANY(%s)").format(DEVICES),
            (tenant_slug, list(device_ids)),
        ).rowcount
        conn.commit()
    except psycopg.Error as error:
        conn.rollback()
        raise _sql_error("removing the devices", error) from None
    return removed


def credentials_of(tenant: Tenant, devices: Iterable[NewDevice]) -> list[Credential]:
    return [Credential(tenant.slug, tenant.topic_prefix, d.device_id, d.password) for d in devices if d.password]
