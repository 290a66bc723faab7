"""The ASGI application.

A raw ASGI callable rather than a framework: at 20k+ requests/s on two cores a
framework's routing, request and response objects would cost more CPU than the
ingest path itself, and this service has four fixed routes.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
import psycopg

from ingest_service import metrics
from ingest_service.config import Settings, load_settings
from ingest_service.messages import RequestError, parse_rows
from ingest_service.registry import Registry, RegistryUnavailable
from ingest_service.writer import BatchWriter, DatabaseUnavailable, NaiveWriter, QueueFull, make_pool

log = logging.getLogger("ingest_service")

RETRY_AFTER = b"1"
ACCEPTED_ONE = b'{"status":"accepted","rows":1}'
BEARER = b"bearer "
MAX_TENANT_CHARS = 128


def _json_media_type(value: bytes) -> bool:
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class IngestApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry: Registry | None = None
        self.pool = None
        self.writer: BatchWriter | NaiveWriter | None = None
        self._started = False
        self._metrics_task: asyncio.Task | None = None

    # -- lifespan -------------------------------------------------------------------------------

    async def startup(self) -> None:
        s = self.settings
        size = s.batch_writers if s.ingest_mode == "batched" else s.db_pool_size
        self.pool = make_pool(s.database_url, size, s.db_timeout_seconds)
        # Do not wait for the database: the service starts (and answers 503) while it is down.
        await self.pool.open(wait=False)
        if s.ingest_mode == "batched":
            self.writer = BatchWriter(self.pool, s.batch_max_rows, s.batch_max_wait_ms, s.queue_max_rows,
                                      s.batch_writers, s.db_timeout_seconds, s.queue_max_bytes)
        else:
            self.writer = NaiveWriter(self.pool, s.db_timeout_seconds)
        await self.writer.start()
        self.registry = Registry(s.database_url, s.registry_reload_seconds, s.db_timeout_seconds,
                                 s.registry_forced_reload_ms / 1000.0)
        await self.registry.start()
        self._metrics_task = asyncio.create_task(self._flush_metrics())
        self._started = True
        log.info("worker started", extra={"fields": {"mode": s.ingest_mode, "port": s.port}})

    async def shutdown(self) -> None:
        if self._metrics_task is not None:
            self._metrics_task.cancel()
        if self.writer is not None:
            await self.writer.stop()
        if self.registry is not None:
            await self.registry.stop()
        if self.pool is not None:
            await self.pool.close(timeout=2.0)
        metrics.QUEUE_ROWS.set(0)
        metrics.flush()

    # -- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path == "/ingest":
                if scope["method"] != "POST":
                    return await _respond(send, 405, _error_body("method_not_allowed", "use POST"), [(b"allow", b"POST")])
                return await self._ingest(scope, receive, send)
            if scope["method"] not in ("GET", "HEAD"):
                return await _respond(send, 405, _error_body("method_not_allowed", "use GET"), [(b"allow", b"GET")])
            if path == "/healthz":
                return await _respond(send, 200, b'{"status":"ok"}')
            if path == "/readyz":
                return await self._readyz(send)
            if path == "/metrics":
                metrics.QUEUE_ROWS.set(self.writer.queued_rows)
                body, content_type = metrics.render()
                return await _respond(send, 200, body, content_type=content_type.encode())
            return await _respond(send, 404, _error_body("not_found", "no such path"))
        if kind == "lifespan":
            return await self._lifespan(receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _readyz(self, send) -> None:
        try:
            async with await psycopg.AsyncConnection.connect(
                self.settings.database_url, connect_timeout=max(1, int(self.settings.db_timeout_seconds))
            ) as conn:
                async with asyncio.timeout(self.settings.db_timeout_seconds):
                    await conn.execute("SELECT 1")
        except Exception as exc:
            reason = f"database unreachable: {type(exc).__name__}"
            return await _respond(send, 503, _error_body("unavailable", reason), [(b"retry-after", RETRY_AFTER)])
        if not self.registry.loaded:
            return await _respond(send, 503, _error_body("unavailable", "tenant registry not loaded yet"),
                                  [(b"retry-after", RETRY_AFTER)])
        return await _respond(send, 200, b'{"status":"ready"}')

    async def _ingest(self, scope, receive, send) -> None:
        tenant_header = token = content_type = content_length = None
        for name, value in scope["headers"]:
            if name == b"x-tenant":
                tenant_header = value
            elif name == b"authorization":
                token = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value
        slug = metrics.UNKNOWN_TENANT
        try:
            if content_type is None or not _json_media_type(content_type):
                raise RequestError(415, "unsupported_media_type", "Content-Type must be application/json")
            limit = self.settings.max_body_bytes
            if content_length is not None:
                try:
                    declared = int(content_length)
                except ValueError:
                    raise RequestError(400, "bad_request", "Content-Length is not a number") from None
                if declared > limit:
                    raise RequestError(413, "payload_too_large", f"body is larger than MAX_BODY_BYTES={limit}")
            tenant = await self._authenticate(tenant_header, token)
            slug = tenant.slug
            body = await _read_body(receive, limit)
            if body is None:
                raise RequestError(413, "payload_too_large", f"body is larger than MAX_BODY_BYTES={limit}")
            rows = parse_rows(body, tenant.topic_prefix)
            await self.writer.write(tenant, rows, len(body))
        except RequestError as exc:
            if exc.tenant:
                slug = exc.tenant
            log.info("request refused", extra={"fields": {
                "tenant": slug if slug != metrics.UNKNOWN_TENANT else _printable(tenant_header),
                "status": exc.status, "reason": exc.reason}})
            metrics.count_request(slug, exc.status)
            headers = [(b"www-authenticate", b'Bearer realm="ingest"')] if exc.status == 401 else None
            return await _respond(send, exc.status, _error_body(exc.error, exc.reason), headers)
        except (DatabaseUnavailable, QueueFull, RegistryUnavailable) as exc:
            reason = ("queue full: " if isinstance(exc, QueueFull) else "database unavailable: ") + str(exc)
            metrics.count_request(slug, 503)
            return await _respond(send, 503, _error_body("unavailable", reason), [(b"retry-after", RETRY_AFTER)])
        metrics.count_request(slug, 202)
        count = len(rows)
        body = ACCEPTED_ONE if count == 1 else b'{"status":"accepted","rows":%d}' % count
        await send({"type": "http.response.start", "status": 202,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    async def _authenticate(self, tenant_header: bytes | None, authorization: bytes | None):
        if not self._started or not self.registry.loaded and not await self._try_load():
            raise RegistryUnavailable("tenant registry not loaded yet")
        if not tenant_header:
            raise RequestError(400, "bad_request", "X-Tenant header is missing")
        try:
            slug = tenant_header.decode("ascii")
        except UnicodeDecodeError:
            slug = None
        if slug is None or len(slug) > MAX_TENANT_CHARS:
            raise RequestError(404, "unknown_tenant", "no such tenant")
        tenant = await self.registry.lookup(slug)
        if tenant is None:
            raise RequestError(404, "unknown_tenant", f"tenant {slug!r} is unknown or disabled")
        if authorization is None:
            raise RequestError(401, "unauthorized", "Authorization header is missing", tenant=slug)
        if len(authorization) <= len(BEARER) or authorization[: len(BEARER)].lower() != BEARER:
            raise RequestError(401, "unauthorized", "Authorization must be 'Bearer <token>'", tenant=slug)
        token = authorization[len(BEARER):].strip()
        if tenant.accepts(token):
            return tenant
        # The token may have been rotated a moment ago: look once more before refusing.
        await self.registry.force_reload()
        tenant = self.registry.tenants.get(slug)
        if tenant is None:
            raise RequestError(404, "unknown_tenant", f"tenant {slug!r} is unknown or disabled")
        if tenant.accepts(token):
            return tenant
        raise RequestError(401, "unauthorized", f"wrong token for tenant {slug!r}", tenant=slug)

    async def _flush_metrics(self) -> None:
        while True:
            await asyncio.sleep(metrics.FLUSH_SECONDS)
            metrics.QUEUE_ROWS.set(self.writer.queued_rows)
            metrics.flush()

    async def _try_load(self) -> bool:
        try:
            await self.registry.reload()
        except RegistryUnavailable:
            return False
        return True


def _printable(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value[:MAX_TENANT_CHARS].decode("ascii", "replace")


def _error_body(error: str, reason: str) -> bytes:
    return orjson.dumps({"error": error, "reason": reason})


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole body, or None once it exceeds the limit."""
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body if len(body) <= limit else None
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send, status: int, body: bytes, headers=None, content_type: bytes = b"application/json") -> None:
    response_headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    if headers:
        response_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})


def create_app() -> IngestApp:
    """The uvicorn factory: each worker process builds its own app from the environment."""
    return IngestApp(load_settings())
