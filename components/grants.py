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
  columns).  TimescaleDB copies a hypertable's privileges to its chunks.

Role, schema and owner names may be ``pulumi.Input[str]`` for
:func:`to_pulumi_args`; :func:`to_sql` needs plain strings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from components.providers.telemetry_ddl import REGISTRY_SCHEMA, REGISTRY_TABLE, TELEMETRY_TABLE

_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "USAGE", "CREATE"}


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


PlannedGrant = SchemaGrant | TableGrant | DefaultPrivilege


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


def grant_key(grant: PlannedGrant) -> tuple[str, Any, Any, Any]:
    """What one pulumi-postgresql resource is authoritative for."""
    if isinstance(grant, DefaultPrivilege):
        return ("default_privileges", grant.owner, grant.role, (grant.schema, grant.object_type))
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
    args: dict[str, Any] = {
        "database": database,
        "role": grant.role,
        "schema": grant.schema,
        "object_type": "schema" if isinstance(grant, SchemaGrant) else "table",
        "privileges": list(grant.privileges),
    }
    if isinstance(grant, TableGrant) and grant.tables:
        args["objects"] = list(grant.tables)
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
