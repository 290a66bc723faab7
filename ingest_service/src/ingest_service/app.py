"""The routes: POST /ingest, GET /healthz, /readyz, /metrics.

Requests come from ``server.py`` complete, and are answered through their
slot.  The ingest path runs without a coroutine when it can (a known tenant
with a valid token): it parses, queues the rows for the group commit and
answers from the writer's callback, so a pipelined burst costs no task per
request.  Only a request that needs a registry reload takes the async path.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg

from ingest_service import metrics
from ingest_service.config import Settings
from ingest_service.database import DatabaseUnavailable, make_pool
from ingest_service.deadline import call_before
from ingest_service.messages import RequestError, TimeWindow, parse_rows
from ingest_service.naive import NaiveWriter
from ingest_service.registry import Registry, RegistryUnavailable, Tenant
from ingest_service.server import Request, Slot, build_response, error_body
from ingest_service.writer import SPARE_CONNECTIONS, BatchWriter, QueueFull

log = logging.getLogger("ingest_service")

RETRY_AFTER = b"retry-after: 1\r\n"
BEARER = b"bearer "
MAX_TENANT_CHARS = 128
MAX_ACCEPTED_HEADERS = 10_000
ACCEPTED_ONE = build_response(202, b'{"status":"accepted","rows":1}')
HEALTHY = build_response(200, b'{"status":"ok"}')
READY = build_response(200, b'{"status":"ready"}')
NOT_FOUND = build_response(404, error_body("not_found", "no such path"))
USE_POST = build_response(405, error_body("method_not_allowed", "use POST"), headers=b"allow: POST\r\n")
USE_GET = build_response(405, error_body("method_not_allowed", "use GET"), headers=b"allow: GET, HEAD\r\n")
UNAUTHORIZED_HEADERS = b'www-authenticate: Bearer realm="ingest"\r\n'


def _json_media_type(value: bytes) -> bool:
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def _unavailable(reason: str, head: bool = False) -> bytes:
    return build_response(503, error_body("unavailable", reason), headers=RETRY_AFTER, head=head)


class IngestApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry: Registry | None = None
        self.pool = None
        self.writer: BatchWriter | NaiveWriter | None = None
        self.window = TimeWindow(settings.max_message_age_seconds, settings.max_message_ahead_seconds)
        self._started = False
        self._metrics_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._accepted: dict[tuple[bytes | None, bytes | None], Tenant] = {}
        self._accepted_for: dict[str, Tenant] | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    async def startup(self) -> None:
        s = self.settings
        if s.ingest_mode == "batched":
            # Spare connections: stalled and failed batches are settled beside the writer loops.
            self.pool = make_pool(s.database_url, s.batch_writers, s.db_timeout_seconds, spare=SPARE_CONNECTIONS)
        else:
            self.pool = make_pool(s.database_url, s.db_pool_size, s.db_timeout_seconds)
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
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.writer is not None:
            await self.writer.stop()
        if self.registry is not None:
            await self.registry.stop()
        if self.pool is not None:
            await self.pool.close(timeout=2.0)
        metrics.QUEUE_ROWS.set(0)
        metrics.flush()

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- routing ------------------------------------------------------------------------------------

    def handle(self, request: Request, slot: Slot) -> None:
        path = request.path
        if b"?" in path:
            path = path.split(b"?", 1)[0]
        if path == b"/ingest":
            if request.method != b"POST":
                return slot.answer(USE_POST)
            return self._ingest(request, slot)
        if request.method not in (b"GET", b"HEAD"):
            return slot.answer(USE_GET)
        head = request.head_only
        if path == b"/healthz":
            return slot.answer(build_response(200, b'{"status":"ok"}', head=True) if head else HEALTHY)
        if path == b"/readyz":
            return self._spawn(self._readyz(slot, head))
        if path == b"/metrics":
            metrics.QUEUE_ROWS.set(self.writer.queued_rows)
            body, content_type = metrics.render()
            return slot.answer(build_response(200, body, content_type=content_type.encode(), head=head))
        return slot.answer(NOT_FOUND)

    async def _readyz(self, slot: Slot, head: bool) -> None:
        timeout = self.settings.db_timeout_seconds
        loop = asyncio.get_running_loop()

        async def check(connection_slot) -> None:
            conn = await psycopg.AsyncConnection.connect(
                self.settings.database_url, connect_timeout=max(1, int(timeout)), autocommit=True)
            connection_slot.use(conn)
            try:
                await conn.execute("SELECT 1")
            finally:
                await conn.close()

        try:
            await call_before(loop.time() + timeout, check)
        except Exception as exc:  # noqa: BLE001 - every failure is answered; _refuse logs the unexpected ones
            return slot.answer(_unavailable(f"database unreachable: {type(exc).__name__}", head))
        if not self.registry.loaded:
            return slot.answer(_unavailable("tenant registry not loaded yet", head))
        slot.answer(build_response(200, b'{"status":"ready"}', head=True) if head else READY)

    # -- POST /ingest -------------------------------------------------------------------------------

    def _ingest(self, request: Request, slot: Slot) -> None:
        try:
            if request.content_type is None or not _json_media_type(request.content_type):
                raise RequestError(415, "unsupported_media_type", "Content-Type must be application/json")
            tenant = self._known_tenant(request.tenant, request.authorization)
            if tenant is None:  # a registry reload first: the tenant or its token may be new
                return self._spawn(self._ingest_after_reload(request, slot))
            self._queue(tenant, request, slot)
        except Exception as exc:  # noqa: BLE001 - every failure is answered; _refuse logs the unexpected ones
            self._refuse(exc, request, slot)

    async def _ingest_after_reload(self, request: Request, slot: Slot) -> None:
        try:
            tenant = await self._authenticate(request.tenant, request.authorization)
            self._queue(tenant, request, slot)
        except Exception as exc:  # noqa: BLE001 - every failure is answered; _refuse logs the unexpected ones
            self._refuse(exc, request, slot)

    def _queue(self, tenant: Tenant, request: Request, slot: Slot) -> None:
        slug = tenant.slug
        try:
            rows = parse_rows(request.body, tenant.topic_prefix, self.window)
            count = len(rows)

            def committed(exc: BaseException | None) -> None:
                if exc is None:
                    metrics.count_request(slug, 202)
                    slot.answer(ACCEPTED_ONE if count == 1 else build_response(
                        202, b'{"status":"accepted","rows":%d}' % count))
                else:
                    self._refuse(exc, request, slot, slug)

            self.writer.submit(tenant, rows, len(request.body), committed)
        except Exception as exc:  # noqa: BLE001 - every failure is answered; _refuse logs the unexpected ones
            self._refuse(exc, request, slot, slug)

    def _refuse(self, exc: BaseException, request: Request, slot: Slot, slug: str | None = None) -> None:
        """Answer a request that was not committed; ``slug`` is its tenant's once authenticated."""
        if isinstance(exc, RequestError):
            slug = slug or exc.tenant
            log.info("request refused", extra={"fields": {
                "tenant": slug or _printable(request.tenant), "status": exc.status, "reason": exc.reason}})
            metrics.count_request(slug or metrics.UNKNOWN_TENANT, exc.status)
            headers = UNAUTHORIZED_HEADERS if exc.status == 401 else b""
            return slot.answer(build_response(exc.status, error_body(exc.error, exc.reason), headers=headers))
        if isinstance(exc, (DatabaseUnavailable, QueueFull, RegistryUnavailable)):
            reason = ("queue full: " if isinstance(exc, QueueFull) else "database unavailable: ") + str(exc)
            metrics.count_request(slug or metrics.UNKNOWN_TENANT, 503)
            return slot.answer(_unavailable(reason))
        log.error("request failed unexpectedly", exc_info=exc)
        metrics.count_request(slug or metrics.UNKNOWN_TENANT, 500)
        slot.answer(build_response(500, error_body("internal_error", "the request could not be handled")))

    def _known_tenant(self, tenant_header: bytes | None, authorization: bytes | None) -> Tenant | None:
        """The tenant when the registry in memory accepts the request; None when a reload must decide."""
        if not self._started or not self.registry.loaded:
            return None
        tenants = self.registry.tenants
        if tenants is not self._accepted_for:  # reloaded: what was accepted is decided anew
            self._accepted, self._accepted_for = {}, tenants
        # The same few header pairs come with every request: hashing the token each time would cost
        # more than the rest of authentication.  Only current tokens are remembered (a previous one's
        # grace period ends by the clock), and only accepted ones, so the map stays small.
        accepted = self._accepted.get((tenant_header, authorization))
        if accepted is not None:
            return accepted
        slug = _slug(tenant_header)
        tenant = tenants.get(slug)
        if tenant is None:
            return None
        token = _bearer_token(authorization, slug)
        if tenant.accepts_current(token):
            if len(self._accepted) >= MAX_ACCEPTED_HEADERS:
                self._accepted.clear()
            self._accepted[(tenant_header, authorization)] = tenant
            return tenant
        return tenant if tenant.accepts(token) else None

    async def _authenticate(self, tenant_header: bytes | None, authorization: bytes | None) -> Tenant:
        if not self._started or not self.registry.loaded and not await self._try_load():
            raise RegistryUnavailable("tenant registry not loaded yet")
        slug = _slug(tenant_header)
        tenant = await self.registry.lookup(slug)
        if tenant is None:
            raise RequestError(404, "unknown_tenant", f"tenant {slug!r} is unknown or disabled")
        token = _bearer_token(authorization, slug)
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


def _slug(tenant_header: bytes | None) -> str:
    if not tenant_header:
        raise RequestError(400, "bad_request", "X-Tenant header is missing")
    try:
        slug = tenant_header.decode("ascii")
    except UnicodeDecodeError:
        slug = None
    if slug is None or len(slug) > MAX_TENANT_CHARS:
        raise RequestError(404, "unknown_tenant", "no such tenant")
    return slug


def _bearer_token(authorization: bytes | None, slug: str) -> bytes:
    if authorization is None:
        raise RequestError(401, "unauthorized", "Authorization header is missing", tenant=slug)
    if len(authorization) <= len(BEARER) or authorization[: len(BEARER)].lower() != BEARER:
        raise RequestError(401, "unauthorized", "Authorization must be 'Bearer <token>'", tenant=slug)
    return authorization[len(BEARER):].strip()


def _printable(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value[:MAX_TENANT_CHARS].decode("ascii", "replace")
