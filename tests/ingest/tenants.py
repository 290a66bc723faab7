"""Build an ingest database the way the stack does: registry, tenant tables, least-privilege writer role.

Shared by the ingest tests and the benchmark runner.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from components.providers.telemetry_ddl import registry_ddl, telemetry_table_ddl
from tests.pg_server import PostgresServer


@dataclass
class TenantSpec:
    slug: str
    prefix: str
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def schema(self) -> str:
        return "tenant_" + self.slug.replace("-", "_")


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class IngestDatabase:
    server: PostgresServer
    name: str
    writer_role: str
    writer_password: str
    # Tenant tables are TimescaleDB hypertables (as in production) where the server has the extension.
    hypertables: bool = False

    @property
    def admin_dsn(self) -> str:
        return self.server.dsn(self.name)

    @property
    def writer_dsn(self) -> str:
        return self.server.dsn(self.name, self.writer_role, self.writer_password)

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.admin_dsn, autocommit=True)

    def add_tenant(self, tenant: TenantSpec, enabled: bool = True, register: bool = True) -> None:
        """The tenant's schema and table with the writer's grants, then (optionally) its registry row."""
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(tenant.schema)))
            for statement in telemetry_table_ddl(tenant.schema):
                conn.execute(statement)
            if self.hypertables:
                conn.execute(
                    "SELECT create_hypertable(%s, by_range('time', interval '1 day'), if_not_exists => true)",
                    (f"{tenant.schema}.telemetry",),
                )
            role = sql.Identifier(self.writer_role)
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(tenant.schema), role))
            conn.execute(sql.SQL("GRANT INSERT ON {} TO {}").format(sql.Identifier(tenant.schema, "telemetry"), role))
        if register:
            self.register(tenant, enabled)

    def register(self, tenant: TenantSpec, enabled: bool = True) -> None:
        with self.admin() as conn:
            conn.execute(
                "INSERT INTO telemetry_registry.tenants (slug, schema_name, topic_prefix, token_sha256, enabled) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (slug) DO UPDATE SET enabled = EXCLUDED.enabled, "
                "token_sha256 = EXCLUDED.token_sha256",
                (tenant.slug, tenant.schema, tenant.prefix, sha256_hex(tenant.token), enabled),
            )

    def rotate_token(self, tenant: TenantSpec, new_token: str, previous_valid_until: datetime) -> None:
        with self.admin() as conn:
            conn.execute(
                "UPDATE telemetry_registry.tenants SET token_sha256 = %s, previous_token_sha256 = %s, "
                "previous_token_expires_at = %s WHERE slug = %s",
                (sha256_hex(new_token), sha256_hex(tenant.token), previous_valid_until, tenant.slug),
            )

    def set_enabled(self, tenant: TenantSpec, enabled: bool) -> None:
        with self.admin() as conn:
            conn.execute("UPDATE telemetry_registry.tenants SET enabled = %s WHERE slug = %s", (enabled, tenant.slug))

    def rows(self, tenant: TenantSpec, where: str = "true", params: tuple = ()) -> list[tuple]:
        with self.admin() as conn:
            query = sql.SQL("SELECT time, device_id, topic, payload, msg_id FROM {} WHERE " + where + " ORDER BY msg_id").format(
                sql.Identifier(tenant.schema, "telemetry")
            )
            return conn.execute(query, params).fetchall()

    def count(self, tenant: TenantSpec) -> int:
        with self.admin() as conn:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(tenant.schema, "telemetry"))
            return conn.execute(query).fetchone()[0]


def create_ingest_database(server: PostgresServer, name: str, tenants: list[TenantSpec]) -> IngestDatabase:
    """A new database with the registry, the given tenants and a writer role that has only what production grants.

    The tenant tables become hypertables when the server preloads TimescaleDB, plain tables otherwise.
    """
    server.create_database(name)
    role = f"writer_{name}"[:63]
    password = secrets.token_urlsafe(16)
    db = IngestDatabase(server=server, name=name, writer_role=role, writer_password=password,
                        hypertables=server.preload_timescaledb)
    with db.admin() as conn:
        if db.hypertables:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        for statement in registry_ddl():
            conn.execute(statement)
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA telemetry_registry TO {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT ON telemetry_registry.tenants TO {}").format(sql.Identifier(role)))
    for tenant in tenants:
        db.add_tenant(tenant)
    return db


def drop_ingest_database(db: IngestDatabase) -> None:
    db.server.drop_database(db.name)
    with psycopg.connect(db.server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(db.writer_role)))
