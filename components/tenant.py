"""One tenant: its database slice, registry entry and EMQX objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi
import pulumi_postgresql as postgresql
import pulumi_random as random

from components.config import TenantConfig

if TYPE_CHECKING:
    from components.emqx import Emqx
    from components.ingest import IngestService
    from components.timescaledb import TimescaleDb


@dataclass(frozen=True)
class TenantArgs:
    tenant: TenantConfig
    database: "TimescaleDb"
    ingest: "IngestService"
    emqx: "Emqx"


class Tenant(pulumi.ComponentResource):
    """Schema, roles and grants, hypertable, registry row, device users and ACLs, HTTP action and rule."""

    reader_password: pulumi.Output[str]
    ingest_token: pulumi.Output[str]
    device_passwords: dict[str, pulumi.Output[str]]

    def __init__(self, resource_name: str, args: TenantArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:tenant:Tenant", resource_name, None, opts)
        tenant = args.tenant
        child = pulumi.ResourceOptions(parent=self)
        in_database = pulumi.ResourceOptions(parent=self, provider=args.database.provider)

        # The schema holds the tenant's data: leaving the config keeps it
        # unless the entry asked for deletion (dropDataOnDelete) beforehand.
        schema = postgresql.Schema(
            f"{resource_name}-schema",
            name=tenant.schema_name,
            drop_cascade=tenant.drop_data_on_delete,
            opts=pulumi.ResourceOptions.merge(in_database, pulumi.ResourceOptions(retain_on_delete=not tenant.drop_data_on_delete)),
        )
        reader_password = random.RandomPassword(f"{resource_name}-reader-password", length=32, special=False, opts=child)
        postgresql.Role(
            f"{resource_name}-reader-role",
            name=tenant.reader_role,
            login=True,
            password=reader_password.result,
            opts=in_database,
        )
        token = random.RandomPassword(f"{resource_name}-ingest-token", length=48, special=False, opts=child)
        device_passwords = {
            device: random.RandomPassword(f"{resource_name}-device-{device}-password", length=32, special=False, opts=child)
            for device in tenant.devices
        }

        self.reader_password = reader_password.result
        self.ingest_token = token.result
        self.device_passwords = {device: password.result for device, password in device_passwords.items()}
        self.register_outputs({"schema": schema.name})
