"""A registry with two tenants, the EMQX auth role and the device-manager role, granted as the plan says."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from components.devices import (
    AUTHN_NODE_CACHE,
    AUTHN_QUERY,
    AUTHZ_NODE_CACHE,
    AUTHZ_QUERY,
    PASSWORD_HASH,
    emqx_authorization_settings,
)
from components.grants import check_plan, device_manager_grants, emqx_auth_grants, to_sql
from components.providers.emqx import (
    EmqxApi,
    EmqxAuthorizationProvider,
    EmqxPostgresAuthenticatorProvider,
    drain_authorization_caches,
)
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
from tests.emqx_double.fixtures import API_KEY, API_SECRET
from tests.emqx_double.server import EmqxDouble
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


def make_device_db(server: PostgresServer, database: str, prefixes: dict[str, str]) -> DeviceDb:
    """The registry with these tenants (slug -> topic prefix), and the two device roles granted as planned."""
    suffix = uuid.uuid4().hex[:8]
    roles = {"emqx": f"emqx_auth_{suffix}", "manager": f"device_manager_{suffix}"}
    passwords = {label: f"pw-{label}-{uuid.uuid4().hex}" for label in roles}
    TenantRegistryProvider().create({"dsn": database})
    for slug, prefix in prefixes.items():
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
    return DeviceDb(
        server,
        database,
        _login(server, database, roles["emqx"], passwords["emqx"]),
        _login(server, database, roles["manager"], passwords["manager"]),
        roles["emqx"],
        roles["manager"],
    )


def drop_device_db(db: DeviceDb) -> None:
    with psycopg.connect(db.superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}, {}").format(*map(sql.Identifier, (db.emqx_role, db.manager_role))))
        for role in (db.emqx_role, db.manager_role):
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture()
def device_db(postgres_server: PostgresServer, database: str) -> Iterator[DeviceDb]:
    db = make_device_db(postgres_server, database, PREFIXES)
    yield db
    drop_device_db(db)


# --------------------------------------------------------------------------- the broker as the stack sets it up


def registry_connection(db: DeviceDb) -> dict[str, Any]:
    """The connection fields of the authenticator and source, as DeviceAccess gives them, for this database."""
    params = psycopg.conninfo.conninfo_to_dict(db.emqx_dsn)
    return {"server": f"{params['host']}:{params['port']}", "database": params["dbname"],
            "username": db.emqx_role, "pool_size": 8, "ssl": {"enable": False}}


def emqx_password(db: DeviceDb) -> str:
    return psycopg.conninfo.conninfo_to_dict(db.emqx_dsn)["password"]


def authenticator_props(double: EmqxDouble, db: DeviceDb, **changes: Any) -> dict[str, Any]:
    """The inputs EmqxPostgresAuthenticator gets from DeviceAccess (tests/unit/test_device_access.py)."""
    return {"api_url": double.url, "api_key": API_KEY, "api_secret": API_SECRET, "ready_timeout": 5.0,
            **registry_connection(db), "password": emqx_password(db), "query": AUTHN_QUERY,
            "password_hash_algorithm": dict(PASSWORD_HASH), "enable": True, "node_cache": dict(AUTHN_NODE_CACHE),
            "status_timeout": 5.0, "other_authenticators": [], **changes}


def authorization_props(double: EmqxDouble, db: DeviceDb, **changes: Any) -> dict[str, Any]:
    """The inputs EmqxAuthorization gets from DeviceAccess."""
    settings = emqx_authorization_settings()
    source = {"type": "postgresql", "enable": True, **registry_connection(db), "query": AUTHZ_QUERY}
    return {"api_url": double.url, "api_key": API_KEY, "api_secret": API_SECRET, "ready_timeout": 5.0,
            **settings, "include_mountpoint": False, "ignore_backend_failures": False,
            "sources": [source, {"type": "file", "enable": False}], "managed_usernames": None,
            "all_rules": [], "client_rules": {}, "foreign_user_rules": {}, "node_cache": dict(AUTHZ_NODE_CACHE),
            "database_password": emqx_password(db), "status_timeout": 5.0, **changes}


@dataclass
class RegistryBroker:
    """The EMQX double (5.8 or 6.x) with the stack's PostgreSQL authenticator and authorization,
    created by the providers, checking devices against the real registry."""

    double: EmqxDouble
    db: DeviceDb
    authenticator_outs: dict[str, Any]
    authorization_outs: dict[str, Any]

    @property
    def version(self) -> str:
        return self.double.version

    def drain(self) -> None:
        """What the stack's providers call after narrowing access: every cache emptied."""
        with EmqxApi(self.double.url, API_KEY, API_SECRET, "test") as api:
            drain_authorization_caches(api)
            if self.version == "6.x":
                api.call("POST", "/authentication/node_cache/reset", accept=(204,))


def start_registry_broker(db: DeviceDb, version: str) -> RegistryBroker:
    double = EmqxDouble(api_key=API_KEY, api_secret=API_SECRET, version=version).start()
    double.clock.freeze()  # the caches' windows are moved by the tests, not waited for
    authenticator = EmqxPostgresAuthenticatorProvider().create(authenticator_props(double, db)).outs
    authorization = EmqxAuthorizationProvider().create(authorization_props(double, db)).outs
    return RegistryBroker(double, db, authenticator, authorization)


@pytest.fixture(params=["5.8", "6.x"])
def registry_broker(request: pytest.FixtureRequest, device_db: DeviceDb) -> Iterator[RegistryBroker]:
    broker = start_registry_broker(device_db, request.param)
    yield broker
    broker.double.stop()
