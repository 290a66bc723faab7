"""Device access: EMQX authenticates and authorizes devices from the registry, on every platform.

Devices are rows of `telemetry_registry.devices` (components/devices.py), managed with
`python -m tools.devices` without `pulumi up`. This component is what makes them work:

* `telemetry_emqx_auth`, the role EMQX's PostgreSQL authenticator and authorization source log
  in as: it may execute the two lookup functions and nothing else (grants.emqx_auth_grants);
* `telemetry_device_manager`, the role the device CLI writes through: device rows, and the
  tenant columns it checks, nothing else (grants.device_manager_grants); its connection string is
  the stack output `deviceManagerDsn` (secret);
* the `password_based:postgresql` authenticator and the whole authorization configuration
  (`postgresql` source, the shipped `file` source disabled, `no_match: deny`, `deny_action:
  disconnect`, a 30 s per-client cache, 6.2's node caches at 5 s): tenant isolation needs
  deny-by-default, and a device's identity is bound to its credentials because both queries
  return rows only when the MQTT username and client id are the device's id.

Both EMQX objects come after the tenants' legacy device imports (components/providers/
device_import.py): a stack moving from config-listed devices gets them into the registry
before the authorization switches to it, and the built-in-database users and rules go only at
the end of the same `pulumi up`, when Pulumi deletes what the program no longer declares.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_postgresql as postgresql
from psycopg.conninfo import make_conninfo

from components import devices, grants
from components.credentials import generated_password
from components.platform import DeviceDatabase, TenantPlatform
from components.providers.emqx import (
    EmqxAuthorization,
    EmqxAuthorizationArgs,
    EmqxPostgresAuthenticator,
    EmqxPostgresAuthenticatorArgs,
)

# EMQX's connection pool per node for each of the two objects (EMQX's default).
POOL_SIZE = 8


@dataclass(frozen=True)
class DeviceAccessArgs:
    # The tenants' interface: the database provider and name, the registry, the EMQX API.
    platform: TenantPlatform
    database: DeviceDatabase
    # What must be up before EMQX answers its API.
    broker_ready: list[pulumi.Resource] = field(default_factory=list)
    # The tenants' legacy device imports: EMQX switches to the registry only after them.
    after: list[pulumi.Resource] = field(default_factory=list)


def _grant_name(grant: grants.PlannedGrant) -> str:
    return {grants.SchemaGrant: "schema", grants.TableGrant: "table", grants.FunctionGrant: "functions",
            grants.ColumnGrant: "tenant-columns"}[type(grant)]


class DeviceAccess(pulumi.ComponentResource):
    """The device roles and their grants, the PostgreSQL authenticator and the authorization configuration."""

    device_manager_dsn: pulumi.Output[str]
    authenticator: EmqxPostgresAuthenticator
    authorization: EmqxAuthorization

    def __init__(self, resource_name: str, args: DeviceAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:devices:DeviceAccess", resource_name, None, opts)
        platform, database = args.platform, args.database
        child = pulumi.ResourceOptions(parent=self)
        in_database = pulumi.ResourceOptions(parent=self, provider=platform.database.provider)

        def role_with_grants(label: str, role_name: str, plan) -> tuple[postgresql.Role, pulumi.Output[str], list]:
            password = generated_password(f"{resource_name}-{label}-password", length=32, opts=child)
            role = postgresql.Role(f"{resource_name}-{label}-role", name=role_name, login=True,
                                   password=password.result, opts=in_database)
            planned = plan(role.name)
            grants.check_plan(planned)
            granted = [
                getattr(postgresql, grants.pulumi_resource_type(grant))(
                    f"{resource_name}-{label}-{_grant_name(grant)}",
                    **grants.to_pulumi_args(grant, database=platform.database.database_name),
                    # The registry's update installs the functions and the devices table.
                    opts=pulumi.ResourceOptions.merge(
                        in_database, pulumi.ResourceOptions(depends_on=[platform.ingest.registry])),
                )
                for grant in planned
            ]
            return role, password.result, granted

        emqx_role, emqx_password, emqx_grants = role_with_grants("emqx-auth", grants.EMQX_AUTH_ROLE,
                                                                 grants.emqx_auth_grants)
        manager_role, manager_password, _ = role_with_grants("manager", grants.DEVICE_MANAGER_ROLE,
                                                             grants.device_manager_grants)

        connection = platform.broker.connection
        # EMQX checks the database at once: the role, its grants and the rows must be there first.
        after = pulumi.ResourceOptions(parent=self, depends_on=[*args.broker_ready, emqx_role, *emqx_grants,
                                                                 *args.after])
        self.authenticator = EmqxPostgresAuthenticator(
            f"{resource_name}-authenticator",
            EmqxPostgresAuthenticatorArgs(
                connection=connection,
                server=database.emqx_server,
                database=platform.database.database_name,
                username=emqx_role.name,
                password=emqx_password,
                query=devices.AUTHN_QUERY,
                password_hash_algorithm=dict(devices.PASSWORD_HASH),
                pool_size=POOL_SIZE,
                ssl=dict(database.emqx_ssl),
                node_cache=dict(devices.AUTHN_NODE_CACHE),
            ),
            opts=after,
        )
        source = {"type": "postgresql", "enable": True, "server": database.emqx_server,
                  "database": platform.database.database_name, "username": emqx_role.name, "pool_size": POOL_SIZE,
                  "ssl": dict(database.emqx_ssl), "query": devices.AUTHZ_QUERY}
        settings = devices.emqx_authorization_settings()
        self.authorization = EmqxAuthorization(
            f"{resource_name}-authorization",
            EmqxAuthorizationArgs(
                connection=connection,
                sources=[source, {"type": "file", "enable": False}],
                database_password=emqx_password,
                no_match=settings["no_match"],
                deny_action=settings["deny_action"],
                cache=settings["cache"],
                node_cache=dict(devices.AUTHZ_NODE_CACHE),
            ),
            opts=after,
        )
        self.device_manager_dsn = pulumi.Output.secret(pulumi.Output.all(
            database.operator_host, database.operator_port, manager_role.name, manager_password,
        ).apply(lambda values: make_conninfo(
            host=values[0], port=values[1], dbname=platform.database.database_name, user=values[2],
            password=values[3], sslmode=database.operator_sslmode,
        )))
        self.register_outputs({"authenticator": self.authenticator.emqx_id, "authorization": self.authorization.emqx_id})
