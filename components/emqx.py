"""EMQX: the broker container, its API credentials, and the stack-wide broker objects."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.labels import container_labels, volume_labels
from components.providers.emqx import (
    DEFAULT_DELIVERY_WINDOW,
    ActionDelivery,
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
    # telemetry:emqx.deliveryWindow: how long each tenant's action keeps undelivered messages.
    delivery_window: str = DEFAULT_DELIVERY_WINDOW


class Emqx(pulumi.ComponentResource):
    """The EMQX container with a bootstrapped API key, deny-by-default auth, and the connector to the ingest service."""

    container: docker.Container
    connection: EmqxConnection
    authenticator: EmqxAuthenticator
    authorization: EmqxAuthorization
    connector: EmqxConnector
    action_delivery: ActionDelivery
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
        after_broker = pulumi.ResourceOptions(parent=self, depends_on=[self.container])
        self.authenticator = EmqxAuthenticator(
            f"{resource_name}-authenticator", EmqxAuthenticatorArgs(connection=self.connection), opts=after_broker
        )
        # Deny by default: no_match deny, and the shipped `file` source (which ends with
        # {allow, all}) disabled. The stack owns the whole authorization configuration: any other
        # source, and any rule in the `all` or `clients` tables, is removed
        # (components/providers/emqx/authz_config.py). Per-username rules belong to the tenants'
        # EmqxUserAcl resources; the device list is not given here, so that adding a tenant
        # changes none of the stack-wide resources.
        self.authorization = EmqxAuthorization(
            f"{resource_name}-authorization", EmqxAuthorizationArgs(connection=self.connection), opts=after_broker
        )
        # Each tenant's action takes its buffer options from this (README "Delivery guarantees").
        self.action_delivery = ActionDelivery.for_window(args.delivery_window)
        self.connector = EmqxConnector(
            f"{resource_name}-ingest-connector",
            EmqxConnectorArgs(connection=self.connection, name="ingest", url=args.ingest_url),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.container, args.ingest]),
        )
        self.register_outputs({"apiUrl": self.api_url, "containerName": self.container.name})
