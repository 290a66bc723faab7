"""Device simulator: N devices of one tenant publish telemetry over MQTT.

    python -m tools.devices add sensor-1 sensor-2 --tenant hospital-x --stack dev --credentials-file devices.csv
    python -m tools.simulate --credentials-file devices.csv --tenant hospital-x --devices 2 --rate 20 --duration 30

Devices are rows of the registry: credentials come from a credentials file of
``python -m tools.devices`` (``--credentials-file``; each simulated device is one registered
device, connecting with its username as client id), or from
``--host/--port/--username/--password/--topic-prefix``; the broker's address comes from the
stack outputs (the pulumi CLI, or ``--outputs-file``) unless ``--host/--port`` are given. A stack
whose tenants still list ``devices`` (the migration, README "Devices") also exports those
devices' passwords, which ``--tenant`` alone uses. ``--tls`` connects to the stack's TLS listener
(``mqttTlsEndpoint``) and verifies the broker with the stack's CA (``mqttCaCertificate``) or
``--cafile``.

The simulation itself is ``tools/simulation.py``.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools import ToolError
from tools.device_files import read_credentials
from tools.simulation import (
    CA_HINT,
    CREDENTIALS_HINT,
    DeviceStats,
    Progress,
    SensorModel,
    SimulatedDevice,
    SimulationResult,
    SimulationSettings,
    format_summary,
    run_simulation,
    tls_address,
    tls_context,
)
from tools.stack_outputs import OUTPUTS_COMMAND, load_outputs, mqtt_address, tenant_outputs

__all__ = [
    "CA_HINT", "CREDENTIALS_HINT", "DeviceStats", "Progress", "SensorModel", "SimulatedDevice", "SimulationResult",
    "SimulationSettings", "add_source_arguments", "build_parser", "format_summary", "main", "run_simulation",
    "settings_from_args", "tls_address", "tls_context", "tls_settings",
]


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the stack outputs come from; shared with tools.smoke."""
    source = parser.add_argument_group("stack outputs")
    source.add_argument(
        "--stack", "-s", help="stack to read outputs from with the pulumi CLI (default: the selected stack)"
    )
    source.add_argument("--outputs-file", help=f"JSON of `{OUTPUTS_COMMAND}` instead of asking the pulumi CLI")
    source.add_argument(
        "--credentials-file",
        type=Path,
        help="device credentials written by `python -m tools.devices` (tenant,topic_prefix,device_id,password)",
    )
    tls = parser.add_argument_group("TLS")
    tls.add_argument(
        "--tls", action="store_true", help="connect to the TLS listener (mqttTlsEndpoint) and verify the broker"
    )
    tls.add_argument(
        "--cafile", help="CA certificate (PEM) to verify the broker with (default: the stack's mqttCaCertificate)"
    )


def tls_settings(args: argparse.Namespace, outputs: dict[str, Any] | None) -> dict[str, Any]:
    """The TLS fields of SimulationSettings from --tls/--cafile and the stack outputs."""
    if args.cafile and not args.tls:
        raise ToolError("--cafile is for TLS connections: add --tls")
    if not args.tls:
        return {}
    ca_data = None if args.cafile or outputs is None else outputs.get("mqttCaCertificate")
    return {"tls": True, "cafile": args.cafile, "ca_data": ca_data}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.simulate",
        description="Simulate devices of one tenant publishing telemetry over MQTT.",
    )
    parser.add_argument("--tenant", "-t", help="tenant slug (required unless --topic-prefix and credentials are given)")
    add_source_arguments(parser)
    direct = parser.add_argument_group("explicit connection (overrides the stack outputs)")
    direct.add_argument("--host", help="MQTT broker host (default: from mqttEndpoint)")
    direct.add_argument("--port", type=int, help="MQTT broker port (default: from mqttEndpoint)")
    direct.add_argument("--username", help="device (default: the devices of --credentials-file, one connection each)")
    direct.add_argument("--password", help="password of --username (default: from --credentials-file)")
    direct.add_argument("--topic-prefix", help="publish under tenants/<prefix>/... (default: the tenant's topicPrefix)")
    load = parser.add_argument_group("load")
    load.add_argument(
        "--devices", "-n", type=_positive_int, default=1, help="simulated devices, one MQTT connection each (default 1)"
    )
    load.add_argument(
        "--rate",
        "-r",
        type=_positive_float,
        default=10.0,
        help="total messages per second over all devices (default 10)",
    )
    load.add_argument("--duration", "-d", type=_positive_float, help="seconds to publish for")
    load.add_argument(
        "--count",
        "-c",
        type=_positive_int,
        help="messages to publish in total (default 10 when --duration is not given)",
    )
    load.add_argument("--qos", type=int, choices=(0, 1, 2), default=1, help="MQTT QoS (default 1)")
    load.add_argument("--run-id", help="run id put in every payload (default: random)")
    load.add_argument(
        "--ack-timeout",
        type=_positive_float,
        default=10.0,
        help="seconds to wait for outstanding PUBACKs at the end (default 10)",
    )
    load.add_argument(
        "--connect-timeout", type=_positive_float, default=10.0, help="seconds to wait for each CONNACK (default 10)"
    )
    return parser


def credentials_for(path: Path, tenant: str | None) -> tuple[str, str, dict[str, str]]:
    """(tenant, topic prefix, {device: password}) of one tenant in a credentials file."""
    credentials = read_credentials(path)
    tenants = sorted({c.tenant for c in credentials})
    if tenant is None:
        if len(tenants) != 1:
            raise ToolError(f"--credentials-file {path} holds tenants {', '.join(tenants)}: pick one with --tenant")
        tenant = tenants[0]
    mine = [c for c in credentials if c.tenant == tenant]
    if not mine:
        raise ToolError(f"--credentials-file {path} has no device of tenant '{tenant}' (it has: {', '.join(tenants)})")
    return tenant, mine[0].topic_prefix, {c.device_id: c.password for c in mine}


def settings_from_file(args: argparse.Namespace) -> SimulationSettings:
    tenant, prefix, passwords = credentials_for(args.credentials_file, args.tenant)
    outputs: dict[str, Any] | None = None
    if args.host and args.port:
        host, port = args.host, args.port
    else:
        outputs = load_outputs(stack=args.stack, outputs_file=args.outputs_file)
        host, port = tls_address(outputs) if args.tls else mqtt_address(outputs)
    usernames = (args.username,) if args.username else tuple(passwords)
    if args.password is not None:
        passwords[usernames[0]] = args.password
    if usernames[0] not in passwords:
        raise ToolError(f"device '{usernames[0]}' is not in --credentials-file {args.credentials_file}")
    count = args.count if args.count is not None or args.duration is not None else 10
    return SimulationSettings(
        host=host, port=port, usernames=usernames, passwords=passwords,
        topic_prefix=args.topic_prefix or prefix, devices=args.devices, rate=args.rate, duration=args.duration,
        count=count, qos=args.qos, run_id=args.run_id or uuid.uuid4().hex[:12], connect_timeout=args.connect_timeout,
        ack_timeout=args.ack_timeout, label=tenant, client_id_is_username=True, **tls_settings(args, outputs),
    )


def settings_from_args(args: argparse.Namespace) -> SimulationSettings:
    if args.credentials_file is not None:
        return settings_from_file(args)
    explicit = args.host and args.port and args.username and args.password is not None and args.topic_prefix
    outputs: dict[str, Any] | None = None
    if not explicit:
        if not args.tenant:
            raise ToolError(
                "give --tenant <slug> (or all of --host, --port, --username, --password and --topic-prefix)"
            )
        outputs = load_outputs(stack=args.stack, outputs_file=args.outputs_file)
    endpoint = tls_address if args.tls else mqtt_address
    host, port = endpoint(outputs) if outputs is not None and not (args.host and args.port) else (None, None)
    usernames: tuple[str, ...]
    passwords: dict[str, str] = {}
    topic_prefix = args.topic_prefix
    if outputs is not None:
        tenant = tenant_outputs(outputs, args.tenant)
        usernames, passwords = tenant.devices, dict(tenant.device_passwords)
        topic_prefix = topic_prefix or tenant.topic_prefix
    if args.username:
        usernames = (args.username,)
    if args.password is not None:
        passwords[usernames[0]] = args.password
    for username in usernames:
        if username not in passwords:
            raise ToolError(
                f"no password for device '{username}': pass --password, or --credentials-file ({CREDENTIALS_HINT})"
            )
    count = args.count if args.count is not None or args.duration is not None else 10
    return SimulationSettings(
        host=args.host or host,
        port=args.port or port,
        usernames=usernames,
        passwords=passwords,
        topic_prefix=topic_prefix,
        devices=args.devices,
        rate=args.rate,
        duration=args.duration,
        count=count,
        qos=args.qos,
        run_id=args.run_id or uuid.uuid4().hex[:12],
        connect_timeout=args.connect_timeout,
        ack_timeout=args.ack_timeout,
        label=args.tenant or "",
        **tls_settings(args, outputs),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        result = run_simulation(settings, Progress(sys.stderr))
    except ToolError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(format_summary(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
