"""The authentication and authorization queries the stack configures in EMQX, run against real PostgreSQL.

Each test runs the exact ``AUTHN_QUERY``/``AUTHZ_QUERY`` of ``components.devices``
through ``tests.emqx_auth_sql``, which prepares and binds them as EMQX 5.8.9 and
6.2.2 do (``${var}`` -> ``$n``, values bound, never interpolated), logs in as the
EMQX role of the grant plan, and reads the result as EMQX's providers and
chains do.  They stand in for a real broker's CONNECT and PUBLISH/SUBSCRIBE
checks with the stack's authenticator, authorization source and settings
(``no_match: deny``, the shipped ``file`` source disabled).
"""

from __future__ import annotations

import hashlib

import pytest

from components.devices import AUTHN_QUERY, AUTHZ_QUERY, PASSWORD_HASH, hash_password
from tests.devices.conftest import HX, UMC, DeviceDb, make_broker
from tests.emqx_auth_sql import (
    AUTHN_ALLOWED,
    AUTHZ_ALLOWED,
    VERSIONS,
    Action,
    Client,
    check_password,
    parse_sql,
)

pytestmark = pytest.mark.parametrize("version", VERSIONS)


def test_configured_queries_bind_only_username_and_clientid(version: str) -> None:
    """Both queries prepare to $1/$2 with no placeholder EMQX would leave unbound or mangle."""
    for query, allowed in ((AUTHN_QUERY, AUTHN_ALLOWED), (AUTHZ_QUERY, AUTHZ_ALLOWED)):
        prepared = parse_sql(query, allowed[version], version)
        assert prepared.disallowed == ()
        assert "${" not in prepared.statement and prepared.statement.endswith("($1, $2)")
        assert [pieces[0].name for pieces in prepared.params] == ["username", "clientid"]


def test_right_password_connects_and_is_no_superuser(device_db: DeviceDb, version: str) -> None:
    password = device_db.add(UMC, "umc-001")
    outcome = make_broker(device_db, version).connect("umc-001", "umc-001", password)
    assert outcome.kind == "ok" and outcome.is_superuser is False


def test_wrong_password_is_refused_and_stops_the_chain(device_db: DeviceDb, version: str) -> None:
    password = device_db.add(UMC, "umc-001")
    broker = make_broker(device_db, version)
    for wrong in ("wrong", password.upper(), password[:-1], "", password + " "):
        outcome = broker.connect("umc-001", "umc-001", wrong)
        assert (outcome.kind, outcome.reason) == ("error", "bad_username_or_password"), wrong


def test_no_password_is_refused(device_db: DeviceDb, version: str) -> None:
    device_db.add(UMC, "umc-001")
    outcome = make_broker(device_db, version).connect("umc-001", "umc-001", None)
    assert outcome.kind == "error"  # 5.8.9 stops at once; 6.2.2 ignores, and no other authenticator accepts


@pytest.mark.parametrize("victim_tenant", [UMC, HX])
def test_a_device_cannot_take_another_devices_client_id(device_db: DeviceDb, version: str, victim_tenant: str) -> None:
    """The hijack EMQX would allow by ending the victim's session: refused before any session is touched."""
    attacker_password = device_db.add(UMC, "umc-attacker")
    device_db.add(victim_tenant, "victim-1")
    broker = make_broker(device_db, version)
    # Its own valid credentials with the victim's client id: no row, so not authorized.
    outcome = broker.connect("umc-attacker", "victim-1", attacker_password)
    assert (outcome.kind, outcome.reason) == ("error", "not_authorized")
    # The victim's username with its own client id, or with the victim's: wrong password or no row.
    assert broker.connect("victim-1", "umc-attacker", attacker_password).kind == "error"
    assert broker.connect("victim-1", "victim-1", attacker_password).reason == "bad_username_or_password"
    # Authorization follows the same binding: a client whose id is not its username gets no rule.
    assert broker.may("umc-attacker", "publish", "tenants/umc/x", clientid="victim-1") == "deny"


def test_disabled_device_is_refused_and_enabled_again_accepted(device_db: DeviceDb, version: str) -> None:
    password = device_db.add(UMC, "umc-001", enabled=False)
    broker = make_broker(device_db, version)
    assert broker.connect("umc-001", "umc-001", password).reason == "not_authorized"
    assert broker.may("umc-001", "publish", "tenants/umc/x") == "deny"
    device_db.execute("UPDATE telemetry_registry.devices SET enabled = true WHERE device_id = 'umc-001'")
    assert broker.connect("umc-001", "umc-001", password).kind == "ok"
    assert broker.may("umc-001", "publish", "tenants/umc/x") == "allow"


def test_removed_device_is_refused(device_db: DeviceDb, version: str) -> None:
    password = device_db.add(UMC, "umc-001")
    device_db.execute("DELETE FROM telemetry_registry.devices WHERE device_id = 'umc-001'")
    broker = make_broker(device_db, version)
    assert broker.connect("umc-001", "umc-001", password).reason == "not_authorized"
    assert broker.may("umc-001", "publish", "tenants/umc/x") == "deny"


def test_disabled_or_removed_tenant_refuses_its_devices(device_db: DeviceDb, version: str) -> None:
    password = device_db.add(HX, "hx-001")
    broker = make_broker(device_db, version)
    device_db.execute("UPDATE telemetry_registry.tenants SET enabled = false WHERE slug = %s", (HX,))
    assert broker.connect("hx-001", "hx-001", password).reason == "not_authorized"
    assert broker.may("hx-001", "publish", "tenants/hx/t") == "deny"
    device_db.execute("UPDATE telemetry_registry.tenants SET enabled = true WHERE slug = %s", (HX,))
    assert broker.connect("hx-001", "hx-001", password).kind == "ok"
    device_db.execute("DELETE FROM telemetry_registry.tenants WHERE slug = %s", (HX,))
    assert broker.connect("hx-001", "hx-001", password).reason == "not_authorized"
    assert broker.may("hx-001", "subscribe", "tenants/hx/#") == "deny"
    # The device row survives the tenant (state), ready for the tenant's return.
    assert device_db.execute("SELECT count(*) FROM telemetry_registry.devices WHERE tenant = %s", (HX,)) == [(1,)]


def test_unknown_device_is_refused(device_db: DeviceDb, version: str) -> None:
    device_db.add(UMC, "umc-001")
    broker = make_broker(device_db, version)
    assert broker.connect("nobody", "nobody", "anything-at-all").reason == "not_authorized"
    assert broker.connect(None, "umc-001", "x").reason in ("not_authorized", "bad_username_or_password")
    assert broker.may("nobody", "publish", "tenants/umc/x") == "deny"


def test_a_device_may_use_its_tenants_topics_only(device_db: DeviceDb, version: str) -> None:
    device_db.add(UMC, "umc-001")
    device_db.add(HX, "hx-001")
    broker = make_broker(device_db, version)
    allowed = [("publish", "tenants/umc/umc-001/telemetry"), ("publish", "tenants/umc"), ("subscribe", "tenants/umc/#"),
               ("subscribe", "tenants/umc/+/cmd"), ("publish", "tenants/umc/other-device/telemetry")]
    denied = [("publish", "tenants/hx/hx-001/telemetry"), ("subscribe", "tenants/hx/#"), ("subscribe", "tenants/#"),
              ("subscribe", "tenants/+/x"), ("subscribe", "#"), ("publish", "tenants/umcx/t"),
              ("publish", "tenants"), ("publish", "$SYS/brokers"), ("subscribe", "$SYS/#"), ("publish", "other/umc")]
    for action, topic in allowed:
        assert broker.may("umc-001", action, topic) == "allow", (action, topic)
    for action, topic in denied:
        assert broker.may("umc-001", action, topic) == "deny", (action, topic)
    assert broker.may("hx-001", "publish", "tenants/hx/hx-001/telemetry") == "allow"
    assert broker.may("hx-001", "publish", "tenants/umc/x") == "deny"
    for qos in (0, 1, 2):
        assert broker.may("umc-001", "publish", "tenants/umc/q", qos=qos) == "allow"


@pytest.mark.parametrize(
    "hostile",
    [
        "' OR '1'='1",
        "umc-001' --",
        "x'); DROP TABLE telemetry_registry.devices; --",
        "umc-001\" OR \"1\"=\"1",
        "${clientid}",
        "$1",
        "umc-001%",
        "umc-00_",
        "UMC-001",
        " umc-001",
        "umc-001\\",
        "' UNION SELECT password_hash, salt, true FROM telemetry_registry.devices --",
        "é" * 300,
    ],
)
def test_injection_shaped_usernames_and_client_ids_are_bound_not_run(
    device_db: DeviceDb, version: str, hostile: str
) -> None:
    password = device_db.add(UMC, "umc-001")
    broker = make_broker(device_db, version)
    for username, clientid in ((hostile, hostile), ("umc-001", hostile), (hostile, "umc-001")):
        assert broker.connect(username, clientid, password).kind == "error"
        assert broker.may(username, "publish", "tenants/umc/x", clientid=clientid) == "deny"
    statement, params = broker.authenticator.connector.executed[-1]
    assert statement.endswith("emqx_device_authn($1, $2)") and hostile in params
    assert device_db.execute("SELECT count(*) FROM telemetry_registry.devices") == [(1,)]
    assert broker.connect("umc-001", "umc-001", password).kind == "ok"


def test_stored_hash_is_the_format_emqx_verifies(device_db: DeviceDb, version: str) -> None:
    """sha256 with the salt after the password, lowercase hex: emqx_passwd:hash({sha256, Salt, suffix}, Password)."""
    password = device_db.add(UMC, "umc-001")
    ((stored, salt),) = device_db.execute(
        "SELECT password_hash, salt FROM telemetry_registry.devices WHERE device_id = 'umc-001'")
    assert stored == hashlib.sha256(password.encode() + salt.encode()).hexdigest() == hash_password(password, salt)
    assert len(salt) == 32 and int(salt, 16) >= 0  # 16 random bytes in hex, like EMQX's gen_salt
    assert check_password(PASSWORD_HASH, salt, stored, password.encode(), version)
    # The salt position is part of the format: a prefix-configured authenticator would refuse it.
    assert not check_password({"name": "sha256", "salt_position": "prefix"}, salt, stored, password.encode(), version)
    # EMQX compares hex digits without case.
    assert check_password(PASSWORD_HASH, salt, stored.upper(), password.encode(), version)
    # A known vector (sha256 of the bytes "abc" then "salt"), independent of components.devices.
    assert hash_password("abc", "salt") == "169b3a2b0977ebee2eb1fd392c6aa470a3281d439ff32f20baea7309d7f40eec"


def test_database_down_means_deny(device_db: DeviceDb, plain_postgres_server, version: str) -> None:
    """PostgreSQL unreachable: the sources answer ignore/nomatch, nothing else allows, and no_match denies."""
    password = device_db.add(UMC, "umc-001")
    plain_postgres_server.stop()  # a server that was there and is gone: connection refused
    gone = plain_postgres_server.dsn()
    for profile in ("legacy", "hardened"):
        broker = make_broker(device_db, version, dsn=gone, security_profile=profile)
        outcome = broker.connect("umc-001", "umc-001", password)
        assert (outcome.kind, outcome.reason) == ("error", "not_authorized"), profile
        assert broker.may("umc-001", "publish", "tenants/umc/x") == "deny"
        source = broker.authorization.authorize(
            Client(clientid="umc-001", username="umc-001"), Action("publish"), "tenants/umc/x")
        expected = "deny" if (version != VERSIONS[0] and profile == "hardened") else (
            "nomatch" if version == VERSIONS[0] else "ignore")
        assert source == expected
    # Why `no_match: deny` matters: with 5.8's default `allow`, the outage would let everything through.
    legacy = make_broker(device_db, version, dsn=gone)
    legacy.no_match = "allow"
    assert legacy.may("umc-001", "publish", "tenants/hx/x") == "allow"
