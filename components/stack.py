"""Builds the whole stack from its validated config; __main__ only calls this."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pulumi

from components.config import NAMESPACE, ConfigError, StackConfig, parse_stack_config
from components.device_access import DeviceAccess, DeviceAccessArgs
from components.platform import PlatformBuild
from components.platforms.docker import build_docker_platform
from components.platforms.kubernetes import build_kubernetes_platform
from components.tenant import Tenant, TenantArgs


def read_raw_config() -> tuple[dict[str, Any], frozenset[str]]:
    """Every ``telemetry:*`` value of the stack config (objects decoded from their JSON form), and
    which of those keys are secrets.

    ``pulumi.Config`` reads a key it is given but cannot list keys, and the unknown ones are
    what config validation must report. The list comes from ``pulumi.runtime.get_config_env()``:
    the ``PULUMI_CONFIG`` map the engine hands the program, which the Python language host
    itself loads with it; values and secret flags come through the public ``pulumi.Config``
    and ``pulumi.runtime.is_config_secret``.
    """
    config = pulumi.Config(NAMESPACE)
    raw: dict[str, Any] = {}
    secret_keys: set[str] = set()
    for full_key in pulumi.runtime.get_config_env():
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        value = config.get(key)
        try:
            raw[key] = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            raw[key] = value
        if pulumi.runtime.is_config_secret(full_key):
            secret_keys.add(key)
    return raw, frozenset(secret_keys)


PLATFORMS: dict[str, Callable[[StackConfig, str, str], PlatformBuild]] = {
    "docker": build_docker_platform,
    "kubernetes": build_kubernetes_platform,
}


def build_stack(config: StackConfig, project: str, stack: str) -> dict[str, Any]:
    """Declare every resource of the stack; returns the stack outputs."""
    platform = PLATFORMS[config.platform](config, project, stack)
    tenants = {
        tenant.slug: Tenant(f"tenant-{tenant.slug}", TenantArgs(tenant=tenant, platform=platform.tenant_platform))
        for tenant in config.tenants
    }
    # After the tenants: EMQX switches to the registry once config-listed devices are in it.
    imports = [t.legacy_device_import for t in tenants.values() if t.legacy_device_import is not None]
    device_access = DeviceAccess("device-access", DeviceAccessArgs(
        platform=platform.tenant_platform, database=platform.device_database,
        broker_ready=platform.broker_ready, after=imports,
    ))
    outputs = {
        **platform.outputs,
        "tenants": {
            tenant.slug: {"topicPrefix": tenant.topic_prefix, "schema": tenant.schema_name,
                          "readerRole": tenant.reader_role}
            for tenant in config.tenants
        },
        "deviceManagerDsn": device_access.device_manager_dsn,
        "readerPasswords": pulumi.Output.secret({slug: t.reader_password for slug, t in tenants.items()}),
        "ingestTokens": pulumi.Output.secret({slug: t.ingest_token for slug, t in tenants.items()}),
    }
    migrating = {slug: t.device_passwords for slug, t in tenants.items() if t.device_passwords}
    for index, tenant in enumerate(config.tenants):
        if tenant.devices:
            pulumi.log.warn(
                f"{NAMESPACE}:tenants[{index}].devices ({tenant.slug}): these devices are imported into the "
                "registry with the passwords they have; once this `pulumi up` has run, remove the key (`pulumi "
                f"config rm --path '{NAMESPACE}:tenants[{index}].devices'`, or edit Pulumi.<stack>.yaml) and manage "
                "devices with `python -m tools.devices`"
            )
    if migrating:
        # Only while tenants still list devices: the passwords those devices already hold.
        outputs["deviceCredentials"] = pulumi.Output.secret(migrating)
    return outputs


def main() -> None:
    """The program: validate the config (failing before any resource is registered), then build."""
    try:
        config = parse_stack_config(*read_raw_config())
    except ConfigError as error:
        # RunError ends the program with the message alone, without a trace.
        raise pulumi.RunError(str(error)) from None
    for name, value in build_stack(config, pulumi.get_project(), pulumi.get_stack()).items():
        pulumi.export(name, value)
