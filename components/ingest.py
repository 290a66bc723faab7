"""The bundled ingest service: its database identity, image and container."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker
import pulumi_postgresql as postgresql

from components import grants
from components.build_context import context_digest
from components.config import IngestConfig
from components.containers import SECRET_FILE_MODE, limits, stopping
from components.credentials import generated_password
from components.labels import container_labels
from components.providers.registry import TenantRegistry, TenantRegistryArgs

SERVICE_DIR = Path(__file__).resolve().parent.parent / "ingest_service"
CONTAINER_PORT = 8000
# EMQX's connector reaches the service under this name on the stack network.
NETWORK_ALIAS = "ingest"
WRITER_ROLE = "ingest_writer"
# The image's user and group (ingest_service/Dockerfile): the DSN file is theirs alone.
SERVICE_UID = "10001"
DATABASE_URL_FILE = "/run/secrets/database-url"
# The service answers what it already received before it exits on SIGTERM.
STOP_SIGNAL = "SIGTERM"
STOP_GRACE_SECONDS = 30


@dataclass(frozen=True)
class IngestDatabaseIdentity:
    """The service's side of the database, on any platform: its writer role and the tenant registry."""

    password: pulumi.Output[str]
    role: postgresql.Role
    registry: TenantRegistry
    # The writer's read access to the registry: the service may start once these exist.
    registry_access: list[pulumi.Resource]


def ingest_database_identity(
    parent: pulumi.Resource,
    resource_name: str,
    postgres_provider: postgresql.Provider,
    admin_dsn: pulumi.Input[str],
    database_name: str,
    database: pulumi.Resource,
) -> IngestDatabaseIdentity:
    """Create the writer role, the registry and the registry grants as children of ``parent``.

    Every platform's ingest component calls this, so the resources keep the names
    ``<resource_name>-writer-password`` etc. under whichever component runs the service.
    ``database`` is what must be up before the registry is created.
    """
    child = pulumi.ResourceOptions(parent=parent)
    writer_password = generated_password(f"{resource_name}-writer-password", length=32, opts=child)
    writer_role = postgresql.Role(
        f"{resource_name}-writer-role",
        name=WRITER_ROLE,
        login=True,
        password=writer_password.result,
        opts=pulumi.ResourceOptions(parent=parent, provider=postgres_provider),
    )
    # The registry the service reads tenants from, and the writer's read access to it.
    registry = TenantRegistry(
        f"{resource_name}-tenant-registry",
        TenantRegistryArgs(dsn=admin_dsn),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[database]),
    )
    registry_access = [
        getattr(postgresql, grants.pulumi_resource_type(grant))(
            f"{resource_name}-writer-registry-{'schema' if isinstance(grant, grants.SchemaGrant) else 'table'}",
            **grants.to_pulumi_args(grant, database=database_name),
            opts=pulumi.ResourceOptions(parent=parent, provider=postgres_provider, depends_on=[registry]),
        )
        for grant in grants.registry_grants(writer_role.name)
    ]
    return IngestDatabaseIdentity(writer_password.result, writer_role, registry, registry_access)


@dataclass(frozen=True)
class IngestServiceArgs:
    name_prefix: str
    network_name: pulumi.Input[str]
    database_host: str
    database_port: int
    database_name: str
    postgres_provider: postgresql.Provider
    # Superuser DSN (secret) for the dynamic providers that create the registry.
    admin_dsn: pulumi.Input[str]
    # The database container; the service must not start before it is healthy.
    database: pulumi.Resource
    config: IngestConfig
    labels: dict[str, str]
    # MAX_MESSAGE_AGE_SECONDS: at least the EMQX delivery window (delivery.accepted_message_age_seconds).
    max_message_age_seconds: int


class IngestService(pulumi.ComponentResource):
    """The service's writer role, its image built from ingest_service/, and its container."""

    writer_role: postgresql.Role
    registry: TenantRegistry
    container: docker.Container
    internal_url: str
    url: str

    def __init__(self, resource_name: str, args: IngestServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:ingest:IngestService", resource_name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        identity = ingest_database_identity(
            self, resource_name, args.postgres_provider, args.admin_dsn, args.database_name, args.database
        )
        writer_password, self.writer_role, self.registry = identity.password, identity.role, identity.registry
        registry_access = identity.registry_access

        image = docker.Image(
            f"{resource_name}-image",
            # Tagged with a digest of exactly the files Docker sends (.dockerignore applied).
            image_name=f"{args.name_prefix}-ingest:{context_digest(SERVICE_DIR)}",
            # Relative to the project folder (where Pulumi runs the program), so the
            # inputs do not change with the checkout's location.
            build=docker.DockerBuildArgs(context=SERVICE_DIR.name),  # its Dockerfile is the default
            skip_push=True,
            opts=child,
        )
        database_url = pulumi.Output.secret(
            pulumi.Output.format(
                "postgresql://{0}:{1}@{2}:{3}/{4}",
                WRITER_ROLE, writer_password, args.database_host, args.database_port, args.database_name,
            )
        )
        self.container = docker.Container(
            f"{resource_name}-container",
            name=f"{args.name_prefix}-ingest",
            image=image.image_name,
            restart="unless-stopped",
            # The DSN (with the writer's password) is a file, never an environment variable.
            envs=[
                f"DATABASE_URL_FILE={DATABASE_URL_FILE}", f"PORT={CONTAINER_PORT}", f"WORKERS={args.config.workers}",
                f"MAX_MESSAGE_AGE_SECONDS={args.max_message_age_seconds}",
            ],
            uploads=[
                docker.ContainerUploadArgs(
                    file=DATABASE_URL_FILE,
                    content=database_url,
                    permissions=SECRET_FILE_MODE,
                    owner=SERVICE_UID,
                    group=SERVICE_UID,
                )
            ],
            ports=[docker.ContainerPortArgs(internal=CONTAINER_PORT, external=args.config.host_port, ip="127.0.0.1")],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network_name, aliases=[NETWORK_ALIAS])],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=[
                    "CMD", "python", "-c",
                    f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}/healthz', timeout=3)",
                ],
                interval="5s", timeout="5s", retries=12, start_period="5s",
            ),
            wait=True,
            wait_timeout=120,
            labels=container_labels(args.labels),
            **stopping(STOP_SIGNAL, STOP_GRACE_SECONDS),
            **limits(args.config),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[args.database, self.writer_role, *registry_access],
                replace_on_changes=["healthcheck"],
            ),
        )
        self.internal_url = f"http://{NETWORK_ALIAS}:{CONTAINER_PORT}"
        self.url = f"http://127.0.0.1:{args.config.host_port}"
        self.writer_password = writer_password
        self.register_outputs({"url": self.url, "containerName": self.container.name})
