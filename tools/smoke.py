"""Smoke check after a deploy: every tenant's messages reach its own table.

    python -m tools.smoke [--stack dev | --outputs-file outputs.json] [--tenant SLUG ...] [--credentials-file F]

With ``--credentials-file`` (written by ``python -m tools.devices``), each
tenant publishes as its registered devices from that file, each connecting
with its username as client id; tenants without a device in the file fail
with that reason.

For each tenant it publishes a few messages through the simulator (one device
per device user, all carrying a fresh run id), then reads the tenant's
``telemetry`` table as the tenant's reader role until every acknowledged
message is there or the timeout passes.  It also reads the tenant's EMQX rule
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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from components.providers.telemetry_ddl import TELEMETRY_TABLE
from tools import ToolError
from tools.device_files import read_credentials
from tools.simulate import SimulationSettings, add_source_arguments, run_simulation, tls_address
from tools.stack_outputs import load_outputs, mqtt_address, reader_dsn, tenant_outputs, tenant_slugs
from tools.status import emqx_api, tenant_status


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
        # Registry devices cannot take a tagged client id; the smoke check then ends any session
        # the same device holds elsewhere (use devices set aside for checks).
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
    try:
        if args.cafile and not args.tls:
            raise ToolError("--cafile is for TLS connections: add --tls")
        outputs = load_outputs(stack=args.stack, outputs_file=args.outputs_file)
        slugs = args.tenant or tenant_slugs(outputs)
        credentials = None
        if args.credentials_file is not None:
            credentials = {}
            for credential in read_credentials(args.credentials_file):
                credentials.setdefault(credential.tenant, {})[credential.device_id] = credential.password
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
            for slug in slugs:
                check = check_tenant(
                    outputs, slug, messages=args.messages, timeout=args.timeout, credentials=credentials,
                    tls=args.tls, cafile=args.cafile,
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


if __name__ == "__main__":
    sys.exit(main())
