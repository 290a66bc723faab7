"""The simulation: N MQTT devices of one tenant publishing telemetry on a global schedule.

Each simulated device is its own MQTT connection publishing JSON readings to
``tenants/<topicPrefix>/<client id>/telemetry``. The publish schedule is global: message k
leaves at ``start + k / rate`` from device ``k mod N``, so the total rate is what was asked for
whatever N is. Registry devices (``python -m tools.devices``) connect with their username as
client id, one connection each: the broker refuses any other client id for them.

The command line is ``tools/simulate.py``; ``tools/smoke.py`` runs simulations too.
"""

from __future__ import annotations

import json
import random
import ssl
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from tools import ToolError
from tools.stack_outputs import require_output

# Where a refused device's password comes from.
CREDENTIALS_HINT = "the credentials file `python -m tools.devices add|rotate ... --credentials-file` wrote"
CA_HINT = "pulumi stack output mqttCaCertificate > ca.pem"


# ---------------------------------------------------------------- TLS


def tls_address(outputs: dict[str, Any]) -> tuple[str, int]:
    """Host and port of ``mqttTlsEndpoint`` (``mqtts://host:port``)."""
    endpoint = require_output(outputs, "mqttTlsEndpoint", "pass --host and --port of the TLS listener")
    parts = urlsplit(endpoint)
    if parts.scheme != "mqtts" or not parts.hostname:
        raise ToolError(f"mqttTlsEndpoint '{endpoint}' is not mqtts://host:port: pass --host and --port instead")
    return parts.hostname, parts.port or 8883


def tls_context(cafile: str | None, ca_data: str | None) -> ssl.SSLContext:
    """Verifies the broker's certificate and name against ``cafile``/``ca_data``, else the system's CAs."""
    try:
        return ssl.create_default_context(cafile=cafile, cadata=ca_data)
    except FileNotFoundError:
        raise ToolError(f"--cafile {cafile} does not exist: write the stack's CA with `{CA_HINT}`") from None
    except (ssl.SSLError, ValueError) as error:
        source = f"--cafile {cafile}" if cafile else "the stack's mqttCaCertificate"
        raise ToolError(f"{source} is not a PEM CA certificate ({error}): write it with `{CA_HINT}`") from None


# ---------------------------------------------------------------- readings


class SensorModel:
    """Plausible readings for one device: slow random walks, a draining battery, a sequence number."""

    def __init__(self, device: str, run_id: str, seed: int | None = None) -> None:
        self.device = device
        self.run_id = run_id
        self.seq = 0
        self._random = random.Random(seed if seed is not None else f"{device}/{run_id}")
        self._temperature = self._random.uniform(19.0, 24.0)
        self._humidity = self._random.uniform(35.0, 55.0)
        self._battery = self._random.uniform(80.0, 100.0)

    def next_reading(self) -> dict[str, Any]:
        self.seq += 1
        self._temperature = min(max(self._temperature + self._random.gauss(0, 0.15), -20.0), 60.0)
        self._humidity = min(max(self._humidity + self._random.gauss(0, 0.5), 0.0), 100.0)
        self._battery = max(self._battery - self._random.uniform(0.0, 0.02), 0.0)
        return {
            "run_id": self.run_id,
            "device": self.device,
            "seq": self.seq,
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "temperature_c": round(self._temperature, 2),
            "humidity_pct": round(self._humidity, 1),
            "battery_pct": round(self._battery, 2),
        }


# ---------------------------------------------------------------- settings and results


@dataclass(frozen=True)
class SimulationSettings:
    host: str
    port: int
    usernames: tuple[str, ...]
    passwords: dict[str, str]
    topic_prefix: str
    devices: int = 1
    rate: float = 10.0
    duration: float | None = None
    count: int | None = None
    qos: int = 1
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    connect_timeout: float = 10.0
    ack_timeout: float = 10.0
    label: str = ""  # tenant slug, for messages
    # Set by callers that run beside a simulator: the broker drops an older session with the same client id.
    client_id_tag: str = ""
    # MQTT over TLS, verifying the broker against this CA file or PEM text (else the system's CAs).
    tls: bool = False
    cafile: str | None = None
    ca_data: str | None = None
    # Registry devices (tools.devices) connect only with their username as client id: one connection each.
    client_id_is_username: bool = False

    def client_ids(self) -> list[tuple[str, str]]:
        """(username, client id) of each simulated device; users are shared round-robin."""
        if self.client_id_is_username:
            if self.devices > len(self.usernames):
                raise ToolError(
                    f"{self.devices} simulated devices need {self.devices} registered devices, and the credentials "
                    f"hold {len(self.usernames)}: pass --devices {len(self.usernames)} or add devices with "
                    "`python -m tools.devices add`"
                )
            return [(user, user) for user in self.usernames[: self.devices]]
        tag = f"{self.client_id_tag}-" if self.client_id_tag else ""
        users = [self.usernames[i % len(self.usernames)] for i in range(self.devices)]
        return [(user, f"{user}-{tag}{i}") for i, user in enumerate(users)]

    def topic(self, client_id: str) -> str:
        return f"tenants/{self.topic_prefix}/{client_id}/telemetry"


@dataclass
class DeviceStats:
    client_id: str
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0


@dataclass
class SimulationResult:
    settings: SimulationSettings
    devices: list[DeviceStats]
    elapsed: float
    publish_span: float  # first to last publish
    failures: Counter[str]
    stopped_early: str | None = None  # why publishing ended before the count or duration

    @property
    def sent(self) -> int:
        return sum(d.sent for d in self.devices)

    @property
    def acknowledged(self) -> int:
        return sum(d.acknowledged for d in self.devices)

    @property
    def failed(self) -> int:
        return sum(d.failed for d in self.devices)

    @property
    def rate(self) -> float:
        """Messages per second achieved while publishing (n messages span n - 1 intervals)."""
        return (self.sent - 1) / self.publish_span if self.sent > 1 and self.publish_span > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.acknowledged == self.sent and self.stopped_early is None


# ---------------------------------------------------------------- one MQTT connection


def _reason_text(reason: ReasonCode | int | None) -> str:
    if isinstance(reason, ReasonCode):
        return f"{reason.getName()}, reason code 0x{reason.value:02X}"
    return str(reason)


class SimulatedDevice:
    """One MQTT connection with its own counters; PUBACKs arrive on paho's network thread."""

    def __init__(self, settings: SimulationSettings, username: str, client_id: str, failures: Counter[str]) -> None:
        self.settings = settings
        self.username = username
        self.stats = DeviceStats(client_id)
        self.model = SensorModel(client_id, settings.run_id)
        self._failures = failures
        self._lock = threading.Lock()
        self._pending: set[int] = set()
        # PUBACK can be handled before publish() returns the mid: park such results here.
        self._early: dict[int, ReasonCode | None] = {}
        self._connected = threading.Event()
        self._connack: ReasonCode | None = None
        self._closing = False
        self.lost_reason: str | None = None
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,  # a lost device stays lost: the summary must show it
        )
        self.client.username_pw_set(username, settings.passwords.get(username))
        if settings.tls:
            self.client.tls_set_context(tls_context(settings.cafile, settings.ca_data))
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect

    # -- paho callbacks (network thread)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        self._connack = reason
        self._connected.set()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any) -> None:
        if self.settings.qos == 0:
            return  # paho reports QoS 0 messages as written to the socket; they were counted when sent
        with self._lock:
            if mid in self._pending:
                self._settle(mid, reason)
            else:
                self._early[mid] = reason

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        self._connected.set()  # wakes a connect() still waiting for CONNACK
        with self._lock:
            if self._closing:
                return
            self.lost_reason = f"connection closed by the broker ({_reason_text(reason)})"
            for mid in list(self._pending):
                self._settle(mid, None, self.lost_reason)

    def _settle(self, mid: int, reason: ReasonCode | None, failure: str | None = None) -> None:
        """Record the outcome of one in-flight message; the caller holds the lock."""
        self._pending.discard(mid)
        if failure is None and reason is not None and reason.is_failure:
            failure = f"PUBACK refused ({_reason_text(reason)})"
        if failure is None:
            self.stats.acknowledged += 1
        else:
            self.stats.failed += 1
            self._failures[failure] += 1

    # -- caller's thread

    def connect(self) -> None:
        host, port = self.settings.host, self.settings.port
        try:
            self.client.connect(host, port, keepalive=30, clean_start=True)
        except ssl.SSLError as error:
            reason = getattr(error, "verify_message", None) or error.reason or error
            raise ToolError(
                f"the TLS handshake with the MQTT broker at {host}:{port} failed ({reason}): pass the stack's CA "
                f"with --cafile (`{CA_HINT}`), and connect to a name its certificate covers",
                exit_code=1,
            ) from None
        except ConnectionRefusedError:
            raise ToolError(
                f"cannot reach the MQTT broker at {host}:{port} (connection refused): check that the stack is deployed "
                "and that --host/--port match its mqttEndpoint output",
                exit_code=1,
            ) from None
        except OSError as error:
            raise ToolError(
                f"cannot reach the MQTT broker at {host}:{port} ({error.strerror or error}): check --host/--port "
                "against the stack's mqttEndpoint output",
                exit_code=1,
            ) from None
        self.client.loop_start()
        if not self._connected.wait(self.settings.connect_timeout):
            raise ToolError(
                f"the MQTT broker at {host}:{port} did not answer CONNECT within {self.settings.connect_timeout:g} s: "
                "check that it is an MQTT listener (the stack's mqttEndpoint) and that the broker is healthy",
                exit_code=1,
            )
        if self._connack is None or self._connack.is_failure:
            reason = _reason_text(self._connack) if self._connack is not None else "connection closed before CONNACK"
            raise ToolError(
                f"the MQTT broker at {host}:{port} refused user '{self.username}' ({reason}): check the password "
                f"({CREDENTIALS_HINT}, or --username/--password), that the device is enabled "
                "(`python -m tools.devices list`), and that it connects with its username as client id",
                exit_code=1,
            )

    def publish_next(self) -> None:
        with self._lock:
            if self.lost_reason is not None:
                self.stats.sent += 1
                self.stats.failed += 1
                self._failures[self.lost_reason] += 1
                return
        payload = json.dumps(self.model.next_reading(), separators=(",", ":"))
        info = self.client.publish(self.settings.topic(self.stats.client_id), payload, qos=self.settings.qos)
        with self._lock:
            self.stats.sent += 1
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.stats.failed += 1
                self._failures[f"publish failed ({mqtt.error_string(info.rc)})"] += 1
            elif self.settings.qos == 0:
                self.stats.acknowledged += 1  # nothing to wait for: "sent" is all QoS 0 promises
            elif info.mid in self._early:
                self._settle(info.mid, self._early.pop(info.mid))
            else:
                self._pending.add(info.mid)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    @property
    def lost(self) -> bool:
        return self.lost_reason is not None

    def close(self, unacknowledged_reason: str) -> None:
        with self._lock:
            self._closing = True
            for mid in list(self._pending):
                self._settle(mid, None, unacknowledged_reason)
        self.client.disconnect()
        self.client.loop_stop()


# ---------------------------------------------------------------- progress


class Progress:
    """One status line: rewritten in place on a terminal, printed as plain lines otherwise."""

    def __init__(self, stream: TextIO, interval: float | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval if interval is not None else (0.2 if self.tty else 1.0)
        self._last = 0.0  # the first line comes after one interval, when the rate means something
        self._width = 0

    def update(
        self, elapsed: float, sent: int, acknowledged: int, failed: int, total: int | None, force: bool = False
    ) -> None:
        if not force and elapsed - self._last < self.interval:
            return
        self._last = elapsed
        target = f"/{total}" if total is not None else ""
        rate = sent / elapsed if elapsed > 0 else 0.0
        line = f"progress: {elapsed:6.1f} s  sent {sent}{target}  acknowledged {acknowledged}  failed {failed}  {rate:.1f} msg/s"
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------- the run


def run_simulation(settings: SimulationSettings, progress: Progress | None = None) -> SimulationResult:
    """Connect every device, publish on the global schedule, wait for PUBACKs, and count what happened."""
    if settings.count is None and settings.duration is None:
        raise ToolError("give --count or --duration, or both: the simulator needs to know when to stop")
    failures: Counter[str] = Counter()
    devices = [
        SimulatedDevice(settings, username, client_id, failures) for username, client_id in settings.client_ids()
    ]
    connected: list[SimulatedDevice] = []
    try:
        for device in devices:
            connected.append(device)
            device.connect()

        def totals() -> tuple[int, int, int]:
            return (
                sum(d.stats.sent for d in devices),
                sum(d.stats.acknowledged for d in devices),
                sum(d.stats.failed for d in devices),
            )

        start = time.monotonic()
        last_publish = start
        stopped_early = None
        k = 0
        while settings.count is None or k < settings.count:
            due = start + k / settings.rate
            now = time.monotonic()
            if settings.duration is not None and max(now, due) - start >= settings.duration:
                break
            while now < due:
                time.sleep(min(due - now, 0.05))
                now = time.monotonic()
                if progress:
                    progress.update(now - start, *totals(), settings.count)
            if all(d.lost for d in devices):
                # The rest would fail the same way; the summary names the reason.
                stopped_early = f"every device lost its connection ({devices[0].lost_reason})"
                break
            devices[k % len(devices)].publish_next()
            last_publish = time.monotonic()
            k += 1
            if progress:
                progress.update(time.monotonic() - start, *totals(), settings.count)

        deadline = time.monotonic() + settings.ack_timeout
        while any(d.in_flight for d in devices) and time.monotonic() < deadline:
            time.sleep(0.02)
            if progress:
                progress.update(time.monotonic() - start, *totals(), settings.count)
        elapsed = time.monotonic() - start
    finally:
        for device in connected:
            device.close(f"no PUBACK within {settings.ack_timeout:g} s")
    if progress:
        progress.update(elapsed, *totals(), settings.count, force=True)
        progress.finish()
    return SimulationResult(
        settings, [d.stats for d in devices], elapsed, last_publish - start, failures, stopped_early
    )


def format_summary(result: SimulationResult) -> str:
    s = result.settings
    lines = [
        (
            f"summary: {s.label or s.topic_prefix} on {s.host}:{s.port}{' (TLS)' if s.tls else ''}, "
            f"topic tenants/{s.topic_prefix}/<device>/telemetry, "
            f"{s.devices} device(s), QoS {s.qos}, run id {s.run_id}"
        ),
        f"  sent          {result.sent}",
        f"  acknowledged  {result.acknowledged}"
        + (" (PUBACK)" if s.qos == 1 else " (PUBCOMP)" if s.qos == 2 else " (QoS 0: no PUBACK, counted when sent)"),
        f"  failed        {result.failed}",
        (
            f"  rate          {result.rate:.1f} msg/s achieved (target {s.rate:g} msg/s), "
            f"{result.publish_span:.1f} s publishing, {result.elapsed:.1f} s in all"
        ),
        "  per device:",
    ]
    width = max(len(d.client_id) for d in result.devices)
    lines += [
        f"    {d.client_id:<{width}}  sent {d.sent:>6}  acknowledged {d.acknowledged:>6}  failed {d.failed:>6}"
        for d in result.devices
    ]
    if result.stopped_early:
        lines.append(f"  stopped early: {result.stopped_early}")
    if result.failures:
        lines.append("  failures:")
        lines += [f"    {count} x {reason}" for reason, count in result.failures.most_common()]
    return "\n".join(lines)
