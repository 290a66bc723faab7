"""Smoke check after a deploy: every tenant's messages reach its own table.

    python -m tools.smoke [--stack dev | --outputs-file outputs.json] [--tenant SLUG ...] [--credentials-file F]

Devices are registry rows, and a fresh stack has none; so by default the check
brings its own: one short-lived check device per tenant (``smoke-<run id>-<n>``,
labelled as such), added through the stack's ``deviceManagerDsn`` as the
device-manager role with a generated password, and removed when the check ends,
passed or failed. No real device is touched: a device's client id is its
username, so publishing as a real device would end that device's session. With
``--credentials-file`` (written by ``python -m tools.devices``) the tenants
publish as the devices of that file instead; tenants without a device in the
file fail with that reason.

For each tenant it publishes a few messages through the simulator (all carrying
a fresh run id), then reads the tenant's ``telemetry`` table as the tenant's
reader role until every acknowledged message is there or the timeout passes.  It also reads the tenant's EMQX rule
and action metrics before and after (tools.status): a tenant fails when any of
its loss counters (``dropped.*``, ``failed``) grew during the run, whoever's
messages were lost, because EMQX had acknowledged them to the devices.  One
PASS/FAIL line per tenant; the exit code is 1 when any tenant failed, 2 when
the outputs or the EMQX API could not be read.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from components.providers.telemetry_ddl import TELEMETRY_TABLE
from tools import ToolError
from tools import device_store as store
from tools.device_files import read_credentials
from tools.simulate import SimulationSettings, add_source_arguments, run_simulation, tls_address
from tools.stack_outputs import (
    load_outputs,
    mqtt_address,
    reader_dsn,
    require_output,
    tenant_outputs,
    tenant_slugs,
)
from tools.status import emqx_api, tenant_status

CHECK_DEVICE_LABEL = "make smoke check device; removed when the check ends"


@dataclass(frozen=True)
class TenantCheck:
    slug: str
    passed: bool
    detail: str

    @property
    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.slug}: {self.detail}"


def count_run_rows(conn: psycopg.Connection, schema: str, run_id: str) -> int:
    """Rows of one run in a tenant's telemetry table, matched by the run id inside the payload."""
    query = sql.SQL("SELECT count(*) FROM {} WHERE payload->>'run_id' = %s").format(
        sql.Identifier(schema, TELEMETRY_TABLE)
    )
    row = conn.execute(query, (run_id,)).fetchone()
    return int(row[0]) if row else 0


def wait_for_rows(dsn: str, schema: str, run_id: str, expected: int, *, timeout: float, interval: float = 0.5) -> int:
    """Poll until ``expected`` rows of the run are stored or ``timeout`` passes; the last count seen."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            stored = count_run_rows(conn, schema, run_id)
            if stored >= expected or time.monotonic() >= deadline:
                return stored
            time.sleep(interval)


@dataclass
class CheckDevices:
    """Devices to publish as, per tenant (device id -> password), and why a tenant has none."""

    credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


def from_credentials_file(path: Any) -> CheckDevices:
    devices = CheckDevices()
    for credential in read_credentials(path):
        devices.credentials.setdefault(credential.tenant, {})[credential.device_id] = credential.password
    return devices


@contextmanager
def check_devices(outputs: dict[str, Any], slugs: Sequence[str], run_id: str) -> Iterator[CheckDevices]:
    """One device per tenant, added through deviceManagerDsn for this run and removed afterwards."""
    known = [slug for slug in slugs if slug in (outputs.get("tenants") or {})]
    if not known:  # every tenant fails on its own (not in the outputs): no device to add
        yield CheckDevices()
        return
    # The check adds its own short-lived devices through it.
    dsn = require_output(outputs, "deviceManagerDsn", (
        "pass devices of your own with --credentials-file "
        "(written by `python -m tools.devices add <id> --tenant <slug> --credentials-file <file>`)"
    ))
    devices = CheckDevices()
    added: dict[str, list[str]] = {}
    with store.connect(str(dsn)) as conn:
        try:
            for index, slug in enumerate(known):
                try:
                    tenant = store.require_tenant(conn, slug)
                    device = store.generated(f"smoke-{run_id}-{index}", label=CHECK_DEVICE_LABEL)
                    store.add_devices(conn, tenant, [device])
                except ToolError as error:
                    devices.problems[slug] = f"could not add a check device: {error}"
                    continue
                added[slug] = [device.device_id]
                devices.credentials[slug] = {device.device_id: str(device.password)}
            yield devices
        finally:
            for slug, device_ids in added.items():
                store.remove(conn, slug, device_ids)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def check_tenant(
    outputs: dict[str, Any],
    slug: str,
    *,
    messages: int,
    timeout: float,
    credentials: dict[str, dict[str, str]] | None = None,
    tls: bool = False,
    cafile: str | None = None,
) -> TenantCheck:
    """Publish ``messages`` messages as the tenant's devices and look for them in its schema.

    ``credentials`` (tenant -> device -> password, from a credentials file) replaces the stack's
    device users: registry devices must use their username as client id. With ``tls``, through
    the TLS listener, verifying the broker with ``cafile`` or the stack's CA.
    """
    try:
        tenant = tenant_outputs(outputs, slug, require_devices=credentials is None)
        if credentials is not None and not credentials.get(slug):
            raise ToolError(
                f"the credentials file has no device of tenant '{slug}': add one with "
                f"`python -m tools.devices add <id> --tenant {slug} --credentials-file <file>`"
            )
        dsn = reader_dsn(outputs, tenant)
        host, port = tls_address(outputs) if tls else mqtt_address(outputs)
    except ToolError as error:
        return TenantCheck(slug, False, str(error))
    run_id = f"smoke-{uuid.uuid4().hex[:12]}"
    usernames, passwords = tenant.devices, tenant.device_passwords
    if credentials is not None:
        passwords = credentials[slug]
        usernames = tuple(passwords)
    settings = SimulationSettings(
        host=host,
        port=port,
        usernames=usernames,
        passwords=passwords,
        topic_prefix=tenant.topic_prefix,
        devices=len(usernames),
        rate=50.0,
        count=max(messages, len(usernames)),
        run_id=run_id,
        label=slug,
        # Registry devices cannot take a tagged client id; publishing as a real device ends the
        # session it holds elsewhere (the default check devices are the check's own).
        client_id_tag="" if credentials is not None else run_id,
        client_id_is_username=credentials is not None,
        tls=tls,
        cafile=cafile,
        ca_data=None if cafile or not tls else outputs.get("mqttCaCertificate"),
    )
    try:
        result = run_simulation(settings)
    except ToolError as error:
        return TenantCheck(slug, False, f"publishing failed: {error}")
    if result.failed:
        reasons = "; ".join(f"{n} x {reason}" for reason, n in result.failures.most_common())
        return TenantCheck(
            slug, False, f"{result.failed} of {result.sent} messages were not acknowledged by the broker ({reasons})"
        )
    table = f"{tenant.schema}.{TELEMETRY_TABLE}"
    started = time.monotonic()
    try:
        stored = wait_for_rows(dsn, tenant.schema, run_id, result.acknowledged, timeout=timeout)
    except psycopg.Error as error:
        return TenantCheck(
            slug,
            False,
            f"cannot read {table} as {tenant.reader_role} ({_first_line(error)}): check databaseEndpoint and readerPasswords",
        )
    waited = time.monotonic() - started
    if stored >= result.acknowledged:
        return TenantCheck(
            slug, True, f"{stored}/{result.acknowledged} messages stored in {table} after {waited:.1f} s (run {run_id})"
        )
    return TenantCheck(
        slug,
        False,
        f"{stored}/{result.acknowledged} messages stored in {table} after {timeout:g} s (run {run_id}): "
        "check the ingest service logs and the EMQX rule and action metrics",
    )


def losses_during(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """How much each loss counter grew; a counter lower than before was reset (EMQX restarted or
    the action was updated), so all of its current value is new."""
    grown = {name: value - before.get(name, 0) if value >= before.get(name, 0) else value
             for name, value in after.items()}
    return {name: value for name, value in grown.items() if value > 0}


def with_loss_check(check: TenantCheck, losses: dict[str, int]) -> TenantCheck:
    if not losses:
        return check
    grown = ", ".join(f"{name} +{value}" for name, value in sorted(losses.items()))
    return TenantCheck(check.slug, False, f"{check.detail}; EMQX lost messages during the run ({grown}): "
                       "see `make status` and README 'Delivery guarantees'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.smoke", description="Check that every tenant's messages are stored."
    )
    add_source_arguments(parser)
    parser.add_argument("--tenant", "-t", action="append", help="check only this tenant (repeatable; default: all)")
    parser.add_argument(
        "--messages", "-m", type=int, default=3, help="messages per tenant (default 3, at least one per device user)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for each tenant's rows (default 30)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_id = uuid.uuid4().hex[:12]
    try:
        if args.cafile and not args.tls:
            raise ToolError("--cafile is for TLS connections: add --tls")
        outputs = load_outputs(stack=args.stack, outputs_file=args.outputs_file)
        slugs = args.tenant or tenant_slugs(outputs)
        given = from_credentials_file(args.credentials_file) if args.credentials_file is not None else None
    except ToolError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    if not slugs:
        print("error: the stack has no tenants: add one to telemetry:tenants and run `pulumi up`", file=sys.stderr)
        return 2
    checks = []
    try:
        with emqx_api(outputs) as api:
            before = {slug: tenant_status(api, slug).counters() for slug in slugs}
            with _devices(given, outputs, slugs, run_id) as devices:
                for slug in slugs:
                    if slug in devices.problems:
                        check = TenantCheck(slug, False, devices.problems[slug])
                    else:
                        check = check_tenant(
                            outputs, slug, messages=args.messages, timeout=args.timeout,
                            credentials=devices.credentials, tls=args.tls, cafile=args.cafile,
                        )
                    check = with_loss_check(check, losses_during(before[slug], tenant_status(api, slug).counters()))
                    print(check.line, flush=True)
                    checks.append(check)
    except ToolError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    failed = sum(not c.passed for c in checks)
    print(f"smoke: {len(checks) - failed} of {len(checks)} tenants passed")
    return 1 if failed else 0


@contextmanager
def _devices(given: CheckDevices | None, outputs: dict[str, Any], slugs: Sequence[str],
             run_id: str) -> Iterator[CheckDevices]:
    if given is not None:
        yield given
        return
    with check_devices(outputs, slugs, run_id) as devices:
        yield devices


if __name__ == "__main__":
    sys.exit(main())
