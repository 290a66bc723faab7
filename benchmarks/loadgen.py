"""A load generator that behaves like EMQX's HTTP action.

N keep-alive connections (EMQX's connector pool), one message per request,
body = the rule output ``${.}`` (id, clientid, username, topic, payload as a
JSON string, qos, publish_received_at, timestamp), ``X-Tenant`` and a bearer
token per tenant, and EMQX's retry rule: 429 and 503 are resent (same body,
same id) after a short pause, every other status is final.

It is a raw asyncio Protocol on uvloop (no HTTP client library): per request
it formats one bytes template and parses one status line, so one process
drives well over 20k requests/s and is not what limits the measurement.  When
the time is up no new message is sent but every request in flight is awaited,
so the set of acknowledged ids is exact.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

RETRY_PAUSE_SECONDS = 0.05


@dataclass(frozen=True)
class TenantLoad:
    slug: str
    prefix: str
    token: str


@dataclass
class LoadResult:
    seconds: float
    acked: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    retries: int = 0
    latencies: list[float] = field(default_factory=list)
    connection_errors: int = 0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100.0 * len(ordered)))]

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0


_BODY = (
    b'{"id":"%s","clientid":"%s","username":"%s","topic":"tenants/%s/%s/telemetry",'
    b'"payload":"{\\"temp\\":%d.%d,\\"seq\\":%d}","qos":1,"publish_received_at":%d,"timestamp":%d}'
)


class _Connection(asyncio.Protocol):
    def __init__(self, gen: LoadGenerator, index: int) -> None:
        self.gen = gen
        self.index = index
        self.seq = 0
        self.transport = None
        self.buffer = b""
        self.request = b""
        self.sent_at = 0.0
        self.closed = asyncio.get_running_loop().create_future()
        tenant = gen.tenants[index % len(gen.tenants)]
        self.tenant = tenant
        self.device = f"{tenant.prefix}-device-{index:03d}".encode()
        self.user = f"{tenant.prefix}_device".encode()
        self.prefix = tenant.prefix.encode()
        self.head = (
            b"POST /ingest HTTP/1.1\r\nHost: %s\r\nConnection: keep-alive\r\nContent-Type: application/json\r\n"
            b"X-Tenant: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %%d\r\n\r\n"
            % (gen.host_header, tenant.slug.encode(), tenant.token.encode())
        )
        self.id_prefix = b"%s%04x" % (gen.run_id, index)

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.send_new()

    def send_new(self) -> None:
        if time.monotonic() >= self.gen.deadline:
            self.transport.close()
            return
        self.seq += 1
        seq = self.seq
        now_ms = int(time.time() * 1000)
        body = _BODY % (
            b"%s%012x" % (self.id_prefix, seq), self.device, self.user, self.prefix, self.device,
            20 + seq % 10, seq % 10, seq, now_ms, now_ms,
        )
        self.request = (self.head % len(body)) + body
        self.send()

    def send(self) -> None:
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            self.buffer = buffer
            return
        head = buffer[:end].lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15: head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
        if len(buffer) < end + 4 + length:
            self.buffer = buffer
            return
        self.buffer = buffer[end + 4 + length:]
        status = int(buffer[9:12])
        gen = self.gen
        gen.result.latencies.append(time.perf_counter() - self.sent_at)
        gen.result.statuses[status] = gen.result.statuses.get(status, 0) + 1
        if 200 <= status < 300:
            gen.result.acked += 1
            gen.acked_ids.append(self.id_prefix + b"%012x" % self.seq)
            self.send_new()
        elif status in (429, 503):
            gen.result.retries += 1
            asyncio.get_running_loop().call_later(RETRY_PAUSE_SECONDS, self.send)
        else:
            self.send_new()

    def connection_lost(self, exc) -> None:
        if exc is not None or time.monotonic() < self.gen.deadline:
            self.gen.result.connection_errors += 1
        if not self.closed.done():
            self.closed.set_result(None)


class LoadGenerator:
    def __init__(self, host: str, port: int, tenants: list[TenantLoad], connections: int = 64,
                 run_id: str | None = None) -> None:
        self.host = host
        self.port = port
        self.host_header = f"{host}:{port}".encode()
        self.tenants = tenants
        self.connections = connections
        self.run_id = (run_id or os.urandom(6).hex()).encode()
        self.deadline = 0.0
        self.result = LoadResult(seconds=0.0)
        self.acked_ids: list[bytes] = []

    async def run(self, seconds: float) -> LoadResult:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        self.deadline = started + seconds
        protocols = []
        for index in range(self.connections):
            _, protocol = await loop.create_connection(lambda i=index: _Connection(self, i), self.host, self.port)
            protocols.append(protocol)
        await asyncio.gather(*(p.closed for p in protocols))
        self.result.seconds = time.monotonic() - started
        return self.result
