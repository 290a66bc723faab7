"""The Kubernetes platform: TimescaleDB by CloudNativePG, EMQX by the EMQX Operator, the ingest service
as an autoscaled Deployment, and network policies; the database and the broker may each be external.

Top-level component names match the Docker platform's (`timescaledb`, `ingest`, `emqx`), so the
tenant layer's resources are named alike on both; their types differ, so a stack never moves
between platforms by accident (a platform change is a new stack).
"""

from __future__ import annotations

import dataclasses

import pulumi

from components.config import StackConfig
from components.platform import DeviceDatabase, PlatformBuild, emqx_ssl_for, tenant_platform
from components.platforms.cloudnative_pg import (
    CLUSTER_NAME,
    SSLMODE,
    SUPERUSER,
    TimescaleDbCluster,
    TimescaleDbClusterArgs,
)
from components.platforms.emqx_cluster import EMQX_NAME, EmqxCluster, EmqxClusterArgs
from components.platforms.external_broker import ExternalBroker, ExternalBrokerArgs
from components.platforms.external_database import ExternalDatabase, ExternalDatabaseArgs
from components.platforms.ingest_deployment import IngestDeployment, IngestDeploymentArgs
from components.platforms.kubernetes_target import (
    KubernetesTarget,
    KubernetesTargetArgs,
    database_pod_labels,
    emqx_pod_labels,
    stack_labels,
)
from components.platforms.network_policies import NetworkPolicies, NetworkPoliciesArgs
from components.platforms.operators import CNPG_NAMESPACE, CNPG_OPERATOR_POD_LABELS, Operators, OperatorsArgs
from components.providers.emqx.delivery import accepted_message_age_seconds


def build_kubernetes_platform(config: StackConfig, project: str, stack: str) -> PlatformBuild:
    settings = config.kubernetes
    labels = stack_labels(project, stack)
    external_database, external_broker = config.timescaledb.external, config.emqx.external

    target = KubernetesTarget(
        "kubernetes", KubernetesTargetArgs(namespace=settings.namespace, context=settings.context, labels=labels)
    )
    operators = Operators(
        "operators",
        OperatorsArgs(
            target=target,
            install=settings.operators.install,
            cloudnative_pg=external_database is None,
            emqx_operator=external_broker is None,
            context=settings.context,
        ),
    )

    outputs: dict = {"namespace": settings.namespace}
    if external_database is not None:
        database = ExternalDatabase("timescaledb", ExternalDatabaseArgs(endpoint=external_database))
        table_owner, sslmode, database_ready = database.table_owner, database.sslmode, database
        outputs["databaseEndpoint"] = database.admin_endpoint
        device_database = DeviceDatabase.external(external_database)
    else:
        database = TimescaleDbCluster(
            "timescaledb",
            TimescaleDbClusterArgs(
                target=target,
                settings=settings.timescaledb,
                tenant_count=len(config.tenants),
                admin_source_ranges=settings.admin_source_ranges,
                labels=labels,
                operator=operators.ready,
            ),
        )
        table_owner, sslmode, database_ready = SUPERUSER, SSLMODE, database.cluster
        outputs["databaseEndpoint"] = database.admin_endpoint
        outputs["databaseSuperuserPassword"] = pulumi.Output.secret(database.superuser_password)
        # EMQX reaches the primary through the `-rw` Service (the NetworkPolicy admits it); the
        # operator where Pulumi does. CloudNativePG serves TLS with its own CA: encrypted, unverified.
        device_database = DeviceDatabase(
            emqx_server=f"{database.internal_host}:{database.internal_port}",
            emqx_ssl=emqx_ssl_for(SSLMODE, database.internal_host),
            operator_host=database.admin_host, operator_port=database.admin_port, operator_sslmode=SSLMODE,
        )

    ingest = IngestDeployment(
        "ingest",
        IngestDeploymentArgs(
            target=target,
            settings=settings.ingest,
            workers=config.ingest.workers,
            database_host=database.internal_host,
            database_port=database.internal_port,
            database_name=database.database_name,
            database_sslmode=sslmode,
            postgres_provider=database.provider,
            admin_dsn=database.admin_dsn,
            database=database_ready,
            labels=labels,
            external_broker_ranges=external_broker.source_ranges if external_broker else [],
            max_message_age_seconds=accepted_message_age_seconds(config.emqx.delivery_window),
        ),
    )
    outputs["ingestUrl"] = ingest.internal_url
    outputs["ingestWriterPassword"] = pulumi.Output.secret(ingest.writer_password)

    broker_ready: list[pulumi.Resource] = []
    if external_broker is not None:
        broker = ExternalBroker("emqx", ExternalBrokerArgs(endpoint=external_broker, ingest=ingest.deployment))
        outputs["dashboardUrl"] = broker.api_url
        if external_broker.database_server is not None:  # config validation requires it for this database
            device_database = dataclasses.replace(device_database, emqx_server=external_broker.database_server)
    else:
        broker = EmqxCluster(
            "emqx",
            EmqxClusterArgs(
                target=target,
                image=config.emqx.image,
                settings=settings.emqx,
                admin_source_ranges=settings.admin_source_ranges,
                labels=labels,
                ingest_url=ingest.internal_url,
                ingest=ingest.deployment,
                operator=operators.ready,
            ),
        )
        broker_ready = [broker.api_ready]
        outputs.update({
            "dashboardUrl": broker.api_url,
            "mqttService": f"{settings.namespace}/{EMQX_NAME}-listeners",
            "emqxApiKey": pulumi.Output.secret(broker.api_key),
            "emqxApiSecret": pulumi.Output.secret(broker.api_secret),
            "emqxDashboardPassword": pulumi.Output.secret(broker.dashboard_password),
        })

    NetworkPolicies(
        "network-policies",
        NetworkPoliciesArgs(
            target=target,
            labels=labels,
            emqx_pod_labels=None if external_broker else emqx_pod_labels(EMQX_NAME),
            emqx_source_ranges=external_broker.source_ranges if external_broker else [],
            database_pod_labels=None if external_database else database_pod_labels(CLUSTER_NAME),
            operator_namespace=CNPG_NAMESPACE,
            operator_pod_labels=CNPG_OPERATOR_POD_LABELS,
            admin_source_ranges=(
                settings.admin_source_ranges
                if external_database is None and settings.timescaledb.admin_host is None else []
            ),
        ),
    )

    platform = tenant_platform(database, table_owner, ingest, broker, config.emqx.delivery_window)
    return PlatformBuild(tenant_platform=platform, device_database=device_database,
                         broker_ready=broker_ready, outputs=outputs)
