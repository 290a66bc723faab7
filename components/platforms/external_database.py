"""A managed TimescaleDB the stack does not run (`telemetry:timescaledb.external`).

The tenant layer connects as the configured admin user, whose password is a config secret; the
stack creates nothing in the service itself except, through the tenant layer, roles, schemas,
tables and the registry. The admin user needs CREATEROLE and the right to create schemas in the
database (it owns the tenants' tables); it need not be a superuser, and TimescaleDB must already
be enabled in the database (`CREATE EXTENSION timescaledb`), as managed services require.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import pulumi
import pulumi_postgresql as postgresql

from components.config import ExternalTimescaleDbConfig


@dataclass(frozen=True)
class ExternalDatabaseArgs:
    endpoint: ExternalTimescaleDbConfig


def admin_dsn(endpoint: ExternalTimescaleDbConfig, password: str) -> str:
    """A key=value DSN: libpq quotes each value, so any password character is safe."""
    return psycopg.conninfo.make_conninfo(
        host=endpoint.host, port=endpoint.port, dbname=endpoint.database,
        user=endpoint.admin_user, password=password, sslmode=endpoint.sslmode,
    )


class ExternalDatabase(pulumi.ComponentResource):
    """The endpoint as the tenant layer needs it: an admin DSN (secret) and a pulumi_postgresql provider."""

    provider: postgresql.Provider
    admin_dsn: pulumi.Output[str]
    internal_host: str
    internal_port: int
    database_name: str
    sslmode: str
    table_owner: str
    admin_endpoint: str

    def __init__(self, resource_name: str, args: ExternalDatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:external:Database", resource_name, None, opts)
        endpoint = args.endpoint
        password = pulumi.Output.secret(endpoint.password.get_secret_value())
        self.admin_dsn = pulumi.Output.secret(password.apply(lambda value: admin_dsn(endpoint, value)))
        self.provider = postgresql.Provider(
            f"{resource_name}-provider",
            host=endpoint.host,
            port=endpoint.port,
            database=endpoint.database,
            username=endpoint.admin_user,
            password=password,
            sslmode=endpoint.sslmode,
            # Managed services give an admin role, not a superuser.
            superuser=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The service and the tenant layer reach the same endpoint.
        self.internal_host, self.internal_port = endpoint.host, endpoint.port
        self.database_name, self.sslmode, self.table_owner = endpoint.database, endpoint.sslmode, endpoint.admin_user
        self.admin_endpoint = f"postgresql://{endpoint.host}:{endpoint.port}/{endpoint.database}"
        self.register_outputs({"endpoint": self.admin_endpoint})
