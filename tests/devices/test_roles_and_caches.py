"""Least privilege of the two device roles (real logins), and how long EMQX's caches keep a change from working."""

from __future__ import annotations

import psycopg
import pulumi_postgresql
import pytest
from psycopg import errors, sql

from components.devices import (
    AUTHN_QUERY,
    AUTHZ_CACHE,
    AUTHZ_QUERY,
    NODE_CACHE_TTL,
    PASSWORD_HASH,
    emqx_authenticator_body,
    emqx_authorization_settings,
    emqx_authorization_source_body,
    stale_bounds,
)
from components.grants import (
    ColumnGrant,
    FunctionGrant,
    check_plan,
    device_manager_grants,
    emqx_auth_grants,
    pulumi_resource_type,
    registry_grants,
    to_pulumi_args,
)
from components.providers.telemetry_ddl import telemetry_table_ddl
from tests.devices.conftest import UMC, DeviceDb
from tests.emqx_auth_sql import (
    V5_8,
    V6_2,
    Action,
    Client,
    ClientAuthzCache,
    Clock,
    NodeCache,
    PostgresAuthenticator,
    PostgresAuthorizationSource,
    authenticate,
    authorize,
)
from tools import device_store as store

FUNCTIONS = ("telemetry_registry.emqx_device_authn", "telemetry_registry.emqx_device_acl")


def _refused(dsn: str, statement: str, params=None) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute(statement, params)
        except errors.InsufficientPrivilege:
            return True
    return False


# --------------------------------------------------------------------------- the EMQX role


def test_emqx_role_executes_the_lookups_and_reads_nothing(device_db: DeviceDb) -> None:
    device_db.add(UMC, "umc-001")
    with psycopg.connect(device_db.emqx_dsn, autocommit=True) as conn:
        for function in FUNCTIONS:
            assert len(conn.execute(f"SELECT * FROM {function}('umc-001', 'umc-001')").fetchall()) == 1
            assert conn.execute(f"SELECT * FROM {function}('umc-001', 'other')").fetchall() == []
    for statement in (
        "SELECT * FROM telemetry_registry.devices",
        "SELECT slug FROM telemetry_registry.tenants",
        "UPDATE telemetry_registry.devices SET enabled = true",
        "DELETE FROM telemetry_registry.devices",
        "CREATE TABLE telemetry_registry.x (a int)",
    ):
        assert _refused(device_db.emqx_dsn, statement), statement


def test_functions_are_not_executable_by_public(device_db: DeviceDb) -> None:
    """PostgreSQL grants EXECUTE to PUBLIC on new functions; the DDL takes it back."""
    rows = device_db.execute(
        "SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'telemetry_registry' "
        "AND p.proname LIKE 'emqx_%' ORDER BY 1"
    )
    assert rows == [("emqx_device_acl", False), ("emqx_device_authn", False)]
    # The device manager may not call them either: only the EMQX role is planned for.
    assert _refused(device_db.manager_dsn, f"SELECT * FROM {FUNCTIONS[0]}('a', 'a')")


# --------------------------------------------------------------------------- the device manager


def test_device_manager_manages_devices_and_nothing_else(device_db: DeviceDb) -> None:
    device_db.execute(sql.SQL("CREATE SCHEMA tenant_uberlandia_medical_center"))
    for statement in telemetry_table_ddl("tenant_uberlandia_medical_center"):
        device_db.execute(statement)
    with store.connect(device_db.manager_dsn) as conn:
        tenant = store.require_tenant(conn, UMC)
        assert tenant.topic_prefix == "umc" and tenant.enabled
        store.add_devices(conn, tenant, [store.generated("umc-001")])
        assert store.set_enabled(conn, UMC, ["umc-001"], False) == 1
        assert store.rotate(conn, tenant, ["umc-001"])[0].device_id == "umc-001"
        assert store.remove(conn, UMC, ["umc-001"]) == 1
    for statement in (
        "SELECT token_sha256 FROM telemetry_registry.tenants",
        "SELECT * FROM telemetry_registry.tenants",
        "UPDATE telemetry_registry.tenants SET enabled = false",
        "INSERT INTO telemetry_registry.tenants (slug, schema_name, topic_prefix, token_sha256) VALUES ('x','x','x','x')",
        "SELECT * FROM tenant_uberlandia_medical_center.telemetry",
        "CREATE TABLE telemetry_registry.x (a int)",
        "TRUNCATE telemetry_registry.devices",
    ):
        assert _refused(device_db.manager_dsn, statement), statement


def test_the_database_checks_what_any_writer_stores(device_db: DeviceDb) -> None:
    """Constraints, not only the CLI: an id EMQX could mistake for a wildcard or a hash EMQX cannot verify."""
    good = store.generated("ok-1")
    for device_id, password_hash in (("has/slash", good.password_hash), ("plus+", good.password_hash),
                                     ("", good.password_hash), ("ok-2", "not-a-hash"), ("ok-3", good.password_hash.upper())):
        with psycopg.connect(device_db.manager_dsn, autocommit=True) as conn, pytest.raises(errors.CheckViolation):
            conn.execute(
                "INSERT INTO telemetry_registry.devices (device_id, tenant, password_hash, salt) VALUES (%s,%s,%s,%s)",
                (device_id, UMC, password_hash, good.salt),
            )


def test_grant_plan_shapes_for_pulumi_postgresql() -> None:
    plan = emqx_auth_grants("emqx_role") + device_manager_grants("manager_role") + registry_grants("writer")
    check_plan(plan)  # one resource per (role, schema, object type): no entry undoes another
    for grant in plan:
        getattr(pulumi_postgresql, f"{pulumi_resource_type(grant)}Args")(**to_pulumi_args(grant, "telemetry"))
    function = next(g for g in plan if isinstance(g, FunctionGrant))
    assert to_pulumi_args(function, "db") == {
        "database": "db", "role": "emqx_role", "schema": "telemetry_registry", "object_type": "function",
        "privileges": ["EXECUTE"], "objects": ["emqx_device_authn", "emqx_device_acl"],
    }
    column = next(g for g in plan if isinstance(g, ColumnGrant))
    assert to_pulumi_args(column, "db")["columns"] == ["slug", "topic_prefix", "enabled"]
    assert to_pulumi_args(column, "db")["objects"] == ["tenants"]
    with pytest.raises(ValueError, match="names its functions"):
        FunctionGrant(role="r", schema="s", privileges=("EXECUTE",), functions=())


def test_emqx_bodies_carry_the_tested_queries() -> None:
    connection = {"server": "timescaledb:5432", "database": "telemetry", "username": "u", "password": "p"}
    authn = emqx_authenticator_body(**connection)
    assert authn["query"] == AUTHN_QUERY and authn["password_hash_algorithm"] == PASSWORD_HASH
    assert (authn["mechanism"], authn["backend"]) == ("password_based", "postgresql")
    authz = emqx_authorization_source_body(**connection)
    assert authz["type"] == "postgresql" and authz["query"] == AUTHZ_QUERY
    assert emqx_authorization_settings()["no_match"] == "deny"


# --------------------------------------------------------------------------- caches


def _sources(db: DeviceDb, version: str, clock: Clock):
    node = {"authn": NodeCache(clock, _s(NODE_CACHE_TTL)), "authz": NodeCache(clock, _s(NODE_CACHE_TTL))}
    use_node = version == V6_2
    authn = PostgresAuthenticator(db.emqx_dsn, AUTHN_QUERY, PASSWORD_HASH, version,
                                  node_cache=node["authn"] if use_node else None)
    authz = PostgresAuthorizationSource(db.emqx_dsn, AUTHZ_QUERY, version,
                                        node_cache=node["authz"] if use_node else None)
    return authn, authz


def _s(duration: str) -> float:
    return float(duration[:-1]) * {"s": 1, "m": 60}[duration[-1]]


@pytest.mark.parametrize("version", [V5_8, V6_2])
def test_a_disabled_device_stops_working_within_the_stated_bound(device_db: DeviceDb, version: str) -> None:
    """Worst case: a node-cache row fetched just before the change refills the connection's cache late."""
    password = device_db.add(UMC, "umc-001")
    clock = Clock()
    authn, authz = _sources(device_db, version, clock)
    client = Client(clientid="umc-001", username="umc-001", password=password.encode())
    cache = ClientAuthzCache(clock, _s(AUTHZ_CACHE["ttl"]), version)

    def publish(topic: str) -> str:
        return cache.check(
            Action("publish"), topic, lambda: authorize([authz.authorize], client, Action("publish"), topic, "deny")
        )

    def connects() -> bool:
        return authenticate([authn.authenticate], client, version).kind == "ok"

    assert connects() and publish("tenants/umc/a") == "allow"  # caches filled at t = 0
    bounds = stale_bounds(6 if version == V6_2 else 5)
    node_ttl = _s(NODE_CACHE_TTL) if version == V6_2 else 0
    clock.advance(0.1)
    device_db.execute("UPDATE telemetry_registry.devices SET enabled = false")
    if node_ttl:
        clock.advance(node_ttl - 0.2)  # just before the node-cache row expires
        assert connects(), "6.x reuses the cached authn row"
        assert publish("tenants/umc/b") == "allow"  # a new topic, answered from the node cache
    else:
        assert not connects(), "5.8 queries on every CONNECT"
    # The last stale decision was cached at (node_ttl - 0.1) s and lives for the authz cache ttl.
    clock.now = int((bounds["publish"] - 0.2) * 1000)
    assert publish("tenants/umc/b" if node_ttl else "tenants/umc/a") == "allow"
    clock.now = int(bounds["publish"] * 1000)
    assert publish("tenants/umc/a") == "deny" and publish("tenants/umc/b") == "deny"
    assert not connects()
    assert bounds["connect"] == node_ttl


def test_rotation_on_6_2_keeps_the_old_password_for_the_node_cache_ttl(device_db: DeviceDb) -> None:
    old = device_db.add(UMC, "umc-001")
    clock = Clock()
    authn, _ = _sources(device_db, V6_2, clock)

    def outcome(password: str) -> str:
        client = Client(clientid="umc-001", username="umc-001", password=password.encode())
        return authenticate([authn.authenticate], client, V6_2).kind

    assert outcome(old) == "ok"
    with store.connect(device_db.manager_dsn) as conn:
        (new,) = store.rotate(conn, store.require_tenant(conn, UMC), ["umc-001"])
    clock.advance(_s(NODE_CACHE_TTL) - 0.1)
    assert (outcome(old), outcome(new.password)) == ("ok", "error")
    clock.advance(0.1)
    assert (outcome(old), outcome(new.password)) == ("error", "ok")
    assert stale_bounds(6)["connect"] == _s(NODE_CACHE_TTL)
