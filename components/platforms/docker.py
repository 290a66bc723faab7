"""The single-host platform: one Docker network with TimescaleDB, the ingest service and EMQX.

The components keep the resource names they had before platforms existed (`network`,
`timescaledb`, `ingest`, `emqx`, all at the top of the stack), so stacks deployed then see no
change from the platform seam.
"""

from __future__ import annotations

import pulumi

from components.config import StackConfig
from components.emqx import Emqx, EmqxArgs
from components.ingest import IngestService, IngestServiceArgs
from components.labels import stack_labels
from components.network import Network, NetworkArgs
from components.platform import PlatformBuild, TenantBroker, TenantDatabase, TenantIngest, TenantPlatform
from components.timescaledb import SUPERUSER, TimescaleDb, TimescaleDbArgs


def build_docker_platform(config: StackConfig, project: str, stack: str) -> PlatformBuild:
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
            delivery_window=config.emqx.delivery_window,
        ),
    )
    tenant_platform = TenantPlatform(
        database=TenantDatabase(
            admin_dsn=database.admin_dsn,
            provider=database.provider,
            database_name=database.database_name,
            table_owner=SUPERUSER,
        ),
        ingest=TenantIngest(writer_role_name=ingest.writer_role.name, registry=ingest.registry),
        broker=TenantBroker(
            connection=emqx.connection,
            connector_name=emqx.connector.name,
            authenticator=emqx.authenticator,
            authorization=emqx.authorization,
            action_delivery=emqx.action_delivery,
        ),
    )
    return PlatformBuild(
        tenant_platform=tenant_platform,
        outputs={
            "mqttEndpoint": f"mqtt://127.0.0.1:{config.emqx.mqtt_port}",
            "dashboardUrl": emqx.api_url,
            "ingestUrl": ingest.url,
            "databaseEndpoint": f"postgresql://127.0.0.1:{config.timescaledb.host_port}/{database.database_name}",
            "databaseSuperuserPassword": pulumi.Output.secret(database.superuser_password),
            "ingestWriterPassword": pulumi.Output.secret(ingest.writer_password),
            "emqxApiKey": pulumi.Output.secret(emqx.api_key),
            "emqxApiSecret": pulumi.Output.secret(emqx.api_secret),
            "emqxDashboardPassword": pulumi.Output.secret(emqx.dashboard_password),
        },
    )
