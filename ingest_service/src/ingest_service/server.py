"""HTTP/1.1 server of one worker: pipelined requests run concurrently and are answered in order.

EMQX's HTTP connector writes up to ``enable_pipelining`` (100) requests back to
back on each of its ``pool_size`` (8) connections and matches the responses to
them strictly in request order.  A server that handles one request per
connection at a time (uvicorn, and every ASGI server we measured) makes each
connection wait a full group-commit round trip per message, so at most eight
messages ever share a commit.  Here every request parsed from a read is
dispatched at once, so they all join the same group commit, and the answers
are written in request order, those that are ready in one write per loop turn.

The protocol is a plain ``asyncio.Protocol`` on httptools (llhttp), the parser
uvicorn uses.  It also enforces what a server on an open port needs:

* at most ``max_inflight`` requests received and not yet answered per
  connection; beyond that reading pauses, so a client cannot make us buffer
  an unbounded pipeline (TCP back-pressure does the rest);
* a request head over ``max_header_bytes`` answers 431, a body over
  ``max_body_bytes`` answers 413, and both close the connection (the rest of
  the stream cannot be trusted to be read in sync);
* a request must arrive completely within ``read_timeout`` of its first byte
  (408 and close otherwise), a connection with nothing in flight is closed
  after ``idle_timeout``, and one whose client stops reading our answers is
  dropped after ``read_timeout``;
* only complete requests reach the handler: a client that goes away in the
  middle of a request has nothing of that request committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import httptools

log = logging.getLogger("ingest_service.server")

REASONS = {
    200: b"OK", 202: b"Accepted", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden",
    404: b"Not Found", 405: b"Method Not Allowed", 408: b"Request Timeout", 413: b"Content Too Large",
    415: b"Unsupported Media Type", 431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
    503: b"Service Unavailable",
}
JSON = b"application/json"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# How often the timeouts are checked: they are enforced to within this much.
SWEEP_SECONDS = 0.5
# After an error answer that ends the connection (413, 431, 408, 400) the rest of what the client
# sends is read and dropped for this long before closing: closing at once, while the client is
# still sending, makes its kernel discard our answer on the reset ("lingering close").
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 256 * 1024  # ... or until this much was dropped: an 8 MiB header is not read to its end


def build_response(status: int, body: bytes, content_type: bytes = JSON, headers: bytes = b"",
                   close: bool = False, head: bool = False) -> bytes:
    """The whole response as bytes; ``headers`` are extra header lines, each ending in CRLF."""
    return b"".join((
        b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (status, REASONS.get(status, b"Unknown"),
                                                                           content_type, len(body)),
        headers,
        b"connection: close\r\n" if close else b"",
        b"\r\n",
        b"" if head else body,
    ))


def error_body(error: str, reason: str) -> bytes:
    # Reasons are ASCII sentences written here or quoting validated input; json-escape them anyway.
    import orjson

    return orjson.dumps({"error": error, "reason": reason})


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1_048_576
    max_header_bytes: int = 16_384
    max_inflight: int = 128
    # Bytes of request bodies still being received, per process: a client may hold up to MAX_BODY_BYTES
    # of an unfinished request for READ_TIMEOUT_SECONDS before it is authenticated, so many clients
    # doing that could hold gigabytes; beyond this the request being received answers 503.
    max_partial_bytes: int = 64 * 1_048_576
    read_timeout: float = 10.0
    idle_timeout: float = 30.0


class Request:
    """A completely received request: what the handler sees."""

    __slots__ = (
        "authorization",
        "body",
        "buffered",
        "chunks",
        "content_type",
        "expect_continue",
        "head_only",
        "headers_done",
        "keep_alive",
        "method",
        "path",
        "size",
        "tenant",
    )

    def __init__(self) -> None:
        self.path = b""
        self.method = b""
        self.tenant: bytes | None = None
        self.authorization: bytes | None = None
        self.content_type: bytes | None = None
        self.expect_continue = False
        self.chunks: list[bytes] = []
        self.body = b""
        self.size = 0
        self.buffered = 0  # bytes in chunks, counted in the server's partial_bytes
        self.keep_alive = True
        self.head_only = False
        self.headers_done = False


class Slot:
    """The place of one request's answer in its connection's response order."""

    __slots__ = ("_connection", "data")

    def __init__(self, connection: HttpConnection) -> None:
        self._connection = connection
        self.data: bytes | None = None

    def answer(self, data: bytes) -> None:
        if self.data is None:
            self.data = data
            self._connection.schedule_flush()


Handler = Callable[[Request, Slot], None]


class _StopParsing(Exception):
    """Raised from a parser callback: nothing more is read from this connection."""


class _HeadTooLarge(Exception):
    pass


class HttpConnection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = server.loop
        self.limits = server.limits
        self.handler = server.handler
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.request: Request | None = None  # being received
        self.request_started = 0.0
        self.head_size = 0
        self.unparsed_head = 0  # bytes fed since the last head callback: what httptools may be buffering
        self.slots: deque[Slot] = deque()  # dispatched, in request order, until their answer is written
        self.waiting: deque[Request] = deque()  # received beyond max_inflight, not dispatched yet
        self.reading = True
        self.closing = False  # read nothing more; close once every answer is written
        self.linger = False  # ... and then drop what the client still sends, for LINGER_SECONDS
        self.lingering_until: float | None = None
        self.lingered = 0
        self.closed = False
        self.flush_scheduled = False
        self.last_active = self.loop.time()
        self.write_paused_since: float | None = None

    # -- transport events -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        # Requests not completely received are dropped here, never handled; those dispatched
        # finish (their rows may commit) but their answers have nowhere to go.
        self._forget_partial()
        self.waiting.clear()
        self.slots.clear()
        self.server.connection_closed()

    def eof_received(self) -> bool:
        # The client will send nothing more (it may still read): answer what was received, then close.
        if self.lingering_until is not None:
            return False
        self._forget_partial()
        self.closing = True
        return bool(self.slots or self.waiting)

    def pause_writing(self) -> None:
        # The client does not read its answers: stop taking requests until it does.
        self.write_paused_since = self.loop.time()
        self._pause_reading()

    def resume_writing(self) -> None:
        self.write_paused_since = None
        self._maybe_resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:  # and lingering: dropped
            if self.lingering_until is not None:
                self.lingered += len(data)
                if self.lingered > LINGER_MAX_BYTES:
                    self.transport.close()
            return
        self.unparsed_head += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadTooLarge):
                self._refuse(431, "request_header_too_large",
                             f"the request head is larger than MAX_HEADER_BYTES={self.limits.max_header_bytes}")
            elif not isinstance(cause, _StopParsing):
                log.error("HTTP parser callback failed", exc_info=cause)
                self._refuse(500, "internal_error", "the request could not be read")
            return
        except httptools.HttpParserUpgrade:
            self._refuse(400, "bad_request", "protocol upgrades are not supported")
            return
        except httptools.HttpParserError as exc:
            self._refuse(400, "bad_request", f"malformed HTTP request: {exc}")
            return
        request = self.request
        if request is not None and not request.headers_done and (
            self.head_size + self.unparsed_head > self.limits.max_header_bytes
        ):
            self._refuse(431, "request_header_too_large",
                         f"the request head is larger than MAX_HEADER_BYTES={self.limits.max_header_bytes}")

    # -- parser callbacks (httptools) ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.request = Request()
        self.request_started = self.last_active = self.loop.time()
        self.head_size = 0
        self.unparsed_head = 0

    def on_url(self, url: bytes) -> None:
        self.request.path += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        request = self.request
        name = name.lower()
        if name == b"x-tenant":
            request.tenant = value
        elif name == b"authorization":
            request.authorization = value
        elif name == b"content-type":
            request.content_type = value
        elif name == b"content-length":
            # llhttp has checked it is a number and that it is not combined with chunked encoding.
            if int(value) > self.limits.max_body_bytes:
                request.size = int(value)
        elif name == b"expect":
            request.expect_continue = value.lower() == b"100-continue"

    def _count_head(self, size: int) -> None:
        self.unparsed_head = 0
        self.head_size += size
        if self.head_size > self.limits.max_header_bytes:
            raise _HeadTooLarge

    def on_headers_complete(self) -> None:
        request = self.request
        request.headers_done = True
        request.method = self.parser.get_method()
        request.head_only = request.method == b"HEAD"
        request.keep_alive = self.parser.should_keep_alive()
        if request.size > self.limits.max_body_bytes:  # announced by Content-Length
            self._too_large(request)
        if request.expect_continue and not self.slots and not self.waiting:
            self.transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        request = self.request
        request.size += len(body)
        if request.size > self.limits.max_body_bytes:
            self._too_large(request)
        request.chunks.append(body)
        request.buffered += len(body)
        server = self.server
        server.partial_bytes += len(body)
        # A body alone is always taken (MAX_BODY_BYTES bounds it), so no request is refused for ever.
        if server.partial_bytes > self.limits.max_partial_bytes and server.partial_bytes > request.buffered:
            self._answer_in_turn(build_response(503, error_body(
                "unavailable", f"too many request bodies are being received at once "
                               f"(QUEUE_MAX_BYTES={self.limits.max_partial_bytes}); retry"),
                headers=b"retry-after: 1\r\n", close=True))
            self._forget_partial()
            raise _StopParsing

    def _forget_partial(self) -> None:
        """Drop the request being received (if any), and its bytes from the server's count."""
        if self.request is not None:
            self.server.partial_bytes -= self.request.buffered
            self.request = None

    def on_message_complete(self) -> None:
        request, self.request = self.request, None
        self.server.partial_bytes -= request.buffered
        self.last_active = self.loop.time()
        chunks = request.chunks
        request.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        request.chunks = []
        self._received(request)
        if not request.keep_alive:
            self.closing = True
            raise _StopParsing

    def _too_large(self, request: Request) -> None:
        # Answer 413 in turn and read nothing more: skipping the rest of a huge body is not worth it.
        self._forget_partial()
        self._answer_in_turn(build_response(
            413, error_body("payload_too_large", f"body is larger than MAX_BODY_BYTES={self.limits.max_body_bytes}"),
            close=True))
        raise _StopParsing

    # -- dispatch and answers -----------------------------------------------------------------------

    def _received(self, request: Request) -> None:
        if not self.waiting and len(self.slots) < self.limits.max_inflight:
            self._dispatch(request)
        else:
            self.waiting.append(request)
        if len(self.slots) + len(self.waiting) >= self.limits.max_inflight:
            self._pause_reading()

    def _dispatch(self, request: Request) -> None:
        slot = Slot(self)
        self.slots.append(slot)
        try:
            self.handler(request, slot)
        except Exception:
            log.exception("request handler failed")
            slot.answer(build_response(500, error_body("internal_error", "the request could not be handled")))

    def _answer_in_turn(self, data: bytes) -> None:
        """An answer the protocol itself gives (408, 413, 431, 400), after those already due; then close."""
        self.closing = True
        self.linger = True
        self._pause_reading()
        slot = Slot(self)
        self.slots.append(slot)
        slot.answer(data)

    def _refuse(self, status: int, error: str, reason: str) -> None:
        self._forget_partial()
        self._answer_in_turn(build_response(status, error_body(error, reason), close=True))

    def schedule_flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.server.flush_soon(self)

    def flush(self) -> None:
        """Write every answer that is ready, in request order, in one write; then dispatch what waited."""
        self.flush_scheduled = False
        if self.closed:
            return
        slots = self.slots
        ready = []
        while slots and slots[0].data is not None:
            ready.append(slots.popleft().data)
        if ready:
            self.last_active = self.loop.time()
            self.transport.write(ready[0] if len(ready) == 1 else b"".join(ready))
        waiting = self.waiting
        while waiting and len(slots) < self.limits.max_inflight:
            self._dispatch(waiting.popleft())
        if self.closing:
            if not slots and not waiting:
                self._close()
        else:
            self._maybe_resume_reading()

    def _close(self) -> None:
        if not self.linger or not self.transport.can_write_eof():
            self.transport.close()
        elif self.lingering_until is None:
            self.lingering_until = self.loop.time() + LINGER_SECONDS
            self.transport.write_eof()
            self.transport.resume_reading()

    # -- flow control and timeouts ------------------------------------------------------------------

    def _pause_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (not self.reading and not self.closing and self.write_paused_since is None
                and len(self.slots) + len(self.waiting) < self.limits.max_inflight):
            self.reading = True
            if self.request is not None:  # its clock stopped while we were not reading
                self.request_started = self.loop.time()
            self.transport.resume_reading()

    def check_timeouts(self, now: float) -> None:
        limits = self.limits
        if self.lingering_until is not None:
            if now > self.lingering_until:
                self.transport.close()
        elif self.write_paused_since is not None and now - self.write_paused_since > limits.read_timeout:
            self.transport.abort()  # the client reads none of its answers
        elif self.request is not None:
            if self.reading and now - self.request_started > limits.read_timeout:
                self._refuse(408, "request_timeout",
                             f"the request was not received within READ_TIMEOUT_SECONDS={limits.read_timeout:g}")
        elif not self.slots and not self.waiting and now - self.last_active > limits.idle_timeout:
            self.transport.close()

    def shut_down(self) -> None:
        """Stop taking requests: answer those received (a partial one is dropped), then close."""
        self._forget_partial()
        self.closing = True
        self._pause_reading()
        if not self.slots and not self.waiting:
            self.transport.close()


class HttpServer:
    """The connections of one worker process and their shared settings."""

    def __init__(self, handler: Handler, limits: Limits) -> None:
        self.handler = handler
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.connections: set[HttpConnection] = set()
        self.partial_bytes = 0  # bodies of requests still being received, on every connection
        self._to_flush: list[HttpConnection] = []
        self._drained: asyncio.Event | None = None
        self._sweeper = asyncio.create_task(self._sweep())

    def protocol(self) -> HttpConnection:
        return HttpConnection(self)

    def flush_soon(self, connection: HttpConnection) -> None:
        """Flush the connection at the end of this loop turn: one callback for every connection answered."""
        if not self._to_flush:
            self.loop.call_soon(self._flush_all)
        self._to_flush.append(connection)

    def _flush_all(self) -> None:
        connections, self._to_flush = self._to_flush, []
        for connection in connections:
            connection.flush()

    async def accept(self, sock) -> None:
        await self.loop.connect_accepted_socket(self.protocol, sock)

    def connection_closed(self) -> None:
        if self._drained is not None and not self.connections:
            self._drained.set()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = self.loop.time()
            for connection in list(self.connections):
                try:
                    connection.check_timeouts(now)
                except Exception:
                    log.exception("connection timeout check failed")

    async def shut_down(self, grace: float) -> None:
        """Answer what was received (up to ``grace`` seconds), then close every connection."""
        self._drained = asyncio.Event()
        for connection in list(self.connections):
            connection.shut_down()
        if self.connections:
            try:
                async with asyncio.timeout(grace):
                    await self._drained.wait()
            except TimeoutError:
                log.warning("requests still open at shutdown; closing their connections",
                            extra={"fields": {"connections": len(self.connections)}})
                for connection in list(self.connections):
                    connection.transport.abort()
        self._sweeper.cancel()
