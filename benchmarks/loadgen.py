"""A load generator that behaves like EMQX's HTTP action and connector.

``connections`` keep-alive connections, each with up to ``depth`` requests in
flight: ``depth=1`` is one request at a time per connection; EMQX's connector
opens ``pool_size`` (8) connections and pipelines up to ``enable_pipelining``
(100) requests on each, written back to back, with the responses matched to
them in request order (HTTP/1.1 has no request id on the wire).  One message
per request (the HTTP action never batches), body = the rule output ``${.}``
(id, clientid, username, topic, payload as a JSON string, qos,
publish_received_at, timestamp), ``X-Tenant`` and a bearer token per tenant,
and EMQX's retry rule: 429 and 503 are resent (same body, same id) after a
short pause, every other status is final.  The latency of a request runs from
its write to its response.

It is a raw asyncio Protocol on uvloop (no HTTP client library): per request
it formats one bytes template and parses one status line, so one process
drives well over 50k requests/s and is not what limits the measurement.  When
the time is up no new message is sent, but every request in flight (and every
retry) is awaited, so the set of acknowledged ids is exact.
"""

from __future__ import annotations

import asyncio
import collections
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
        # Requests written and not answered yet, oldest first: (message id, request bytes, written at).
        self.in_flight: collections.deque[tuple[bytes, bytes, float]] = collections.deque()
        self.retrying = 0  # answered 429/503, waiting to be sent again
        self.closed = asyncio.get_running_loop().create_future()
        tenant = gen.tenants[index % len(gen.tenants)]
        # The device authenticates as its username, and its client id must equal it.
        self.device = f"{tenant.prefix}-device-{index:03d}".encode()
        self.prefix = tenant.prefix.encode()
        self.head = (
            b"POST /ingest HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"X-Tenant: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %%d\r\n\r\n"
            % (gen.host_header, tenant.slug.encode(), tenant.token.encode())
        )
        self.id_prefix = b"%s%04x" % (gen.run_id, index)

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._send([self._new() for _ in range(self.gen.depth)])

    def _new(self) -> tuple[bytes, bytes]:
        self.seq += 1
        seq = self.seq
        now_ms = int(time.time() * 1000)
        msg_id = b"%s%012x" % (self.id_prefix, seq)
        body = _BODY % (msg_id, self.device, self.device, self.prefix, self.device,
                        20 + seq % 10, seq % 10, seq, now_ms, now_ms)
        return msg_id, (self.head % len(body)) + body

    def _send(self, requests: list[tuple[bytes, bytes]]) -> None:
        if not requests:
            return
        now = time.perf_counter()
        for msg_id, request in requests:
            self.in_flight.append((msg_id, request, now))
        self.transport.write(b"".join(request for _, request in requests))

    def _retry(self, msg_id: bytes, request: bytes) -> None:
        self.retrying -= 1
        if not self.transport.is_closing():
            self._send([(msg_id, request)])

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        gen = self.gen
        result = gen.result
        latencies = result.latencies
        now = time.perf_counter()
        more = gen.sending and time.monotonic() < gen.deadline
        if not more:
            gen.sending = False
        fresh = []
        start = 0
        while True:
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0:
                break
            at = buffer.find(b"content-length:", start, end)
            if at < 0:
                length = 0
            else:
                stop = buffer.find(b"\r\n", at, end + 2)
                length = int(buffer[at + 15: stop])
            if len(buffer) < end + 4 + length:
                break
            status = int(buffer[start + 9: start + 12])
            start = end + 4 + length
            msg_id, request, sent_at = self.in_flight.popleft()
            latencies.append(now - sent_at)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                result.acked += 1
                gen.acked_ids.append(msg_id)
                if more:
                    fresh.append(self._new())
            elif status in (429, 503):
                result.retries += 1
                self.retrying += 1
                asyncio.get_running_loop().call_later(RETRY_PAUSE_SECONDS, self._retry, msg_id, request)
            elif more:
                fresh.append(self._new())
        self.buffer = buffer[start:]
        self._send(fresh)
        if not self.in_flight and not self.retrying and not more:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        if exc is not None or self.in_flight:
            self.gen.result.connection_errors += 1
        if not self.closed.done():
            self.closed.set_result(None)


class LoadGenerator:
    def __init__(self, host: str, port: int, tenants: list[TenantLoad], connections: int = 64, depth: int = 1,
                 run_id: str | None = None) -> None:
        self.host = host
        self.port = port
        self.host_header = f"{host}:{port}".encode()
        self.tenants = tenants
        self.connections = connections
        self.depth = depth
        self.run_id = (run_id or os.urandom(6).hex()).encode()
        self.deadline = 0.0
        self.sending = True
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
