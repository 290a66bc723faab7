"""Device access under mocks: the roles, grants, PostgreSQL authenticator and authorization every platform gets."""

from __future__ import annotations

import json

import pytest

from components import devices
from components.grants import DEVICE_MANAGER_ROLE, EMQX_AUTH_ROLE
from tests.unit.harness import ProgramRun, run_program
from tests.unit.platform_mocks import k8s_config, run_platform
from tests.unit.test_config import dev_config
from tests.unit.test_platform_external import _plain

DYNAMIC = "pulumi-python:dynamic/"
EMQX_PASSWORD = "generated-device-access-emqx-auth-password"
MANAGER_PASSWORD = "generated-device-access-manager-password"


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    run = run_program(dev_config())
    assert run.error is None, run.error
    return run


def depends(run: ProgramRun, name: str, *on: str) -> bool:
    return all(run.urn_of(other) in run.named(name).dependencies for other in on)


def test_device_access_is_one_component_with_its_children(dev):
    component = dev.named("device-access")
    assert component.type == "telemetry:devices:DeviceAccess" and not component.custom
    assert component.parent.endswith("pulumi:pulumi:Stack::telemetry-dev")
    children = {r.name: r.type for r in dev.registrations if r.parent == component.urn}
    assert children == {
        "device-access-emqx-auth-password": "random:index/randomPassword:RandomPassword",
        "device-access-emqx-auth-role": "postgresql:index/role:Role",
        "device-access-emqx-auth-schema": "postgresql:index/grant:Grant",
        "device-access-emqx-auth-functions": "postgresql:index/grant:Grant",
        "device-access-manager-password": "random:index/randomPassword:RandomPassword",
        "device-access-manager-role": "postgresql:index/role:Role",
        "device-access-manager-schema": "postgresql:index/grant:Grant",
        "device-access-manager-table": "postgresql:index/grant:Grant",
        "device-access-manager-tenant-columns": "postgresql:index/grant:Grant",
        "device-access-authenticator": DYNAMIC + "emqx:PostgresAuthenticator",
        "device-access-authorization": DYNAMIC + "emqx:Authorization",
    }


def test_roles_log_in_with_generated_secret_passwords_and_get_only_their_plan(dev):
    for label, name in (("emqx-auth", EMQX_AUTH_ROLE), ("manager", DEVICE_MANAGER_ROLE)):
        role = dev.named(f"device-access-{label}-role")
        assert (role.inputs["name"], role.inputs["login"]) == (name, True)
        assert role.is_secret("password") and "timescaledb-provider" in role.provider
    functions = dev.named("device-access-emqx-auth-functions").inputs
    assert (functions["role"], functions["objectType"], functions["privileges"], functions["objects"]) == (
        EMQX_AUTH_ROLE, "function", ["EXECUTE"], ["emqx_device_authn", "emqx_device_acl"])
    table = dev.named("device-access-manager-table").inputs
    assert (table["objects"], sorted(table["privileges"])) == (["devices"], ["DELETE", "INSERT", "SELECT", "UPDATE"])
    columns = dev.named("device-access-manager-tenant-columns").inputs
    assert (columns["objects"], columns["columns"], columns["privileges"]) == (
        ["tenants"], ["slug", "topic_prefix", "enabled"], ["SELECT"])
    # The functions and the devices table exist once the registry does (its create or update).
    for grant in ("emqx-auth-schema", "emqx-auth-functions", "manager-table", "manager-tenant-columns"):
        assert depends(dev, f"device-access-{grant}", "ingest-tenant-registry"), grant


def test_authenticator_carries_the_tested_query_and_hash_and_reaches_the_database_on_the_network(dev):
    authenticator = dev.named("device-access-authenticator")
    inputs = authenticator.inputs
    assert inputs["query"] == devices.AUTHN_QUERY and inputs["password_hash_algorithm"] == devices.PASSWORD_HASH
    assert (inputs["server"], inputs["database"], inputs["username"]) == ("timescaledb:5432", "telemetry", EMQX_AUTH_ROLE)
    assert inputs["ssl"] == {"enable": False} and inputs["pool_size"] == 8
    assert inputs["node_cache"] == devices.AUTHN_NODE_CACHE and inputs["node_cache"]["cache_ttl"] == "5s"
    assert authenticator.is_secret("password") and inputs["password"] == EMQX_PASSWORD
    assert {"password", "password_sha256", "api_secret"} <= set(authenticator.additional_secret_outputs)
    assert depends(dev, "device-access-authenticator", "emqx-container", "device-access-emqx-auth-role",
                   "device-access-emqx-auth-schema", "device-access-emqx-auth-functions")


def test_authorization_is_deny_by_default_with_the_registry_source_only(dev):
    authorization = dev.named("device-access-authorization")
    inputs = authorization.inputs
    [source, file_source] = inputs["sources"]
    assert file_source == {"type": "file", "enable": False}
    assert source == {"type": "postgresql", "enable": True, "server": "timescaledb:5432", "database": "telemetry",
                      "username": EMQX_AUTH_ROLE, "pool_size": 8, "ssl": {"enable": False},
                      "query": devices.AUTHZ_QUERY}
    assert (inputs["no_match"], inputs["deny_action"], inputs["cache"]) == ("deny", "disconnect", devices.AUTHZ_CACHE)
    assert inputs["cache"]["ttl"] == "30s" and inputs["node_cache"] == devices.AUTHZ_NODE_CACHE
    # The password is a separate secret input, never inside the (plain) sources.
    assert authorization.is_secret("database_password") and inputs["database_password"] == EMQX_PASSWORD
    assert {"database_password", "database_password_sha256"} <= set(authorization.additional_secret_outputs)
    assert depends(dev, "device-access-authorization", "emqx-container", "device-access-emqx-auth-functions")


def test_no_device_credential_is_in_clear_anywhere(dev):
    for registration in dev.registrations:
        text = json.dumps(_plain(registration.raw_inputs))
        for secret in (EMQX_PASSWORD, MANAGER_PASSWORD):
            assert secret not in text, registration.name
    assert "deviceManagerDsn" in dev.secret_outputs
    assert MANAGER_PASSWORD in dev.outputs["deviceManagerDsn"]
    plain = {name: value for name, value in dev.outputs.items() if name not in dev.secret_outputs}
    assert MANAGER_PASSWORD not in json.dumps(plain) and EMQX_PASSWORD not in json.dumps(plain)


def test_kubernetes_emqx_reaches_the_primary_service_over_tls():
    run = run_platform(k8s_config())
    assert run.error is None, run.error
    inputs = run.named("device-access-authenticator").inputs
    assert inputs["server"] == "timescaledb-rw.telemetry.svc:5432"
    assert inputs["ssl"] == {"enable": True, "verify": "verify_none"}
    assert depends(run, "device-access-authenticator", "emqx-api")  # the API's LoadBalancer
    dsn = run.outputs["deviceManagerDsn"]
    assert "host=198.51.100.7 port=5432" in dsn and "sslmode=require" in dsn and "user=telemetry_device_manager" in dsn


def test_adding_a_tenant_changes_no_device_access_resource(dev):
    config = dev_config()
    config["tenants"].append({"slug": "clinic-c", "topicPrefix": "cc"})
    grown = run_program(config)
    assert grown.error is None, grown.error
    for name in ("device-access-authenticator", "device-access-authorization", "device-access-emqx-auth-role"):
        assert grown.named(name).raw_inputs == dev.named(name).raw_inputs, name
        assert set(grown.named(name).dependencies) == set(dev.named(name).dependencies), name
