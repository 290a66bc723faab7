"""Manage a tenant's devices: rows in the registry that EMQX authenticates against, no `pulumi up` needed.

    python -m tools.devices add sensor-001 sensor-002 --stack dev --tenant hospital-x
    python -m tools.devices import devices.csv --stack dev --tenant hospital-x --credentials-file creds.csv
    python -m tools.devices list|export|disable|enable|rotate|remove ... --tenant hospital-x

A device's id is its MQTT username and its client id.  Generated passwords
are shown once: printed as CSV (``tenant,topic_prefix,device_id,password``)
or written to a new file of mode 0600 with ``--credentials-file``; the
registry keeps only a salted hash.  The tool connects as the stack's
device-manager role, which may change device rows and nothing else: from the
stack output ``deviceManagerDsn`` (``--stack``/``--outputs-file``), or given
directly with ``--dsn`` (libpq also reads PGPASSWORD, which keeps the password
out of the process list).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from components.devices import stale_bounds
from tools import ToolError
from tools import device_store as store
from tools.device_files import CredentialsSink, open_export, parse_import, write_export
from tools.stack_outputs import OUTPUTS_COMMAND, load_outputs, require_output

DSN_OUTPUT = "deviceManagerDsn"


def resolve_dsn(args: argparse.Namespace) -> str:
    if args.dsn:
        return args.dsn
    outputs = load_outputs(stack=args.stack, outputs_file=args.outputs_file)
    otherwise = f"read the outputs with --show-secrets (`{OUTPUTS_COMMAND}`), or pass --dsn"
    return str(require_output(outputs, DSN_OUTPUT, otherwise))


def _stale_note(what: str) -> str:
    v5, v6 = stale_bounds(5), stale_bounds(6)
    return (
        f"{what}: refused at the next connect (EMQX 5.8: at once; 6.x: within {v6['connect']} s); a connected "
        f"device's publishes are denied, and it is disconnected, within {v5['publish']} s (6.x: {v6['publish']} s)"
    )


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- commands


def cmd_add(conn, tenant: store.Tenant, args: argparse.Namespace) -> int:
    _unique(args.device_ids)
    devices = [store.generated(d, label=args.label, enabled=not args.disabled) for d in args.device_ids]
    with CredentialsSink(args.credentials_file) as sink:
        store.add_devices(conn, tenant, devices)
        sink.write(store.credentials_of(tenant, devices))
    _print(f"added {len(devices)} device(s) to tenant '{tenant.slug}'" + _credentials_where(args))
    return 0


def cmd_import(conn, tenant: store.Tenant, args: argparse.Namespace) -> int:
    name = "standard input" if str(args.file) == "-" else str(args.file)
    try:
        stream = sys.stdin if str(args.file) == "-" else open(args.file, newline="")  # noqa: SIM115
    except OSError as error:
        raise ToolError(f"cannot read {name} ({error.strerror}): give the path of a CSV file") from None
    with stream:
        devices = parse_import(stream, name)
    credentials = store.credentials_of(tenant, devices)
    if credentials and args.credentials_file is None and sys.stdout.isatty() and len(credentials) > 20:
        raise ToolError(
            f"{len(credentials)} passwords would be printed to the terminal: pass --credentials-file PATH "
            "(a new file of mode 0600), or redirect standard output"
        )
    with CredentialsSink(args.credentials_file if credentials else None) as sink:
        with tqdm(total=len(devices), unit="device", desc="importing", file=sys.stderr, disable=None) as bar:
            store.add_devices(conn, tenant, devices, progress=bar.update)
        if credentials:
            sink.write(credentials)
    restored = len(devices) - len(credentials)
    _print(
        f"imported {len(devices)} device(s) into tenant '{tenant.slug}'"
        + (f" ({restored} with their stored password hash)" if restored else "")
        + (_credentials_where(args) if credentials else "")
    )
    return 0


def cmd_list(conn, tenant: store.Tenant | None, args: argparse.Namespace) -> int:
    devices = store.devices_of(conn, args.tenant)
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(("device_id", "enabled", "label", "created_at", "rotated_at"))
        for d in devices:
            writer.writerow((d.device_id, "true" if d.enabled else "false", d.label or "",
                             d.created_at.isoformat(), d.rotated_at.isoformat()))
        return 0
    width = max([len("DEVICE"), *(len(d.device_id) for d in devices)])
    print(f"{'DEVICE':<{width}}  ENABLED  ROTATED                    LABEL")
    for d in devices:
        enabled = "yes" if d.enabled else "no"
        print(f"{d.device_id:<{width}}  {enabled:<7}  {d.rotated_at.isoformat(timespec='seconds'):<25}  {d.label or ''}")
    _print(f"{len(devices)} device(s) in tenant '{args.tenant}'")
    return 0


def cmd_export(conn, tenant: store.Tenant | None, args: argparse.Namespace) -> int:
    devices = store.devices_of(conn, args.tenant)
    stream = open_export(args.output, args.with_hashes)
    try:
        count = write_export(devices, stream, args.with_hashes)
    finally:
        if stream is not sys.stdout:
            stream.close()
    where = f" to {args.output}" if args.output else ""
    _print(f"exported {count} device(s) of tenant '{args.tenant}'{where}"
           + (" with their password hashes (keep the file private)" if args.with_hashes else ""))
    return 0


def cmd_enable(conn, tenant: store.Tenant | None, args: argparse.Namespace, enabled: bool) -> int:
    changed = store.set_enabled(conn, args.tenant, args.device_ids, enabled)
    unchanged = len(args.device_ids) - changed
    state = "enabled" if enabled else "disabled"
    _print(f"{state} {changed} device(s)" + (f"; {unchanged} already {state}" if unchanged else ""))
    if not enabled and changed:
        _print(_stale_note("disabled devices"))
    return 0


def cmd_rotate(conn, tenant: store.Tenant, args: argparse.Namespace) -> int:
    _unique(args.device_ids)
    with CredentialsSink(args.credentials_file) as sink:
        credentials = store.rotate(conn, tenant, args.device_ids)
        sink.write(credentials)
    v6 = stale_bounds(6)["connect"]
    _print(f"rotated {len(credentials)} password(s)" + _credentials_where(args)
           + f"; the old passwords stop working at once on EMQX 5.8 and within {v6} s on 6.x "
           "(connected devices stay connected until they reconnect)")
    return 0


def cmd_remove(conn, tenant: store.Tenant | None, args: argparse.Namespace) -> int:
    removed = store.remove(conn, args.tenant, args.device_ids)
    _print(f"removed {removed} device(s) from tenant '{args.tenant}'")
    _print(_stale_note("removed devices"))
    return 0


def _unique(device_ids: Sequence[str]) -> None:
    repeated = sorted({d for d in device_ids if list(device_ids).count(d) > 1})
    if repeated:
        raise ToolError(f"{', '.join(map(repr, repeated))} given more than once: name each device once")


def _credentials_where(args: argparse.Namespace) -> str:
    if args.credentials_file:
        return f"; credentials written to {args.credentials_file} (mode 0600); they are not stored anywhere else"
    return "; the credentials above are shown only this once"


# --------------------------------------------------------------------------- command line

# Commands that create credentials need the tenant in the registry; the others also work on
# the devices of a tenant that has left the stack (they can no longer connect).
NEEDS_TENANT = {"add", "import", "rotate"}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tenant", "-t", required=True, help="the tenant's slug")
    source = common.add_argument_group("database (one of)")
    exclusive = source.add_mutually_exclusive_group()
    exclusive.add_argument("--stack", "-s", help="read deviceManagerDsn from this stack's outputs (pulumi CLI)")
    exclusive.add_argument("--outputs-file", help=f"read deviceManagerDsn from the JSON of `{OUTPUTS_COMMAND}`")
    exclusive.add_argument("--dsn", help="connect with this libpq connection string (the device-manager role)")

    def credentials_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--credentials-file", type=Path,
            help="write the new credentials to this new file (mode 0600) instead of standard output",
        )

    parser = argparse.ArgumentParser(
        prog="python -m tools.devices",
        description="Manage a tenant's MQTT devices in the registry (no `pulumi up` needed).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = commands.add_parser("add", parents=[common], help="add devices with generated passwords")
    add.add_argument("device_ids", nargs="+", metavar="DEVICE_ID")
    add.add_argument("--label", help="a note stored with the devices (at most 200 characters)")
    add.add_argument("--disabled", action="store_true", help="add them disabled")
    credentials_option(add)
    imp = commands.add_parser("import", parents=[common], help="add the devices of a CSV file (all or none)")
    imp.add_argument("file", type=Path, help="CSV with a header: device_id[,label][,enabled][,password | "
                     "password_hash,salt]; '-' reads standard input")
    credentials_option(imp)
    exp = commands.add_parser("export", parents=[common], help="write the tenant's devices as CSV")
    exp.add_argument("--output", "-o", type=Path, help="a new file (default: standard output)")
    exp.add_argument("--with-hashes", action="store_true",
                     help="include password_hash and salt, so that an import restores the devices as they are")
    lst = commands.add_parser("list", parents=[common], help="show the tenant's devices")
    lst.add_argument("--format", choices=("table", "csv"), default="table")
    for name, text in (("disable", "refuse these devices"), ("enable", "accept these devices again"),
                       ("remove", "delete these devices")):
        sub = commands.add_parser(name, parents=[common], help=text)
        sub.add_argument("device_ids", nargs="+", metavar="DEVICE_ID")
    rot = commands.add_parser("rotate", parents=[common], help="give these devices new passwords")
    rot.add_argument("device_ids", nargs="+", metavar="DEVICE_ID")
    credentials_option(rot)
    return parser


def run(args: argparse.Namespace) -> int:
    dsn = resolve_dsn(args)
    with store.connect(dsn) as conn:
        if args.command in NEEDS_TENANT:
            tenant = store.require_tenant(conn, args.tenant)
            if not tenant.enabled:
                _print(f"note: tenant '{tenant.slug}' is disabled in the registry: its devices cannot connect")
        else:
            tenant = store.tenant_or_orphans(conn, args.tenant)
            if tenant is None:
                _print(f"note: tenant '{args.tenant}' is no longer in the registry: its devices cannot connect")
        handlers = {
            "add": cmd_add,
            "import": cmd_import,
            "list": cmd_list,
            "export": cmd_export,
            "disable": lambda c, t, a: cmd_enable(c, t, a, False),
            "enable": lambda c, t, a: cmd_enable(c, t, a, True),
            "rotate": cmd_rotate,
            "remove": cmd_remove,
        }
        return handlers[args.command](conn, tenant, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ToolError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing was changed by the command that was running", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
