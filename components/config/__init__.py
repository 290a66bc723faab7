"""The stack config, validated before any resource is registered.

Every section is checked on its own and then across sections, so one run of
``pulumi preview`` lists every problem at once, each naming its key and the
fix.  Models use the camelCase keys of ``Pulumi.<stack>.yaml`` and forbid
unknown keys, so a typo is reported rather than silently ignored.

One module per part of the config (``base``: shared checks; ``services``: the
database, broker, ingest service and their external forms; ``tenants``;
``kubernetes``; ``stack``: the whole and the checks across sections); every
name is importable from ``components.config`` as before.
"""

from components.config.base import (
    CHUNK_UNITS,
    CIDR_PATTERN,
    DEFAULT_EMQX_IMAGE,
    DEFAULT_TIMESCALEDB_IMAGE,
    HOST_PATTERN,
    IMAGE_PATTERN,
    INTERVAL_PATTERN,
    NAMESPACE,
    SERVER_NAME_PATTERN,
    UNIT_SECONDS,
    URL_PATTERN,
    ConfigError,
    interval_seconds,
    normalise_interval,
)
from components.config.kubernetes import (
    KubernetesBackupConfig,
    KubernetesConfig,
    KubernetesEmqxConfig,
    KubernetesIngestConfig,
    KubernetesOperatorsConfig,
    KubernetesTimescaleDbConfig,
)
from components.config.services import (
    ContainerLimits,
    EmqxConfig,
    ExternalEmqxConfig,
    ExternalTimescaleDbConfig,
    IngestConfig,
    MqttTlsConfig,
    TimescaleDbConfig,
    host_ports,
)
from components.config.stack import PLATFORMS, SECTIONS, StackConfig, parse_stack_config
from components.config.tenants import (
    DEVICE_PATTERN,
    MAX_IDENTIFIER_BYTES,
    MAX_SLUG_LENGTH,
    READER_ROLE_SUFFIX,
    SCHEMA_PREFIX,
    SLUG_PATTERN,
    TOPIC_LEVEL_PATTERN,
    TenantConfig,
)

__all__ = [
    "CHUNK_UNITS", "CIDR_PATTERN", "DEFAULT_EMQX_IMAGE", "DEFAULT_TIMESCALEDB_IMAGE", "DEVICE_PATTERN",
    "HOST_PATTERN", "IMAGE_PATTERN", "INTERVAL_PATTERN", "MAX_IDENTIFIER_BYTES", "MAX_SLUG_LENGTH", "NAMESPACE",
    "PLATFORMS", "READER_ROLE_SUFFIX", "SCHEMA_PREFIX", "SECTIONS", "SERVER_NAME_PATTERN", "SLUG_PATTERN",
    "TOPIC_LEVEL_PATTERN", "UNIT_SECONDS", "URL_PATTERN", "ConfigError", "ContainerLimits", "EmqxConfig",
    "ExternalEmqxConfig", "ExternalTimescaleDbConfig", "IngestConfig", "KubernetesBackupConfig", "KubernetesConfig",
    "KubernetesEmqxConfig", "KubernetesIngestConfig", "KubernetesOperatorsConfig", "KubernetesTimescaleDbConfig",
    "MqttTlsConfig", "StackConfig", "TenantConfig", "TimescaleDbConfig", "host_ports", "interval_seconds",
    "normalise_interval", "parse_stack_config",
]
