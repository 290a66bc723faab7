"""The platform seam: a tenant depends on `components.platform` only, and the Docker platform
keeps the names existing stacks were deployed with."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from components.config import ConfigError, parse_stack_config
from tests.unit.harness import run_program
from tests.unit.test_config import dev_config

ROOT = Path(__file__).resolve().parents[2]
# Modules that are "where it runs": the tenant layer must not import any of them.
PLATFORM_MODULES = (
    "components.platforms", "components.network", "components.timescaledb", "components.emqx",
    "components.ingest", "components.stack", "pulumi_docker", "pulumi_kubernetes",
)

# The Docker platform's own resources in the dev stack (type, name). These names are in every
# deployed stack's URNs: a change here is a replacement of that resource, so change this list
# only in a change meant to replace them (and say so in its notes).
DOCKER_PLATFORM_RESOURCES = {
    ("telemetry:network:Network", "network"),
    ("docker:index/network:Network", "network-bridge"),
    ("telemetry:timescaledb:TimescaleDb", "timescaledb"),
    ("docker:index/container:Container", "timescaledb-container"),
    ("docker:index/remoteImage:RemoteImage", "timescaledb-image"),
    ("docker:index/volume:Volume", "timescaledb-data"),
    ("pulumi:providers:postgresql", "timescaledb-provider"),
    ("random:index/randomPassword:RandomPassword", "timescaledb-superuser-password"),
    ("telemetry:ingest:IngestService", "ingest"),
    ("docker:index/container:Container", "ingest-container"),
    ("docker:index/image:Image", "ingest-image"),
    ("postgresql:index/grant:Grant", "ingest-writer-registry-schema"),
    ("postgresql:index/grant:Grant", "ingest-writer-registry-table"),
    ("postgresql:index/role:Role", "ingest-writer-role"),
    ("pulumi-python:dynamic/telemetry:TenantRegistry", "ingest-tenant-registry"),
    ("random:index/randomPassword:RandomPassword", "ingest-writer-password"),
    ("telemetry:emqx:Emqx", "emqx"),
    ("docker:index/container:Container", "emqx-container"),
    ("docker:index/remoteImage:RemoteImage", "emqx-image"),
    ("docker:index/volume:Volume", "emqx-data"),
    # Issue 14 replaced emqx-authenticator (the built-in database) and emqx-authorization on
    # purpose: devices are registry rows, and the PostgreSQL authenticator and the authorization
    # are device access's (device-access-*, platform-independent), created after the tenants'
    # legacy device imports; Pulumi deletes the old two at the end of that `pulumi up`.
    ("pulumi-python:dynamic/emqx:Connector", "emqx-ingest-connector"),
    ("random:index/randomPassword:RandomPassword", "emqx-api-key"),
    ("random:index/randomPassword:RandomPassword", "emqx-api-secret"),
    ("random:index/randomPassword:RandomPassword", "emqx-dashboard-password"),
    # Added by the single-host platform work (issue 12): new resources, nothing renamed.
    ("pulumi-python:dynamic/telemetry:TimescaleExtension", "timescaledb-extension"),
    ("random:index/randomPassword:RandomPassword", "emqx-node-cookie"),
    ("telemetry:tls:ServerCertificate", "emqx-tls"),
    ("tls:index/privateKey:PrivateKey", "emqx-tls-ca-key"),
    ("tls:index/selfSignedCert:SelfSignedCert", "emqx-tls-ca-certificate"),
    ("tls:index/privateKey:PrivateKey", "emqx-tls-server-key"),
    ("tls:index/certRequest:CertRequest", "emqx-tls-server-request"),
    ("tls:index/locallySignedCert:LocallySignedCert", "emqx-tls-server-certificate"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_platform_seam_tenant_imports_no_platform_module():
    imported = _imports(ROOT / "components" / "tenant.py")
    offending = sorted(name for name in imported if name.startswith(PLATFORM_MODULES))
    assert offending == [], f"components/tenant.py imports platform code: {offending}"
    assert "components.platform" in imported


def test_platform_seam_tenant_has_no_platform_conditionals():
    source = (ROOT / "components" / "tenant.py").read_text().lower()
    for word in ("docker", "kubernetes", "k8s", "config.platform", "platform =="):
        assert word not in source, f"components/tenant.py mentions {word!r}"


def test_platform_defaults_to_docker():
    assert parse_stack_config(dev_config()).platform == "docker"


def test_unknown_platform_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError) as caught:
        parse_stack_config({**dev_config(), "platform": "nomad"})
    [problem] = caught.value.problems
    assert problem.startswith("telemetry:platform: 'nomad' is not a platform; use one of docker")


def test_docker_platform_keeps_its_resource_names():
    run = run_program(dev_config())
    assert run.error is None, run.error
    platform_resources = {(r.type, r.name) for r in run.registrations
                          if not r.name.startswith(("tenant-", "device-access"))}
    assert platform_resources == DOCKER_PLATFORM_RESOURCES
    # All of them sit where they always did: at the top of the stack or under their component.
    top_level = {r.name for r in run.registrations if r.type.startswith("telemetry:")
                 and r.parent.endswith("pulumi:pulumi:Stack::telemetry-dev")}
    assert {"network", "timescaledb", "ingest", "emqx"} <= top_level
