"""The services a stack runs or reaches: TimescaleDB, EMQX, the ingest service, MQTT TLS, external endpoints."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from components.config.base import (
    DEFAULT_EMQX_IMAGE,
    DEFAULT_TIMESCALEDB_IMAGE,
    HOST_PATTERN,
    SERVER_NAME_PATTERN,
    _cidrs,
    _http_url,
    _pinned_image,
    _port,
    _Section,
)
from components.providers.emqx.delivery import DEFAULT_DELIVERY_WINDOW, parse_window


class ExternalTimescaleDbConfig(_Section):
    """A managed TimescaleDB the stack does not run: the tenant layer connects as ``adminUser``."""

    host: str
    port: int = 5432
    database: str
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "require"
    admin_user: str
    # `pulumi config set --secret --path telemetry:timescaledb.external.password ...`
    password: SecretStr

    _port_range = field_validator("port")(_port)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not HOST_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a host name or address; write e.g. 'db.example.com'")
        return value


SERVER_PATTERN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?:[0-9]{1,5}$")


class ExternalEmqxConfig(_Section):
    """An existing EMQX cluster the stack does not run; tenants and device access are managed through its API."""

    api_url: str
    api_key: SecretStr
    api_secret: SecretStr
    # Where that EMQX reaches this stack's ingest service (its connector's URL).
    ingest_url: str
    # Where that EMQX's requests come from (kubernetes: the ingest NetworkPolicy admits these, and
    # the database's too, since EMQX authenticates devices from it).
    source_ranges: list[str] = Field(default_factory=list)
    # `host:port` at which that EMQX reaches the stack's PostgreSQL to authenticate devices.
    # Required when the database is the stack's own (its addresses are private to the Docker
    # network or the cluster); defaults to telemetry:timescaledb.external's host and port.
    database_server: str | None = None

    _urls = field_validator("api_url", "ingest_url")(_http_url)
    _source_ranges = field_validator("source_ranges")(_cidrs)

    @field_validator("database_server")
    @classmethod
    def _database_server(cls, value: str | None) -> str | None:
        if value is not None and not SERVER_PATTERN.match(value):
            raise ValueError(f"{value!r} is not host:port; write e.g. 'db-tunnel.example.com:5432'")
        return value


def _cpu_limit(value: float | None) -> float | None:
    if value is not None and not 0.01 <= value <= 1024:
        raise ValueError(f"{value} is not a CPU limit; use a number of CPUs such as 0.5 or 2")
    return value


class ContainerLimits(_Section):
    """Optional per-container limits: memory in MiB (no swap beyond it) and a number of CPUs."""

    memory_mb: int | None = Field(default=None, ge=64, le=1_048_576)
    cpus: float | None = None

    _cpus = field_validator("cpus")(_cpu_limit)


# Host ports default away from the usual system services (a Debian PostgreSQL on 5432, a
# mosquitto on 1883/8883, development servers on 8000), so a first deploy does not collide.


class TimescaleDbConfig(ContainerLimits):
    image: str = DEFAULT_TIMESCALEDB_IMAGE
    host_port: int = 15432
    # Docker's default /dev/shm is 64 MiB; parallel queries need more (their shared memory lives there).
    shm_size_mb: int = Field(default=256, ge=64, le=65_536)
    external: ExternalTimescaleDbConfig | None = None

    _image = field_validator("image")(_pinned_image)
    _host_port = field_validator("host_port")(_port)


class EmqxConfig(ContainerLimits):
    image: str = DEFAULT_EMQX_IMAGE
    mqtt_port: int = 11883
    mqtt_tls_port: int = 18883
    # The plain-text MQTT listener; the TLS listener is always on.
    plain_listener: bool = True
    dashboard_port: int = 18083
    # How long EMQX keeps retrying a message the ingest path does not take (README "Delivery
    # guarantees"); normalised to EMQX's form, e.g. "15m" or "infinity".
    delivery_window: str = DEFAULT_DELIVERY_WINDOW
    # Extra DNS names or IP addresses devices reach the broker by, added to the generated
    # server certificate (it always covers localhost and 127.0.0.1).
    tls_server_names: list[str] = Field(default_factory=list)
    external: ExternalEmqxConfig | None = None

    _image = field_validator("image")(_pinned_image)
    _ports = field_validator("mqtt_port", "mqtt_tls_port", "dashboard_port")(_port)
    _delivery_window = field_validator("delivery_window")(parse_window)

    @field_validator("tls_server_names")
    @classmethod
    def _server_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not SERVER_NAME_PATTERN.match(name)]
        if bad:
            raise ValueError(
                f"{', '.join(map(repr, bad))}: list DNS names (e.g. 'mqtt.example.com') or IP addresses only"
            )
        return value


class MqttTlsConfig(_Section):
    """A server certificate of your own for the MQTT TLS listener (instead of the generated one)."""

    certificate: str
    private_key: str
    # The CA devices should trust (exported as mqttCaCertificate); absent for a public CA.
    ca_certificate: str | None = None

    @field_validator("certificate", "ca_certificate")
    @classmethod
    def _certificate(cls, value: str | None) -> str | None:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("is not a PEM certificate; paste the PEM text (-----BEGIN CERTIFICATE----- ...)")
        return value

    @field_validator("private_key")
    @classmethod
    def _private_key(cls, value: str) -> str:
        if not re.search(r"-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----", value) or "ENCRYPTED" in value:
            raise ValueError("is not an unencrypted PEM private key; paste the PEM text (-----BEGIN PRIVATE KEY----- ...)")
        return value


class IngestConfig(ContainerLimits):
    host_port: int = 18000
    workers: int = Field(default=2, ge=1, le=32)

    _host_port = field_validator("host_port")(_port)


def host_ports(timescaledb: TimescaleDbConfig, emqx: EmqxConfig, ingest: IngestConfig) -> list[tuple[str, int]]:
    """Every host port the stack publishes, with the config key that sets it."""
    return [
        ("timescaledb.hostPort", timescaledb.host_port),
        *([("emqx.mqttPort", emqx.mqtt_port)] if emqx.plain_listener else []),
        ("emqx.mqttTlsPort", emqx.mqtt_tls_port),
        ("emqx.dashboardPort", emqx.dashboard_port),
        ("ingest.hostPort", ingest.host_port),
    ]

