"""The seam between "where it runs" and "what a tenant is".

A platform (``components/platforms/``: Docker, Kubernetes, external endpoints) builds the
database, the broker and the ingest service wherever they run, and hands each tenant exactly
this: what the tenant layer needs to create its schema, roles, hypertable, registry row and
EMQX objects. ``components/tenant.py`` depends on these types only, never on a platform
package, so a tenant means the same thing on every platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_postgresql as postgresql

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
    """The EMQX objects every tenant builds on."""

    connection: EmqxConnection
    # The HTTP connector's name (not its `http:` id): each tenant's action uses it.
    connector_name: pulumi.Input[str]
    authenticator: pulumi.Resource
    authorization: pulumi.Resource
    # The action buffer options derived from telemetry:emqx.deliveryWindow.
    action_delivery: ActionDelivery = field(default_factory=ActionDelivery.for_window)


@dataclass(frozen=True)
class TenantPlatform:
    """Everything a tenant needs from the platform it runs on."""

    database: TenantDatabase
    ingest: TenantIngest
    broker: TenantBroker


@dataclass
class PlatformBuild:
    """What building a platform gives the stack: the tenants' interface and the stack outputs it owns."""

    tenant_platform: TenantPlatform
    # Endpoints and credentials (secrets already wrapped) the stack exports, by output name.
    outputs: dict[str, Any] = field(default_factory=dict)
