"""The single-host platform: one Docker network with TimescaleDB, the ingest service and EMQX.

The components keep the resource names they had before platforms existed (`network`,
`timescaledb`, `ingest`, `emqx`, all at the top of the stack), so stacks deployed then see no
change from the platform seam. With `telemetry:timescaledb.external` or `telemetry:emqx.external`
the endpoint replaces the container (the ingest container still runs here; an external EMQX must
reach it at `emqx.external.ingestUrl`, e.g. through a tunnel or reverse proxy, since the
container publishes its port on 127.0.0.1 only; likewise the database, which EMQX queries to
authenticate devices, at `emqx.external.databaseServer`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi

from components.config import StackConfig
from components.emqx import Emqx, EmqxArgs
from components.ingest import IngestService, IngestServiceArgs
from components.labels import stack_labels
from components.network import Network, NetworkArgs
from components.platform import DeviceDatabase, PlatformBuild, tenant_platform
from components.platforms.external_broker import ExternalBroker, ExternalBrokerArgs
from components.platforms.external_database import ExternalDatabase, ExternalDatabaseArgs
from components.providers.emqx.delivery import accepted_message_age_seconds
from components.timescaledb import SUPERUSER, TimescaleDb, TimescaleDbArgs


def build_docker_platform(config: StackConfig, project: str, stack: str) -> PlatformBuild:
    name_prefix = f"{project}-{stack}"
    labels = stack_labels(project, stack)
    external_database, external_broker = config.timescaledb.external, config.emqx.external
    outputs: dict[str, Any] = {}

    network = Network("network", NetworkArgs(name=name_prefix, labels=labels))
    if external_database is not None:
        database = ExternalDatabase("timescaledb", ExternalDatabaseArgs(endpoint=external_database))
        database_host, database_port, database_ready = database.internal_host, database.internal_port, database
        table_owner = database.table_owner
        outputs["databaseEndpoint"] = database.admin_endpoint
        # EMQX (in its container, or external) and the operator reach the same managed endpoint.
        device_database = DeviceDatabase.external(external_database)
    else:
        database = TimescaleDb(
            "timescaledb",
            TimescaleDbArgs(
                name_prefix=name_prefix,
                network_name=network.name,
                config=config.timescaledb,
                tenant_count=len(config.tenants),
                labels=labels,
            ),
        )
        database_host, database_port, database_ready = database.internal_host, database.internal_port, database.container
        table_owner = SUPERUSER
        # EMQX reaches it on the stack network; the operator through the host port on 127.0.0.1.
        device_database = DeviceDatabase(
            emqx_server=f"{database.internal_host}:{database.internal_port}", emqx_ssl={"enable": False},
            operator_host="127.0.0.1", operator_port=config.timescaledb.host_port, operator_sslmode="prefer",
        )
    ingest = IngestService(
        "ingest",
        IngestServiceArgs(
            name_prefix=name_prefix,
            network_name=network.name,
            database_host=database_host,
            database_port=database_port,
            database_name=database.database_name,
            postgres_provider=database.provider,
            admin_dsn=database.admin_dsn,
            database=database_ready,
            config=config.ingest,
            labels=labels,
            max_message_age_seconds=accepted_message_age_seconds(config.emqx.delivery_window),
        ),
    )
    broker_ready: list[pulumi.Resource] = []
    if external_broker is not None:
        broker = ExternalBroker("emqx", ExternalBrokerArgs(endpoint=external_broker, ingest=ingest.container))
        if external_broker.database_server is not None:  # config validation requires it for this database
            device_database = dataclasses.replace(device_database, emqx_server=external_broker.database_server)
    else:
        broker = Emqx(
            "emqx",
            EmqxArgs(
                name_prefix=name_prefix,
                network_name=network.name,
                config=config.emqx,
                mqtt_tls=config.mqtt_tls,
                ingest_url=ingest.internal_url,
                ingest=ingest.container,
                labels=labels,
            ),
        )
        broker_ready = [broker.container]
    platform = tenant_platform(database, table_owner, ingest, broker, config.emqx.delivery_window)
    outputs.update({"dashboardUrl": broker.api_url, "ingestUrl": ingest.url})
    outputs["ingestWriterPassword"] = pulumi.Output.secret(ingest.writer_password)
    if isinstance(database, TimescaleDb):
        outputs["databaseEndpoint"] = (
            f"postgresql://127.0.0.1:{config.timescaledb.host_port}/{database.database_name}"
        )
        outputs["databaseSuperuserPassword"] = pulumi.Output.secret(database.superuser_password)
    if isinstance(broker, Emqx):
        outputs.update({
            # Absent when the plain listener is off: devices then have only the TLS endpoint.
            **({"mqttEndpoint": f"mqtt://127.0.0.1:{config.emqx.mqtt_port}"} if config.emqx.plain_listener else {}),
            "mqttTlsEndpoint": f"mqtts://127.0.0.1:{config.emqx.mqtt_tls_port}",
            # The CA devices verify the broker's TLS certificate with (public; None for your own
            # certificate without a CA in telemetry:mqttTls).
            "mqttCaCertificate": broker.certificate.ca_certificate_pem,
            "emqxApiKey": pulumi.Output.secret(broker.api_key),
            "emqxApiSecret": pulumi.Output.secret(broker.api_secret),
            "emqxDashboardPassword": pulumi.Output.secret(broker.dashboard_password),
        })
    return PlatformBuild(tenant_platform=platform, device_database=device_database,
                         broker_ready=broker_ready, outputs=outputs)
