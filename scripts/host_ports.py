"""Before `pulumi up`: are the host ports the stack publishes free?

    .venv/bin/python -m scripts.host_ports dev

Docker fails a container's start when its host port is taken, after the volumes, network and
images are already in place. A Debian `postgresql-15` (which the tests' prerequisites
install) listens on 5432, a mosquitto service on 1883 and 8883, development servers on 8000:
this names the process holding a port and the config key that moves the stack's port.
Ports this stack's own containers already publish (a redeploy) are not conflicts.
Exit 0 when all are free, 1 with one line per taken port.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from components.config import NAMESPACE, EmqxConfig, IngestConfig, TimescaleDbConfig, host_ports
from components.labels import STACK_LABEL

ROOT = Path(__file__).resolve().parent.parent
# Where each published port binds (components/emqx.py, timescaledb.py, ingest.py): MQTT on
# every interface for devices, the rest on loopback only.
ALL_INTERFACES_KEYS = ("emqx.mqttPort", "emqx.mqttTlsPort")


@dataclass(frozen=True)
class HostPort:
    key: str  # e.g. timescaledb.hostPort
    port: int
    address: str


def stack_host_ports(stack: str, root: Path = ROOT) -> list[HostPort]:
    """The host ports of ``Pulumi.<stack>.yaml`` (defaults for what it leaves out)."""
    path = root / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text()) if path.exists() else None
    values = (document or {}).get("config") or {}
    raw = {key.split(":", 1)[1]: value for key, value in values.items() if key.startswith(f"{NAMESPACE}:")}
    try:
        sections = [model.model_validate(raw.get(name) or {}) for name, model in (
            ("timescaledb", TimescaleDbConfig), ("emqx", EmqxConfig), ("ingest", IngestConfig)
        )]
    except ValidationError:
        return []  # `pulumi up` reports bad config, with every problem named
    return [
        HostPort(key, port, "0.0.0.0" if key in ALL_INTERFACES_KEYS else "127.0.0.1")
        for key, port in host_ports(*sections)
    ]


def published_by_stack(stack: str) -> set[int]:
    """Host ports the stack's own containers publish now (so a redeploy does not trip on them)."""
    if shutil.which("docker") is None:
        return set()
    listing = subprocess.run(
        ["docker", "ps", "--filter", f"label={STACK_LABEL}={stack}", "--format", "{{.Ports}}"],
        capture_output=True, text=True, check=False,
    )
    return {int(port) for port in re.findall(r":(\d+)->", listing.stdout)} if listing.returncode == 0 else set()


def port_is_free(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As Docker's proxy binds: reuse past TIME_WAIT, so only a listener counts as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def listener_of(port: int) -> str | None:
    """``name (pid N)`` of the process listening on ``port``, if this user may see it."""
    inodes = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                name = Path(f"/proc/{pid}/comm").read_text().strip()
                return f"{name} (pid {pid})"
        except OSError:
            continue  # gone, or another user's process
    return None


def describe_conflict(host_port: HostPort, holder: str | None) -> str:
    who = holder or (
        "another process (not visible to this user; "
        f"`sudo ss -ltnp 'sport = :{host_port.port}'` or `sudo lsof -nP -iTCP:{host_port.port} -sTCP:LISTEN` names it)"
    )
    return (
        f"{NAMESPACE}:{host_port.key}: host port {host_port.port} ({host_port.address}) is already in use by {who}; "
        f"stop it, or give the stack another port: `pulumi config set --path {NAMESPACE}:{host_port.key} <port>`"
    )


def conflicts(stack: str, root: Path = ROOT) -> list[str]:
    ours = published_by_stack(stack)
    return [
        describe_conflict(host_port, listener_of(host_port.port))
        for host_port in stack_host_ports(stack, root)
        if host_port.port not in ours and not port_is_free(host_port.address, host_port.port)
    ]


def main(argv: list[str]) -> int:
    stack = argv[0] if argv else "dev"
    problems = conflicts(stack)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
