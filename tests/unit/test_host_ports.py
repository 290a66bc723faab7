"""`make deploy`'s host-port check: a taken port is named with its process and the key that moves it.

Stands in for Docker failing to publish a port another service holds (a Debian PostgreSQL
on 5432, mosquitto on 1883): here the test process itself listens on the port.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import yaml

from scripts import host_ports
from tests.net import free_port


def write_stack(root: Path, stack: str, **ports: int) -> None:
    config = {
        "telemetry:timescaledb": {"hostPort": ports["db"]},
        "telemetry:emqx": {"mqttPort": ports["mqtt"], "mqttTlsPort": ports["mqtts"], "dashboardPort": ports["dash"]},
        "telemetry:ingest": {"hostPort": ports["ingest"]},
    }
    (root / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))


def free_ports() -> dict[str, int]:
    ports: dict[str, int] = {}
    for key in ("db", "mqtt", "mqtts", "dash", "ingest"):
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[key] = port
    return ports


def test_the_dev_stack_defaults_avoid_the_usual_system_ports():
    ports = {hp.port for hp in host_ports.stack_host_ports("dev")}
    assert ports == {15432, 11883, 18883, 18083, 18000}
    assert not ports & {5432, 5433, 1883, 8883, 8000, 8080}


def test_a_taken_port_names_the_process_and_the_config_key(tmp_path, monkeypatch):
    monkeypatch.setattr(host_ports, "published_by_stack", lambda stack: set())
    ports = free_ports()
    write_stack(tmp_path, "check", **ports)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", ports["db"]))
        listener.listen()
        [problem] = host_ports.conflicts("check", root=tmp_path)
    assert problem.startswith(f"telemetry:timescaledb.hostPort: host port {ports['db']} (127.0.0.1) is already in use by ")
    assert f"(pid {os.getpid()})" in problem
    assert "`pulumi config set --path telemetry:timescaledb.hostPort <port>`" in problem
    assert host_ports.conflicts("check", root=tmp_path) == []  # free again once the listener is gone


def test_a_listener_on_all_interfaces_blocks_a_loopback_port(tmp_path, monkeypatch):
    monkeypatch.setattr(host_ports, "published_by_stack", lambda stack: set())
    ports = free_ports()
    write_stack(tmp_path, "check", **ports)
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", ports["ingest"]))
        listener.listen()
        [problem] = host_ports.conflicts("check", root=tmp_path)
    assert problem.startswith(f"telemetry:ingest.hostPort: host port {ports['ingest']}")


def test_ports_the_stack_itself_publishes_are_not_conflicts(tmp_path, monkeypatch):
    ports = free_ports()
    write_stack(tmp_path, "check", **ports)
    monkeypatch.setattr(host_ports, "published_by_stack", lambda stack: {ports["mqtt"]})
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", ports["mqtt"]))
        listener.listen()
        assert host_ports.conflicts("check", root=tmp_path) == []


def test_the_plain_mqtt_port_is_not_checked_when_its_listener_is_off(tmp_path):
    ports = free_ports()
    write_stack(tmp_path, "check", **ports)
    path = tmp_path / "Pulumi.check.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["telemetry:emqx"]["plainListener"] = False
    path.write_text(yaml.safe_dump(document))
    keys = {hp.key for hp in host_ports.stack_host_ports("check", root=tmp_path)}
    assert "emqx.mqttPort" not in keys and "emqx.mqttTlsPort" in keys


def test_an_invalid_config_is_left_to_pulumi_up(tmp_path):
    (tmp_path / "Pulumi.check.yaml").write_text(yaml.safe_dump({"config": {"telemetry:emqx": {"mqttPort": "x"}}}))
    assert host_ports.stack_host_ports("check", root=tmp_path) == []
