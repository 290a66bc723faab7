"""EMQX: the broker container, its API credentials, and the HTTP connector to the ingest service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from components.config import EmqxConfig, MqttTlsConfig
from components.containers import SECRET_FILE_MODE, limits, stopping
from components.credentials import generated_password
from components.labels import container_labels, volume_labels
from components.providers.emqx import EmqxConnection, EmqxConnector, EmqxConnectorArgs
from components.tls import ServerCertificate, ServerCertificateArgs

MQTT_PORT = 1883
MQTT_TLS_PORT = 8883
DASHBOARD_PORT = 18083
# A stable node name keeps the Mnesia data (users, ACLs, API keys) on the
# volume usable across container replacements; the default embeds the IP.
NODE_NAME = "emqx@127.0.0.1"
# The image runs EMQX as user emqx, uid and gid 1000 (deploy/docker/Dockerfile): its secret
# files belong to it, readable by nobody else.
EMQX_UID = "1000"
SECRETS_DIR = "/opt/emqx/etc/telemetry"
API_KEY_FILE = f"{SECRETS_DIR}/api-keys.txt"
DASHBOARD_PASSWORD_FILE = f"{SECRETS_DIR}/dashboard-password"
NODE_COOKIE_FILE = f"{SECRETS_DIR}/node-cookie"
TLS_CERTIFICATE_FILE = f"{SECRETS_DIR}/tls/server.pem"
TLS_KEY_FILE = f"{SECRETS_DIR}/tls/server-key.pem"
TLS_CA_FILE = f"{SECRETS_DIR}/tls/ca.pem"
START_FILE = "/usr/local/bin/telemetry-start.sh"
# The ACL file of EMQX's default `file` authorization source (`${EMQX_ETC_DIR}/acl.conf`). The
# shipped one ends with `{allow, all}`, and on a new broker there is no authenticator either
# until the stack creates device access through the API: replaced by a deny-all, a client that
# connects in that window may neither publish nor subscribe. The stack then disables the source.
ACL_FILE = "/opt/emqx/etc/acl.conf"
DENY_ALL_ACL = "%% Until the stack configures authorization (components/device_access.py): nothing is allowed.\n{deny, all}.\n"
START_SCRIPT = Path(__file__).resolve().parent / "entrypoints" / "emqx.sh"
# The start script creates it once the dashboard user has the stack's password.
READY_FILE = "/tmp/telemetry-dashboard-ready"
# /status answers 200 only once the listeners and the emqx application run.
STATUS_CHECK = (
    f"exec 3<>/dev/tcp/127.0.0.1/{DASHBOARD_PORT} && "
    "printf 'GET /status HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"
)
HEALTH_CHECK = ["CMD", "bash", "-c", f"test -f {READY_FILE} && {STATUS_CHECK}"]
# EMQX stops gracefully on SIGTERM (forwarded by the container's init): sessions are closed
# and Mnesia is flushed before it exits.
STOP_SIGNAL = "SIGTERM"
STOP_GRACE_SECONDS = 60


def stack_broker_objects(
    parent: pulumi.Resource,
    resource_name: str,
    connection: EmqxConnection,
    ingest_url: pulumi.Input[str],
    broker: pulumi.Resource | None,
    ingest: pulumi.Resource,
) -> EmqxConnector:
    """The stack-wide EMQX object of the message path, the HTTP connector to the ingest service, as a
    child of ``parent``, on any platform.

    ``broker`` is what must be up before EMQX answers its API (its container, its cluster;
    None for an external EMQX that is already up); ``ingest`` is what must be up before the
    connector points at it. Authentication and authorization are device access's
    (components/device_access.py), built on every platform after the tenants.
    """
    running = [broker] if broker is not None else []
    return EmqxConnector(
        f"{resource_name}-ingest-connector",
        EmqxConnectorArgs(connection=connection, name="ingest", url=ingest_url),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[*running, ingest]),
    )


@dataclass(frozen=True)
class EmqxArgs:
    name_prefix: str
    network_name: pulumi.Input[str]
    config: EmqxConfig
    # The operator's TLS server certificate; None issues one from a stack CA.
    mqtt_tls: MqttTlsConfig | None
    # The HTTP connector's target, e.g. http://ingest:8000.
    ingest_url: str
    # The ingest container: the connector is created once the service is up.
    ingest: pulumi.Resource
    labels: dict[str, str]


def _file(path: str, content: pulumi.Input[str], secret: bool) -> docker.ContainerUploadArgs:
    if secret:
        return docker.ContainerUploadArgs(
            file=path, content=content, permissions=SECRET_FILE_MODE, owner=EMQX_UID, group=EMQX_UID
        )
    return docker.ContainerUploadArgs(file=path, content=content, permissions="0444")


class Emqx(pulumi.ComponentResource):
    """The EMQX container with a bootstrapped API key, and the connector to the ingest service."""

    container: docker.Container
    certificate: ServerCertificate
    connection: EmqxConnection
    connector: EmqxConnector
    api_url: str
    api_key: pulumi.Output[str]
    api_secret: pulumi.Output[str]
    dashboard_password: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:emqx:Emqx", resource_name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        config = args.config

        api_key = generated_password(f"{resource_name}-api-key", length=24, opts=child)
        api_secret = generated_password(f"{resource_name}-api-secret", length=48, opts=child)
        # An existing value may be one the dashboard refuses (all letters): let it be replaced.
        dashboard_password = generated_password(
            f"{resource_name}-dashboard-password", length=24, opts=child, keep_existing=False
        )
        # Replaces the image's well-known default cookie, which would let anything on the
        # stack network that reaches the Erlang distribution port run code in the broker.
        node_cookie = generated_password(f"{resource_name}-node-cookie", length=32, opts=child)
        self.certificate = ServerCertificate(
            f"{resource_name}-tls",
            ServerCertificateArgs(
                name_prefix=args.name_prefix, server_names=list(config.tls_server_names), provided=args.mqtt_tls
            ),
            opts=child,
        )
        # What the listener builds its chain from: the stack CA, else the provided CA or chain.
        ca_file_content = (
            self.certificate.ca_certificate_pem
            if args.mqtt_tls is None
            else pulumi.Output.from_input(args.mqtt_tls.ca_certificate or args.mqtt_tls.certificate)
        )
        image = docker.RemoteImage(f"{resource_name}-image", name=config.image, keep_locally=True, opts=child)
        volume = docker.Volume(
            f"{resource_name}-data",
            name=f"{args.name_prefix}-emqx-data",
            labels=volume_labels(args.labels),
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        listener_envs = [
            f"EMQX_LISTENERS__SSL__DEFAULT__BIND=\"0.0.0.0:{MQTT_TLS_PORT}\"",
            f"EMQX_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__CERTFILE=\"{TLS_CERTIFICATE_FILE}\"",
            f"EMQX_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__KEYFILE=\"{TLS_KEY_FILE}\"",
            f"EMQX_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__CACERTFILE=\"{TLS_CA_FILE}\"",
        ]
        if not config.plain_listener:
            listener_envs.append("EMQX_LISTENERS__TCP__DEFAULT__ENABLE=false")
        ports = [
            docker.ContainerPortArgs(internal=MQTT_TLS_PORT, external=config.mqtt_tls_port),
            docker.ContainerPortArgs(internal=DASHBOARD_PORT, external=config.dashboard_port, ip="127.0.0.1"),
        ]
        if config.plain_listener:
            ports.insert(0, docker.ContainerPortArgs(internal=MQTT_PORT, external=config.mqtt_port))
        self.container = docker.Container(
            f"{resource_name}-container",
            name=f"{args.name_prefix}-emqx",
            image=image.image_id,
            restart="unless-stopped",
            # No secret in the environment (`docker inspect` shows it): the start script reads
            # the dashboard password and the node cookie from their files.
            envs=[
                f"EMQX_NODE__NAME={NODE_NAME}",
                f"EMQX_API_KEY__BOOTSTRAP_FILE=\"{API_KEY_FILE}\"",
                f"TELEMETRY_DASHBOARD_PASSWORD_FILE={DASHBOARD_PASSWORD_FILE}",
                f"TELEMETRY_NODE_COOKIE_FILE={NODE_COOKIE_FILE}",
                f"TELEMETRY_READY_FILE={READY_FILE}",
                *listener_envs,
            ],
            uploads=[
                # EMQX reads `key:secret:role` lines at start; the API key never
                # needs a dashboard login, so nothing scripts the UI.
                _file(API_KEY_FILE, pulumi.Output.format("{0}:{1}:administrator\n", api_key.result, api_secret.result), True),
                _file(DASHBOARD_PASSWORD_FILE, dashboard_password.result, True),
                _file(NODE_COOKIE_FILE, node_cookie.result, True),
                _file(TLS_KEY_FILE, self.certificate.private_key_pem, True),
                _file(TLS_CERTIFICATE_FILE, self.certificate.certificate_pem, False),
                _file(TLS_CA_FILE, ca_file_content, False),
                docker.ContainerUploadArgs(file=START_FILE, content=START_SCRIPT.read_text(), permissions="0755"),
                _file(ACL_FILE, DENY_ALL_ACL, False),
            ],
            entrypoints=[START_FILE],
            # An init process forwards the stop signal to EMQX and reaps the start script's helper.
            init=True,
            ports=ports,
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path="/opt/emqx/data")],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network_name, aliases=["emqx"])],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=HEALTH_CHECK, interval="5s", timeout="5s", retries=24, start_period="15s"
            ),
            wait=True,
            wait_timeout=300,
            labels=container_labels(args.labels),
            **stopping(STOP_SIGNAL, STOP_GRACE_SECONDS),
            **limits(config),
            # pulumi-docker updates a healthcheck or init in place without applying it: replace instead.
            opts=pulumi.ResourceOptions(parent=self, replace_on_changes=["healthcheck", "init"]),
        )
        self.api_url = f"http://127.0.0.1:{config.dashboard_port}"
        self.api_key = api_key.result
        self.api_secret = api_secret.result
        self.dashboard_password = dashboard_password.result

        # Broker objects go through the REST API once the container is healthy.
        self.connection = EmqxConnection(api_url=self.api_url, api_key=api_key.result, api_secret=api_secret.result)
        self.connector = stack_broker_objects(
            self, resource_name, self.connection, args.ingest_url, broker=self.container, ingest=args.ingest
        )
        self.register_outputs({"apiUrl": self.api_url, "containerName": self.container.name})
