"""The whole stack config: its sections, the checks across them, and `parse_stack_config`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from components.config.base import NAMESPACE, ConfigError, _check, _Section
from components.config.kubernetes import KubernetesConfig
from components.config.services import (
    EmqxConfig,
    ExternalEmqxConfig,
    IngestConfig,
    MqttTlsConfig,
    TimescaleDbConfig,
    host_ports,
)
from components.config.tenants import TenantConfig, _check_tenants

PLATFORMS = ("docker", "kubernetes")


class StackConfig(_Section):
    platform: str = "docker"
    timescaledb: TimescaleDbConfig = TimescaleDbConfig()
    emqx: EmqxConfig = EmqxConfig()
    ingest: IngestConfig = IngestConfig()
    mqtt_tls: MqttTlsConfig | None = None
    kubernetes: KubernetesConfig = KubernetesConfig()
    tenants: list[TenantConfig] = Field(default_factory=list)


SECTIONS: dict[str, type[_Section]] = {
    "timescaledb": TimescaleDbConfig,
    "emqx": EmqxConfig,
    "ingest": IngestConfig,
    "kubernetes": KubernetesConfig,
}


def _check_mqtt_tls(raw: Any, secret: bool, problems: list[str]) -> MqttTlsConfig | None:
    if raw is None:
        return None
    if not secret:
        # A private key in plain text would sit in Pulumi.<stack>.yaml and in the state.
        problems.append(
            f"{NAMESPACE}:mqttTls: holds a private key but is not a secret; set it with "
            f"`pulumi config set --secret --path {NAMESPACE}:mqttTls.privateKey < server-key.pem` "
            "(and certificate the same way), and remove the plain value"
        )
    return _check(MqttTlsConfig, raw, "mqttTls", problems)


def _check_ports(timescaledb: TimescaleDbConfig, emqx: EmqxConfig, ingest: IngestConfig, problems: list[str]) -> None:
    owners: dict[int, str] = {}
    for key, port in host_ports(timescaledb, emqx, ingest):
        if port in owners:
            problems.append(
                f"{NAMESPACE}:{key}: port {port} is also {NAMESPACE}:{owners[port]}; "
                "every service needs its own host port"
            )
        owners.setdefault(port, key)


def _check_platform(raw_platform: Any, problems: list[str]) -> str:
    if raw_platform is None:
        return "docker"
    if raw_platform not in PLATFORMS:
        problems.append(
            f"{NAMESPACE}:platform: {raw_platform!r} is not a platform; use one of {', '.join(PLATFORMS)} "
            f"(`pulumi config set {NAMESPACE}:platform docker`)"
        )
        return "docker"
    return raw_platform


def _check_device_database(platform: str, sections: dict[str, Any], problems: list[str]) -> None:
    """An external EMQX must be told where it reaches the stack's own database.

    EMQX authenticates devices from the registry, so it connects to PostgreSQL itself. The stack's
    own database is private: on Docker it is `timescaledb:5432` on the stack network and its host
    port is bound to 127.0.0.1 (the external EMQX's own loopback), on Kubernetes the in-cluster
    Service `timescaledb-rw`. Neither is reachable from an EMQX elsewhere, and no default could be
    right, so the address is a required key then.
    """
    broker: ExternalEmqxConfig | None = sections["emqx"].external
    if broker is None or broker.database_server is not None or sections["timescaledb"].external is not None:
        return
    private = ("timescaledb:5432 on the stack's Docker network (its host port listens on 127.0.0.1 only)"
               if platform == "docker" else "the in-cluster Service timescaledb-rw")
    problems.append(
        f"{NAMESPACE}:emqx.external.databaseServer: required key is missing; the external EMQX authenticates "
        f"devices from this stack's PostgreSQL, which it cannot reach at {private}. Give the host:port at which "
        f"that EMQX reaches it (e.g. a tunnel or load balancer you run: `pulumi config set --path "
        f"{NAMESPACE}:emqx.external.databaseServer db-tunnel.example.com:5432`), or use an external database "
        f"({NAMESPACE}:timescaledb.external) that both reach"
    )


def _check_platform_sections(platform: str, has_kubernetes: bool, sections: dict[str, Any], problems: list[str]) -> None:
    """What each platform needs from the kubernetes and external sections."""
    kubernetes: KubernetesConfig = sections["kubernetes"]
    database_external = sections["timescaledb"].external is not None
    broker_external: ExternalEmqxConfig | None = sections["emqx"].external
    if platform != "kubernetes":
        if has_kubernetes:
            problems.append(
                f"{NAMESPACE}:kubernetes: set, but {NAMESPACE}:platform is {platform!r}; remove the section "
                f"(`pulumi config rm {NAMESPACE}:kubernetes`) or set {NAMESPACE}:platform to kubernetes"
            )
        return
    where = f"{NAMESPACE}:kubernetes"
    ingest = kubernetes.ingest
    if (ingest.image is None) == (ingest.registry is None):
        problems.append(
            f"{where}.ingest: set exactly one of image (a pinned image reference of ingest_service/) "
            "or registry (the stack builds the image and pushes it there)"
        )
    if ingest.max_replicas < ingest.replicas:
        problems.append(
            f"{where}.ingest.maxReplicas: {ingest.max_replicas} is below replicas {ingest.replicas}; "
            "raise maxReplicas or lower replicas"
        )
    if not database_external and kubernetes.timescaledb.image_name is None:
        problems.append(
            f"{where}.timescaledb.imageName: required key is missing; name a CloudNativePG operand image "
            f"that ships TimescaleDB (see README, Platforms), or set {NAMESPACE}:timescaledb.external"
        )
    needs_load_balancer = [
        key for key, needed in (
            ("timescaledb.adminHost", not database_external and kubernetes.timescaledb.admin_host is None),
            ("emqx.apiUrl", broker_external is None and kubernetes.emqx.api_url is None),
        ) if needed
    ]
    if needs_load_balancer and not kubernetes.admin_source_ranges:
        problems.append(
            f"{where}.adminSourceRanges: without {' and '.join(f'{where}.{key}' for key in needs_load_balancer)} "
            "the stack opens a LoadBalancer for Pulumi; list the address ranges allowed to reach it "
            "(e.g. ['203.0.113.0/24']) or set those keys to an endpoint you provide (e.g. a port-forward)"
        )
    if broker_external is not None and not broker_external.source_ranges:
        problems.append(
            f"{NAMESPACE}:emqx.external.sourceRanges: required on the kubernetes platform; list the address "
            "ranges the external EMQX connects from, which the ingest service's NetworkPolicy admits"
        )


def parse_stack_config(raw: Mapping[str, Any], secret_keys: frozenset[str] = frozenset()) -> StackConfig:
    """Validate the raw ``telemetry:*`` config values (keys without the namespace).

    ``secret_keys`` names the keys (without the namespace) the stack holds as secrets.
    Raises ConfigError listing every problem found.
    """
    problems: list[str] = []
    known = {*SECTIONS, "tenants", "platform", "mqttTls"}
    for key in sorted(set(raw) - known):
        problems.append(
            f"{NAMESPACE}:{key}: unknown key; remove it (`pulumi config rm {NAMESPACE}:{key}`) "
            f"or use one of {', '.join(sorted(known))}"
        )
    sections = {
        key: _check(model, raw.get(key) if raw.get(key) is not None else {}, key, problems)
        for key, model in SECTIONS.items()
    }
    tenants = _check_tenants(raw.get("tenants") or [], problems)
    platform = _check_platform(raw.get("platform"), problems)
    mqtt_tls = _check_mqtt_tls(raw.get("mqttTls"), "mqttTls" in secret_keys, problems)
    if all(sections.values()):
        _check_ports(sections["timescaledb"], sections["emqx"], sections["ingest"], problems)
        _check_platform_sections(platform, "kubernetes" in raw, sections, problems)
        _check_device_database(platform, sections, problems)
    if problems:
        raise ConfigError(problems)
    return StackConfig(platform=platform, tenants=tenants, mqtt_tls=mqtt_tls, **sections)
