"""The Tenant and Emqx components under mocks: resources, dependencies and secrets per config entry."""

from __future__ import annotations

import copy

import pytest

from tests.unit.harness import ProgramRun, run_program
from tests.unit.test_config import dev_config

DYNAMIC = "pulumi-python:dynamic/"
UMC = "tenant-uberlandia-medical-center"


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    run = run_program(dev_config())
    assert run.error is None, run.error
    return run


def children_of(run: ProgramRun, component: str) -> dict[str, str]:
    parent = run.urn_of(component)
    return {r.name: r.type for r in run.registrations if r.parent == parent}


def depends(run: ProgramRun, name: str, *on: str) -> bool:
    deps = run.named(name).dependencies
    return all(run.urn_of(other) in deps for other in on)


def test_each_tenant_gets_its_database_registry_and_emqx_resources(dev):
    expected = {
        "schema": "postgresql:index/schema:Schema",
        "reader-role": "postgresql:index/role:Role",
        "reader-schema": "postgresql:index/grant:Grant",
        "reader-tables": "postgresql:index/grant:Grant",
        "reader-default-tables": "postgresql:index/defaultPrivileges:DefaultPrivileges",
        "writer-schema": "postgresql:index/grant:Grant",
        "writer-tables": "postgresql:index/grant:Grant",
        "hypertable": DYNAMIC + "telemetry:Hypertable",
        "registration": DYNAMIC + "telemetry:TenantRegistration",
        "action": DYNAMIC + "emqx:Action",
        "rule": DYNAMIC + "emqx:Rule",
        "reader-password": "random:index/randomPassword:RandomPassword",
        "ingest-token": "random:index/randomPassword:RandomPassword",
    }
    for slug in ("uberlandia-medical-center", "hospital-x"):
        component = f"tenant-{slug}"
        children = children_of(dev, component)
        for suffix, type_ in expected.items():
            assert children.get(f"{component}-{suffix}") == type_, (component, suffix)
        # Devices are registry rows (python -m tools.devices): nothing per device in the stack.
        assert len(children) == len(expected)


def test_the_dev_stack_registers_no_per_device_resource(dev):
    """Issue 14's bar: devices are data. No EMQX user or ACL, no device password, nothing named after a device."""
    types = {r.type for r in dev.registrations}
    assert not {DYNAMIC + "emqx:User", DYNAMIC + "emqx:UserAcl", DYNAMIC + "emqx:Authenticator",
                DYNAMIC + "telemetry:LegacyDeviceImport"} & types
    assert not [r.name for r in dev.registrations if "-device-" in r.name]
    assert "deviceCredentials" not in dev.outputs
    assert all(set(entry) == {"topicPrefix", "schema", "readerRole"} for entry in dev.outputs["tenants"].values())


def test_schema_and_roles_are_named_after_the_slug(dev):
    schema = dev.named(f"{UMC}-schema")
    assert schema.inputs["name"] == "tenant_uberlandia_medical_center"
    # Data stays when the tenant leaves the config, unless dropDataOnDelete.
    assert schema.retain_on_delete and schema.inputs["dropCascade"] is False
    assert dev.named(f"{UMC}-reader-role").inputs["name"] == "tenant_uberlandia_medical_center_reader"
    assert dev.named(f"{UMC}-reader-role").inputs["login"] is True


def test_drop_data_on_delete_lets_the_schema_go():
    config = copy.deepcopy(dev_config())
    config["tenants"][1]["dropDataOnDelete"] = True
    run = run_program(config)
    schema = run.named("tenant-hospital-x-schema")
    assert not schema.retain_on_delete and schema.inputs["dropCascade"] is True
    assert run.named("tenant-hospital-x-hypertable").inputs["drop_data_on_delete"] is True
    assert run.named(f"{UMC}-schema").retain_on_delete


def test_grants_follow_the_isolation_plan(dev):
    reader_tables = dev.named(f"{UMC}-reader-tables").inputs
    assert (reader_tables["role"], reader_tables["schema"], reader_tables["privileges"]) == (
        "tenant_uberlandia_medical_center_reader", "tenant_uberlandia_medical_center", ["SELECT"])
    default = dev.named(f"{UMC}-reader-default-tables").inputs
    assert (default["owner"], default["objectType"], default["privileges"]) == ("postgres", "table", ["SELECT"])
    writer = dev.named(f"{UMC}-writer-tables").inputs
    assert (writer["role"], writer["objects"], writer["privileges"]) == ("ingest_writer", ["telemetry"], ["INSERT"])
    registry = dev.named("ingest-writer-registry-table").inputs
    assert (registry["schema"], registry["objects"], registry["privileges"]) == (
        "telemetry_registry", ["tenants"], ["SELECT"])


def test_hypertable_inputs_come_from_the_config(dev):
    hypertable = dev.named(f"{UMC}-hypertable")
    inputs = hypertable.inputs
    assert (inputs["schema_name"], inputs["chunk_interval"], inputs["retention"], inputs["compress_after"]) == (
        "tenant_uberlandia_medical_center", "1 day", "365 days", "7 days")
    assert hypertable.is_secret("dsn")
    assert "compress_after" not in dev.named("tenant-hospital-x-hypertable").inputs  # unset: no policy


def test_database_dependencies(dev):
    assert depends(dev, f"{UMC}-hypertable", f"{UMC}-schema")
    for grant in ("reader-tables", "reader-default-tables", "writer-tables"):
        assert depends(dev, f"{UMC}-{grant}", f"{UMC}-hypertable")
    assert depends(dev, f"{UMC}-registration", "ingest-tenant-registry", f"{UMC}-hypertable", f"{UMC}-writer-tables")
    pg = [r for r in dev.registrations if r.type.startswith("postgresql:") and r.name.startswith(UMC)]
    assert pg and all("timescaledb-provider" in r.provider for r in pg)


def test_registration_keeps_the_token_secret(dev):
    registration = dev.named(f"{UMC}-registration")
    assert registration.inputs["slug"] == "uberlandia-medical-center"
    assert registration.inputs["topic_prefix"] == "umc"
    assert registration.is_secret("token") and registration.is_secret("dsn")
    assert {"token", "dsn", "token_sha256"} <= set(registration.additional_secret_outputs)


def test_action_carries_the_tenant_header_and_registered_token(dev):
    action = dev.named(f"{UMC}-action")
    assert action.inputs["headers"] == {"X-Tenant": "uberlandia-medical-center"}
    assert (action.inputs["path"], action.inputs["body"], action.inputs["connector"]) == ("/ingest", "${.}", "ingest")
    assert action.is_secret("bearer_token") and action.is_secret("api_secret")
    assert action.inputs["bearer_token"] == dev.named(f"{UMC}-registration").inputs["token"]
    assert "bearer_token" in action.additional_secret_outputs
    assert depends(dev, f"{UMC}-action", f"{UMC}-registration")


def test_rule_selects_the_tenants_topics_into_its_action(dev):
    rule = dev.named(f"{UMC}-rule").inputs
    assert rule["sql"] == (
        'SELECT id, clientid, username, topic, payload, qos, publish_received_at, timestamp FROM "tenants/umc/#"'
    )
    assert rule["rule_id"] == UMC
    assert depends(dev, f"{UMC}-rule", f"{UMC}-action")


def test_emqx_stack_wide_objects(dev):
    children = children_of(dev, "emqx")
    assert children["emqx-ingest-connector"] == DYNAMIC + "emqx:Connector"
    # Authentication and authorization are device access's (tests/unit/test_device_access.py).
    assert not {"emqx-authenticator", "emqx-authorization"} & set(children)
    connector = dev.named("emqx-ingest-connector")
    assert connector.inputs["url"] == "http://ingest:8000"
    assert connector.inputs["api_url"] == "http://127.0.0.1:18083"
    assert connector.is_secret("api_secret") and "api_secret" in connector.additional_secret_outputs
    assert depends(dev, "emqx-ingest-connector", "emqx-container", "ingest-container")


def test_every_action_uses_the_shared_connector(dev):
    actions = dev.by_type(DYNAMIC + "emqx:Action")
    assert len(actions) == 2
    assert {a.inputs["connector"] for a in actions} == {dev.named("emqx-ingest-connector").inputs["name"]}
    assert all(dev.urn_of("emqx-ingest-connector") in a.dependencies for a in actions)


def test_many_tenants_register():
    """300 generated tenants: the program completes and registers every tenant's resources."""
    config = copy.deepcopy(dev_config())
    config["tenants"] = [
        {"slug": f"tenant-{i:03d}", "topicPrefix": f"t{i:03d}", "retention": "30 days"}
        for i in range(300)
    ]
    run = run_program(config)
    assert run.error is None, run.error
    assert len(run.by_type("telemetry:tenant:Tenant")) == 300
    assert len(run.by_type(DYNAMIC + "emqx:Rule")) == 300
    assert len(run.by_type(DYNAMIC + "telemetry:Hypertable")) == 300
    assert "timescaledb.max_background_workers=112" in run.named("timescaledb-container").inputs["command"]
