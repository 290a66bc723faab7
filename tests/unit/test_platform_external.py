"""External endpoints under mocks: a managed TimescaleDB and/or an existing EMQX given by endpoint
and secret credentials, on the Docker and the Kubernetes platform; and the seam itself: a tenant
is the same resources, under the same names, on every platform."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.config import ConfigError, parse_stack_config
from tests.unit.harness import SECRET_SIG, SIG_KEY, ProgramRun
from tests.unit.platform_mocks import k8s_config, run_platform
from tests.unit.test_config import dev_config
from tests.unit.test_kubernetes_manifests import EXTERNAL_DATABASE, EXTERNAL_EMQX

DOCKER_EMQX = {key: value for key, value in EXTERNAL_EMQX.items() if key != "sourceRanges"}


def _plain(value: Any) -> Any:
    """The inputs with every secret-wrapped value removed: what state would show in clear."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return None
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def assert_never_in_clear(run: ProgramRun, *secrets: str) -> None:
    for registration in run.registrations:
        text = json.dumps(_plain(registration.raw_inputs))
        for secret in secrets:
            assert secret not in text, f"{registration.type} {registration.name} has a credential in clear"
    assert not any(secret in json.dumps(value) for name, value in run.outputs.items()
                   if name not in run.secret_outputs for secret in secrets)


def _run(config: dict) -> ProgramRun:
    run = run_platform(config)
    assert run.error is None, run.error
    return run


def test_platform_docker_with_external_database_runs_no_database_container():
    run = _run({**dev_config(), "timescaledb": {"external": EXTERNAL_DATABASE}})
    names = {(r.type, r.name) for r in run.registrations}
    assert ("telemetry:external:Database", "timescaledb") in names
    assert not any(name.startswith("timescaledb-") and type_.startswith("docker:") for type_, name in names)
    provider = run.named("timescaledb-provider")
    assert (provider.inputs["host"], provider.inputs["sslmode"], provider.inputs["username"]) == (
        "db.example.com", "verify-full", "tsdbadmin")
    assert provider.inputs["superuser"] == "false" and provider.is_secret("password")
    hypertable = run.named("tenant-hospital-x-hypertable")
    assert hypertable.is_secret("dsn") and "sslmode=verify-full" in hypertable.inputs["dsn"]
    # The admin user creates the tables, so the readers' default privileges are granted by it.
    assert run.named("tenant-hospital-x-reader-default-tables").inputs["owner"] == "tsdbadmin"
    # The ingest container connects to the external host (its DSN is an uploaded file, not an env var).
    container = run.named("ingest-container").inputs
    uploads = {upload["file"]: upload["content"] for upload in container["uploads"]}
    dsn_file = next(env.split("=", 1)[1] for env in container["envs"] if env.startswith("DATABASE_URL_FILE="))
    assert "@db.example.com:5432/telemetry" in uploads[dsn_file]
    assert_never_in_clear(run, EXTERNAL_DATABASE["password"])


DATABASE_TUNNEL = "db-tunnel.example.com:15432"


def test_platform_docker_with_external_emqx_runs_no_broker_container():
    run = _run({**dev_config(), "emqx": {"external": {**DOCKER_EMQX, "databaseServer": DATABASE_TUNNEL}}})
    assert not [r for r in run.registrations if r.name.startswith("emqx-") and r.type.startswith("docker:")]
    connector = run.named("emqx-ingest-connector")
    assert connector.inputs["url"] == "https://ingest.example.com"
    assert connector.inputs["api_url"] == "https://emqx.example.com:18083"
    assert connector.is_secret("api_secret") and connector.is_secret("api_key")
    assert run.urn_of("ingest-container") in connector.dependencies
    assert run.named("emqx").type == "telemetry:external:Broker"
    assert run.outputs["dashboardUrl"] == "https://emqx.example.com:18083"
    # The stack owns that EMQX's authentication and authorization too, and EMQX reaches the
    # stack's database where the operator said: not timescaledb:5432, not 127.0.0.1.
    authenticator = run.named("device-access-authenticator").inputs
    assert authenticator["server"] == DATABASE_TUNNEL and authenticator["api_url"] == "https://emqx.example.com:18083"
    [source, _] = run.named("device-access-authorization").inputs["sources"]
    assert source["server"] == DATABASE_TUNNEL
    # The operator still reaches the database on the host port.
    assert "host=127.0.0.1 port=15432" in run.outputs["deviceManagerDsn"]
    assert_never_in_clear(run, EXTERNAL_EMQX["apiSecret"], EXTERNAL_EMQX["apiKey"])


@pytest.mark.parametrize("platform", ["docker", "kubernetes"])
def test_platform_external_emqx_with_the_stacks_database_needs_its_address(platform):
    """EMQX queries the registry itself; the stack's own database is private to the Docker network
    (its host port on 127.0.0.1) or to the cluster, so the address is a required key then."""
    config = (k8s_config(emqx={"external": EXTERNAL_EMQX}) if platform == "kubernetes"
              else {**dev_config(), "emqx": {"external": DOCKER_EMQX}})
    [problem] = _problems(config)
    assert problem.startswith("telemetry:emqx.external.databaseServer: required key is missing")
    assert ("127.0.0.1" if platform == "docker" else "timescaledb-rw") in problem
    assert "pulumi config set --path telemetry:emqx.external.databaseServer" in problem
    # With an external database both reach, its address is the default.
    both = _run({**dev_config(), "timescaledb": {"external": EXTERNAL_DATABASE}, "emqx": {"external": DOCKER_EMQX}})
    assert both.named("device-access-authenticator").inputs["server"] == "db.example.com:5432"
    assert both.named("device-access-authenticator").inputs["ssl"] == {
        "enable": True, "verify": "verify_peer", "cacerts": True, "server_name_indication": "db.example.com"}
    bad = _problems({**dev_config(), "emqx": {"external": {**DOCKER_EMQX, "databaseServer": "no-port"}}})
    assert bad == ["telemetry:emqx.external.databaseServer: 'no-port' is not host:port; "
                   "write e.g. 'db-tunnel.example.com:5432'"]


def test_platform_kubernetes_with_both_external_runs_only_the_ingest_service():
    config = k8s_config(timescaledb={"external": EXTERNAL_DATABASE}, emqx={"external": EXTERNAL_EMQX})
    run = _run(config)
    types = {r.type for r in run.registrations}
    assert "kubernetes:apps/v1:Deployment" in types
    assert not {"kubernetes:postgresql.cnpg.io/v1:Cluster", "kubernetes:apps.emqx.io/v2beta1:EMQX"} & types
    assert not run.by_type("pulumi-python:dynamic/kubernetes:RequiredOperator")
    service = run.named("ingest-service").inputs["spec"]
    assert service["type"] == "LoadBalancer" and service["loadBalancerSourceRanges"] == ["192.0.2.0/24"]
    [rule] = run.named("network-policies-ingest").inputs["spec"]["ingress"]
    assert rule["from"] == [{"ipBlock": {"cidr": "192.0.2.0/24"}}]
    assert not [r for r in run.registrations if r.name == "network-policies-timescaledb"]
    dsn = run.named("ingest-database-secret").inputs["stringData"]["database-url"]
    assert "@db.example.com:5432/telemetry?sslmode=verify-full" in dsn
    assert_never_in_clear(run, EXTERNAL_DATABASE["password"], EXTERNAL_EMQX["apiSecret"])


def _tenant_resources(run: ProgramRun) -> set[tuple[str, str, str]]:
    return {(r.type, r.name, r.parent.rsplit("::", 1)[1]) for r in run.registrations if r.name.startswith("tenant-")}


def test_platform_a_tenant_is_the_same_resources_on_every_platform():
    docker = _tenant_resources(_run(dev_config()))
    variants = {
        "kubernetes": k8s_config(),
        "kubernetes-external": k8s_config(timescaledb={"external": EXTERNAL_DATABASE}, emqx={"external": EXTERNAL_EMQX}),
        "docker-external": {**dev_config(), "timescaledb": {"external": EXTERNAL_DATABASE},
                            "emqx": {"external": DOCKER_EMQX}},
    }
    assert len(docker) > 20
    for name, config in variants.items():
        assert _tenant_resources(_run(config)) == docker, name


def _problems(config: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(config)
    return caught.value.problems


def test_platform_external_config_errors_name_the_key():
    database = {key: value for key, value in EXTERNAL_DATABASE.items() if key != "password"}
    emqx = {**DOCKER_EMQX, "apiUrl": "emqx.example.com"}
    problems = _problems({**dev_config(), "timescaledb": {"external": database}, "emqx": {"external": emqx}})
    assert "telemetry:timescaledb.external.password: required key is missing; add it" in problems
    assert any(p.startswith("telemetry:emqx.external.apiUrl: 'emqx.example.com' is not an http(s) URL") for p in problems)
    problems = _problems(k8s_config(emqx={"external": {**DOCKER_EMQX, "databaseServer": DATABASE_TUNNEL}}))
    assert [p.split(":")[1].split(" ")[0] for p in problems] == ["emqx.external.sourceRanges"]
    assert problems[0].startswith("telemetry:emqx.external.sourceRanges: required on the kubernetes platform")


def test_platform_external_credentials_do_not_show_in_the_parsed_config():
    config = parse_stack_config({**dev_config(), "timescaledb": {"external": EXTERNAL_DATABASE}})
    assert EXTERNAL_DATABASE["password"] not in repr(config)
    assert config.timescaledb.external.password.get_secret_value() == EXTERNAL_DATABASE["password"]
