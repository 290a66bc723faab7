"""A registry with two tenants, the EMQX auth role and the device-manager role, granted as the plan says."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from components.devices import AUTHN_QUERY, AUTHZ_QUERY, PASSWORD_HASH
from components.grants import check_plan, device_manager_grants, emqx_auth_grants, to_sql
from components.providers.registry import TenantRegistrationProvider, TenantRegistryProvider
from tests.emqx_auth_sql import (
    Action,
    AuthnOutcome,
    Client,
    NodeCache,
    PostgresAuthenticator,
    PostgresAuthorizationSource,
    authenticate,
    authorize,
)
from tests.pg_server import PostgresServer
from tools import device_store as store

UMC, HX = "uberlandia-medical-center", "hospital-x"
PREFIXES = {UMC: "umc", HX: "hx"}


@dataclass
class DeviceDb:
    server: PostgresServer
    superuser_dsn: str
    emqx_dsn: str
    manager_dsn: str
    emqx_role: str
    manager_role: str

    def add(self, tenant: str, device_id: str, *, enabled: bool = True) -> str:
        """Add one device as the device manager; returns its generated password."""
        device = store.generated(device_id, enabled=enabled)
        with store.connect(self.manager_dsn) as conn:
            store.add_devices(conn, store.require_tenant(conn, tenant), [device])
        return device.password

    def execute(self, statement, params=None) -> list[tuple]:
        with psycopg.connect(self.superuser_dsn, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []


@dataclass
class Broker:
    """The two PostgreSQL sources as the stack configures them, on one EMQX version."""

    version: str
    authenticator: PostgresAuthenticator
    authorization: PostgresAuthorizationSource
    no_match: str = "deny"

    def connect(self, username: str | None, clientid: str | None, password: str | bytes | None) -> AuthnOutcome:
        secret = password.encode() if isinstance(password, str) else password
        client = Client(clientid=clientid, username=username, password=secret)
        return authenticate([self.authenticator.authenticate], client, self.version)

    def may(self, device: str, action: str, topic: str, *, clientid: str | None = None, qos: int = 1) -> str:
        client = Client(clientid=clientid or device, username=device)
        return authorize([self.authorization.authorize], client, Action(action, qos), topic, self.no_match)


def make_broker(db: DeviceDb, version: str, *, dsn: str | None = None, node_cache: NodeCache | None = None,
                security_profile: str = "legacy") -> Broker:
    dsn = dsn or db.emqx_dsn
    return Broker(
        version,
        PostgresAuthenticator(dsn, AUTHN_QUERY, PASSWORD_HASH, version, security_profile=security_profile,
                              node_cache=node_cache),
        PostgresAuthorizationSource(dsn, AUTHZ_QUERY, version, security_profile=security_profile,
                                    node_cache=node_cache),
    )


def _login(server: PostgresServer, dsn: str, role: str, password: str) -> str:
    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    return server.dsn(dbname, user=role, password=password)


@pytest.fixture()
def device_db(postgres_server: PostgresServer, database: str) -> Iterator[DeviceDb]:
    suffix = uuid.uuid4().hex[:8]
    roles = {"emqx": f"emqx_auth_{suffix}", "manager": f"device_manager_{suffix}"}
    passwords = {label: f"pw-{label}-{uuid.uuid4().hex}" for label in roles}
    TenantRegistryProvider().create({"dsn": database})
    for slug, prefix in PREFIXES.items():
        TenantRegistrationProvider().create(
            {"dsn": database, "slug": slug, "schema_name": "tenant_" + slug.replace("-", "_"),
             "topic_prefix": prefix, "token": f"token-{slug}"}
        )
    with psycopg.connect(database, autocommit=True) as conn:
        for label, role in roles.items():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(passwords[label])))
    plan = emqx_auth_grants(roles["emqx"]) + device_manager_grants(roles["manager"])
    check_plan(plan)
    with psycopg.connect(database) as conn:  # one transaction, as pulumi-postgresql does
        for grant in plan:
            conn.execute(to_sql(grant))
    yield DeviceDb(
        postgres_server,
        database,
        _login(postgres_server, database, roles["emqx"], passwords["emqx"]),
        _login(postgres_server, database, roles["manager"], passwords["manager"]),
        roles["emqx"],
        roles["manager"],
    )
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}, {}").format(*map(sql.Identifier, roles.values())))
        for role in roles.values():
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
