"""The dev config's resource graph under Pulumi mocks: what `pulumi up` would register."""

from __future__ import annotations

import pytest

from components.build_context import context_digest
from components.ingest import SERVICE_DIR
from components.timescaledb import background_workers, worker_processes
from tests.unit.harness import ProgramRun, contains_secret, run_program
from tests.unit.test_config import dev_config

DOCKER_CONTAINER = "docker:index/container:Container"
DOCKER_VOLUME = "docker:index/volume:Volume"
DOCKER_NETWORK = "docker:index/network:Network"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
BUILT_IMAGE = "docker:index/image:Image"
PG_PROVIDER = "pulumi:providers:postgresql"


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    run = run_program(dev_config())
    assert run.error is None, run.error
    return run


def ports_of(run: ProgramRun, name: str) -> set[tuple[int, int, str]]:
    return {
        (int(port["internal"]), int(port["external"]), port.get("ip", "0.0.0.0"))
        for port in run.named(name).inputs["ports"]
    }


def test_components_use_telemetry_type_tokens(dev):
    components = {r.type for r in dev.registrations if not r.custom}
    assert {
        "telemetry:network:Network",
        "telemetry:timescaledb:TimescaleDb",
        "telemetry:emqx:Emqx",
        "telemetry:ingest:IngestService",
        "telemetry:tenant:Tenant",
    } <= components
    assert all(t.startswith("telemetry:") for t in components)


def test_every_resource_has_a_component_parent(dev):
    orphans = [r.name for r in dev.registrations if r.custom and "::telemetry:" not in r.parent and r.parent != ""]
    top_level_custom = [r.name for r in dev.registrations if r.custom and r.parent.endswith("telemetry-dev")]
    assert orphans == [] and top_level_custom == []


def test_docker_objects_and_their_names(dev):
    named = {(r.type, r.inputs.get("name")) for r in dev.registrations if r.type.startswith("docker:")}
    assert {
        (DOCKER_NETWORK, "telemetry-dev"),
        (DOCKER_VOLUME, "telemetry-dev-timescaledb-data"),
        (DOCKER_VOLUME, "telemetry-dev-emqx-data"),
        (DOCKER_CONTAINER, "telemetry-dev-timescaledb"),
        (DOCKER_CONTAINER, "telemetry-dev-emqx"),
        (DOCKER_CONTAINER, "telemetry-dev-ingest"),
    } <= named
    assert dev.named("network-bridge").inputs["driver"] == "bridge"


def test_ports_are_bound_as_stated(dev):
    assert ports_of(dev, "timescaledb-container") == {(5432, 15432, "127.0.0.1")}
    assert ports_of(dev, "emqx-container") == {
        (1883, 11883, "0.0.0.0"), (8883, 18883, "0.0.0.0"), (18083, 18083, "127.0.0.1"),
    }
    assert ports_of(dev, "ingest-container") == {(8000, 18000, "127.0.0.1")}


def test_containers_have_healthchecks_and_wait(dev):
    for name, probe in (
        ("timescaledb-container", "pg_isready"),
        ("emqx-container", "/status"),
        ("ingest-container", "/healthz"),
    ):
        inputs = dev.named(name).inputs
        assert inputs["wait"] is True, name
        assert inputs["waitTimeout"] > 0
        assert any(probe in part for part in inputs["healthcheck"]["tests"]), name


def test_containers_join_the_stack_network_under_stable_aliases(dev):
    aliases = {
        name: dev.named(name).inputs["networksAdvanced"][0]
        for name in ("timescaledb-container", "emqx-container", "ingest-container")
    }
    assert {a["name"] for a in aliases.values()} == {"telemetry-dev"}
    assert aliases["ingest-container"]["aliases"] == ["ingest"]
    assert aliases["timescaledb-container"]["aliases"] == ["timescaledb"]


def test_volumes_are_protected_and_retained(dev):
    volumes = dev.by_type(DOCKER_VOLUME)
    assert len(volumes) == 2
    assert all(v.protect and v.retain_on_delete for v in volumes)
    mounts = {
        m["volumeName"]: m["containerPath"]
        for name in ("timescaledb-container", "emqx-container")
        for m in dev.named(name).inputs["volumes"]
    }
    assert mounts == {
        "telemetry-dev-timescaledb-data": "/var/lib/postgresql/data",
        "telemetry-dev-emqx-data": "/opt/emqx/data",
    }


def test_images_are_pinned(dev):
    images = [r.inputs["name"] for r in dev.by_type(REMOTE_IMAGE)]
    assert sorted(images) == ["emqx/emqx:5.8.9", "timescale/timescaledb:2.17.2-pg16"]
    built = dev.by_type(BUILT_IMAGE)
    assert len(built) == 1 and built[0].inputs["skipPush"] is True
    tag = built[0].inputs["imageName"].rsplit(":", 1)[1]
    # The tag is the digest of the build context Docker sees (tests/unit/test_build_context.py).
    assert tag == context_digest(SERVICE_DIR)
    # Relative, so the inputs do not depend on where the repository is checked out.
    assert built[0].inputs["build"]["context"] == "ingest_service"


def test_timescaledb_workers_sized_from_tenant_count(dev):
    command = dev.named("timescaledb-container").inputs["command"]
    assert f"timescaledb.max_background_workers={background_workers(2)}" in command
    assert f"max_worker_processes={worker_processes(2)}" in command
    assert background_workers(300) > background_workers(100) > background_workers(2) >= 16
    assert worker_processes(300) > background_workers(300)
    # Sizes step, so a single added tenant rarely touches the database container.
    assert background_workers(2) == background_workers(3)


def test_emqx_api_key_is_bootstrapped_from_an_uploaded_file(dev):
    inputs = dev.named("emqx-container").inputs
    [upload] = [u for u in inputs["uploads"] if u["file"].endswith("api-keys.txt")]
    assert f"EMQX_API_KEY__BOOTSTRAP_FILE=\"{upload['file']}\"" in inputs["envs"]
    key, secret, role = upload["content"].strip().split(":")
    assert (key, secret, role) == ("generated-emqx-api-key", "generated-emqx-api-secret", "administrator")
    assert "EMQX_NODE__NAME=emqx@127.0.0.1" in inputs["envs"]


def test_secrets_are_secret_in_inputs(dev):
    for name in ("timescaledb-container", "emqx-container", "ingest-container"):
        assert contains_secret(dev.named(name).raw_inputs["uploads"]), name
    assert dev.named("timescaledb-provider").is_secret("password")
    for role in dev.by_type("postgresql:index/role:Role"):
        assert role.is_secret("password"), role.name
    # The superuser password is passed as a file, never as an environment variable.
    assert not any("POSTGRES_PASSWORD=" in env for env in dev.named("timescaledb-container").inputs["envs"])


def test_generated_credentials_are_secret_outputs(dev):
    secret_outputs = {
        "deviceManagerDsn", "readerPasswords", "ingestTokens", "databaseSuperuserPassword",
        "ingestWriterPassword", "emqxApiKey", "emqxApiSecret", "emqxDashboardPassword",
    }
    assert secret_outputs <= dev.secret_outputs
    plain = set(dev.outputs) - dev.secret_outputs
    assert plain == {
        "mqttEndpoint", "mqttTlsEndpoint", "mqttCaCertificate", "dashboardUrl", "ingestUrl", "databaseEndpoint",
        "tenants",
    }


def test_plain_outputs(dev):
    assert dev.outputs["mqttEndpoint"] == "mqtt://127.0.0.1:11883"
    assert dev.outputs["mqttTlsEndpoint"] == "mqtts://127.0.0.1:18883"
    assert dev.outputs["mqttCaCertificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert dev.outputs["dashboardUrl"] == "http://127.0.0.1:18083"
    assert dev.outputs["ingestUrl"] == "http://127.0.0.1:18000"
    assert dev.outputs["databaseEndpoint"] == "postgresql://127.0.0.1:15432/telemetry"
    assert dev.outputs["tenants"]["hospital-x"] == {
        "topicPrefix": "hx",
        "schema": "tenant_hospital_x",
        "readerRole": "tenant_hospital_x_reader",
    }
    # The device CLI's connection: the device-manager role on the host port (a libpq key=value string).
    dsn = dev.outputs["deviceManagerDsn"]
    assert dsn.startswith("host=127.0.0.1 port=15432 dbname=telemetry user=telemetry_device_manager password=")
    assert "generated-device-access-manager-password" in dsn


def test_postgres_provider_waits_for_the_database_container(dev):
    provider = dev.named("timescaledb-provider")
    assert dev.urn_of("timescaledb-container") in provider.dependencies


def test_ingest_starts_after_the_database(dev):
    ingest = dev.named("ingest-container")
    assert dev.urn_of("timescaledb-container") in ingest.dependencies
    assert dev.urn_of("ingest-writer-role") in ingest.dependencies


def test_postgresql_resources_use_the_stack_provider(dev):
    pg_resources = [r for r in dev.registrations if r.type.startswith("postgresql:")]
    assert pg_resources
    assert all("timescaledb-provider" in r.provider for r in pg_resources)


def test_two_stacks_have_disjoint_docker_names():
    def docker_names(run: ProgramRun) -> set[str]:
        return {r.inputs["name"] for r in run.registrations if r.type in (DOCKER_CONTAINER, DOCKER_VOLUME, DOCKER_NETWORK)}

    config = dev_config()
    dev, staging = run_program(config, stack="dev"), run_program(config, stack="staging")
    assert dev.error is None and staging.error is None
    assert len(docker_names(dev)) == 6
    assert docker_names(dev).isdisjoint(docker_names(staging))
    assert all(name.startswith("telemetry-staging") for name in docker_names(staging))
    labels = {label["value"] for label in staging.named("ingest-container").inputs["labels"] if label["label"] == "telemetry.stack"}
    assert labels == {"staging"}
