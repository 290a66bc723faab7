"""TenantRegistry and TenantRegistration providers against a real PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from pulumi.runtime import rpc

from components.providers.postgres import ProviderError
from components.providers.registry import (
    TenantRegistrationProvider,
    TenantRegistryProvider,
    token_sha256,
)
from components.providers.telemetry_ddl import REGISTRY_CHANNEL, REGISTRY_DDL_VERSION
from tests.providers._db_helpers import execute, fetch_one, table_exists

TOKEN = "first-token-0123456789abcdef"
NEW_TOKEN = "second-token-fedcba9876543210"


def registration(dsn: str, **overrides) -> dict:
    base = {
        "dsn": dsn,
        "slug": "uberlandia-medical-center",
        "schema_name": "tenant_uberlandia_medical_center",
        "topic_prefix": "umc",
        "token": TOKEN,
        "enabled": True,
        "token_grace": "15 minutes",
        "ready_timeout": 10,
    }
    base.update(overrides)
    return base


def row(dsn: str, slug: str = "uberlandia-medical-center"):
    return fetch_one(
        dsn,
        "SELECT schema_name, topic_prefix, token_sha256, previous_token_sha256, previous_token_expires_at, enabled "
        "FROM telemetry_registry.tenants WHERE slug = %s",
        (slug,),
    )


@pytest.fixture()
def registry(database: str) -> str:
    TenantRegistryProvider().create({"dsn": database})
    return database


@pytest.fixture()
def registered(registry: str):
    return registry, TenantRegistrationProvider().create(registration(registry))


# --------------------------------------------------------------------------- TenantRegistry


def test_registry_create_read_delete(database: str) -> None:
    provider = TenantRegistryProvider()
    result = provider.create({"dsn": database})
    assert result.id == "telemetry_registry.tenants"
    assert result.outs["schema_name"] == "telemetry_registry" and result.outs["channel"] == REGISTRY_CHANNEL
    assert table_exists(database, "telemetry_registry", "tenants")
    triggers = fetch_one(
        database,
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'telemetry_registry.tenants'::regclass AND NOT tgisinternal",
    )[0]
    assert triggers == 2
    assert provider.read(result.id, result.outs).outs == result.outs
    assert provider.create({"dsn": database}).id == result.id  # idempotent: adopts
    provider.delete(result.id, result.outs)
    assert not table_exists(database, "telemetry_registry", "tenants")
    provider.delete(result.id, result.outs)  # already gone
    assert provider.read(result.id, result.outs).id == ""


def test_registry_update_repairs_a_dropped_trigger(registry: str) -> None:
    execute(registry, "DROP TRIGGER notify_tenant_change ON telemetry_registry.tenants")
    provider = TenantRegistryProvider()
    current = {"dsn": registry, "ddl_version": REGISTRY_DDL_VERSION}
    assert provider.diff("id", current, {"dsn": registry}).changes is False
    assert provider.diff("id", current, {"dsn": registry + " "}).replaces == []
    provider.update("id", {"dsn": registry}, {"dsn": registry})
    assert fetch_one(registry, "SELECT count(*) FROM pg_trigger WHERE tgname = 'notify_tenant_change'")[0] == 1


def test_refresh_shows_a_dropped_notify_trigger_and_up_restores_it(database: str) -> None:
    """Without the trigger the ingest service never hears of new tenants: that is drift."""
    provider = TenantRegistryProvider()
    created = provider.create({"dsn": database})
    assert provider.diff(created.id, created.outs, {"dsn": database}).changes is False
    for break_it in (
        "ALTER TABLE telemetry_registry.tenants DISABLE TRIGGER notify_tenant_change",
        "DROP TRIGGER notify_tenant_change ON telemetry_registry.tenants",
    ):
        execute(database, break_it)
        refreshed = provider.read(created.id, created.outs)
        assert refreshed.id == created.id and refreshed.outs["channel"] is None
        diff = provider.diff(created.id, refreshed.outs, {"dsn": database})
        assert diff.changes is True and diff.replaces == []
        repaired = provider.update(created.id, refreshed.outs, {"dsn": database}).outs
        assert repaired == created.outs
        assert provider.read(created.id, repaired).outs == created.outs
        with psycopg.connect(database, autocommit=True) as listener:
            listener.execute(f"LISTEN {REGISTRY_CHANNEL}")
            execute(
                database,
                "INSERT INTO telemetry_registry.tenants (slug, schema_name, topic_prefix, token_sha256) "
                "VALUES ('probe', 'tenant_probe', 'probe', 'x')",
            )
            assert [n.payload for n in listener.notifies(timeout=5, stop_after=1)] == ["probe"]
        execute(database, "DELETE FROM telemetry_registry.tenants WHERE slug = 'probe'")


def test_a_registry_from_before_devices_is_upgraded_in_place(database: str) -> None:
    """Existing stacks: state without ddl_version is a diff (no replacement), and the update adds devices."""
    provider = TenantRegistryProvider()
    created = provider.create({"dsn": database})
    assert created.outs["ddl_version"] == REGISTRY_DDL_VERSION and created.outs["devices_table"] == "devices"
    execute(database, "DROP TABLE telemetry_registry.devices")
    execute(database, "DROP FUNCTION telemetry_registry.emqx_device_authn, telemetry_registry.emqx_device_acl")
    old_state = {key: value for key, value in created.outs.items() if key not in ("ddl_version", "devices_table")}
    diff = provider.diff(created.id, old_state, {"dsn": database})
    assert diff.changes is True and diff.replaces == []
    assert provider.read(created.id, created.outs).outs["ddl_version"] is None  # refresh shows the drift
    assert provider.update(created.id, old_state, {"dsn": database}).outs == created.outs
    assert table_exists(database, "telemetry_registry", "devices")
    assert provider.read(created.id, created.outs).outs == created.outs
    assert provider.diff(created.id, created.outs, {"dsn": database}).changes is False


def test_registry_delete_keeps_a_registry_that_still_holds_devices(registry: str) -> None:
    execute(
        registry,
        "INSERT INTO telemetry_registry.devices (device_id, tenant, password_hash, salt) "
        "VALUES ('d1', 'gone', repeat('a', 64), 'salt')",
    )
    TenantRegistryProvider().delete("telemetry_registry.tenants", {"dsn": registry})
    assert table_exists(registry, "telemetry_registry", "devices")
    execute(registry, "DELETE FROM telemetry_registry.devices")
    TenantRegistryProvider().delete("telemetry_registry.tenants", {"dsn": registry})
    assert not table_exists(registry, "telemetry_registry", "devices")


def test_registry_delete_keeps_a_registry_that_still_lists_tenants(registered) -> None:
    dsn, _ = registered
    TenantRegistryProvider().delete("telemetry_registry.tenants", {"dsn": dsn})
    assert row(dsn) is not None


# --------------------------------------------------------------------------- TenantRegistration


def test_create_writes_the_hash_and_never_outputs_the_token(registered) -> None:
    dsn, result = registered
    assert result.id == "uberlandia-medical-center"
    assert row(dsn) == (
        "tenant_uberlandia_medical_center",
        "umc",
        hashlib.sha256(TOKEN.encode()).hexdigest(),
        None,
        None,
        True,
    )
    assert result.outs["token_sha256"] == token_sha256(TOKEN)
    assert "token" not in result.outs
    assert TOKEN not in repr(result.outs)


def test_create_notifies_the_ingest_service(registry: str) -> None:
    with psycopg.connect(registry, autocommit=True) as listener:
        listener.execute(f"LISTEN {REGISTRY_CHANNEL}")
        TenantRegistrationProvider().create(registration(registry))
        notices = list(listener.notifies(timeout=5, stop_after=1))
    assert [notice.payload for notice in notices] == ["uberlandia-medical-center"]


def test_create_makes_the_registry_when_it_is_missing(database: str) -> None:
    TenantRegistrationProvider().create(registration(database))
    assert row(database)[1] == "umc"


def test_read_without_drift_and_with_drift(registered) -> None:
    dsn, result = registered
    provider = TenantRegistrationProvider()
    assert provider.read(result.id, result.outs).outs == result.outs
    execute(dsn, "UPDATE telemetry_registry.tenants SET enabled = false, topic_prefix = 'other'")
    drifted = provider.read(result.id, result.outs).outs
    assert drifted["enabled"] is False and drifted["topic_prefix"] == "other"
    diff = provider.diff(result.id, drifted, registration(dsn))
    assert diff.changes is True and diff.replaces == []
    fixed = provider.update(result.id, drifted, registration(dsn)).outs
    assert fixed["enabled"] is True and fixed["topic_prefix"] == "umc"
    assert fixed["previous_token_sha256"] is None  # same token: not a rotation
    execute(dsn, "DELETE FROM telemetry_registry.tenants")
    gone = provider.read(result.id, result.outs)
    assert gone.id == "" and gone.outs == {}


def test_diff() -> None:
    provider = TenantRegistrationProvider()
    olds = {**registration("dsn"), "token_sha256": token_sha256(TOKEN)}
    del olds["token"]
    assert provider.diff("id", olds, registration("dsn")).changes is False
    rotated = provider.diff("id", olds, registration("dsn", token=NEW_TOKEN))
    assert rotated.changes is True and rotated.replaces == []
    assert provider.diff("id", olds, registration("dsn", token=rpc.UNKNOWN)).changes is True
    for change in ({"topic_prefix": "u2"}, {"schema_name": "tenant_x"}, {"enabled": False}, {"dsn": "dsn2"}):
        in_place = provider.diff("id", olds, {**registration("dsn"), **change})
        assert in_place.changes is True and in_place.replaces == [], change
    replaced = provider.diff("id", olds, registration("dsn", slug="umc-2"))
    assert replaced.replaces == ["slug"] and replaced.delete_before_replace is True


def test_token_rotation_keeps_the_previous_token_for_the_grace_period(registered) -> None:
    dsn, result = registered
    before = datetime.now(UTC)
    outs = TenantRegistrationProvider().update(result.id, result.outs, registration(dsn, token=NEW_TOKEN)).outs
    _, _, current, previous, expires, _ = row(dsn)
    assert current == token_sha256(NEW_TOKEN) and previous == token_sha256(TOKEN)
    assert before + timedelta(minutes=14) < expires < datetime.now(UTC) + timedelta(minutes=16)
    assert outs["token_sha256"] == current and outs["previous_token_sha256"] == previous
    assert datetime.fromisoformat(outs["previous_token_expires_at"]) == expires
    assert outs["previous_token_expires_at"].endswith("+00:00")
    assert TOKEN not in repr(outs) and NEW_TOKEN not in repr(outs)


def test_read_after_rotation_does_not_depend_on_the_session_time_zone(registered) -> None:
    """Whoever runs `pulumi refresh` (PGTZ, a role's TimeZone) must see no drift."""
    dsn, result = registered
    provider = TenantRegistrationProvider()
    outs = provider.update(result.id, result.outs, registration(dsn, token=NEW_TOKEN)).outs
    elsewhere = {**outs, "dsn": dsn + " options='-c TimeZone=Asia/Kolkata'"}
    assert fetch_one(elsewhere["dsn"], "SHOW TimeZone")[0] == "Asia/Kolkata"
    assert provider.read(result.id, elsewhere).outs == elsewhere
    assert provider.read(result.id, outs).outs == outs


def test_update_enabled_and_grace(registered) -> None:
    dsn, result = registered
    outs = (
        TenantRegistrationProvider()
        .update(result.id, result.outs, registration(dsn, enabled=False, token_grace="1 hour"))
        .outs
    )
    assert row(dsn)[5] is False and outs["enabled"] is False and outs["token_grace"] == "1 hour"
    assert row(dsn)[3] is None


def test_delete_and_delete_again(registered) -> None:
    dsn, result = registered
    provider = TenantRegistrationProvider()
    provider.delete(result.id, result.outs)
    assert row(dsn) is None
    provider.delete(result.id, result.outs)
    execute(dsn, "DROP SCHEMA telemetry_registry CASCADE")
    provider.delete(result.id, result.outs)  # even the registry is gone


def test_create_over_identical_row_adopts_it(registered) -> None:
    dsn, result = registered
    again = TenantRegistrationProvider().create(registration(dsn))
    assert again.outs == result.outs
    assert fetch_one(dsn, "SELECT count(*) FROM telemetry_registry.tenants")[0] == 1


def test_create_over_same_tenant_with_another_token_rotates(registered) -> None:
    dsn, _ = registered
    outs = TenantRegistrationProvider().create(registration(dsn, token=NEW_TOKEN)).outs
    assert outs["token_sha256"] == token_sha256(NEW_TOKEN) and outs["previous_token_sha256"] == token_sha256(TOKEN)


def test_create_over_different_row_fails_clearly(registered) -> None:
    dsn, _ = registered
    with pytest.raises(ProviderError) as raised:
        TenantRegistrationProvider().create(registration(dsn, topic_prefix="other"))
    message = str(raised.value)
    assert "TenantRegistration uberlandia-medical-center" in message
    assert "topic_prefix 'umc' (the stack wants 'other')" in message
    assert row(dsn)[1] == "umc"


def test_prefix_held_by_another_tenant_is_named(registered) -> None:
    dsn, _ = registered
    with pytest.raises(ProviderError, match="topic_prefix 'umc' already belongs to tenant 'uberlandia-medical-center'"):
        TenantRegistrationProvider().create(registration(dsn, slug="copycat", schema_name="tenant_copycat"))
    other = TenantRegistrationProvider().create(
        registration(dsn, slug="second", schema_name="tenant_second", topic_prefix="sec")
    )
    with pytest.raises(ProviderError, match="schema_name 'tenant_second' already belongs to tenant 'second'"):
        TenantRegistrationProvider().update("id", {}, registration(dsn, schema_name="tenant_second"))
    assert other.outs["topic_prefix"] == "sec"


def test_update_of_a_vanished_row_asks_for_refresh(registered) -> None:
    dsn, result = registered
    execute(dsn, "DELETE FROM telemetry_registry.tenants")
    with pytest.raises(ProviderError, match="pulumi refresh"):
        TenantRegistrationProvider().update(result.id, result.outs, registration(dsn, enabled=False))


def test_check_rejects_bad_grace_and_missing_fields() -> None:
    result = TenantRegistrationProvider().check({}, registration("dsn", token_grace="soon", topic_prefix=""))
    assert {failure.property for failure in result.failures} == {"token_grace", "topic_prefix"}


def test_registrations_created_in_parallel_without_the_registry(database: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def register(index: int):
        return TenantRegistrationProvider().create(
            registration(database, slug=f"t{index}", schema_name=f"tenant_t{index}", topic_prefix=f"p{index}")
        )

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(register, range(6)))
    assert [result.id for result in results] == [f"t{index}" for index in range(6)]
    assert fetch_one(database, "SELECT count(*) FROM telemetry_registry.tenants")[0] == 6
