"""The tenant isolation plan, as data.

One plan, two consumers: the Tenant component turns each entry into a
``pulumi_postgresql.Grant`` or ``pulumi_postgresql.DefaultPrivileges``
(:func:`to_pulumi_args`), and the isolation tests apply the very same entries
as SQL (:func:`to_sql`) because pulumi-postgresql cannot run without the
Pulumi CLI.  :func:`to_sql` therefore issues exactly what those resources
issue on create: a ``REVOKE`` of what the role holds on the target followed by
the ``GRANT``, in one transaction.  That makes each resource authoritative for
its (role, schema, object type): two entries with the same key would undo each
other, which :func:`check_plan` rejects.

The plan:

* a tenant's reader role: USAGE on its own schema; SELECT on every table in
  it, including tables created later by the table owner (default privileges);
  nothing else, so not other tenants and not the registry;
* the single writer role of the ingest service: USAGE on every tenant schema
  and INSERT on each tenant's ``telemetry`` table; USAGE on the registry schema
  and SELECT on its ``tenants`` table.  No SELECT on telemetry: the service
  writes ``ON CONFLICT DO NOTHING`` without a conflict target, which needs
  INSERT only (a target such as ``(msg_id, time)`` would need SELECT on those
  columns).  TimescaleDB copies a hypertable's privileges to its chunks;
* the EMQX device-auth role (what EMQX's PostgreSQL authenticator and
  authorization source log in as): USAGE on the registry schema and EXECUTE on
  the two lookup functions, nothing else: it cannot read a table, so it
  cannot list devices or hashes; it learns one device's row by presenting
  that device's id as both username and client id;
* the device-manager role (what ``python -m tools.devices`` writes through):
  USAGE on the registry schema, SELECT/INSERT/UPDATE/DELETE on ``devices``
  and SELECT on the tenant columns it checks (slug, topic prefix, enabled),
  not the token hashes; nothing of any tenant's telemetry.

Role, schema and owner names may be ``pulumi.Input[str]`` for
:func:`to_pulumi_args`; :func:`to_sql` needs plain strings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from components.providers.telemetry_ddl import (
    DEVICES_TABLE,
    EMQX_ACL_FUNCTION,
    EMQX_AUTHN_FUNCTION,
    REGISTRY_SCHEMA,
    REGISTRY_TABLE,
    TELEMETRY_TABLE,
)

_PRIVILEGES = {
    "SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "USAGE", "CREATE", "EXECUTE"
}

# The login roles of the device path (created by the stack; their passwords are stack secrets).
EMQX_AUTH_ROLE = "telemetry_emqx_auth"
DEVICE_MANAGER_ROLE = "telemetry_device_manager"
# What the device manager may read of a tenant: enough to check it, not its token hashes.
TENANT_COLUMNS_FOR_DEVICE_MANAGER = ("slug", "topic_prefix", "enabled")


def _privileges(values: Iterable[str]) -> tuple[str, ...]:
    normalised = tuple(sorted({value.upper() for value in values}))
    unknown = [value for value in normalised if value not in _PRIVILEGES]
    if unknown:
        raise ValueError(f"unknown privilege(s) {', '.join(unknown)}; use some of {', '.join(sorted(_PRIVILEGES))}")
    if not normalised:
        raise ValueError("a grant needs at least one privilege")
    return normalised


@dataclass(frozen=True)
class SchemaGrant:
    """``pulumi_postgresql.Grant`` with ``object_type="schema"``."""

    role: Any
    schema: Any
    privileges: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "privileges", _privileges(self.privileges))


@dataclass(frozen=True)
class TableGrant:
    """``pulumi_postgresql.Grant`` with ``object_type="table"``; no ``tables`` means every table existing now."""

    role: Any
    schema: Any
    privileges: tuple[str, ...]
    tables: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "privileges", _privileges(self.privileges))
        object.__setattr__(self, "tables", tuple(self.tables))


@dataclass(frozen=True)
class DefaultPrivilege:
    """``pulumi_postgresql.DefaultPrivileges``: privileges on objects ``owner`` creates later in ``schema``."""

    owner: Any
    role: Any
    schema: Any
    privileges: tuple[str, ...]
    object_type: str = "table"

    def __post_init__(self) -> None:
        object.__setattr__(self, "privileges", _privileges(self.privileges))
        if self.object_type not in ("table", "sequence"):
            raise ValueError(f"object_type {self.object_type!r} is not planned here; use 'table' or 'sequence'")


@dataclass(frozen=True)
class FunctionGrant:
    """``pulumi_postgresql.Grant`` with ``object_type="function"`` and named ``functions`` (never all)."""

    role: Any
    schema: Any
    privileges: tuple[str, ...]
    functions: tuple[Any, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "privileges", _privileges(self.privileges))
        object.__setattr__(self, "functions", tuple(self.functions))
        if not self.functions:
            raise ValueError("a function grant names its functions; granting on all functions is not planned")


@dataclass(frozen=True)
class ColumnGrant:
    """``pulumi_postgresql.Grant`` with ``object_type="column"``: privileges on some columns of one table."""

    role: Any
    schema: Any
    privileges: tuple[str, ...]
    table: Any
    columns: tuple[Any, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "privileges", _privileges(self.privileges))
        object.__setattr__(self, "columns", tuple(self.columns))
        if not self.columns:
            raise ValueError("a column grant names its columns")


PlannedGrant = SchemaGrant | TableGrant | DefaultPrivilege | FunctionGrant | ColumnGrant


# --------------------------------------------------------------------------- the plan


def reader_grants(schema: Any, reader_role: Any, table_owner: Any) -> list[PlannedGrant]:
    """A tenant's read-only role: its own schema only, present and future tables.

    ``table_owner`` is the role that creates the tables: the superuser in the
    Hypertable provider's DSN.
    """
    return [
        SchemaGrant(role=reader_role, schema=schema, privileges=("USAGE",)),
        TableGrant(role=reader_role, schema=schema, privileges=("SELECT",)),
        DefaultPrivilege(owner=table_owner, role=reader_role, schema=schema, privileges=("SELECT",)),
    ]


def writer_grants(schema: Any, writer_role: Any) -> list[PlannedGrant]:
    """The ingest writer's access to one tenant: INSERT into ``telemetry``, nothing to read."""
    return [
        SchemaGrant(role=writer_role, schema=schema, privileges=("USAGE",)),
        TableGrant(role=writer_role, schema=schema, privileges=("INSERT",), tables=(TELEMETRY_TABLE,)),
    ]


def registry_grants(writer_role: Any) -> list[PlannedGrant]:
    """The ingest writer reads the tenant registry (and LISTENs, which needs no grant)."""
    return [
        SchemaGrant(role=writer_role, schema=REGISTRY_SCHEMA, privileges=("USAGE",)),
        TableGrant(role=writer_role, schema=REGISTRY_SCHEMA, privileges=("SELECT",), tables=(REGISTRY_TABLE,)),
    ]


def emqx_auth_grants(role: Any = EMQX_AUTH_ROLE) -> list[PlannedGrant]:
    """EMQX's PostgreSQL authenticator and authorization source: execute the two lookups, nothing else."""
    return [
        SchemaGrant(role=role, schema=REGISTRY_SCHEMA, privileges=("USAGE",)),
        FunctionGrant(
            role=role,
            schema=REGISTRY_SCHEMA,
            privileges=("EXECUTE",),
            functions=(EMQX_AUTHN_FUNCTION, EMQX_ACL_FUNCTION),
        ),
    ]


def device_manager_grants(role: Any = DEVICE_MANAGER_ROLE) -> list[PlannedGrant]:
    """The operator CLI: manage device rows and check tenants; no telemetry, no token hashes, no DDL."""
    return [
        SchemaGrant(role=role, schema=REGISTRY_SCHEMA, privileges=("USAGE",)),
        TableGrant(
            role=role,
            schema=REGISTRY_SCHEMA,
            privileges=("SELECT", "INSERT", "UPDATE", "DELETE"),
            tables=(DEVICES_TABLE,),
        ),
        ColumnGrant(
            role=role,
            schema=REGISTRY_SCHEMA,
            privileges=("SELECT",),
            table=REGISTRY_TABLE,
            columns=TENANT_COLUMNS_FOR_DEVICE_MANAGER,
        ),
    ]


def grant_key(grant: PlannedGrant) -> tuple[str, Any, Any, Any]:
    """What one pulumi-postgresql resource is authoritative for."""
    if isinstance(grant, DefaultPrivilege):
        return ("default_privileges", grant.owner, grant.role, (grant.schema, grant.object_type))
    if isinstance(grant, FunctionGrant):
        return ("grant", grant.role, grant.schema, "function")
    if isinstance(grant, ColumnGrant):
        return ("grant", grant.role, grant.schema, ("column", grant.table))
    object_type = "schema" if isinstance(grant, SchemaGrant) else "table"
    return ("grant", grant.role, grant.schema, object_type)


def check_plan(grants: Sequence[PlannedGrant]) -> None:
    """Reject two entries for the same (role, schema, object type): their REVOKEs would undo each other."""
    duplicates = [key for key, count in Counter(grant_key(grant) for grant in grants).items() if count > 1]
    if duplicates:
        raise ValueError(
            "the grant plan has more than one entry for "
            + "; ".join(f"{kind} {rest}" for kind, *rest in duplicates)
            + ": merge their privileges into one entry"
        )


# --------------------------------------------------------------------------- pulumi_postgresql


def pulumi_resource_type(grant: PlannedGrant) -> str:
    """``"Grant"`` or ``"DefaultPrivileges"``: the ``pulumi_postgresql`` class to build."""
    return "DefaultPrivileges" if isinstance(grant, DefaultPrivilege) else "Grant"


def to_pulumi_args(grant: PlannedGrant, database: Any) -> dict[str, Any]:
    """Keyword arguments for ``pulumi_postgresql.Grant`` / ``DefaultPrivileges`` (see :func:`pulumi_resource_type`)."""
    if isinstance(grant, DefaultPrivilege):
        return {
            "database": database,
            "owner": grant.owner,
            "role": grant.role,
            "schema": grant.schema,
            "object_type": grant.object_type,
            "privileges": list(grant.privileges),
        }
    object_type = {SchemaGrant: "schema", TableGrant: "table", FunctionGrant: "function", ColumnGrant: "column"}
    args: dict[str, Any] = {
        "database": database,
        "role": grant.role,
        "schema": grant.schema,
        "object_type": object_type[type(grant)],
        "privileges": list(grant.privileges),
    }
    if isinstance(grant, TableGrant) and grant.tables:
        args["objects"] = list(grant.tables)
    if isinstance(grant, FunctionGrant):
        args["objects"] = list(grant.functions)
    if isinstance(grant, ColumnGrant):
        args["objects"] = [grant.table]
        args["columns"] = list(grant.columns)
    return args


# --------------------------------------------------------------------------- SQL


def _keywords(privileges: Iterable[str]) -> sql.Composable:
    # Validated against a fixed list in __post_init__, so they are keywords, not input.
    return sql.SQL(", ").join(sql.SQL(privilege) for privilege in privileges)


def to_sql(grant: PlannedGrant) -> sql.Composed:
    """The statements pulumi-postgresql runs on create for this entry: revoke, then grant.

    Run it inside one transaction, as the provider does.  Mirrors
    ``createRevokeQuery``/``createGrantQuery`` of terraform-provider-postgresql
    (commit ff936b9, released as v1.27.0: the ``upstream`` of pulumi_postgresql
    3.18) and ``revokeRoleDefaultPrivileges``/``grantRoleDefaultPrivileges``.
    Its ``table`` grants cover relations of relkind ``r`` only, which includes
    a hypertable; TimescaleDB passes a GRANT or REVOKE on a hypertable (also
    through ``ALL TABLES IN SCHEMA``) on to its chunks, and new chunks copy the
    hypertable's ACL.
    """
    role = sql.Identifier(grant.role)
    schema = sql.Identifier(grant.schema)
    privileges = _keywords(grant.privileges)
    if isinstance(grant, DefaultPrivilege):
        objects = sql.SQL({"table": "TABLES", "sequence": "SEQUENCES"}[grant.object_type])
        owner = sql.Identifier(grant.owner)
        return sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} REVOKE ALL ON {objects} FROM {role}; "
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT {privileges} ON {objects} TO {role}"
        ).format(owner=owner, schema=schema, objects=objects, role=role, privileges=privileges)
    if isinstance(grant, SchemaGrant):
        return sql.SQL(
            "REVOKE ALL PRIVILEGES ON SCHEMA {schema} FROM {role}; GRANT {privileges} ON SCHEMA {schema} TO {role}"
        ).format(schema=schema, role=role, privileges=privileges)
    if isinstance(grant, FunctionGrant):
        # Named without an argument list, as the provider does: valid while the name is not overloaded.
        functions = sql.SQL(", ").join(sql.Identifier(grant.schema, name) for name in grant.functions)
        return sql.SQL(
            "REVOKE {privileges} ON FUNCTION {functions} FROM {role}; "
            "GRANT {privileges} ON FUNCTION {functions} TO {role}"
        ).format(privileges=privileges, functions=functions, role=role)
    if isinstance(grant, ColumnGrant):
        columns = sql.SQL(", ").join(sql.Identifier(column) for column in grant.columns)
        table = sql.Identifier(grant.schema, grant.table)
        return sql.SQL(
            "REVOKE {privileges} ({columns}) ON TABLE {table} FROM {role}; "
            "GRANT {privileges} ({columns}) ON TABLE {table} TO {role}"
        ).format(privileges=privileges, columns=columns, table=table, role=role)
    if grant.tables:
        tables = sql.SQL(", ").join(sql.Identifier(grant.schema, table) for table in grant.tables)
        # With named objects the provider revokes only the planned privileges (to leave column grants alone).
        return sql.SQL(
            "REVOKE {privileges} ON TABLE {tables} FROM {role}; GRANT {privileges} ON TABLE {tables} TO {role}"
        ).format(privileges=privileges, tables=tables, role=role)
    return sql.SQL(
        "REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA {schema} FROM {role}; "
        "GRANT {privileges} ON ALL TABLES IN SCHEMA {schema} TO {role}"
    ).format(schema=schema, role=role, privileges=privileges)
