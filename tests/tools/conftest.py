"""A real MQTT broker for the tools' tests: Debian's mosquitto on a free loopback port.

Users and ACL mirror what the stack gives EMQX: each device user may use only
its tenant's ``tenants/<prefix>/#``; ``watcher`` may read everything, to count
what arrived.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.net import free_port

UMC = "uberlandia-medical-center"
ACME = "acme-labs"
PASSWORDS = {
    "umc_device": "umc-secret",
    "umc_gateway": "gw-secret",
    "acme_device": "acme-secret",
    "watcher": "watch-secret",
}
ACL = {"umc_device": "tenants/umc/#", "umc_gateway": "tenants/umc/#", "acme_device": "tenants/acme/#"}


def _find(binary: str) -> str | None:
    return shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.access(p, os.X_OK)), None
    )


@dataclass
class Broker:
    host: str
    port: int
    process: subprocess.Popen
    log: Path
    password_file: Path | None = None
    acl_file: Path | None = None

    def add_user(self, user: str, password: str, topic_filter: str) -> None:
        """Let one more user in (mosquitto re-reads its password and ACL files on SIGHUP), and wait until it can."""
        assert self.password_file is not None and self.acl_file is not None
        subprocess.run([_find("mosquitto_passwd"), "-b", str(self.password_file), user, password], check=True,
                       capture_output=True)
        with self.acl_file.open("a") as acl:
            acl.write(f"\nuser {user}\ntopic readwrite {topic_filter}\n")
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:6]}")
            probe.username_pw_set(user, password)
            try:
                probe.connect(self.host, self.port)
                accepted = probe.loop(timeout=1.0) == 0 and probe.is_connected()
            except OSError:
                accepted = False
            finally:
                probe.disconnect()
            if accepted:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"mosquitto did not accept {user} after SIGHUP: {self.log.read_text()}")
            time.sleep(0.1)

    def outputs(self, database_endpoint: str = "postgresql://127.0.0.1:1/telemetry", **overrides: object) -> dict:
        """Stack outputs, shaped like `pulumi stack output --json --show-secrets`, for this broker."""
        outputs = {
            "mqttEndpoint": f"mqtt://{self.host}:{self.port}",
            "databaseEndpoint": database_endpoint,
            "tenants": {
                UMC: {
                    "topicPrefix": "umc",
                    "schema": "tenant_uberlandia_medical_center",
                    "readerRole": "tenant_uberlandia_medical_center_reader",
                },
                ACME: {
                    "topicPrefix": "acme",
                    "schema": "tenant_acme_labs",
                    "readerRole": "tenant_acme_labs_reader",
                },
            },
            # What a stack still listing `devices` (the migration) exports; simulate --tenant uses it.
            "deviceCredentials": {
                UMC: {"umc_device": PASSWORDS["umc_device"]},
                ACME: {"acme_device": PASSWORDS["acme_device"]},
            },
            "readerPasswords": {UMC: "umc-reader", ACME: "acme-reader"},
        }
        outputs.update(overrides)
        return outputs

    def write_outputs(self, path: Path, **overrides: object) -> Path:
        path.write_text(json.dumps(self.outputs(**overrides)))
        return path


def start_broker(root: Path) -> Broker:
    mosquitto, mosquitto_passwd = _find("mosquitto"), _find("mosquitto_passwd")
    if mosquitto is None or mosquitto_passwd is None:
        pytest.skip(
            "mosquitto is not installed (apt-get install mosquitto); the simulator tests need a real MQTT broker"
        )
    root.mkdir(parents=True, exist_ok=True)
    password_file, acl_file, conf, log = (
        root / "passwords",
        root / "acl",
        root / "mosquitto.conf",
        root / "mosquitto.log",
    )
    password_file.touch()
    for user, password in PASSWORDS.items():
        subprocess.run([mosquitto_passwd, "-b", str(password_file), user, password], check=True, capture_output=True)
    acl_file.write_text(
        "".join(f"user {user}\ntopic readwrite {pattern}\n\n" for user, pattern in ACL.items())
        + "user watcher\ntopic read tenants/#\n"
    )
    port = free_port()
    # Started as root, mosquitto would switch to the 'mosquitto' user, who cannot read pytest's private tmp folders.
    stay_root = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"{stay_root}listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {password_file}\n"
        f"acl_file {acl_file}\npersistence false\nlog_type error\nlog_type warning\nlog_type notice\n"
    )
    process = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=log.open("w"), stderr=subprocess.STDOUT)
    wait_for_listeners(process, log, port)
    return Broker("127.0.0.1", port, process, log, password_file, acl_file)


def wait_for_listeners(process: subprocess.Popen, log: Path, *ports: int, timeout: float = 10.0) -> None:
    """Until mosquitto accepts TCP connections on every port; fails the test with its log otherwise."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    pytest.fail(f"mosquitto did not start on 127.0.0.1:{port}: {log.read_text()}")
                time.sleep(0.05)


def stop_broker(broker: Broker) -> None:
    if broker.process.poll() is None:
        broker.process.terminate()
        try:
            broker.process.wait(10)
        except subprocess.TimeoutExpired:
            broker.process.kill()
            broker.process.wait()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = start_broker(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    stop_broker(broker)


@dataclass
class Subscriber:
    """Collects every message under tenants/# as the watcher user."""

    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def settle(self, quiet: float = 0.5) -> list[mqtt.MQTTMessage]:
        """Everything received once no message came for ``quiet`` seconds (bounded by 10 s)."""
        deadline = time.monotonic() + 10
        seen = -1
        while seen != len(self.messages) and time.monotonic() < deadline:
            seen = len(self.messages)
            time.sleep(quiet)
        return list(self.messages)


@contextmanager
def watching_all_tenants(broker: Broker, on_message: Callable, name: str) -> Iterator[mqtt.Client]:
    """A client of the `watcher` user subscribed to `tenants/#`, calling ``on_message`` per message."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    client.username_pw_set("watcher", PASSWORDS["watcher"])
    subscribed = threading.Event()
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.subscribe("tenants/#", qos=1)
        assert subscribed.wait(10), f"the {name}'s SUBACK never came"
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture()
def subscriber(broker: Broker) -> Iterator[Subscriber]:
    subscriber = Subscriber()

    def on_message(client, userdata, message):
        with subscriber.arrived:
            subscriber.messages.append(message)
            subscriber.arrived.notify_all()

    with watching_all_tenants(broker, on_message, "watcher"):
        yield subscriber
