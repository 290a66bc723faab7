"""The grants plan applied as SQL, checked with real logins for each role.

The same plan the Tenant component turns into pulumi_postgresql resources is
applied here with :func:`components.grants.to_sql`, in the order the stack
applies it: every tenant grant depends on the Hypertable (tenant.py), so the
whole plan, default privileges included, runs once the table exists; the
reader's SELECT on ``telemetry`` therefore comes from its table grant, not
from the default privileges.  Every test runs on plain tables and, where
TimescaleDB is installed, on hypertables (where chunks must carry the
hypertable's grants).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pulumi_postgresql
import pytest
from psycopg import errors, sql

from components.grants import (
    DefaultPrivilege,
    SchemaGrant,
    TableGrant,
    check_plan,
    pulumi_resource_type,
    reader_grants,
    registry_grants,
    to_pulumi_args,
    to_sql,
    writer_grants,
)
from components.providers.registry import TenantRegistrationProvider, TenantRegistryProvider
from components.providers.telemetry_ddl import TELEMETRY_TABLE, telemetry_table_ddl
from components.providers.timescale import HypertableProvider
from tests.pg_server import SUPERUSER, PostgresServer
from tests.providers._db_helpers import create_schema, execute, fetch_all, fetch_one

INSERT = "INSERT INTO {} (time, device_id, topic, payload, msg_id) VALUES (%s, 'dev', 'tenants/x/t', '{{}}', %s)"


@dataclass
class Tenants:
    superuser_dsn: str
    login: dict[str, str]  # role label -> DSN of a real password login
    schemas: dict[str, str]  # tenant label -> schema
    hypertables: bool

    def table(self, tenant: str) -> sql.Composed:
        return sql.Identifier(self.schemas[tenant], TELEMETRY_TABLE)


def apply(dsn: str, grants) -> None:
    with psycopg.connect(dsn) as conn:  # one transaction, as pulumi-postgresql does
        for grant in grants:
            conn.execute(to_sql(grant))


@pytest.fixture(params=["plain", "hypertable"])
def tenants(request, postgres_server: PostgresServer, database: str) -> Iterator[Tenants]:
    hypertables = request.param == "hypertable"
    if hypertables:
        request.getfixturevalue("timescaledb")  # skips with its reason when TimescaleDB is missing
    dbname = psycopg.conninfo.conninfo_to_dict(database)["dbname"]
    suffix = uuid.uuid4().hex[:8]
    roles = {label: f"{label}_{suffix}" for label in ("reader_a", "reader_b", "writer")}
    passwords = {label: f"pw-{label}-{uuid.uuid4().hex}" for label in roles}
    schemas = {"a": "tenant_a", "b": "tenant_b"}
    for label, role in roles.items():
        execute(
            database,
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(passwords[label])),
        )
    try:
        plan = []
        for tenant, schema in schemas.items():
            create_schema(database, schema)
            plan += reader_grants(schema, roles[f"reader_{tenant}"], SUPERUSER) + writer_grants(schema, roles["writer"])
        plan += registry_grants(roles["writer"])
        check_plan(plan)

        TenantRegistryProvider().create({"dsn": database})  # the registry grants depend on it
        for schema in schemas.values():
            if hypertables:
                HypertableProvider().create(
                    {
                        "dsn": database,
                        "schema_name": schema,
                        "chunk_interval": "1 day",
                        "retention": None,
                        "compress_after": "7 days",
                    }
                )
            else:
                for statement in telemetry_table_ddl(schema):
                    execute(database, statement)
        TenantRegistryProvider().create({"dsn": database})
        for tenant, schema in schemas.items():
            TenantRegistrationProvider().create(
                {
                    "dsn": database,
                    "slug": f"tenant-{tenant}",
                    "schema_name": schema,
                    "topic_prefix": tenant,
                    "token": f"token-{tenant}",
                }
            )
        apply(database, plan)
        without_acl = fetch_one(
            database,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY(%s) AND c.relname = %s AND c.relacl IS NULL",
            (list(schemas.values()), TELEMETRY_TABLE),
        )[0]
        assert without_acl == 0, "the table grants did not reach the telemetry tables"

        yield Tenants(
            superuser_dsn=database,
            login={label: postgres_server.dsn(dbname, role, passwords[label]) for label, role in roles.items()},
            schemas=schemas,
            hypertables=hypertables,
        )
    finally:
        for role in roles.values():
            execute(database, sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            execute(database, sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def run_as(dsn: str, statement, params=None) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def denied(dsn: str, statement, params=None) -> bool:
    try:
        run_as(dsn, statement, params)
    except errors.InsufficientPrivilege:
        return True
    return False


def insert(
    tenants: Tenants,
    role: str,
    tenant: str,
    msg_id: str,
    when: str = "2026-01-01T00:00:00Z",
    conflict: str = "ON CONFLICT DO NOTHING",
):
    return run_as(tenants.login[role], sql.SQL(INSERT + " " + conflict).format(tenants.table(tenant)), (when, msg_id))


def count(tenants: Tenants, tenant: str) -> int:
    return fetch_one(tenants.superuser_dsn, sql.SQL("SELECT count(*) FROM {}").format(tenants.table(tenant)))[0]


def test_reader_reads_only_its_own_tenant(tenants: Tenants) -> None:
    insert(tenants, "writer", "a", "m1")
    insert(tenants, "writer", "b", "m2")
    assert run_as(tenants.login["reader_a"], sql.SQL("SELECT msg_id FROM {}").format(tenants.table("a"))) == [("m1",)]
    assert run_as(tenants.login["reader_b"], sql.SQL("SELECT msg_id FROM {}").format(tenants.table("b"))) == [("m2",)]
    assert denied(tenants.login["reader_a"], sql.SQL("SELECT * FROM {}").format(tenants.table("b")))
    assert denied(tenants.login["reader_b"], sql.SQL("SELECT * FROM {}").format(tenants.table("a")))
    assert denied(tenants.login["reader_a"], "SELECT * FROM telemetry_registry.tenants")


def test_reader_cannot_write(tenants: Tenants) -> None:
    assert denied(tenants.login["reader_a"], sql.SQL(INSERT).format(tenants.table("a")), ("2026-01-01", "x"))
    insert(tenants, "writer", "a", "m1")
    assert denied(tenants.login["reader_a"], sql.SQL("DELETE FROM {}").format(tenants.table("a")))
    assert denied(tenants.login["reader_a"], sql.SQL("UPDATE {} SET topic = 'x'").format(tenants.table("a")))
    assert denied(
        tenants.login["reader_a"], sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier("tenant_a", "mine"))
    )
    assert count(tenants, "a") == 1


def test_writer_inserts_idempotently_but_cannot_read(tenants: Tenants) -> None:
    insert(tenants, "writer", "a", "m1")
    insert(tenants, "writer", "a", "m1")  # an EMQX retry: ignored, not an error
    insert(tenants, "writer", "b", "m1")
    assert (count(tenants, "a"), count(tenants, "b")) == (1, 1)
    writer = tenants.login["writer"]
    assert denied(writer, sql.SQL("SELECT * FROM {}").format(tenants.table("a")))
    # Why the service uses ON CONFLICT without a target: naming the arbiter columns needs SELECT on them.
    assert denied(
        writer,
        sql.SQL(INSERT + " ON CONFLICT (msg_id, time) DO NOTHING").format(tenants.table("a")),
        ("2026-01-01", "m9"),
    )
    assert denied(writer, sql.SQL("DELETE FROM {}").format(tenants.table("a")))
    assert denied(writer, sql.SQL("TRUNCATE {}").format(tenants.table("a")))


def test_writer_reads_registry_and_listens_but_cannot_change_it(tenants: Tenants) -> None:
    writer = tenants.login["writer"]
    rows = run_as(writer, "SELECT slug, schema_name, topic_prefix FROM telemetry_registry.tenants ORDER BY slug")
    assert rows == [("tenant-a", "tenant_a", "a"), ("tenant-b", "tenant_b", "b")]
    assert denied(writer, "UPDATE telemetry_registry.tenants SET enabled = false")
    assert denied(writer, "DELETE FROM telemetry_registry.tenants")
    assert denied(
        writer,
        "INSERT INTO telemetry_registry.tenants (slug, schema_name, topic_prefix, token_sha256) VALUES ('x','x','x','x')",
    )
    with psycopg.connect(writer, autocommit=True) as listener:
        listener.execute("LISTEN telemetry_registry")
        execute(tenants.superuser_dsn, "UPDATE telemetry_registry.tenants SET enabled = false WHERE slug = 'tenant-b'")
        assert [n.payload for n in listener.notifies(timeout=5, stop_after=1)] == ["tenant-b"]


def test_reader_sees_tables_created_later_in_its_schema_only(tenants: Tenants) -> None:
    execute(tenants.superuser_dsn, "CREATE TABLE tenant_a.daily_summary (day date)")
    assert run_as(tenants.login["reader_a"], "SELECT * FROM tenant_a.daily_summary") == []
    assert denied(tenants.login["reader_b"], "SELECT * FROM tenant_a.daily_summary")
    assert denied(tenants.login["writer"], "SELECT * FROM tenant_a.daily_summary")
    assert denied(tenants.login["writer"], "INSERT INTO tenant_a.daily_summary VALUES (current_date)")


@pytest.mark.parametrize("tenants", ["hypertable"], indirect=True)
def test_chunks_carry_the_hypertable_grants(tenants: Tenants) -> None:
    # The writer's own inserts create the chunks: three days, three new chunks.
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        insert(tenants, "writer", "a", f"m-{day}", when=f"{day}T12:00:00Z")
    chunks = fetch_all(
        tenants.superuser_dsn,
        "SELECT chunk_schema, chunk_name FROM timescaledb_information.chunks WHERE hypertable_schema = 'tenant_a'",
    )
    assert len(chunks) == 3
    assert len(run_as(tenants.login["reader_a"], sql.SQL("SELECT * FROM {}").format(tenants.table("a")))) == 3
    for chunk in chunks:
        name = sql.Identifier(*chunk)
        assert run_as(tenants.login["reader_a"], sql.SQL("SELECT count(*) FROM {}").format(name)) == [(1,)]
        assert denied(tenants.login["reader_b"], sql.SQL("SELECT * FROM {}").format(name))
        assert denied(tenants.login["writer"], sql.SQL("SELECT * FROM {}").format(name))


@pytest.mark.parametrize("tenants", ["hypertable"], indirect=True)
def test_grants_applied_after_chunks_exist_reach_the_chunks(tenants: Tenants) -> None:
    """A Grant re-applied by `pulumi up` (revoke, then grant) once data exists must cover the old chunks."""
    execute(
        tenants.superuser_dsn,
        sql.SQL(INSERT).format(tenants.table("a")),
        ("2026-02-01T00:00:00Z", "by-superuser"),
    )
    roles = {label: psycopg.conninfo.conninfo_to_dict(dsn)["user"] for label, dsn in tenants.login.items()}
    apply(
        tenants.superuser_dsn,
        reader_grants("tenant_a", roles["reader_a"], SUPERUSER) + writer_grants("tenant_a", roles["writer"]),
    )
    insert(tenants, "writer", "a", "into-existing-chunk", when="2026-02-01T06:00:00Z")
    (chunk,) = fetch_all(
        tenants.superuser_dsn,
        "SELECT chunk_schema, chunk_name FROM timescaledb_information.chunks WHERE hypertable_schema = 'tenant_a'",
    )
    name = sql.Identifier(*chunk)
    assert run_as(tenants.login["reader_a"], sql.SQL("SELECT count(*) FROM {}").format(name)) == [(2,)]
    assert denied(tenants.login["reader_b"], sql.SQL("SELECT * FROM {}").format(name))
    assert denied(tenants.login["writer"], sql.SQL("SELECT * FROM {}").format(name))


@pytest.mark.parametrize("tenants", ["hypertable"], indirect=True)
def test_compressed_chunks_stay_readable_and_take_late_writes(tenants: Tenants) -> None:
    """After the compression policy: the reader still reads, a late EMQX retry is still a no-op."""
    insert(tenants, "writer", "a", "early", when="2026-01-01T00:00:00Z")
    insert(tenants, "writer", "a", "later", when="2026-01-01T06:00:00Z")
    (compressed,) = fetch_one(
        tenants.superuser_dsn,
        "SELECT count(compress_chunk(c)) FROM show_chunks(%s::regclass) c",
        (tenants.table("a").as_string(None),),
    )
    assert compressed == 1
    reader, writer = tenants.login["reader_a"], tenants.login["writer"]
    query = sql.SQL("SELECT msg_id FROM {} ORDER BY time").format(tenants.table("a"))
    assert run_as(reader, query) == [("early",), ("later",)]
    insert(tenants, "writer", "a", "early", when="2026-01-01T00:00:00Z")  # retry into the compressed chunk
    insert(tenants, "writer", "a", "late", when="2026-01-01T03:00:00Z")
    assert run_as(reader, query) == [("early",), ("late",), ("later",)]
    assert denied(writer, sql.SQL("SELECT * FROM {}").format(tenants.table("a")))
    assert denied(tenants.login["reader_b"], query)


# --------------------------------------------------------------------------- the plan as data


def test_to_sql_is_authoritative_like_pulumi_postgresql(tenants: Tenants) -> None:
    """Re-applying a grant with fewer privileges takes the others away (revoke, then grant)."""
    role = tenants.login["reader_a"]
    role_name = psycopg.conninfo.conninfo_to_dict(role)["user"]
    apply(tenants.superuser_dsn, [TableGrant(role=role_name, schema="tenant_a", privileges=("SELECT", "INSERT"))])
    insert(tenants, "reader_a", "a", "r1")
    apply(tenants.superuser_dsn, [TableGrant(role=role_name, schema="tenant_a", privileges=("SELECT",))])
    assert denied(role, sql.SQL(INSERT).format(tenants.table("a")), ("2026-01-01", "r2"))
    assert run_as(role, sql.SQL("SELECT msg_id FROM {}").format(tenants.table("a"))) == [("r1",)]


def test_plan_shape_and_conflicts() -> None:
    plan = reader_grants("tenant_a", "reader_a", "postgres") + writer_grants("tenant_a", "writer")
    plan += (
        reader_grants("tenant_b", "reader_b", "postgres")
        + writer_grants("tenant_b", "writer")
        + registry_grants("writer")
    )
    check_plan(plan)
    writer_plan = [grant for grant in plan if grant.role == "writer"]
    assert {(type(g).__name__, g.schema, g.privileges, getattr(g, "tables", None)) for g in writer_plan} == {
        ("SchemaGrant", "tenant_a", ("USAGE",), None),
        ("TableGrant", "tenant_a", ("INSERT",), ("telemetry",)),
        ("SchemaGrant", "tenant_b", ("USAGE",), None),
        ("TableGrant", "tenant_b", ("INSERT",), ("telemetry",)),
        ("SchemaGrant", "telemetry_registry", ("USAGE",), None),
        ("TableGrant", "telemetry_registry", ("SELECT",), ("tenants",)),
    }
    with pytest.raises(ValueError, match="more than one entry"):
        check_plan(plan + [SchemaGrant(role="writer", schema="tenant_a", privileges=("CREATE",))])
    with pytest.raises(ValueError, match="unknown privilege"):
        SchemaGrant(role="r", schema="s", privileges=("ALL; DROP TABLE x",))


def test_sql_quotes_every_identifier() -> None:
    grant = TableGrant(role='we"ird', schema="tenant x", privileges=("select",), tables=("telemetry",))
    text = to_sql(grant).as_string(None)
    assert text == (
        'REVOKE SELECT ON TABLE "tenant x"."telemetry" FROM "we""ird"; '
        'GRANT SELECT ON TABLE "tenant x"."telemetry" TO "we""ird"'
    )
    default = DefaultPrivilege(owner="postgres", role="r", schema="s", privileges=("SELECT",))
    assert to_sql(default).as_string(None) == (
        'ALTER DEFAULT PRIVILEGES FOR ROLE "postgres" IN SCHEMA "s" REVOKE ALL ON TABLES FROM "r"; '
        'ALTER DEFAULT PRIVILEGES FOR ROLE "postgres" IN SCHEMA "s" GRANT SELECT ON TABLES TO "r"'
    )


def test_pulumi_args_build_pulumi_postgresql_resources() -> None:
    plan = reader_grants("tenant_a", "reader_a", "postgres") + writer_grants("tenant_a", "writer")
    for grant in plan:
        args = to_pulumi_args(grant, "telemetry")
        kind = pulumi_resource_type(grant)
        # The generated *Args classes reject unknown or missing keyword arguments.
        getattr(pulumi_postgresql, f"{kind}Args")(**args)
    assert to_pulumi_args(plan[0], "db") == {
        "database": "db",
        "role": "reader_a",
        "schema": "tenant_a",
        "object_type": "schema",
        "privileges": ["USAGE"],
    }
    assert to_pulumi_args(plan[1], "db")["object_type"] == "table" and "objects" not in to_pulumi_args(plan[1], "db")
    assert to_pulumi_args(plan[2], "db") == {
        "database": "db",
        "owner": "postgres",
        "role": "reader_a",
        "schema": "tenant_a",
        "object_type": "table",
        "privileges": ["SELECT"],
    }
    assert to_pulumi_args(plan[4], "db")["objects"] == ["telemetry"]
