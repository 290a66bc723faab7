"""Devices against the broker as the stack configures it, on EMQX 5.8 and 6.x.

The EMQX double holds the PostgreSQL authenticator and authorization the stack's providers
created (tests/devices/conftest.py: `registry_broker`), and runs their configured queries against
the real registry as the stack's `telemetry_emqx_auth` role. Stands in for a broker's CONNECT
(authentication chain, then the session: an accepted client id ends the session holding it,
reference 14.4), PUBLISH/SUBSCRIBE authorization (sources in order, `no_match: deny`,
`deny_action: disconnect`), the per-client authorization cache (30 s) and 6.2's node caches (5 s).
Devices are added and changed with the device CLI's store, as the device-manager role.
"""

from __future__ import annotations

import pytest

from components.devices import AUTHZ_CACHE, NODE_CACHE_TTL, stale_bounds
from tests.devices.conftest import HX, UMC, RegistryBroker
from tools import device_store as store


def _seconds(duration: str) -> float:
    return float(duration[:-1]) * {"s": 1, "m": 60}[duration[-1]]


def _bounds(broker: RegistryBroker) -> dict[str, int]:
    return stale_bounds(6 if broker.version == "6.x" else 5)


def add(broker: RegistryBroker, tenant: str, device_id: str) -> str:
    return broker.db.add(tenant, device_id)


def test_right_password_connects_and_publishes_on_its_tenants_topics(registry_broker: RegistryBroker) -> None:
    password = add(registry_broker, UMC, "umc-001")
    double = registry_broker.double
    connack = double.mqtt_connect("umc-001", "umc-001", password)
    assert connack.accepted
    assert double.authorize("umc-001", "publish", "tenants/umc/umc-001/telemetry") == "allow"
    assert double.authorize("umc-001", "subscribe", "tenants/umc/umc-001/cmd") == "allow"


def test_wrong_or_missing_password_is_refused(registry_broker: RegistryBroker) -> None:
    password = add(registry_broker, UMC, "umc-001")
    double = registry_broker.double
    for wrong in ("wrong", password.upper(), password[:-1]):
        assert double.mqtt_connect("umc-001", "umc-001", wrong).reason == "bad_username_or_password", wrong
    assert not double.mqtt_connect("umc-001", "umc-001", None).accepted
    assert not double.connected("umc-001")


@pytest.mark.parametrize("victim_tenant", [UMC, HX], ids=["same-tenant", "other-tenant"])
def test_another_devices_client_id_is_refused_and_the_victim_keeps_its_session(
    registry_broker: RegistryBroker, victim_tenant: str
) -> None:
    """The takeover EMQX allows by client id alone: refused at authentication, before the session."""
    victim_password = add(registry_broker, victim_tenant, "victim-1")
    attacker_password = add(registry_broker, UMC, "umc-attacker")
    double = registry_broker.double
    assert double.mqtt_connect("victim-1", "victim-1", victim_password).accepted
    # Valid credentials of its own, the victim's client id: no row for (username, clientid).
    assert double.mqtt_connect("victim-1", "umc-attacker", attacker_password).reason == "not_authorized"
    assert double.mqtt_connect("victim-1", "umc-attacker", attacker_password, clean_start=False).reason == (
        "not_authorized")
    assert double.connected("victim-1")
    with double.state() as state:
        assert state.clients["victim-1"].username == "victim-1" and state.sessions_ended == []
    # What the binding prevents is real: the same CONNECT by the device itself does end the session.
    assert double.mqtt_connect("victim-1", "victim-1", victim_password, clean_start=False).session_present
    with double.state() as state:
        assert state.sessions_ended == [("victim-1", "victim-1", "session taken over")]


def test_a_device_of_one_tenant_is_denied_the_other_tenants_topics(registry_broker: RegistryBroker) -> None:
    umc, hx = add(registry_broker, UMC, "umc-001"), add(registry_broker, HX, "hx-001")
    double = registry_broker.double
    assert double.mqtt_connect("hx-001", "hx-001", hx).accepted
    assert double.authorize("hx-001", "subscribe", "tenants/umc/#") == "deny"
    assert double.authorize("hx-001", "subscribe", "tenants/#") == "deny"
    assert double.mqtt_connect("umc-001", "umc-001", umc).accepted
    assert double.authorize("umc-001", "publish", "tenants/hx/hx-001/telemetry") == "deny"
    assert not double.connected("umc-001")  # deny_action: disconnect
    assert double.connected("hx-001")


def test_disabled_device_is_refused_at_next_connect_and_denied_after_the_cache_window(
    registry_broker: RegistryBroker,
) -> None:
    password = add(registry_broker, UMC, "umc-001")
    double, clock = registry_broker.double, registry_broker.double.clock
    bounds = _bounds(registry_broker)
    assert double.mqtt_connect("umc-001", "umc-001", password).accepted
    assert double.authorize("umc-001", "publish", "tenants/umc/a") == "allow"  # cached per connection now
    with store.connect(registry_broker.db.manager_dsn) as conn:
        assert store.set_enabled(conn, UMC, ["umc-001"], False) == 1
    # Next connect: 5.8 queries every time; 6.x may answer from its node cache for NODE_CACHE_TTL.
    if bounds["connect"]:
        clock.advance(bounds["connect"] - 0.5)
        assert double.mqtt_connect("other-id", "umc-001", password).reason == "not_authorized"  # id still bound
        assert double.mqtt_connect("umc-001", "umc-001", password).accepted, "6.x: the node-cached row"
        clock.advance(0.5)
    assert double.mqtt_connect("umc-001", "umc-001", password).reason == "not_authorized"
    assert bounds["connect"] == (_seconds(NODE_CACHE_TTL) if registry_broker.version == "6.x" else 0)


def test_a_connected_disabled_device_is_denied_and_disconnected_within_the_stated_bound(
    registry_broker: RegistryBroker,
) -> None:
    password = add(registry_broker, UMC, "umc-001")
    double, clock = registry_broker.double, registry_broker.double.clock
    bounds = _bounds(registry_broker)
    assert double.mqtt_connect("umc-001", "umc-001", password).accepted
    assert double.authorize("umc-001", "publish", "tenants/umc/a") == "allow"  # cached at t0
    clock.advance(0.1)
    with store.connect(registry_broker.db.manager_dsn) as conn:
        store.set_enabled(conn, UMC, ["umc-001"], False)
    ttl = _seconds(AUTHZ_CACHE["ttl"])
    node_ttl = _seconds(NODE_CACHE_TTL) if registry_broker.version == "6.x" else 0
    now, last_stale, topic = 0.1, 0.0, "tenants/umc/a"
    if node_ttl:  # worst case on 6.x: a new topic answered from the node-cached rows just before they expire
        clock.advance(node_ttl - 0.2)
        now, last_stale, topic = node_ttl - 0.1, node_ttl - 0.1, "tenants/umc/b"
        assert double.authorize("umc-001", "publish", topic) == "allow"
    clock.advance(last_stale + ttl - 0.5 - now)
    assert double.authorize("umc-001", "publish", topic) == "allow", "still inside the cache window"
    clock.advance(1.0)  # past the cache window of the last stale decision
    assert double.authorize("umc-001", "publish", topic) == "deny"
    assert not double.connected("umc-001")  # deny_action: disconnect
    assert last_stale + ttl <= bounds["publish"] == ttl + node_ttl  # the bound the CLI and README state


def test_a_cache_drain_shortcuts_the_window(registry_broker: RegistryBroker) -> None:
    password = add(registry_broker, UMC, "umc-001")
    double = registry_broker.double
    assert double.mqtt_connect("umc-001", "umc-001", password).accepted
    assert double.authorize("umc-001", "publish", "tenants/umc/a") == "allow"
    with store.connect(registry_broker.db.manager_dsn) as conn:
        store.remove(conn, UMC, ["umc-001"])
    assert double.authorize("umc-001", "publish", "tenants/umc/a") == "allow"  # cached
    registry_broker.drain()
    assert double.authorize("umc-001", "publish", "tenants/umc/a") == "deny"
    assert double.mqtt_connect("umc-001", "umc-001", password).reason == "not_authorized"


def test_removed_and_unknown_devices_are_refused(registry_broker: RegistryBroker) -> None:
    password = add(registry_broker, UMC, "umc-001")
    with store.connect(registry_broker.db.manager_dsn) as conn:
        store.remove(conn, UMC, ["umc-001"])
    registry_broker.double.clock.advance(_bounds(registry_broker)["connect"])
    assert registry_broker.double.mqtt_connect("umc-001", "umc-001", password).reason == "not_authorized"
    assert registry_broker.double.mqtt_connect("nobody", "nobody", "whatever-0123456789").reason == "not_authorized"


def test_database_unreachable_means_refused_and_denied(registry_broker: RegistryBroker) -> None:
    """EMQX's PostgreSQL sources answer "no match" when the database is down; nothing after them
    allows (the `file` source is disabled) and `no_match` denies."""
    password = add(registry_broker, UMC, "umc-001")
    double = registry_broker.double
    assert double.mqtt_connect("umc-001", "umc-001", password).accepted
    double.postgres.set_database_down()
    # 6.x answers from its node cache for NODE_CACHE_TTL (only successful queries are cached).
    double.clock.advance(_bounds(registry_broker)["connect"])
    assert double.mqtt_connect("umc-002", "umc-001", password).reason == "not_authorized"
    assert double.mqtt_connect("umc-001", "umc-001", password).reason == "not_authorized"
    double.connect("umc-001", "umc-001")  # a session from before the outage, nothing cached
    assert double.authorize("umc-001", "subscribe", "tenants/umc/#") == "deny"
    assert double.authorize("umc-001", "publish", "tenants/umc/x") == "deny"
    with double.state() as state:
        assert [(s["type"], s["enable"]) for s in state.authz_sources] == [("postgresql", True), ("file", False)]
        assert state.authz_settings["no_match"] == "deny"
    double.postgres.set_database_down(False)
    double.clock.advance(_bounds(registry_broker)["publish"])
    assert double.mqtt_connect("umc-001", "umc-001", password).accepted


@pytest.mark.parametrize("hostile", ["' OR '1'='1", "umc-001' --", "x'); DROP TABLE telemetry_registry.devices; --",
                                     "${clientid}", "umc-00_", "umc-001%", " umc-001"])
def test_sql_injection_shaped_ids_are_bound_not_run(registry_broker: RegistryBroker, hostile: str) -> None:
    password = add(registry_broker, UMC, "umc-001")
    double = registry_broker.double
    for username, clientid in ((hostile, hostile), ("umc-001", hostile), (hostile, "umc-001")):
        assert double.mqtt_connect(clientid, username, password).reason == "not_authorized", (username, clientid)
    double.connect(hostile, hostile)
    assert double.authorize(hostile, "publish", "tenants/umc/x") == "deny"
    assert registry_broker.db.execute("SELECT count(*) FROM telemetry_registry.devices") == [(1,)]
    assert double.mqtt_connect("umc-001", "umc-001", password).accepted
