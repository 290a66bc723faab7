"""Builds the whole stack from its validated config; __main__ only calls this."""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.runtime.config import CONFIG, get_config_env

from components.config import NAMESPACE, ConfigError, StackConfig, parse_stack_config
from components.emqx import Emqx, EmqxArgs
from components.ingest import IngestService, IngestServiceArgs
from components.labels import stack_labels
from components.network import Network, NetworkArgs
from components.tenant import Tenant, TenantArgs
from components.timescaledb import TimescaleDb, TimescaleDbArgs


def read_raw_config() -> dict[str, Any]:
    """Every ``telemetry:*`` value of the stack config, objects decoded from their JSON form."""
    raw: dict[str, Any] = {}
    for full_key in {*CONFIG.get(), *get_config_env()}:
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        value = pulumi.runtime.get_config(full_key)
        try:
            raw[key] = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            raw[key] = value
    return raw


def build_stack(config: StackConfig, project: str, stack: str) -> dict[str, Any]:
    """Declare every resource of the stack; returns the stack outputs."""
    name_prefix = f"{project}-{stack}"
    labels = stack_labels(project, stack)

    network = Network("network", NetworkArgs(name=name_prefix, labels=labels))
    database = TimescaleDb(
        "timescaledb",
        TimescaleDbArgs(
            name_prefix=name_prefix,
            network_name=network.name,
            image=config.timescaledb.image,
            host_port=config.timescaledb.host_port,
            tenant_count=len(config.tenants),
            labels=labels,
        ),
    )
    ingest = IngestService(
        "ingest",
        IngestServiceArgs(
            name_prefix=name_prefix,
            network_name=network.name,
            database_host=database.internal_host,
            database_port=database.internal_port,
            database_name=database.database_name,
            postgres_provider=database.provider,
            admin_dsn=database.admin_dsn,
            database=database.container,
            host_port=config.ingest.host_port,
            workers=config.ingest.workers,
            labels=labels,
        ),
    )
    emqx = Emqx(
        "emqx",
        EmqxArgs(
            name_prefix=name_prefix,
            network_name=network.name,
            image=config.emqx.image,
            mqtt_port=config.emqx.mqtt_port,
            dashboard_port=config.emqx.dashboard_port,
            ingest_url=ingest.internal_url,
            ingest=ingest.container,
            labels=labels,
        ),
    )
    tenants = {
        tenant.slug: Tenant(
            f"tenant-{tenant.slug}",
            TenantArgs(tenant=tenant, database=database, ingest=ingest, emqx=emqx),
        )
        for tenant in config.tenants
    }

    return {
        "mqttEndpoint": f"mqtt://127.0.0.1:{config.emqx.mqtt_port}",
        "dashboardUrl": emqx.api_url,
        "ingestUrl": ingest.url,
        "databaseEndpoint": f"postgresql://127.0.0.1:{config.timescaledb.host_port}/{database.database_name}",
        "tenants": {
            tenant.slug: {
                "topicPrefix": tenant.topic_prefix,
                "schema": tenant.schema_name,
                "devices": list(tenant.devices),
                "readerRole": tenant.reader_role,
            }
            for tenant in config.tenants
        },
        "deviceCredentials": pulumi.Output.secret({slug: t.device_passwords for slug, t in tenants.items()}),
        "readerPasswords": pulumi.Output.secret({slug: t.reader_password for slug, t in tenants.items()}),
        "ingestTokens": pulumi.Output.secret({slug: t.ingest_token for slug, t in tenants.items()}),
        "databaseSuperuserPassword": pulumi.Output.secret(database.superuser_password),
        "ingestWriterPassword": pulumi.Output.secret(ingest.writer_password),
        "emqxApiKey": pulumi.Output.secret(emqx.api_key),
        "emqxApiSecret": pulumi.Output.secret(emqx.api_secret),
        "emqxDashboardPassword": pulumi.Output.secret(emqx.dashboard_password),
    }


def main() -> None:
    """The program: validate the config (failing before any resource is registered), then build."""
    try:
        config = parse_stack_config(read_raw_config())
    except ConfigError as error:
        # RunError ends the program with the message alone, without a trace.
        raise pulumi.RunError(str(error)) from None
    for name, value in build_stack(config, pulumi.get_project(), pulumi.get_stack()).items():
        pulumi.export(name, value)
