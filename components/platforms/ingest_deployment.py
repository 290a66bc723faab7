"""The ingest service on Kubernetes: Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget.

The service reads its DSN from a file (`DATABASE_URL_FILE`) mounted from a Kubernetes Secret, so
the writer's password is in no pod spec and no environment. Readiness is `/readyz` (database
reachable: a pod without its database leaves the Service), liveness is `/healthz` (process up: a
database outage does not restart every pod at once).

The image is either a pinned reference from config, or built from ingest_service/ and pushed to
the configured registry (Docker on the machine that runs Pulumi, logged in to that registry); the
pushed image is referenced by digest, so a rebuild with the same tag still rolls the pods.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s
import pulumi_postgresql as postgresql

from components.build_context import context_digest
from components.config import KubernetesIngestConfig
from components.ingest import CONTAINER_PORT, SERVICE_DIR, WRITER_ROLE, ingest_database_identity
from components.platforms.kubernetes_target import INGEST_POD_LABELS, KubernetesTarget
from components.providers.registry import TenantRegistry

SERVICE_NAME = "ingest"
DATABASE_SECRET = "ingest-database"
SECRET_DIR = "/var/run/secrets/telemetry"
# The image's unprivileged user (ingest_service/Dockerfile).
RUN_AS_USER = 10001


@dataclass(frozen=True)
class IngestDeploymentArgs:
    target: KubernetesTarget
    settings: KubernetesIngestConfig
    workers: int
    # How the pods reach the database (in-cluster Service or external host) and how the
    # tenant layer reaches it (admin DSN + provider).
    database_host: pulumi.Input[str]
    database_port: int
    database_name: str
    database_sslmode: str
    postgres_provider: postgresql.Provider
    admin_dsn: pulumi.Input[str]
    database: pulumi.Resource
    labels: dict[str, str]
    # Set when the broker runs outside the cluster: the Service becomes a LoadBalancer open to these ranges.
    external_broker_ranges: list[str]
    # MAX_MESSAGE_AGE_SECONDS: at least the EMQX delivery window (delivery.accepted_message_age_seconds).
    max_message_age_seconds: int


def pod_spec(image: pulumi.Input[str], settings: KubernetesIngestConfig, workers: int, max_message_age_seconds: int) -> dict:
    probe_defaults = {"periodSeconds": 5, "timeoutSeconds": 3}
    return {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "seccompProfile": {"type": "RuntimeDefault"}},
        # Spread the replicas over nodes, so a node drain never takes them all.
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": INGEST_POD_LABELS},
        }],
        "containers": [{
            "name": "ingest",
            "image": image,
            "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
            "env": [
                {"name": "DATABASE_URL_FILE", "value": f"{SECRET_DIR}/database-url"},
                {"name": "PORT", "value": str(CONTAINER_PORT)},
                {"name": "WORKERS", "value": str(workers)},
                {"name": "MAX_MESSAGE_AGE_SECONDS", "value": str(max_message_age_seconds)},
            ],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "failureThreshold": 2, **probe_defaults},
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": "http"}, "failureThreshold": 6, "initialDelaySeconds": 10,
                **probe_defaults,
            },
            "resources": {
                "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
                "limits": {"memory": settings.memory_limit},
            },
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [
                {"name": "database", "mountPath": SECRET_DIR, "readOnly": True},
                # PROMETHEUS_MULTIPROC_DIR lives under /tmp; the root filesystem is read-only.
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }],
        "volumes": [
            {"name": "database", "secret": {"secretName": DATABASE_SECRET, "defaultMode": 0o440}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ],
    }


class IngestDeployment(pulumi.ComponentResource):
    """The service's writer role and registry, its Secret, and its Deployment, Service, HPA and PDB."""

    writer_role: postgresql.Role
    registry: TenantRegistry
    writer_password: pulumi.Output[str]
    deployment: k8s.apps.v1.Deployment
    internal_url: str
    service_type: str

    def __init__(self, resource_name: str, args: IngestDeploymentArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:kubernetes:IngestDeployment", resource_name, None, opts)
        target, settings, namespace = args.target, args.settings, args.target.namespace_name
        identity = ingest_database_identity(
            self, resource_name, args.postgres_provider, args.admin_dsn, args.database_name, args.database
        )
        self.writer_role, self.registry, self.writer_password = identity.role, identity.registry, identity.password

        if settings.image is not None:
            image: pulumi.Input[str] = settings.image
        else:
            built = docker.Image(
                f"{resource_name}-image",
                image_name=f"{settings.registry}/telemetry-ingest:{context_digest(SERVICE_DIR)}",
                build=docker.DockerBuildArgs(context=SERVICE_DIR.name, platform="linux/amd64"),
                skip_push=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            image = built.repo_digest

        database_url = pulumi.Output.secret(pulumi.Output.format(
            "postgresql://{0}:{1}@{2}:{3}/{4}?sslmode={5}",
            WRITER_ROLE, identity.password, args.database_host, args.database_port, args.database_name,
            args.database_sslmode,
        ))
        secret = k8s.core.v1.Secret(
            f"{resource_name}-database-secret",
            metadata={"name": DATABASE_SECRET, "namespace": namespace, "labels": args.labels},
            type="Opaque",
            string_data={"database-url": database_url},
            opts=target.options(self),
        )
        labels = {**args.labels, **INGEST_POD_LABELS}
        self.deployment = k8s.apps.v1.Deployment(
            f"{resource_name}-deployment",
            metadata={"name": SERVICE_NAME, "namespace": namespace, "labels": labels},
            spec={
                # The autoscaler owns the count after creation (ignore_changes below).
                "replicas": settings.replicas,
                "selector": {"matchLabels": INGEST_POD_LABELS},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec(
                    image, settings, args.workers, args.max_message_age_seconds)},
            },
            opts=target.options(
                self, secret, identity.role, *identity.registry_access, args.database, ignore_changes=["spec.replicas"]
            ),
        )
        service_spec: dict = {
            "type": "ClusterIP",
            "selector": INGEST_POD_LABELS,
            "ports": [{"name": "http", "port": CONTAINER_PORT, "targetPort": "http", "protocol": "TCP"}],
        }
        if args.external_broker_ranges:
            # An EMQX outside the cluster must reach the service: a LoadBalancer open to it only.
            service_spec.update(
                type="LoadBalancer", loadBalancerSourceRanges=args.external_broker_ranges, externalTrafficPolicy="Local"
            )
        self.service_type = service_spec["type"]
        k8s.core.v1.Service(
            f"{resource_name}-service",
            metadata={"name": SERVICE_NAME, "namespace": namespace, "labels": labels},
            spec=service_spec,
            opts=target.options(self, self.deployment),
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{resource_name}-autoscaler",
            metadata={"name": SERVICE_NAME, "namespace": namespace, "labels": labels},
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": SERVICE_NAME},
                "minReplicas": settings.replicas,
                "maxReplicas": settings.max_replicas,
                "metrics": [{"type": "Resource", "resource": {
                    "name": "cpu", "target": {"type": "Utilization", "averageUtilization": settings.target_cpu_utilization},
                }}],
            },
            opts=target.options(self, self.deployment),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{resource_name}-disruption-budget",
            metadata={"name": SERVICE_NAME, "namespace": namespace, "labels": labels},
            spec={"maxUnavailable": 1, "selector": {"matchLabels": INGEST_POD_LABELS}},
            opts=target.options(self, self.deployment),
        )
        self.internal_url = f"http://{SERVICE_NAME}.{namespace}.svc:{CONTAINER_PORT}"
        self.register_outputs({"service": SERVICE_NAME, "internalUrl": self.internal_url})
