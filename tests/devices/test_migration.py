"""Moving a deployed stack's config-listed devices to the registry, as `pulumi up` runs it.

The previous program's objects (built-in authenticator, its users, their ACL rules, the
built-in-database authorization) are created by their providers on the EMQX double, with the
devices connected and publishing. Then the providers of the new program run in the order the
engine runs them (tests/unit/test_device_migration.py shows that order): the tenants' imports,
the PostgreSQL authenticator and the authorization, then the deletes, dependents first. After
every step each device connects with the password it already has and publishes on its topics:
no device loses access. Stands in for `pulumi up` on a stack from before devices-as-data, on
EMQX 5.8 and 6.x.
"""

from __future__ import annotations

from typing import Any

import pytest

from components.providers.device_import import IMPORT_LABEL, LegacyDeviceImportProvider
from components.providers.emqx import (
    EmqxAuthenticatorProvider,
    EmqxAuthorizationProvider,
    EmqxPostgresAuthenticatorProvider,
    EmqxUserAclProvider,
    EmqxUserProvider,
    default_authorization_sources,
    topic_prefix_rules,
)
from components.providers.postgres import ProviderError
from tests.devices.conftest import HX, PREFIXES, UMC, DeviceDb, authenticator_props, authorization_props
from tests.emqx_double.fixtures import API_KEY, API_SECRET
from tests.emqx_double.server import EmqxDouble
from tools import device_store as store

# What the previous program had: the device passwords are its RandomPassword results (32 letters and digits).
LISTED = {UMC: {"umc_device": "Ab3" + "x" * 26 + "Zz9"}, HX: {"hx_device_1": "Hx1" + "q" * 29, "hx_device_2": "Hx2" + "w" * 29}}


def conn(double: EmqxDouble) -> dict[str, Any]:
    return {"api_url": double.url, "api_key": API_KEY, "api_secret": API_SECRET, "ready_timeout": 5.0}


def import_props(db: DeviceDb, tenant: str) -> dict[str, Any]:
    return {"dsn": db.superuser_dsn, "tenant": tenant, "device_ids": sorted(LISTED[tenant]),
            "passwords": dict(LISTED[tenant]), "ready_timeout": 5.0}


def deploy_previous_program(double: EmqxDouble) -> dict[str, tuple[Any, str, dict[str, Any]]]:
    """The EMQX objects of a stack deployed before devices-as-data, by their providers; their outputs by name."""
    state: dict[str, tuple[Any, str, dict[str, Any]]] = {}
    authn = {**conn(double), "user_id_type": "username", "enable": True,
             "password_hash_algorithm": {"name": "sha256", "salt_position": "suffix"}}
    state["emqx-authenticator"] = (EmqxAuthenticatorProvider(), "authenticator",
                                   EmqxAuthenticatorProvider().create(authn).outs)
    authz = {**conn(double), "no_match": "deny", "deny_action": "disconnect",
             "cache": {"enable": True, "max_size": 32, "ttl": "1m", "excludes": []}, "include_mountpoint": False,
             "ignore_backend_failures": False, "sources": default_authorization_sources(), "managed_usernames": None,
             "all_rules": [], "client_rules": {}, "foreign_user_rules": {}}
    state["emqx-authorization"] = (EmqxAuthorizationProvider(), "authorization",
                                   EmqxAuthorizationProvider().create(authz).outs)
    for tenant, devices in LISTED.items():
        for device, password in devices.items():
            acl = {**conn(double), "username": device, "rules": topic_prefix_rules(PREFIXES[tenant])}
            state[f"{device}-acl"] = (EmqxUserAclProvider(), device, EmqxUserAclProvider().create(acl).outs)
            user = {**conn(double), "user_id": device, "password": password, "is_superuser": False}
            state[device] = (EmqxUserProvider(), device, EmqxUserProvider().create(user).outs)
    return state


def every_device_works(double: EmqxDouble, step: str) -> None:
    """Each listed device (re)connects with its password and client id = username, and may publish."""
    for tenant, devices in LISTED.items():
        for device, password in devices.items():
            assert double.mqtt_connect(device, device, password).accepted, (step, device)
            topic = f"tenants/{PREFIXES[tenant]}/{device}/telemetry"
            assert double.authorize(device, "publish", topic) == "allow", (step, device)
            other = f"tenants/{PREFIXES[HX if tenant == UMC else UMC]}/x"
            assert double.authorize(device, "subscribe", other) == "deny", (step, device)


@pytest.mark.parametrize("version", ["5.8", "6.x"])
def test_pulumi_up_moves_the_listed_devices_without_any_losing_access(device_db: DeviceDb, version: str) -> None:
    double = EmqxDouble(api_key=API_KEY, api_secret=API_SECRET, version=version).start()
    try:
        old = deploy_previous_program(double)
        every_device_works(double, "before")
        # A device that connects under a client id other than its username works before the move...
        assert double.mqtt_connect("umc-gateway-7", "umc_device", LISTED[UMC]["umc_device"]).accepted
        # Creates and updates, in dependency order.
        for tenant in LISTED:
            LegacyDeviceImportProvider().create(import_props(device_db, tenant))
            every_device_works(double, f"imported {tenant}")
        EmqxPostgresAuthenticatorProvider().create(authenticator_props(double, device_db))
        every_device_works(double, "authenticator created")
        EmqxAuthorizationProvider().create(authorization_props(double, device_db))
        every_device_works(double, "authorization switched")
        # Deletes last, dependents first: users, ACLs, then the old authorization and authenticator.
        order = [*(d for devices in LISTED.values() for d in devices),
                 *(f"{d}-acl" for devices in LISTED.values() for d in devices), "emqx-authorization",
                 "emqx-authenticator"]
        for name in order:
            provider, id_, outs = old[name]
            provider.delete(id_, outs)
            every_device_works(double, f"deleted {name}")
        with double.state() as state:
            assert list(state.authenticators) == ["password_based:postgresql"]
            assert [s["type"] for s in state.authz_sources] == ["postgresql", "file"]
            assert state.authn_users == {} and state.authz_user_rules == {}
        # ...and is refused after it (README: such devices must connect with their username as client id).
        assert double.mqtt_connect("umc-gateway-7", "umc_device", LISTED[UMC]["umc_device"]).reason == (
            "not_authorized")
    finally:
        double.stop()


def test_the_import_never_overwrites_or_deletes_a_row_the_operator_changed(device_db: DeviceDb) -> None:
    provider = LegacyDeviceImportProvider()
    outs = provider.create(import_props(device_db, HX)).outs
    assert outs["inserted"] == ["hx_device_1", "hx_device_2"]
    assert device_db.execute("SELECT DISTINCT label FROM telemetry_registry.devices") == [(IMPORT_LABEL,)]
    with store.connect(device_db.manager_dsn) as manager:
        tenant = store.require_tenant(manager, HX)
        (rotated,) = store.rotate(manager, tenant, ["hx_device_1"])
        store.set_enabled(manager, HX, ["hx_device_2"], False)
    before = device_db.execute("SELECT device_id, password_hash, salt, enabled FROM telemetry_registry.devices "
                               "ORDER BY 1")
    # Created again (the state was lost) or updated with one more device: existing rows stay as they are.
    again = provider.create(import_props(device_db, HX)).outs
    assert again["inserted"] == []
    grown = {**import_props(device_db, HX), "device_ids": ["hx_device_1", "hx_device_2", "hx_device_3"],
             "passwords": {**LISTED[HX], "hx_device_3": "Hx3" + "e" * 29}}
    assert provider.diff("hx", outs, grown).changes
    assert provider.update("hx", outs, grown).outs["inserted"] == ["hx_device_1", "hx_device_2", "hx_device_3"]
    after = device_db.execute("SELECT device_id, password_hash, salt, enabled FROM telemetry_registry.devices "
                              "WHERE device_id <> 'hx_device_3' ORDER BY 1")
    assert after == before
    assert rotated.password != LISTED[HX]["hx_device_1"]
    # Removing `devices` (or the tenant) deletes the resource, never the rows.
    provider.delete("hx", outs)
    assert device_db.execute("SELECT count(*) FROM telemetry_registry.devices") == [(3,)]
    # Nothing changed: no diff, whatever the passwords' order.
    assert not provider.diff("hx", outs, {**import_props(device_db, HX)}).changes


def test_an_id_that_another_tenant_already_has_stops_the_move_before_anything_is_removed(device_db: DeviceDb) -> None:
    device_db.add(UMC, "hx_device_2")  # the operator added it, with the CLI, to the other tenant
    with pytest.raises(ProviderError) as failure:
        LegacyDeviceImportProvider().create(import_props(device_db, HX))
    message = str(failure.value)
    assert "'hx_device_2' (tenant 'uberlandia-medical-center')" in message
    assert "python -m tools.devices remove" in message and LISTED[HX]["hx_device_1"] not in message
    # All or nothing: hx_device_1 was not imported either.
    assert device_db.execute("SELECT device_id, tenant FROM telemetry_registry.devices") == [
        ("hx_device_2", UMC)]
