"""The real stack, end to end, through the Automation API (needs a Docker engine and the pulumi CLI).

One test walks the life of a stack, because each step builds on the last:
up with two tenants; devices are added with the device CLI through the
`deviceManagerDsn` output (no `pulumi up`); a device's messages land in its
tenant's schema only, over the plain and the TLS listener; cross-tenant
publishing, a wrong password and a device using another device's client id
are refused, and the last does not end the victim's session; a disabled
device is refused at its next connect; the smoke check passes with its own
check devices; a third tenant is added with creations only and works; refresh
finds no drift; destroy leaves nothing behind.  The stack lives in a file
backend in a temporary folder, under a unique name, on free host ports, so it
can run beside a dev stack; it is destroyed and removed whatever happens.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tools import ToolError, smoke
from tools import devices as devices_cli
from tools.device_files import read_credentials
from tools.simulate import SimulationResult, SimulationSettings, run_simulation, tls_address
from tools.stack_outputs import mqtt_address

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMESCALEDB_IMAGE = "timescale/timescaledb:2.17.2-pg16"
EMQX_IMAGE = "emqx/emqx:5.8.9"
ARRIVAL_TIMEOUT = 60.0  # bounded wait for rows; not a latency assertion
NO_CHANGE_OPS = {"same"}
# Devices are not stack config: they are added with `python -m tools.devices` once the stack is up.
TENANT_A = {"slug": "it-alpha", "topicPrefix": "alpha", "chunkInterval": "1 day"}
TENANT_B = {"slug": "it-bravo", "topicPrefix": "bravo", "retention": "30 days"}
TENANT_C = {"slug": "it-charlie", "topicPrefix": "charlie"}


def missing_prerequisites() -> list[str]:
    """What this machine lacks to build a real stack, each named with how to get it."""
    missing = []
    if shutil.which("pulumi") is None:
        missing.append("the pulumi CLI is not on PATH (https://www.pulumi.com/docs/install/)")
    docker = shutil.which("docker")
    if docker is None:
        missing.append("the docker CLI is not on PATH")
    else:
        try:
            info = subprocess.run([docker, "info"], check=False, capture_output=True, text=True, timeout=60)
            if info.returncode != 0:
                reason = (info.stderr.strip().splitlines() or ["no error text"])[-1]
                missing.append(f"`docker info` failed, so no Docker engine is reachable ({reason})")
        except subprocess.TimeoutExpired:
            missing.append("`docker info` did not answer within 60 s, so no Docker engine is reachable")
    return missing


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def docker_lines(*args: str) -> list[str]:
    completed = subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=120)
    return [line for line in completed.stdout.splitlines() if line.strip()]


@dataclass
class StackUnderTest:
    auto: Any  # pulumi.automation, imported only where the prerequisites exist
    stack: Any
    name: str
    env: dict[str, str]
    ports: dict[str, int]
    destroyed: bool = False

    @property
    def label(self) -> str:
        return f"telemetry.stack={self.name}"

    def config(self, tenants: list[dict]) -> dict:
        value = self.auto.ConfigValue
        return {
            "telemetry:timescaledb": value(json.dumps({"image": TIMESCALEDB_IMAGE, "hostPort": self.ports["db"]})),
            "telemetry:emqx": value(
                json.dumps(
                    {
                        "image": EMQX_IMAGE,
                        "mqttPort": self.ports["mqtt"],
                        "mqttTlsPort": self.ports["mqtt_tls"],
                        "dashboardPort": self.ports["dashboard"],
                    }
                )
            ),
            "telemetry:ingest": value(json.dumps({"hostPort": self.ports["ingest"], "workers": 2})),
            "telemetry:tenants": value(json.dumps(tenants)),
        }

    def set_tenants(self, tenants: list[dict]) -> None:
        # Whole objects as JSON strings, not --path keys: the program reads each key with require_object.
        self.stack.set_all_config(self.config(tenants), path=False)

    def outputs(self) -> dict[str, Any]:
        return {name: output.value for name, output in self.stack.outputs().items()}

    def destroy(self) -> Any:
        # The data volumes are protected against an ordinary destroy; a test stack is meant to go entirely.
        # (On a stack with nothing protected this fails harmlessly; destroy reports any real problem.)
        subprocess.run(
            [
                "pulumi",
                "state",
                "unprotect",
                "--all",
                "--yes",
                "--stack",
                self.name,
                "--cwd",
                str(REPO_ROOT),
                "--non-interactive",
            ],
            check=False,
            env={**os.environ, **self.env},
            capture_output=True,
            timeout=600,
        )
        result = self.stack.destroy(color="never", on_output=print)
        self.destroyed = result.summary.result == "succeeded"
        return result

    def remove_leftovers(self) -> None:
        """Remove whatever Docker still has with this stack's label (retained volumes, or all after a failed destroy)."""
        for kind, listing in (
            ("container", ["ps", "-aq"]),
            ("volume", ["volume", "ls", "-q"]),
            ("network", ["network", "ls", "-q"]),
        ):
            ids = docker_lines(*listing, "--filter", f"label={self.label}")
            if ids:
                subprocess.run(
                    ["docker", kind, "rm", "-f", *ids] if kind != "network" else ["docker", "network", "rm", *ids],
                    check=False,
                    capture_output=True,
                    timeout=300,
                )


@pytest.fixture()
def stack_under_test(tmp_path: Path) -> Iterator[StackUnderTest]:
    missing = missing_prerequisites()
    if missing:
        pytest.skip("the integration stack needs Docker and the pulumi CLI: " + "; ".join(missing))
    from pulumi import automation as auto

    name = f"it{uuid.uuid4().hex[:10]}"
    backend = tmp_path / "state"
    backend.mkdir()
    # A private PULUMI_HOME keeps `stack init` from changing the stack the developer has selected for this
    # project; the plugins folder is shared so the providers are not downloaded again.
    real_home = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    (real_home / "plugins").mkdir(parents=True, exist_ok=True)
    home = tmp_path / "pulumi-home"
    home.mkdir()
    (home / "plugins").symlink_to(real_home / "plugins")
    env = {
        "PULUMI_HOME": str(home),
        "PULUMI_BACKEND_URL": backend.as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": secrets.token_urlsafe(24),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    workspace = auto.LocalWorkspace(work_dir=str(REPO_ROOT), env_vars=env, secrets_provider="passphrase")
    stack = auto.Stack.create(name, workspace)
    ports = dict(zip(("db", "mqtt", "mqtt_tls", "dashboard", "ingest"), free_ports(5), strict=True))
    handle = StackUnderTest(auto, stack, name, env, ports)
    try:
        yield handle  # the test ends with its own, asserted, destroy; this is for when it did not get there
    finally:
        try:
            try:
                if not handle.destroyed:
                    handle.destroy()
            finally:
                handle.remove_leftovers()  # also the data volumes that destroy retains on purpose
        finally:
            workspace.remove_stack(name, force=True)
            (REPO_ROOT / f"Pulumi.{name}.yaml").unlink(missing_ok=True)


# ---------------------------------------------------------------- helpers


def add_devices(outputs: dict[str, Any], slug: str, device_ids: list[str], folder: Path) -> dict[str, str]:
    """`python -m tools.devices add` through the stack's deviceManagerDsn; device id -> password."""
    path = folder / f"{slug}-{uuid.uuid4().hex[:6]}.csv"
    command = ["add", *device_ids, "--tenant", slug, "--dsn", outputs["deviceManagerDsn"], "--credentials-file", str(path)]
    assert devices_cli.main(command) == 0
    return {c.device_id: c.password for c in read_credentials(path)}


def publish(
    outputs: dict[str, Any], slug: str, devices: dict[str, str], *, count: int = 5, topic_prefix: str | None = None,
    password: str | None = None, tls: bool = False,
) -> SimulationResult:
    """Publish as registry devices, one connection each, client id = username."""
    host, port = tls_address(outputs) if tls else mqtt_address(outputs)
    passwords = {device: password or secret for device, secret in devices.items()}
    settings = SimulationSettings(
        host=host,
        port=port,
        usernames=tuple(devices),
        passwords=passwords,
        topic_prefix=topic_prefix or outputs["tenants"][slug]["topicPrefix"],
        devices=len(devices),
        rate=20,
        count=count,
        run_id=f"it-{uuid.uuid4().hex[:12]}",
        label=slug,
        ack_timeout=15,
        client_id_is_username=True,
        tls=tls,
        ca_data=outputs["mqttCaCertificate"] if tls else None,
    )
    return run_simulation(settings)


class Session:
    """One MQTT connection held open, recording its CONNACK and how it ended."""

    def __init__(self, outputs: dict[str, Any], client_id: str, username: str, password: str) -> None:
        host, port = mqtt_address(outputs)
        self.connack: Any = None
        self.ended: Any = None
        self._answered = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        assert self._answered.wait(15), f"no CONNACK for {client_id}"

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        self.connack = reason
        self._answered.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self.ended = reason
        self._answered.set()

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def superuser_dsn(outputs: dict[str, Any]) -> str:
    return make_conninfo(
        outputs["databaseEndpoint"], user="postgres", password=outputs["databaseSuperuserPassword"], connect_timeout=10
    )


def rows_by_schema(outputs: dict[str, Any], run_id: str) -> dict[str, int]:
    """Rows of one run in every schema that has a telemetry table, read as the superuser."""
    with psycopg.connect(superuser_dsn(outputs), autocommit=True) as conn:
        schemas = [
            row[0]
            for row in conn.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'telemetry' ORDER BY 1"
            )
        ]
        return {
            schema: conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE payload->>'run_id' = %s").format(
                    sql.Identifier(schema, "telemetry")
                ),
                (run_id,),
            ).fetchone()[0]
            for schema in schemas
        }


def wait_for_rows(outputs: dict[str, Any], run_id: str, schema: str, expected: int) -> dict[str, int]:
    deadline = time.monotonic() + ARRIVAL_TIMEOUT
    while True:
        counts = rows_by_schema(outputs, run_id)
        if counts.get(schema, 0) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def assert_stored_only_in(outputs: dict[str, Any], slug: str, result: SimulationResult) -> None:
    assert result.ok, f"publishing as {slug} failed: {dict(result.failures)} {result.stopped_early}"
    schema = outputs["tenants"][slug]["schema"]
    counts = wait_for_rows(outputs, result.settings.run_id, schema, result.sent)
    assert counts.get(schema) == result.sent, counts
    assert {s: n for s, n in counts.items() if s != schema and n} == {}
    with psycopg.connect(superuser_dsn(outputs)) as conn:
        rows = conn.execute(
            sql.SQL("SELECT device_id, topic, payload->>'device' FROM {} WHERE payload->>'run_id' = %s").format(
                sql.Identifier(schema, "telemetry")
            ),
            (result.settings.run_id,),
        ).fetchall()
    prefix = outputs["tenants"][slug]["topicPrefix"]
    for device_id, topic, payload_device in rows:
        assert device_id == payload_device and topic == f"tenants/{prefix}/{device_id}/telemetry"


def container_ids(label: str) -> dict[str, str]:
    return dict(
        line.split(" ", 1)[::-1]
        for line in docker_lines("ps", "-a", "--filter", f"label={label}", "--format", "{{.ID}} {{.Names}}")
    )


def changes_other_than(summary: dict, allowed: set[str]) -> dict:
    return {
        str(getattr(op, "value", op)): n
        for op, n in (summary or {}).items()
        if str(getattr(op, "value", op)) not in allowed and n
    }


# ---------------------------------------------------------------- the test


def test_stack_lifecycle(stack_under_test: StackUnderTest, tmp_path: Path) -> None:
    s = stack_under_test

    # 1. up with two tenants; no device is stack config
    s.set_tenants([TENANT_A, TENANT_B])
    up = s.stack.up(color="never", on_output=print)
    assert up.summary.result == "succeeded"
    outputs = s.outputs()
    assert outputs["mqttEndpoint"] == f"mqtt://127.0.0.1:{s.ports['mqtt']}"
    assert outputs["mqttTlsEndpoint"] == f"mqtts://127.0.0.1:{s.ports['mqtt_tls']}"
    assert outputs["databaseEndpoint"] == f"postgresql://127.0.0.1:{s.ports['db']}/telemetry"
    assert set(outputs["tenants"]) == {"it-alpha", "it-bravo"}
    assert outputs["tenants"]["it-alpha"]["schema"] == "tenant_it_alpha"
    assert "deviceCredentials" not in outputs and f"port={s.ports['db']}" in outputs["deviceManagerDsn"]
    assert set(container_ids(s.label)) == {f"telemetry-{s.name}-{part}" for part in ("timescaledb", "emqx", "ingest")}

    # 2. devices are added with the CLI, and at once a device of A publishes: the rows land in A's
    #    schema, in no other, with the authenticated identity as device_id; over TLS too
    alpha = add_devices(outputs, "it-alpha", ["alpha-1", "alpha-2"], tmp_path)
    bravo = add_devices(outputs, "it-bravo", ["bravo-1"], tmp_path)
    assert_stored_only_in(outputs, "it-alpha", publish(outputs, "it-alpha", alpha, count=6))
    assert_stored_only_in(outputs, "it-bravo", publish(outputs, "it-bravo", bravo, count=3, tls=True))

    # 3. A's device under B's prefix is refused (deny_action disconnect) and nothing is stored; a wrong password cannot connect
    crossing = publish(outputs, "it-alpha", {"alpha-1": alpha["alpha-1"]}, count=3, topic_prefix="bravo")
    assert crossing.acknowledged == 0 and not crossing.ok, format_failures(crossing)
    time.sleep(5)  # give a wrongly forwarded message time to be written before looking for it
    assert {schema: n for schema, n in rows_by_schema(outputs, crossing.settings.run_id).items() if n} == {}
    with pytest.raises(ToolError, match="refused user 'alpha-1'"):
        publish(outputs, "it-alpha", {"alpha-1": alpha["alpha-1"]}, password="not-the-password")

    # 4. a device using another device's client id (same tenant, then another tenant) is refused, and
    #    the device holding that id keeps its session
    victim = Session(outputs, "alpha-1", "alpha-1", alpha["alpha-1"])
    try:
        assert victim.accepted, victim.connack
        for username, password in (("alpha-2", alpha["alpha-2"]), ("bravo-1", bravo["bravo-1"])):
            intruder = Session(outputs, "alpha-1", username, password)
            intruder.close()
            assert not intruder.accepted and intruder.connack.getName() == "Not authorized", intruder.connack
        time.sleep(2)
        assert victim.ended is None and victim.client.is_connected()
    finally:
        victim.close()

    # 5. a disabled device is refused at its next connect (EMQX 5.8 queries the registry on every CONNECT)
    assert devices_cli.main(["disable", "alpha-2", "--tenant", "it-alpha", "--dsn", outputs["deviceManagerDsn"]]) == 0
    with pytest.raises(ToolError, match="refused user 'alpha-2'"):
        publish(outputs, "it-alpha", {"alpha-2": alpha["alpha-2"]}, count=1)

    # 6. the smoke check passes with devices of its own, which it removes
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    assert smoke.main(["--outputs-file", str(outputs_file), "--timeout", "60"]) == 0
    with psycopg.connect(outputs["deviceManagerDsn"]) as conn:
        left = conn.execute("SELECT device_id FROM telemetry_registry.devices ORDER BY 1").fetchall()
    assert [device for (device,) in left] == ["alpha-1", "alpha-2", "bravo-1"]

    # 7. adding tenant C is creations only, replaces nothing, and C works at once
    before = container_ids(s.label)
    s.set_tenants([TENANT_A, TENANT_B, TENANT_C])
    preview = s.stack.preview(color="never", diff=True, on_output=print)
    assert changes_other_than(preview.change_summary, {"create", "same"}) == {}
    assert preview.change_summary.get("create", 0) > 0
    up = s.stack.up(color="never", on_output=print)
    assert changes_other_than(up.summary.resource_changes, {"create", "same"}) == {}
    assert container_ids(s.label) == before  # nothing running was replaced
    outputs = s.outputs()
    charlie = add_devices(outputs, "it-charlie", ["charlie-1", "charlie-gateway"], tmp_path)
    assert_stored_only_in(outputs, "it-charlie", publish(outputs, "it-charlie", charlie, count=4))
    assert_stored_only_in(outputs, "it-alpha", publish(outputs, "it-alpha", {"alpha-1": alpha["alpha-1"]}, count=2))

    # 8. refresh finds the world as the state describes it
    refresh = s.stack.refresh(color="never", expect_no_changes=True, on_output=print)
    assert changes_other_than(refresh.summary.resource_changes, NO_CHANGE_OPS | {"refresh"}) == {}

    # 9. destroy leaves no container or network of this stack; at most the data volumes, which are
    #    retained on purpose (retain_on_delete) and which the fixture then removes
    destroy = s.destroy()
    assert destroy.summary.result == "succeeded"
    assert docker_lines("ps", "-a", "--filter", f"label={s.label}", "--format", "{{.Names}}") == []
    assert f"telemetry-{s.name}" not in docker_lines("network", "ls", "--format", "{{.Name}}")
    retained = set(docker_lines("volume", "ls", "--filter", f"label={s.label}", "--format", "{{.Name}}"))
    assert retained <= {f"telemetry-{s.name}-timescaledb-data", f"telemetry-{s.name}-emqx-data"}


def format_failures(result: SimulationResult) -> str:
    return f"sent {result.sent}, acknowledged {result.acknowledged}, failures {dict(result.failures)}, stopped: {result.stopped_early}"
