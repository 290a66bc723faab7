"""One tenant: its database slice, registry entry and EMQX objects."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_postgresql as postgresql

from components import grants
from components.config import TenantConfig
from components.credentials import generated_password
from components.platform import TenantPlatform
from components.providers.emqx import (
    EmqxAction,
    EmqxActionArgs,
    EmqxRule,
    EmqxRuleArgs,
    EmqxUser,
    EmqxUserAcl,
    EmqxUserAclArgs,
    EmqxUserArgs,
    topic_prefix_rules,
)
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
    """Schema, roles and grants, hypertable, registry row, device users and ACLs, HTTP action and rule."""

    reader_password: pulumi.Output[str]
    ingest_token: pulumi.Output[str]
    device_passwords: dict[str, pulumi.Output[str]]

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
        device_passwords: dict[str, pulumi.Output[str]] = {}
        for device in tenant.devices:
            password = generated_password(f"{resource_name}-device-{device}-password", length=32, opts=child)
            acl = EmqxUserAcl(
                f"{resource_name}-device-{device}-acl",
                EmqxUserAclArgs(connection=broker.connection, username=device, rules=topic_prefix_rules(tenant.topic_prefix)),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[broker.authorization, rule]),
            )
            # The user exists only once its ACL does: it never connects unrestricted.
            EmqxUser(
                f"{resource_name}-device-{device}",
                EmqxUserArgs(connection=broker.connection, user_id=device, password=password.result),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[broker.authenticator, acl]),
            )
            device_passwords[device] = password.result

        self.reader_password = reader_password.result
        self.ingest_token = token.result
        self.device_passwords = device_passwords
        self.register_outputs({"schema": schema.name, "rule": rule.emqx_id, "devices": list(tenant.devices)})


def grant_kind(grant: grants.PlannedGrant) -> str:
    """``schema``, ``tables`` or ``default-tables``: unique per role within one tenant (see grants.check_plan)."""
    if isinstance(grant, grants.SchemaGrant):
        return "schema"
    return "tables" if isinstance(grant, grants.TableGrant) else "default-tables"
