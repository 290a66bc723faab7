"""The PostgreSQL authenticator and the authorization providers against the EMQX double (5.8 and 6.x).

The double validates their bodies as EMQX 5.8.9/6.2.2 do and reports the database connection
from a real PostgreSQL (tests/emqx_double/postgres.py); the registry and the stack's roles are
real (tests/devices/conftest.py).
"""

from __future__ import annotations

import json

import pytest
import requests

from components import devices
from components.providers.emqx import (
    POSTGRES_AUTHENTICATOR_ID,
    EmqxAuthenticatorProvider,
    EmqxAuthorizationProvider,
    EmqxBackendUnreachableError,
    EmqxConflictError,
    EmqxPostgresAuthenticatorProvider,
    EmqxUserProvider,
    default_authorization_sources,
    fingerprint,
)
from tests.devices.conftest import (
    UMC,
    DeviceDb,
    RegistryBroker,
    authenticator_props,
    authorization_props,
    emqx_password,
    registry_connection,
)
from tests.emqx_double.fixtures import API_KEY, API_SECRET
from tests.emqx_double.server import EmqxDouble

AUTHN = EmqxPostgresAuthenticatorProvider()
AUTHZ = EmqxAuthorizationProvider()


@pytest.fixture(params=["5.8", "6.x"])
def double(request: pytest.FixtureRequest):
    broker = EmqxDouble(api_key=API_KEY, api_secret=API_SECRET, version=request.param).start()
    yield broker
    broker.stop()


def get(double: EmqxDouble, path: str):
    return requests.get(f"{double.url}/api/v5{path}", auth=(API_KEY, API_SECRET), timeout=5)


def test_the_authenticator_is_created_with_the_bodies_the_registry_was_tested_with(double, device_db):
    props = authenticator_props(double, device_db)
    expected = devices.emqx_authenticator_body(**registry_connection(device_db), password=emqx_password(device_db))
    assert AUTHN.body(props) == expected
    outs = AUTHN.create(props).outs
    with double.state() as state:
        stored = state.authenticators[POSTGRES_AUTHENTICATOR_ID]
    assert {key: stored[key] for key in expected if key != "ssl"} == {k: v for k, v in expected.items() if k != "ssl"}
    assert stored["ssl"]["enable"] is False
    # The password: never an output, a fingerprint instead; what GET shows is redacted.
    assert "password" not in outs and outs["password_sha256"] == fingerprint(emqx_password(device_db),
                                                                              POSTGRES_AUTHENTICATOR_ID)
    assert emqx_password(device_db) not in json.dumps(outs)
    assert get(double, f"/authentication/{POSTGRES_AUTHENTICATOR_ID}").json()["password"] == "******"
    assert [a["id"] for a in get(double, "/authentication").json()] == [POSTGRES_AUTHENTICATOR_ID]
    refreshed = AUTHN.read(POSTGRES_AUTHENTICATOR_ID, outs)
    assert AUTHN.diff(POSTGRES_AUTHENTICATOR_ID, refreshed.outs, props).changes is False


def test_5_8_answers_the_post_with_the_password_in_clear_and_nothing_keeps_it(device_db):
    """emqx_authn_api.erl:880-887 (5.8.9): the POST answer is the unredacted config; 6.2.2 redacts it."""
    for version, shown in (("5.8", True), ("6.x", False)):
        broker = EmqxDouble(api_key=API_KEY, api_secret=API_SECRET, version=version).start()
        try:
            body = AUTHN.body(authenticator_props(broker, device_db))
            answer = requests.post(f"{broker.url}/api/v5/authentication", json=body, auth=(API_KEY, API_SECRET),
                                   timeout=5)
            assert answer.status_code == 200 and (answer.json()["password"] == emqx_password(device_db)) is shown
            requests.delete(f"{broker.url}/api/v5/authentication/{POSTGRES_AUTHENTICATOR_ID}",
                            auth=(API_KEY, API_SECRET), timeout=5)
            outs = AUTHN.create(authenticator_props(broker, device_db)).outs
            assert emqx_password(device_db) not in json.dumps(outs)
        finally:
            broker.stop()


@pytest.mark.parametrize(("key", "value"), [
    ("query", "SELECT password_hash, salt FROM telemetry_registry.devices WHERE device_id = ${username}"),
    ("server", "127.0.0.1:1"), ("enable", False), ("pool_size", 2),
    ("password_hash_algorithm", {"name": "sha256", "salt_position": "prefix"}),
])
def test_authenticator_drift_shows_on_refresh_and_update_restores_it(double, device_db, key, value):
    props = authenticator_props(double, device_db)
    outs = AUTHN.create(props).outs
    with double.state() as state:
        state.authenticators[POSTGRES_AUTHENTICATOR_ID][key] = value  # someone in the dashboard
    refreshed = AUTHN.read(POSTGRES_AUTHENTICATOR_ID, outs).outs
    diff = AUTHN.diff(POSTGRES_AUTHENTICATOR_ID, refreshed, props)
    assert diff.changes and not diff.replaces
    AUTHN.update(POSTGRES_AUTHENTICATOR_ID, refreshed, props)
    with double.state() as state:
        assert state.authenticators[POSTGRES_AUTHENTICATOR_ID][key] == props[key]


def test_a_new_database_password_is_a_change_and_is_sent(double, device_db):
    props = authenticator_props(double, device_db)
    outs = AUTHN.create(props).outs
    with double.state() as state:
        assert state.authenticators[POSTGRES_AUTHENTICATOR_ID]["password"] == emqx_password(device_db)
    rotated = {**props, "password": "a-new-role-password-000"}
    assert AUTHN.diff(POSTGRES_AUTHENTICATOR_ID, outs, rotated).changes
    device_db.execute(f'ALTER ROLE "{device_db.emqx_role}" PASSWORD \'a-new-role-password-000\'')
    new_outs = AUTHN.update(POSTGRES_AUTHENTICATOR_ID, outs, rotated).outs
    with double.state() as state:
        assert state.authenticators[POSTGRES_AUTHENTICATOR_ID]["password"] == "a-new-role-password-000"
    assert new_outs["password_sha256"] == fingerprint("a-new-role-password-000", POSTGRES_AUTHENTICATOR_ID)


def test_created_while_emqx_cannot_reach_the_database_fails_with_what_it_was_told(double, device_db):
    """EMQX accepts it (200) and reports `disconnected`; the provider says what to check."""
    props = authenticator_props(double, device_db, server="127.0.0.1:1", status_timeout=0.5)
    with pytest.raises(EmqxBackendUnreachableError) as failure:
        AUTHN.create(props)
    message = str(failure.value)
    assert "EMQX PostgreSQL authenticator 'password_based:postgresql'" in message
    assert "'disconnected'" in message and "127.0.0.1:1" in message and device_db.emqx_role in message
    assert emqx_password(device_db) not in message
    with double.state() as state:
        assert POSTGRES_AUTHENTICATOR_ID in state.authenticators  # held by EMQX: the next up corrects it
    source_props = authorization_props(double, device_db, status_timeout=0.5)
    source_props["sources"][0] = {**source_props["sources"][0], "server": "127.0.0.1:1"}
    with pytest.raises(EmqxBackendUnreachableError, match="EMQX authorization 'authorization'.*127.0.0.1:1"):
        AUTHZ.create(source_props)


def test_a_wrong_role_password_is_reported_the_same_way(double, device_db):
    props = authenticator_props(double, device_db, password="not-the-role-password", status_timeout=0.5)
    with pytest.raises(EmqxBackendUnreachableError, match="may log in"):
        AUTHN.create(props)


def test_another_authenticator_is_refused_at_create_and_removed_by_update(double, device_db):
    """Any other authenticator could accept a device under another's client id."""
    requests.post(f"{double.url}/api/v5/authentication", auth=(API_KEY, API_SECRET), timeout=5, json={
        "mechanism": "password_based", "backend": "built_in_database"})
    # The stacks's own built-in authenticator of before devices-as-data is tolerated at create...
    outs = AUTHN.create(authenticator_props(double, device_db)).outs
    assert [a["id"] for a in get(double, "/authentication").json()][0] == POSTGRES_AUTHENTICATOR_ID
    # ...shows as drift on refresh, and the next update removes it (no users are left in it).
    refreshed = AUTHN.read(POSTGRES_AUTHENTICATOR_ID, outs).outs
    assert refreshed["other_authenticators"] == ["password_based:built_in_database"]
    props = authenticator_props(double, device_db)
    assert AUTHN.diff(POSTGRES_AUTHENTICATOR_ID, refreshed, props).changes
    AUTHN.update(POSTGRES_AUTHENTICATOR_ID, refreshed, props)
    assert [a["id"] for a in get(double, "/authentication").json()] == [POSTGRES_AUTHENTICATOR_ID]


def test_an_update_does_not_erase_built_in_users(double, device_db):
    EmqxAuthenticatorProvider().create({"api_url": double.url, "api_key": API_KEY, "api_secret": API_SECRET,
                                        "user_id_type": "username", "enable": True,
                                        "password_hash_algorithm": {"name": "sha256", "salt_position": "suffix"}})
    EmqxUserProvider().create({"api_url": double.url, "api_key": API_KEY, "api_secret": API_SECRET,
                               "user_id": "old-device", "password": "old-password-0123", "is_superuser": False})
    props = authenticator_props(double, device_db)
    outs = AUTHN.read(POSTGRES_AUTHENTICATOR_ID, AUTHN.create(props).outs).outs
    with pytest.raises(EmqxConflictError, match="still holds 1 user.*tools.devices import"):
        AUTHN.update(POSTGRES_AUTHENTICATOR_ID, outs, props)
    assert double.count("authn_users") == 1


def test_a_foreign_authenticator_is_refused_at_create(double, device_db):
    config = {"mechanism": "password_based", "backend": "postgresql", "server": "elsewhere:5432",
              "database": "x", "username": "x", "query": "SELECT 1"}
    # A PostgreSQL authenticator someone else made is the same id: adopted only if identical.
    requests.post(f"{double.url}/api/v5/authentication", json=config, auth=(API_KEY, API_SECRET), timeout=5)
    with pytest.raises(EmqxConflictError, match="already exists in EMQX with different content"):
        AUTHN.create(authenticator_props(double, device_db))


def test_6x_node_caches_are_set_and_5_8_has_none(double, device_db):
    AUTHN.create(authenticator_props(double, device_db))
    AUTHZ.create(authorization_props(double, device_db))
    if double.version == "6.x":
        settings = get(double, "/authentication/settings").json()
        assert settings["node_cache"]["cache_ttl"] == "5s" and settings["ignore_backend_failures"] is False
        assert get(double, "/authorization/node_cache").json()["cache_ttl"] == "5s"
        assert get(double, "/authorization/settings").json()["ignore_backend_failures"] is False
    else:
        assert get(double, "/authentication/settings").status_code == 404
        assert get(double, "/authorization/node_cache").status_code == 404


def test_authorization_replaces_the_built_in_sources_and_keeps_its_password_out_of_state(double, device_db):
    legacy = authorization_props(double, device_db, sources=default_authorization_sources(),
                                 database_password=None, node_cache=None)
    del legacy["database_password"]
    AUTHZ.create(legacy)  # a stack from before devices-as-data
    props = authorization_props(double, device_db)
    outs = AUTHZ.create(props).outs
    sources = get(double, "/authorization/sources").json()["sources"]
    assert [(s["type"], s["enable"]) for s in sources] == [("postgresql", True), ("file", False)]
    assert sources[0]["password"] == "******" and sources[0]["query"] == devices.AUTHZ_QUERY
    settings = get(double, "/authorization/settings").json()
    assert (settings["no_match"], settings["deny_action"], settings["cache"]["ttl"]) == ("deny", "disconnect", "30s")
    assert emqx_password(device_db) not in json.dumps(outs) and "database_password" not in outs
    assert outs["database_password_sha256"] == fingerprint(emqx_password(device_db), "authorization")
    refreshed = AUTHZ.read("authorization", outs).outs
    assert AUTHZ.diff("authorization", refreshed, props).changes is False


def test_a_new_source_password_is_put_even_though_emqx_hides_it(double, device_db):
    props = authorization_props(double, device_db)
    outs = AUTHZ.create(props).outs
    device_db.execute(f'ALTER ROLE "{device_db.emqx_role}" PASSWORD \'rotated-source-password-1\'')
    rotated = {**props, "database_password": "rotated-source-password-1"}
    assert AUTHZ.diff("authorization", outs, rotated).changes
    AUTHZ.update("authorization", outs, rotated)
    with double.state() as state:
        assert state.authz_source("postgresql")["password"] == "rotated-source-password-1"


def test_the_source_is_written_with_the_body_the_registry_was_tested_with(double, device_db):
    AUTHZ.create(authorization_props(double, device_db))
    expected = devices.emqx_authorization_source_body(**registry_connection(device_db),
                                                      password=emqx_password(device_db))
    with double.state() as state:
        stored = state.authz_source("postgresql")
    assert {key: stored[key] for key in expected if key != "ssl"} == {k: v for k, v in expected.items() if k != "ssl"}


def test_source_drift_on_refresh(double, device_db):
    props = authorization_props(double, device_db)
    outs = AUTHZ.create(props).outs
    with double.state() as state:
        state.authz_source("postgresql")["query"] = "SELECT 'allow' AS permission, 'all' AS action, '#' AS topic"
    refreshed = AUTHZ.read("authorization", outs).outs
    assert AUTHZ.diff("authorization", refreshed, props).changes
    AUTHZ.update("authorization", refreshed, props)
    with double.state() as state:
        assert state.authz_source("postgresql")["query"] == devices.AUTHZ_QUERY


def test_deleting_leaves_the_broker_closed(registry_broker: RegistryBroker):
    double, db = registry_broker.double, registry_broker.db
    password = db.add(UMC, "umc-001")
    AUTHZ.delete("authorization", registry_broker.authorization_outs)
    AUTHN.delete(POSTGRES_AUTHENTICATOR_ID, registry_broker.authenticator_outs)
    AUTHN.delete(POSTGRES_AUTHENTICATOR_ID, registry_broker.authenticator_outs)  # idempotent
    sources = get(double, "/authorization/sources").json()["sources"]
    assert [(s["type"], s["enable"]) for s in sources] == [("file", False)]
    assert get(double, "/authorization/settings").json()["no_match"] == "deny"
    # EMQX with no authenticator lets anyone connect; nothing is allowed to them.
    assert double.mqtt_connect("anyone", "anyone", "x").accepted
    assert double.authorize("anyone", "publish", "tenants/umc/x") == "deny"
    assert double.mqtt_connect("umc-001", "umc-001", password).accepted
    assert double.authorize("umc-001", "publish", "tenants/umc/x") == "deny"


def test_the_stack_objects_check_devices_from_the_first_connect(registry_broker: RegistryBroker, device_db: DeviceDb):
    """What the providers leave is what tests/devices/test_through_the_broker.py relies on."""
    with registry_broker.double.state() as state:
        assert list(state.authenticators) == [POSTGRES_AUTHENTICATOR_ID]
        assert [s["type"] for s in state.authz_sources] == ["postgresql", "file"]
    password = device_db.add(UMC, "umc-009")
    assert registry_broker.double.mqtt_connect("umc-009", "umc-009", password).accepted
