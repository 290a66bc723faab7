"""An existing EMQX cluster the stack does not run (`telemetry:emqx.external`).

The stack manages it through the management API with the configured API key (config secrets):
the HTTP connector to this stack's ingest service (at `ingestUrl`, as that EMQX reaches it) and
each tenant's action and rule; and, through device access (components/device_access.py), the
broker's whole authentication and authorization configuration. Tenant isolation needs
deny-by-default and device identities bound to their credentials, so the stack owns both there
too: its PostgreSQL authenticator is the only authenticator (another could accept a device
under another device's client id: create refuses while one exists, and an update after
`pulumi refresh` removes any added later), and its authorization replaces every other source,
rule and setting (`no_match: deny`, the `file` source disabled). Do not share an EMQX between
this stack and clients the stack does not manage. That EMQX connects to the stack's PostgreSQL
itself, at `emqx.external.databaseServer` (or the external database's address).

Other connectors, actions and rules on that EMQX are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.config import ExternalEmqxConfig
from components.emqx import stack_broker_objects
from components.providers.emqx import EmqxConnection, EmqxConnector


@dataclass(frozen=True)
class ExternalBrokerArgs:
    endpoint: ExternalEmqxConfig
    # The ingest service (container or Deployment): the connector is created once it is up.
    ingest: pulumi.Resource


class ExternalBroker(pulumi.ComponentResource):
    """The API connection from config and the stack-wide objects created through it."""

    connection: EmqxConnection
    connector: EmqxConnector
    api_url: str

    def __init__(self, resource_name: str, args: ExternalBrokerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:external:Broker", resource_name, None, opts)
        endpoint = args.endpoint
        self.api_url = endpoint.api_url
        self.connection = EmqxConnection(
            api_url=endpoint.api_url,
            api_key=pulumi.Output.secret(endpoint.api_key.get_secret_value()),
            api_secret=pulumi.Output.secret(endpoint.api_secret.get_secret_value()),
        )
        # The broker is already up: the provider's bounded wait on /status covers a slow answer.
        self.connector = stack_broker_objects(
            self, resource_name, self.connection, endpoint.ingest_url, broker=None, ingest=args.ingest
        )
        self.register_outputs({"apiUrl": self.api_url, "ingestUrl": endpoint.ingest_url})
