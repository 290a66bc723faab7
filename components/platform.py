"""The seam between "where it runs" and "what a tenant is".

A platform (``components/platforms/``: Docker, Kubernetes, external endpoints) builds the
database, the broker and the ingest service wherever they run, and hands each tenant exactly
this: what the tenant layer needs to create its schema, roles, hypertable, registry row and
EMQX objects. ``components/tenant.py`` depends on these types only, never on a platform
package, so a tenant means the same thing on every platform.

It also hands the stack what device access (``components/device_access.py``) needs beyond the
tenants' interface: where the registry database is as EMQX reaches it and as the operator's
device CLI reaches it, and what must be up before EMQX answers its API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_postgresql as postgresql

from components.config import ExternalTimescaleDbConfig
from components.providers.emqx import ActionDelivery, EmqxConnection


@dataclass(frozen=True)
class TenantDatabase:
    """The database as the tenant layer reaches it from where Pulumi runs."""

    # Superuser (or admin) DSN, a secret, for the dynamic providers (hypertable, registration).
    admin_dsn: pulumi.Input[str]
    # The pulumi_postgresql provider for schemas, roles and grants in that database.
    provider: postgresql.Provider
    database_name: str
    # The role that owns the tenants' tables (it creates them): default privileges are its.
    table_owner: str


@dataclass(frozen=True)
class TenantIngest:
    """The ingest service's side of the database: the role it writes as and the registry it reads."""

    writer_role_name: pulumi.Input[str]
    # The registry resource; a tenant's registration depends on it.
    registry: pulumi.Resource


@dataclass(frozen=True)
class TenantBroker:
    """The EMQX objects every tenant builds on (devices are registry rows: no authenticator here)."""

    connection: EmqxConnection
    # The HTTP connector's name (not its `http:` id): each tenant's action uses it.
    connector_name: pulumi.Input[str]
    # The action buffer options derived from telemetry:emqx.deliveryWindow.
    action_delivery: ActionDelivery = field(default_factory=ActionDelivery.for_window)


@dataclass(frozen=True)
class TenantPlatform:
    """Everything a tenant needs from the platform it runs on."""

    database: TenantDatabase
    ingest: TenantIngest
    broker: TenantBroker


@dataclass(frozen=True)
class DeviceDatabase:
    """The registry database for device access: as EMQX reaches it, and as the operator does."""

    # `host:port` for EMQX's PostgreSQL authenticator and authorization source.
    emqx_server: pulumi.Input[str]
    # Their `ssl` setting (EMQX's ssl_client_opts), e.g. {"enable": False}.
    emqx_ssl: dict[str, Any]
    # Where `python -m tools.devices` connects from the operator's machine (deviceManagerDsn).
    operator_host: pulumi.Input[str]
    operator_port: pulumi.Input[int]
    operator_sslmode: str

    @classmethod
    def external(cls, endpoint: ExternalTimescaleDbConfig) -> DeviceDatabase:
        """A managed database: EMQX (wherever it runs) and the operator reach the same endpoint."""
        return cls(
            emqx_server=f"{endpoint.host}:{endpoint.port}",
            emqx_ssl=emqx_ssl_for(endpoint.sslmode, endpoint.host),
            operator_host=endpoint.host, operator_port=endpoint.port, operator_sslmode=endpoint.sslmode,
        )


@dataclass
class PlatformBuild:
    """What building a platform gives the stack: the tenants' interface, device access's, and the
    stack outputs it owns."""

    tenant_platform: TenantPlatform
    device_database: DeviceDatabase
    # What must be up before EMQX answers its API (its container or cluster; nothing for an
    # external EMQX, which is already up).
    broker_ready: list[pulumi.Resource] = field(default_factory=list)
    # Endpoints and credentials (secrets already wrapped) the stack exports, by output name.
    outputs: dict[str, Any] = field(default_factory=dict)


def tenant_platform(database: Any, table_owner: str, ingest: Any, broker: Any, delivery_window: str) -> TenantPlatform:
    """The tenants' interface from any platform's components.

    ``database`` has ``admin_dsn``, ``provider`` and ``database_name``; ``ingest`` its
    ``writer_role`` and ``registry``; ``broker`` its ``connection`` and ``connector``: what every
    platform's (or external endpoint's) component exposes under the same names.
    """
    return TenantPlatform(
        database=TenantDatabase(
            admin_dsn=database.admin_dsn,
            provider=database.provider,
            database_name=database.database_name,
            table_owner=table_owner,
        ),
        ingest=TenantIngest(writer_role_name=ingest.writer_role.name, registry=ingest.registry),
        broker=TenantBroker(
            connection=broker.connection,
            connector_name=broker.connector.name,
            action_delivery=ActionDelivery.for_window(delivery_window),
        ),
    )


def emqx_ssl_for(sslmode: str, host: str) -> dict[str, Any]:
    """EMQX's `ssl` for a database libpq would reach with `sslmode`.

    `disable`/`allow` try plain TCP first: no TLS. `prefer`/`require` encrypt without checking the
    server's certificate (EMQX's `verify_none`). `verify-ca`/`verify-full` check it against the
    system's CAs (`cacerts: true`); EMQX checks the host name as well (`server_name_indication`).
    """
    if sslmode in ("disable", "allow"):
        return {"enable": False}
    if sslmode in ("prefer", "require"):
        return {"enable": True, "verify": "verify_none"}
    return {"enable": True, "verify": "verify_peer", "cacerts": True, "server_name_indication": host}
