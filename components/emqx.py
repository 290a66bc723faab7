"""EMQX: the broker container, its API credentials, and the stack-wide broker objects."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.labels import container_labels, volume_labels
from components.providers.emqx import (
    EmqxAuthenticator,
    EmqxAuthenticatorArgs,
    EmqxAuthorization,
    EmqxAuthorizationArgs,
    EmqxConnection,
    EmqxConnector,
    EmqxConnectorArgs,
)

MQTT_PORT = 1883
DASHBOARD_PORT = 18083
# A stable node name keeps the Mnesia data (users, ACLs, API keys) on the
# volume usable across container replacements; the default embeds the IP.
NODE_NAME = "emqx@127.0.0.1"
API_KEY_FILE = "/opt/emqx/etc/telemetry-api-keys.txt"
# /status answers 200 only once the listeners and the emqx application run.
# The image has bash but no curl, hence /dev/tcp.
STATUS_CHECK = (
    f"exec 3<>/dev/tcp/127.0.0.1/{DASHBOARD_PORT} && "
    "printf 'GET /status HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"
)


def stack_broker_objects(
    parent: pulumi.Resource,
    resource_name: str,
    connection: EmqxConnection,
    ingest_url: pulumi.Input[str],
    broker: pulumi.Resource | None,
    ingest: pulumi.Resource,
) -> tuple[EmqxAuthenticator, EmqxAuthorization, EmqxConnector]:
    """The stack-wide EMQX objects, as children of ``parent``, on any platform.

    ``broker`` is what must be up before EMQX answers its API (its container, its cluster;
    None for an external EMQX that is already up); ``ingest`` is what must be up before the
    connector points at it.
    """
    running = [broker] if broker is not None else []
    after_broker = pulumi.ResourceOptions(parent=parent, depends_on=running)
    authenticator = EmqxAuthenticator(
        f"{resource_name}-authenticator", EmqxAuthenticatorArgs(connection=connection), opts=after_broker
    )
    # Deny by default: no_match deny, and the shipped `file` source (which
    # ends with {allow, all}) disabled.
    authorization = EmqxAuthorization(
        f"{resource_name}-authorization", EmqxAuthorizationArgs(connection=connection), opts=after_broker
    )
    connector = EmqxConnector(
        f"{resource_name}-ingest-connector",
        EmqxConnectorArgs(connection=connection, name="ingest", url=ingest_url),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[*running, ingest]),
    )
    return authenticator, authorization, connector


@dataclass(frozen=True)
class EmqxArgs:
    name_prefix: str
    network_name: pulumi.Input[str]
    image: str
    mqtt_port: int
    dashboard_port: int
    # The HTTP connector's target, e.g. http://ingest:8000.
    ingest_url: str
    # The ingest container: the connector is created once the service is up.
    ingest: pulumi.Resource
    labels: dict[str, str]


class Emqx(pulumi.ComponentResource):
    """The EMQX container with a bootstrapped API key, deny-by-default auth, and the connector to the ingest service."""

    container: docker.Container
    connection: EmqxConnection
    authenticator: EmqxAuthenticator
    authorization: EmqxAuthorization
    connector: EmqxConnector
    api_url: str
    api_key: pulumi.Output[str]
    api_secret: pulumi.Output[str]
    dashboard_password: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:emqx:Emqx", resource_name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        api_key = random.RandomPassword(f"{resource_name}-api-key", length=24, special=False, opts=child)
        api_secret = random.RandomPassword(f"{resource_name}-api-secret", length=48, special=False, opts=child)
        dashboard_password = random.RandomPassword(
            f"{resource_name}-dashboard-password", length=24, special=False, opts=child
        )
        image = docker.RemoteImage(f"{resource_name}-image", name=args.image, keep_locally=True, opts=child)
        volume = docker.Volume(
            f"{resource_name}-data",
            name=f"{args.name_prefix}-emqx-data",
            labels=volume_labels(args.labels),
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        self.container = docker.Container(
            f"{resource_name}-container",
            name=f"{args.name_prefix}-emqx",
            image=image.image_id,
            restart="unless-stopped",
            envs=[
                f"EMQX_NODE__NAME={NODE_NAME}",
                f"EMQX_API_KEY__BOOTSTRAP_FILE=\"{API_KEY_FILE}\"",
                # Applies on the first boot only: EMQX keeps the admin user in Mnesia afterwards.
                pulumi.Output.concat("EMQX_DASHBOARD__DEFAULT_PASSWORD=", dashboard_password.result),
            ],
            # EMQX reads `key:secret:role` lines at start; the API key never
            # needs a dashboard login, so nothing scripts the UI.
            uploads=[
                docker.ContainerUploadArgs(
                    file=API_KEY_FILE,
                    content=pulumi.Output.format("{0}:{1}:administrator\n", api_key.result, api_secret.result),
                    permissions="0444",
                )
            ],
            ports=[
                docker.ContainerPortArgs(internal=MQTT_PORT, external=args.mqtt_port),
                docker.ContainerPortArgs(internal=DASHBOARD_PORT, external=args.dashboard_port, ip="127.0.0.1"),
            ],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path="/opt/emqx/data")],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network_name, aliases=["emqx"])],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "bash", "-c", STATUS_CHECK], interval="5s", timeout="5s", retries=24, start_period="15s"
            ),
            wait=True,
            wait_timeout=180,
            labels=container_labels(args.labels),
            opts=child,
        )
        self.api_url = f"http://127.0.0.1:{args.dashboard_port}"
        self.api_key = api_key.result
        self.api_secret = api_secret.result
        self.dashboard_password = dashboard_password.result

        # Broker objects go through the REST API once the container is healthy.
        self.connection = EmqxConnection(api_url=self.api_url, api_key=api_key.result, api_secret=api_secret.result)
        broker_objects = stack_broker_objects(
            self, resource_name, self.connection, args.ingest_url, broker=self.container, ingest=args.ingest
        )
        self.authenticator, self.authorization, self.connector = broker_objects
        self.register_outputs({"apiUrl": self.api_url, "containerName": self.container.name})
