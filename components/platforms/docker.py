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
            config=config.timescaledb,
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
            config=config.ingest,
            labels=labels,
        ),
    )
    emqx = Emqx(
        "emqx",
        EmqxArgs(
            name_prefix=name_prefix,
            network_name=network.name,
            config=config.emqx,
            mqtt_tls=config.mqtt_tls,
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
            # Absent when the plain listener is off: devices then have only the TLS endpoint.
            **({"mqttEndpoint": f"mqtt://127.0.0.1:{config.emqx.mqtt_port}"} if config.emqx.plain_listener else {}),
            "mqttTlsEndpoint": f"mqtts://127.0.0.1:{config.emqx.mqtt_tls_port}",
            # The CA devices verify the broker's TLS certificate with (public; None for your own
            # certificate without a CA in telemetry:mqttTls).
            "mqttCaCertificate": emqx.certificate.ca_certificate_pem,
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
