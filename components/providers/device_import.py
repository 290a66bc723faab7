"""Moving a tenant's config-listed devices into the registry, once, with the passwords they have.

Stacks deployed before devices were registry rows list `devices` per tenant, and each device
holds the password the stack generated for it (a `RandomPassword` in the state). While a tenant
still lists them, the stack keeps those passwords (same resources, so nothing is regenerated)
and `LegacyDeviceImport` writes one row per listed device into `telemetry_registry.devices`,
hashed as EMQX verifies (components/devices.py): the same devices can then connect through the
PostgreSQL authenticator with the credentials they already use, before the stack removes their
built-in-database users in the same `pulumi up`.

The import does not own the rows; the operator does (`python -m tools.devices`):

* a row that already exists is never overwritten (insert if absent): a device the operator has
  rotated, relabelled or disabled stays as the operator left it;
* an id that exists in *another* tenant is an error naming both tenants, before anything is
  removed from EMQX, so no device is left without a way to connect;
* a device added to the list later is imported on the next `pulumi up`; one taken off the list is
  not deleted, and neither is anything when the resource goes (removing `devices` from the
  config, or the tenant): removing a device is `python -m tools.devices remove`;
* `read` reports the state as it was written (the rows are data, not drift).

Only the hashes reach the database; the passwords are secret inputs, never outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic
from psycopg import sql

from components.devices import new_credential
from components.providers.postgres import DEFAULT_READY_TIMEOUT, ProviderError, connect, is_unknown, sql_call
from components.providers.telemetry_ddl import DEVICES_TABLE, REGISTRY_SCHEMA

IMPORT_LABEL = "imported from telemetry:tenants[].devices"
_DEVICES = sql.Identifier(REGISTRY_SCHEMA, DEVICES_TABLE)


def _name(props: Mapping[str, Any]) -> str:
    return f"LegacyDeviceImport {props.get('tenant')}"


def import_devices(props: Mapping[str, Any], device_ids: list[str]) -> list[str]:
    """Insert the rows of `device_ids` that do not exist yet; the ids inserted."""
    name, tenant = _name(props), props["tenant"]
    passwords: Mapping[str, str] = props["passwords"]
    missing = [d for d in device_ids if not passwords.get(d)]
    if missing:
        raise ProviderError(f"{name}: no password given for {', '.join(missing)}; pass one per listed device")
    inserted: list[str] = []
    with connect(props["dsn"], name, props.get("ready_timeout") or DEFAULT_READY_TIMEOUT) as conn:
        with sql_call(name, "importing the listed devices into the registry"):
            for device_id in sorted(device_ids):
                _, salt, password_hash = new_credential(passwords[device_id])
                cursor = conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (device_id, tenant, password_hash, salt, label) VALUES (%s, %s, %s, %s, %s) "
                        "ON CONFLICT (device_id) DO NOTHING"
                    ).format(_DEVICES),
                    (device_id, tenant, password_hash, salt, IMPORT_LABEL),
                )
                if cursor.rowcount:
                    inserted.append(device_id)
            owners = conn.execute(
                sql.SQL("SELECT device_id, tenant FROM {} WHERE device_id = ANY(%s) AND tenant <> %s").format(_DEVICES),
                (list(device_ids), tenant),
            ).fetchall()
        if owners:
            conn.rollback()
            taken = ", ".join(f"{device!r} (tenant {owner!r})" for device, owner in sorted(owners))
            raise ProviderError(
                f"{name}: the registry already has {taken}: device ids are unique in the whole stack, and these "
                f"are listed under tenant {tenant!r} too. Take them off that tenant's devices in the stack config, "
                "or remove them from the other tenant with `python -m tools.devices remove`, then run again "
                "(nothing was imported or removed)"
            )
        with sql_call(name, "committing the imported devices"):
            conn.commit()
    return inserted


class LegacyDeviceImportProvider(pulumi.dynamic.ResourceProvider):
    """Inserts a tenant's config-listed devices into the registry if absent; never updates or deletes rows."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = []
        if not is_unknown(news.get("tenant")) and not news.get("tenant"):
            failures.append(pulumi.dynamic.CheckFailure("tenant", "tenant is required"))
        ids = news.get("device_ids")
        if not is_unknown(ids) and (not isinstance(ids, list) or not ids):
            failures.append(pulumi.dynamic.CheckFailure("device_ids", "device_ids must list at least one device"))
        return pulumi.dynamic.CheckResult(news, failures)

    @staticmethod
    def _outputs(props: Mapping[str, Any], inserted: list[str]) -> dict[str, Any]:
        return {"dsn": props["dsn"], "tenant": props["tenant"], "device_ids": sorted(props["device_ids"]),
                "ready_timeout": props.get("ready_timeout"), "inserted": sorted(inserted)}

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        inserted = import_devices(props, list(props["device_ids"]))
        return pulumi.dynamic.CreateResult(f"{props['tenant']}-devices", self._outputs(props, inserted))

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        return pulumi.dynamic.ReadResult(id_, props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = ["tenant"] if is_unknown(news.get("tenant")) or olds.get("tenant") != news.get("tenant") else []
        changed = list(replaces)
        if is_unknown(news.get("device_ids")) or sorted(olds.get("device_ids") or []) != sorted(news["device_ids"]):
            changed.append("device_ids")
        changed += [key for key in ("dsn", "ready_timeout") if is_unknown(news.get(key)) or olds.get(key) != news.get(key)]
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        added = sorted(set(news["device_ids"]) - set(olds.get("device_ids") or []))
        inserted = import_devices(news, added) if added else []
        return pulumi.dynamic.UpdateResult(self._outputs(news, sorted({*(olds.get("inserted") or []), *inserted})))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Nothing to do: the rows are the operator's now (see the module docstring)."""


@dataclass
class LegacyDeviceImportArgs:
    dsn: pulumi.Input[str]
    """Superuser (or admin) DSN; stored as a secret."""
    tenant: pulumi.Input[str]
    passwords: Mapping[str, pulumi.Input[str]]
    """device id -> its current password (the stack's RandomPassword results); secret."""
    ready_timeout: pulumi.Input[float] | None = None


class LegacyDeviceImport(pulumi.dynamic.Resource, module="telemetry", name="LegacyDeviceImport"):
    """One tenant's config-listed devices, imported into the registry. Outputs: tenant, device_ids,
    inserted (the ids this resource wrote; the others already existed)."""

    tenant: pulumi.Output[str]
    device_ids: pulumi.Output[list[str]]
    inserted: pulumi.Output[list[str]]

    def __init__(self, resource_name: str, args: LegacyDeviceImportArgs, opts: pulumi.ResourceOptions | None = None):
        props = {
            "dsn": pulumi.Output.secret(args.dsn),
            "tenant": args.tenant,
            "device_ids": sorted(args.passwords),
            "passwords": pulumi.Output.secret(dict(args.passwords)),
            "ready_timeout": args.ready_timeout,
            "inserted": None,
        }
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["dsn", "passwords"])
        )
        super().__init__(LegacyDeviceImportProvider(), resource_name, props, opts)
