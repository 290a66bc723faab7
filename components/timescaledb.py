"""TimescaleDB: the database container, its volume, superuser, extension version and Pulumi provider."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker
import pulumi_postgresql as postgresql

from components.config import TimescaleDbConfig
from components.containers import SECRET_FILE_MODE, limits, stopping
from components.credentials import generated_password
from components.labels import container_labels, volume_labels
from components.providers.extension import TimescaleExtension, TimescaleExtensionArgs, version_from_image

DATABASE_NAME = "telemetry"
SUPERUSER = "postgres"
CONTAINER_PORT = 5432
# Other containers reach the database under this name on the stack network.
NETWORK_ALIAS = "timescaledb"
PASSWORD_FILE = "/run/secrets/postgres-password"
ENTRYPOINT_FILE = "/usr/local/bin/telemetry-entrypoint.sh"
ENTRYPOINT_SCRIPT = Path(__file__).resolve().parent / "entrypoints" / "timescaledb.sh"
# PostgreSQL's "fast" shutdown (SIGINT, the image's STOPSIGNAL) rolls back open transactions and
# writes a checkpoint; give it time before Docker kills it, so a replacement is a clean stop.
STOP_SIGNAL = "SIGINT"
STOP_GRACE_SECONDS = 120
# Over TCP, as the clients connect: on a fresh volume the official entrypoint first runs a
# socket-only server for initialisation, which a socket check would report as ready.
HEALTH_CHECK = ["CMD", "pg_isready", "-h", "127.0.0.1", "-p", str(CONTAINER_PORT), "-U", SUPERUSER, "-d", DATABASE_NAME]

# Each tenant owns up to two policy jobs (retention, compression), and every
# running job holds a background worker; the default of 16 starves beyond
# ~100 tenants (timescale/timescaledb#3484).  Workers grow in steps of
# TENANTS_PER_WORKER_STEP tenants so that adding one tenant does not change
# the container's command (which would replace the container).
TENANTS_PER_WORKER_STEP = 25
WORKERS_PER_STEP = 8
BASE_BACKGROUND_WORKERS = 16
MAX_PARALLEL_WORKERS = 8


def background_workers(tenant_count: int) -> int:
    steps = math.ceil(max(tenant_count, 1) / TENANTS_PER_WORKER_STEP)
    return BASE_BACKGROUND_WORKERS + WORKERS_PER_STEP * steps


def worker_processes(tenant_count: int) -> int:
    # TimescaleDB's sizing rule: its background workers, the parallel query
    # workers, and one launcher plus headroom for the scheduler per database.
    return background_workers(tenant_count) + MAX_PARALLEL_WORKERS + 3


@dataclass(frozen=True)
class TimescaleDbArgs:
    name_prefix: str
    network_name: pulumi.Input[str]
    config: TimescaleDbConfig
    tenant_count: int
    labels: dict[str, str]


class TimescaleDb(pulumi.ComponentResource):
    """The TimescaleDB container (data on a protected volume) and a provider for objects inside it."""

    container: docker.Container
    extension: TimescaleExtension
    provider: postgresql.Provider
    superuser_password: pulumi.Output[str]
    admin_dsn: pulumi.Output[str]
    host_port: int
    internal_host: str = NETWORK_ALIAS
    internal_port: int = CONTAINER_PORT
    database_name: str = DATABASE_NAME

    def __init__(self, resource_name: str, args: TimescaleDbArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:timescaledb:TimescaleDb", resource_name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        config = args.config
        self.host_port = config.host_port

        password = generated_password(f"{resource_name}-superuser-password", length=32, opts=child)
        image = docker.RemoteImage(f"{resource_name}-image", name=config.image, keep_locally=True, opts=child)
        # The data outlives the container: protected against `pulumi destroy`,
        # and kept by Docker even if the protection is lifted by mistake.
        volume = docker.Volume(
            f"{resource_name}-data",
            name=f"{args.name_prefix}-timescaledb-data",
            labels=volume_labels(args.labels),
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        self.container = docker.Container(
            f"{resource_name}-container",
            name=f"{args.name_prefix}-timescaledb",
            image=image.image_id,
            restart="unless-stopped",
            envs=[f"POSTGRES_DB={DATABASE_NAME}", f"POSTGRES_USER={SUPERUSER}", f"POSTGRES_PASSWORD_FILE={PASSWORD_FILE}"],
            # The password travels as a file, so it never shows in `docker inspect`. Only root
            # reads it: the entrypoint does, before it steps down to the postgres user.
            uploads=[
                docker.ContainerUploadArgs(
                    file=PASSWORD_FILE, content=password.result, permissions=SECRET_FILE_MODE, owner="0", group="0"
                ),
                docker.ContainerUploadArgs(
                    file=ENTRYPOINT_FILE, content=ENTRYPOINT_SCRIPT.read_text(), permissions="0755"
                ),
            ],
            # Sets the superuser password from the file on a kept volume too (see the script).
            entrypoints=[ENTRYPOINT_FILE],
            command=[
                "postgres",
                "-c", f"timescaledb.max_background_workers={background_workers(args.tenant_count)}",
                "-c", f"max_worker_processes={worker_processes(args.tenant_count)}",
                "-c", f"max_parallel_workers={MAX_PARALLEL_WORKERS}",
            ],
            shm_size=config.shm_size_mb,
            ports=[docker.ContainerPortArgs(internal=CONTAINER_PORT, external=config.host_port, ip="127.0.0.1")],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path="/var/lib/postgresql/data")],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network_name, aliases=[NETWORK_ALIAS])],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=HEALTH_CHECK, interval="5s", timeout="5s", retries=24, start_period="10s",
            ),
            wait=True,
            wait_timeout=300,
            labels=container_labels(args.labels),
            **stopping(STOP_SIGNAL, STOP_GRACE_SECONDS),
            **limits(config),
            opts=pulumi.ResourceOptions(parent=self, replace_on_changes=["healthcheck"]),
        )
        self.superuser_password = password.result
        # Used by the dynamic providers, which run on the Pulumi host.
        self.admin_dsn = pulumi.Output.secret(
            pulumi.Output.format(
                "postgresql://{0}:{1}@127.0.0.1:{2}/{3}", SUPERUSER, password.result, config.host_port, DATABASE_NAME
            )
        )
        # An image bump upgrades the extension in every database (and the preview shows it).
        # It also waits, with bounded retries, until the server accepts TCP connections.
        self.extension = TimescaleExtension(
            f"{resource_name}-extension",
            TimescaleExtensionArgs(
                dsn=self.admin_dsn, image=config.image, version=version_from_image(config.image), ready_timeout=300
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.container]),
        )
        self.provider = postgresql.Provider(
            f"{resource_name}-provider",
            host="127.0.0.1",
            port=config.host_port,
            database=DATABASE_NAME,
            username=SUPERUSER,
            password=password.result,
            sslmode="disable",
            superuser=True,
            # pulumi-postgresql does not retry a refused connection: its resources start only
            # once the extension resource has connected (it retries) and brought the extension
            # to the image's version.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.container, self.extension]),
        )
        self.register_outputs(
            {
                "containerName": self.container.name,
                "hostPort": config.host_port,
                "superuserPassword": self.superuser_password,
                "extensionVersions": self.extension.installed,
            }
        )
