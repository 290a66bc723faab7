"""The kubernetes platform's section (telemetry:kubernetes)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from components.config.base import _cidrs, _http_url, _pinned_image, _port, _Section

DNS_LABEL_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
QUANTITY_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
CNPG_RETENTION_PATTERN = re.compile(r"^[1-9][0-9]*[dwm]$")
REGISTRY_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9._-]+)*$")


def _quantity(value: str) -> str:
    if not QUANTITY_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity; write e.g. '20Gi' or '250m'")
    return value


def _dns_label(value: str) -> str:
    if not DNS_LABEL_PATTERN.match(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes name; use lowercase letters, digits and '-', at most 63 characters"
        )
    return value


class KubernetesBackupConfig(_Section):
    """CloudNativePG's barman-cloud backups to an object store, and a ScheduledBackup."""

    destination_path: str  # e.g. s3://bucket/telemetry
    endpoint_url: str | None = None
    # An existing Secret with ACCESS_KEY_ID and ACCESS_SECRET_KEY (never stack config).
    credentials_secret: str
    retention_policy: str = "30d"
    # CloudNativePG's six-field cron (seconds first).
    schedule: str = "0 0 3 * * *"

    _credentials_secret = field_validator("credentials_secret")(_dns_label)

    @field_validator("retention_policy")
    @classmethod
    def _retention(cls, value: str) -> str:
        if not CNPG_RETENTION_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a backup retention; write a number and d, w or m, e.g. '30d'")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        if len(value.split()) != 6:
            raise ValueError(f"{value!r} is not a six-field cron schedule (seconds first), e.g. '0 0 3 * * *'")
        return value


class KubernetesTimescaleDbConfig(_Section):
    # A CloudNativePG operand image that ships TimescaleDB (see README, Platforms).
    image_name: str | None = None
    instances: int = Field(default=3, ge=1, le=9)
    storage_class: str | None = None
    storage_size: str = "20Gi"
    backup: KubernetesBackupConfig | None = None
    # How Pulumi reaches the primary: an explicit host (port-forward, VPN) or, when absent, a
    # LoadBalancer Service open to kubernetes.adminSourceRanges.
    admin_host: str | None = None
    admin_port: int = 5432

    _storage_size = field_validator("storage_size")(_quantity)
    _admin_port = field_validator("admin_port")(_port)

    @field_validator("image_name")
    @classmethod
    def _image_name(cls, value: str | None) -> str | None:
        return None if value is None else _pinned_image(value)


class KubernetesEmqxConfig(_Section):
    core_replicas: int = Field(default=3, ge=1, le=9)
    replicant_replicas: int = Field(default=2, ge=0, le=64)
    storage_class: str | None = None
    storage_size: str = "1Gi"
    mqtt_service_type: Literal["LoadBalancer", "NodePort", "ClusterIP"] = "LoadBalancer"
    # How Pulumi reaches the management API: an explicit URL (port-forward, ingress) or, when
    # absent, a LoadBalancer Service open to kubernetes.adminSourceRanges.
    api_url: str | None = None

    _storage_size = field_validator("storage_size")(_quantity)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)


class KubernetesIngestConfig(_Section):
    # Exactly one: a pinned image reference, or a registry the stack builds ingest_service/ and pushes to.
    image: str | None = None
    registry: str | None = None
    replicas: int = Field(default=2, ge=2, le=100)
    max_replicas: int = Field(default=6, ge=2, le=200)
    target_cpu_utilization: int = Field(default=70, ge=10, le=100)
    cpu_request: str = "250m"
    memory_request: str = "256Mi"
    memory_limit: str = "512Mi"

    _quantities = field_validator("cpu_request", "memory_request", "memory_limit")(_quantity)

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return None if value is None else _pinned_image(value)

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str | None) -> str | None:
        if value is not None and not REGISTRY_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a registry path; write e.g. 'registry.example.com/telemetry'")
        return value


class KubernetesOperatorsConfig(_Section):
    # false: CloudNativePG and the EMQX Operator must already run (checked on every preview);
    # true: the stack installs them at the pinned versions.
    install: bool = False


class KubernetesConfig(_Section):
    namespace: str = "telemetry"
    # A kubeconfig context; absent = the current context.
    context: str | None = None
    operators: KubernetesOperatorsConfig = KubernetesOperatorsConfig()
    # Who may reach the LoadBalancers the stack opens for Pulumi (database admin, EMQX API).
    admin_source_ranges: list[str] = Field(default_factory=list)
    timescaledb: KubernetesTimescaleDbConfig = KubernetesTimescaleDbConfig()
    emqx: KubernetesEmqxConfig = KubernetesEmqxConfig()
    ingest: KubernetesIngestConfig = KubernetesIngestConfig()

    _namespace = field_validator("namespace")(_dns_label)
    _admin_source_ranges = field_validator("admin_source_ranges")(_cidrs)

