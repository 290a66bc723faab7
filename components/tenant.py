"""One tenant: its database slice, registry entry and EMQX objects.

Its devices are not resources: they are rows of the registry, managed with
`python -m tools.devices` (components/device_access.py makes EMQX check them). A tenant of a stack
deployed before that may still list `devices`: their passwords stay as they are and are imported
into the registry (components/providers/device_import.py), until the list is removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_postgresql as postgresql

from components import grants
from components.config import TenantConfig
from components.credentials import generated_password
from components.platform import TenantPlatform
from components.providers.device_import import LegacyDeviceImport, LegacyDeviceImportArgs
from components.providers.emqx import EmqxAction, EmqxActionArgs, EmqxRule, EmqxRuleArgs
from components.providers.registry import TenantRegistration, TenantRegistrationArgs
from components.providers.timescale import Hypertable, HypertableArgs

# Columns of EMQX's message.publish event that make up the ingest contract.
RULE_COLUMNS = "id, clientid, username, topic, payload, qos, publish_received_at, timestamp"


def rule_sql(topic_filter: str) -> str:
    return f'SELECT {RULE_COLUMNS} FROM "{topic_filter}"'


def emqx_name(slug: str) -> str:
    # Slugs already match EMQX's name pattern ^[0-9a-zA-Z][-0-9a-zA-Z_]*$.
    return f"tenant-{slug}"


@dataclass(frozen=True)
class TenantArgs:
    tenant: TenantConfig
    # What the platform the stack runs on provides (components/platform.py).
    platform: TenantPlatform


class Tenant(pulumi.ComponentResource):
    """Schema, roles and grants, hypertable, registry row, HTTP action and rule (and, while the
    config lists devices, their passwords and their import into the registry)."""

    reader_password: pulumi.Output[str]
    ingest_token: pulumi.Output[str]
    # Config-listed devices only (the migration path): device id -> its existing password.
    device_passwords: dict[str, pulumi.Output[str]]
    legacy_device_import: LegacyDeviceImport | None

    def __init__(self, resource_name: str, args: TenantArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:tenant:Tenant", resource_name, None, opts)
        tenant = args.tenant
        database, ingest, broker = args.platform.database, args.platform.ingest, args.platform.broker
        child = pulumi.ResourceOptions(parent=self)

        def in_database(*depends_on: pulumi.Resource, **extra) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=database.provider, depends_on=list(depends_on), **extra)

        # --- database: the schema and hypertable hold the tenant's data. When the
        # entry leaves the config they are kept, unless the entry said
        # dropDataOnDelete: true in an earlier `pulumi up`.
        schema = postgresql.Schema(
            f"{resource_name}-schema",
            name=tenant.schema_name,
            drop_cascade=tenant.drop_data_on_delete,
            opts=in_database(retain_on_delete=not tenant.drop_data_on_delete),
        )
        hypertable = Hypertable(
            f"{resource_name}-hypertable",
            HypertableArgs(
                dsn=database.admin_dsn,
                schema_name=schema.name,
                chunk_interval=tenant.chunk_interval,
                retention=tenant.retention,
                compress_after=tenant.compress_after,
                drop_data_on_delete=tenant.drop_data_on_delete,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[schema]),
        )
        reader_password = generated_password(f"{resource_name}-reader-password", length=32, opts=child)
        reader_role = postgresql.Role(
            f"{resource_name}-reader-role",
            name=tenant.reader_role,
            login=True,
            password=reader_password.result,
            opts=in_database(),
        )
        plan = {
            "reader": grants.reader_grants(schema.name, reader_role.name, table_owner=database.table_owner),
            "writer": grants.writer_grants(schema.name, ingest.writer_role_name),
        }
        grants.check_plan([grant for entries in plan.values() for grant in entries])
        granted = [
            getattr(postgresql, grants.pulumi_resource_type(grant))(
                f"{resource_name}-{who}-{grant_kind(grant)}",
                **grants.to_pulumi_args(grant, database=database.database_name),
                # After the hypertable: a grant on "all tables" covers only tables that exist.
                opts=in_database(hypertable),
            )
            for who, entries in plan.items()
            for grant in entries
        ]

        # --- registry: the ingest service accepts the tenant once its row exists.
        token = generated_password(f"{resource_name}-ingest-token", length=48, opts=child)
        registration = TenantRegistration(
            f"{resource_name}-registration",
            TenantRegistrationArgs(
                dsn=database.admin_dsn,
                slug=tenant.slug,
                schema_name=schema.name,
                topic_prefix=tenant.topic_prefix,
                token=token.result,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ingest.registry, hypertable, *granted]),
        )

        # --- EMQX: the action carries the registered token; the rule starts
        # the flow, so it comes last; devices may connect once it exists.
        action = EmqxAction(
            f"{resource_name}-action",
            EmqxActionArgs(
                connection=broker.connection,
                name=emqx_name(tenant.slug),
                connector=broker.connector_name,
                bearer_token=token.result,
                headers={"X-Tenant": tenant.slug},
                delivery=broker.action_delivery,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[registration]),
        )
        rule = EmqxRule(
            f"{resource_name}-rule",
            EmqxRuleArgs(
                connection=broker.connection,
                rule_id=emqx_name(tenant.slug),
                sql=rule_sql(tenant.topic_filter),
                actions=[action.emqx_id],
                description=f"telemetry of tenant {tenant.slug} to the ingest service",
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[action]),
        )
        # --- devices listed in the config (stacks from before devices were registry rows): the
        # passwords they have keep their resources, so none is regenerated, and are imported
        # into the registry. No EMQX user: EMQX checks the registry (components/device_access.py).
        device_passwords = {
            device: generated_password(f"{resource_name}-device-{device}-password", length=32, opts=child).result
            for device in tenant.devices
        }
        self.legacy_device_import = None
        if device_passwords:
            self.legacy_device_import = LegacyDeviceImport(
                f"{resource_name}-device-import",
                LegacyDeviceImportArgs(dsn=database.admin_dsn, tenant=tenant.slug, passwords=device_passwords),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[ingest.registry]),
            )

        self.reader_password = reader_password.result
        self.ingest_token = token.result
        self.device_passwords = device_passwords
        self.register_outputs({"schema": schema.name, "rule": rule.emqx_id, "devices": list(tenant.devices)})


def grant_kind(grant: grants.PlannedGrant) -> str:
    """``schema``, ``tables`` or ``default-tables``: unique per role within one tenant (see grants.check_plan)."""
    if isinstance(grant, grants.SchemaGrant):
        return "schema"
    return "tables" if isinstance(grant, grants.TableGrant) else "default-tables"
