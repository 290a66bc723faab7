"""The stack config, validated before any resource is registered.

Every section is checked on its own and then across sections, so one run of
``pulumi preview`` lists every problem at once, each naming its key and the
fix.  Models use the camelCase keys of ``Pulumi.<stack>.yaml`` and forbid
unknown keys, so a typo is reported rather than silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from components.providers.emqx.delivery import DEFAULT_DELIVERY_WINDOW, parse_window

NAMESPACE = "telemetry"

DEFAULT_TIMESCALEDB_IMAGE = "timescale/timescaledb:2.17.2-pg16"
DEFAULT_EMQX_IMAGE = "emqx/emqx:5.8.9"

# PostgreSQL truncates identifiers at 63 bytes; the longest name derived from
# a slug is the reader role "tenant_<slug>_reader".
MAX_IDENTIFIER_BYTES = 63
SCHEMA_PREFIX = "tenant_"
READER_ROLE_SUFFIX = "_reader"
MAX_SLUG_LENGTH = MAX_IDENTIFIER_BYTES - len(SCHEMA_PREFIX) - len(READER_ROLE_SUFFIX)

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
TOPIC_LEVEL_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
DEVICE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SERVER_NAME_PATTERN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$|^[0-9a-fA-F:.]+$")
IMAGE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$")
INTERVAL_PATTERN = re.compile(
    r"^\s*(?P<count>[1-9][0-9]*)\s*(?P<unit>second|minute|hour|day|week|month|year)s?\s*$", re.IGNORECASE
)
UNIT_SECONDS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "year": 365 * 86400,
}
# Chunks must have a fixed length; months and years vary.
CHUNK_UNITS = frozenset({"second", "minute", "hour", "day", "week"})


class ConfigError(Exception):
    """The stack config is invalid; ``problems`` holds one sentence per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"The stack config has {len(problems)} problem{'s' if len(problems) != 1 else ''} "
            f"(fix them in Pulumi.<stack>.yaml or with `pulumi config set --path`):\n{listing}"
        )


def normalise_interval(text: str, *, allowed_units: frozenset[str] = frozenset(UNIT_SECONDS)) -> str:
    """``" 7 Day"`` -> ``"7 days"``; raises ValueError naming the accepted forms."""
    match = INTERVAL_PATTERN.match(text)
    unit = match.group("unit").lower() if match else None
    if match is None or unit not in allowed_units:
        units = ", ".join(sorted(allowed_units, key=UNIT_SECONDS.__getitem__))
        raise ValueError(f"{text!r} is not an interval; write a whole number and a unit ({units}), e.g. '7 days'")
    count = int(match.group("count"))
    return f"{count} {unit}{'s' if count != 1 else ''}"


def interval_seconds(text: str) -> int:
    match = INTERVAL_PATTERN.match(text)
    assert match is not None, text
    return int(match.group("count")) * UNIT_SECONDS[match.group("unit").lower()]


class _Section(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


def _pinned_image(value: str) -> str:
    name, _, tag = value.rpartition(":") if "@" not in value else (value, "", "digest")
    if not IMAGE_PATTERN.match(value) or not name or not tag or tag == "latest":
        raise ValueError(f"{value!r} is not a pinned image; name an exact version tag such as {DEFAULT_EMQX_IMAGE!r}")
    return value


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a TCP port; use a number from 1 to 65535")
    return value


# --- external endpoints (telemetry:timescaledb.external, telemetry:emqx.external) -----------------

HOST_PATTERN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
CIDR_PATTERN = re.compile(r"^[0-9a-fA-F.:]+/[0-9]{1,3}$")
URL_PATTERN = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


def _http_url(value: str) -> str:
    if not URL_PATTERN.match(value):
        raise ValueError(f"{value!r} is not an http(s) URL; write e.g. 'https://emqx.example.com:18083'")
    return value.rstrip("/")


def _cidrs(value: list[str]) -> list[str]:
    bad = [cidr for cidr in value if not CIDR_PATTERN.match(cidr)]
    if bad:
        raise ValueError(f"{', '.join(map(repr, bad))}: write address ranges in CIDR form, e.g. '203.0.113.0/24'")
    return value


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


class ExternalEmqxConfig(_Section):
    """An existing EMQX cluster the stack does not run; tenants are managed through its API."""

    api_url: str
    api_key: SecretStr
    api_secret: SecretStr
    # Where that EMQX reaches this stack's ingest service (its connector's URL).
    ingest_url: str
    # Where that EMQX's requests come from (kubernetes: the ingest NetworkPolicy admits these).
    source_ranges: list[str] = Field(default_factory=list)

    _urls = field_validator("api_url", "ingest_url")(_http_url)
    _source_ranges = field_validator("source_ranges")(_cidrs)


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


class TenantConfig(_Section):
    slug: str
    topic_prefix: str
    devices: list[str] = Field(min_length=1)
    chunk_interval: str = "1 day"
    retention: str | None = None
    compress_after: str | None = None
    drop_data_on_delete: bool = False

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not a valid slug; use lowercase letters, digits and hyphens, "
                "starting with a letter and not ending with a hyphen, e.g. 'hospital-x'"
            )
        if len(value) > MAX_SLUG_LENGTH:
            raise ValueError(
                f"{value!r} is {len(value)} characters; its schema and role names must fit PostgreSQL's "
                f"{MAX_IDENTIFIER_BYTES}-byte identifiers, so use at most {MAX_SLUG_LENGTH} characters"
            )
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        levels = value.split("/")
        if not all(TOPIC_LEVEL_PATTERN.match(level) for level in levels):
            raise ValueError(
                f"{value!r} is not a valid topic prefix; use one or more topic levels of letters, digits, "
                "'_' or '-' separated by '/', without wildcards, e.g. 'umc'"
            )
        return value

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: list[str]) -> list[str]:
        bad = [device for device in value if not DEVICE_PATTERN.match(device)]
        if bad:
            raise ValueError(
                f"{', '.join(map(repr, bad))}: device usernames use letters, digits, '_', '.' or '-', "
                "start with a letter or digit and have at most 64 characters"
            )
        repeated = sorted({device for device in value if value.count(device) > 1})
        if repeated:
            raise ValueError(f"{', '.join(map(repr, repeated))} listed more than once; list each device once")
        return value

    @field_validator("chunk_interval")
    @classmethod
    def _chunk_interval(cls, value: str) -> str:
        return normalise_interval(value, allowed_units=CHUNK_UNITS)

    @field_validator("retention", "compress_after")
    @classmethod
    def _policy_interval(cls, value: str | None) -> str | None:
        return None if value is None else normalise_interval(value)

    @property
    def schema_name(self) -> str:
        return SCHEMA_PREFIX + self.slug.replace("-", "_")

    @property
    def reader_role(self) -> str:
        return self.schema_name + READER_ROLE_SUFFIX

    @property
    def topic_filter(self) -> str:
        return f"tenants/{self.topic_prefix}/#"


# --- the kubernetes platform (telemetry:kubernetes) -------------------------------------------

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


def _describe(error: Mapping[str, Any], key: str) -> str:
    """One sentence for one pydantic error, naming the key and the fix."""
    path = key + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{NAMESPACE}:{path}: unknown key; remove it or correct its spelling"
    if kind == "missing":
        return f"{NAMESPACE}:{path}: required key is missing; add it"
    if kind == "too_short" and error["loc"][-1:] == ("devices",):
        return f"{NAMESPACE}:{path}: the device list is empty; list at least one MQTT username"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind.endswith(("_type", "_parsing")) or kind in {"greater_than_equal", "less_than_equal"}:
        message = f"{message} (got {error.get('input')!r}); correct the value"
    return f"{NAMESPACE}:{path}: {message}"


def _check(model: type[_Section], raw: Any, key: str, problems: list[str]) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_describe(error, key) for error in exc.errors())
        return None


def _prefixes_overlap(a: str, b: str) -> bool:
    levels_a, levels_b = a.split("/"), b.split("/")
    shorter = min(len(levels_a), len(levels_b))
    return levels_a[:shorter] == levels_b[:shorter]


def _check_tenants(raw_tenants: Any, problems: list[str]) -> list[TenantConfig]:
    if not isinstance(raw_tenants, list):
        problems.append(f"{NAMESPACE}:tenants: must be a list of tenant entries (got {type(raw_tenants).__name__})")
        return []
    tenants: list[tuple[int, TenantConfig]] = []
    for index, raw in enumerate(raw_tenants):
        tenant = _check(TenantConfig, raw, f"tenants[{index}]", problems)
        if tenant is not None:
            tenants.append((index, tenant))

    seen_slugs: dict[str, int] = {}
    seen_prefixes: list[tuple[int, str]] = []
    device_owner: dict[str, int] = {}
    for index, tenant in tenants:
        where = f"{NAMESPACE}:tenants[{index}]"
        if tenant.slug in seen_slugs:
            problems.append(
                f"{where}.slug: {tenant.slug!r} is already used by tenants[{seen_slugs[tenant.slug]}]; "
                "give each tenant its own slug"
            )
        seen_slugs.setdefault(tenant.slug, index)
        for other_index, other_prefix in seen_prefixes:
            if _prefixes_overlap(tenant.topic_prefix, other_prefix):
                relation = "is the same as" if tenant.topic_prefix == other_prefix else "overlaps"
                problems.append(
                    f"{where}.topicPrefix: {tenant.topic_prefix!r} {relation} tenants[{other_index}]'s "
                    f"{other_prefix!r}; one tenant's topics must never match another's, so choose a distinct prefix"
                )
        seen_prefixes.append((index, tenant.topic_prefix))
        for device in tenant.devices:
            if device in device_owner and device_owner[device] != index:
                problems.append(
                    f"{where}.devices: {device!r} is already a device of tenants[{device_owner[device]}]; "
                    "MQTT usernames are stack-wide, so rename one of them"
                )
            device_owner.setdefault(device, index)
        if (
            tenant.retention
            and tenant.compress_after
            and interval_seconds(tenant.compress_after) >= interval_seconds(tenant.retention)
        ):
            problems.append(
                f"{where}.compressAfter: {tenant.compress_after!r} is not shorter than retention "
                f"{tenant.retention!r}, so nothing would ever be compressed; shorten it or drop the key"
            )
    return [tenant for _, tenant in tenants]


def host_ports(timescaledb: TimescaleDbConfig, emqx: EmqxConfig, ingest: IngestConfig) -> list[tuple[str, int]]:
    """Every host port the stack publishes, with the config key that sets it."""
    return [
        ("timescaledb.hostPort", timescaledb.host_port),
        *([("emqx.mqttPort", emqx.mqtt_port)] if emqx.plain_listener else []),
        ("emqx.mqttTlsPort", emqx.mqtt_tls_port),
        ("emqx.dashboardPort", emqx.dashboard_port),
        ("ingest.hostPort", ingest.host_port),
    ]


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
    if problems:
        raise ConfigError(problems)
    return StackConfig(platform=platform, tenants=tenants, mqtt_tls=mqtt_tls, **sections)
