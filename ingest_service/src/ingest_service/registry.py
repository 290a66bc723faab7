"""The tenant registry: who may write, where, and with which token.

Loaded at start, reloaded on every NOTIFY on ``telemetry_registry`` (a
dedicated connection that reconnects after outages), by a fallback poll, and
on demand when a request names a tenant or token we do not know: EMQX never
retries a 401 or 404, so a tenant created a moment ago must not be refused
because its notification is still in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

import psycopg

from ingest_service.deadline import ConnectionSlot, call_before

log = logging.getLogger("ingest_service.registry")

CHANNEL = "telemetry_registry"
LOAD_SQL = """
SELECT slug, schema_name, topic_prefix, token_sha256, previous_token_sha256,
       extract(epoch FROM previous_token_expires_at)::float8
FROM telemetry_registry.tenants
WHERE enabled
"""
LISTEN_RETRY_MAX_SECONDS = 2.0
# The LISTEN connection only ever reads: if the database host vanishes without closing it (a
# container or VM killed, a network partition) nothing would ever notice, and notifications
# would stop until the next poll. TCP keepalives make the kernel notice within about a minute.
TCP_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
# Between notifications the listener checks its connection this often (a cheap round trip):
# a connection that died without a FIN is replaced, and the registry is reloaded on reconnect.
LISTEN_CHECK_SECONDS = 30.0


class RegistryUnavailable(Exception):
    """The registry could not be read (database down): the caller answers 503, EMQX retries."""


@dataclass(frozen=True, slots=True)
class Tenant:
    slug: str
    schema_name: str
    topic_prefix: str  # the full prefix a topic must start with: "tenants/<prefix>/"
    token_sha256: bytes
    previous_token_sha256: bytes | None
    previous_token_expires_at: float | None

    def accepts_current(self, token: bytes) -> bool:
        """The current token (no grace period to expire): an answer that holds until the registry changes."""
        return hmac.compare_digest(hashlib.sha256(token).hexdigest().encode(), self.token_sha256)

    def accepts(self, token: bytes) -> bool:
        digest = hashlib.sha256(token).hexdigest().encode()
        if hmac.compare_digest(digest, self.token_sha256):
            return True
        if self.previous_token_sha256 is not None and self.previous_token_expires_at is not None:
            return time.time() < self.previous_token_expires_at and hmac.compare_digest(digest, self.previous_token_sha256)
        return False


def _hex(value: str | None) -> bytes | None:
    return value.strip().lower().encode() if value else None


class Registry:
    def __init__(self, database_url: str, poll_seconds: float, connect_timeout: float,
                 forced_reload_min_seconds: float = 0.1) -> None:
        self._database_url = database_url
        self._forced_min = forced_reload_min_seconds
        self._query_conn: psycopg.AsyncConnection | None = None
        self._poll_seconds = poll_seconds
        self._connect_timeout = connect_timeout
        self.tenants: dict[str, Tenant] = {}
        self.loaded = False
        self._last_forced = 0.0
        self._inflight: asyncio.Future | None = None
        self._inflight_started = 0.0
        self._completed_started = 0.0
        self._tasks: list[asyncio.Task] = []

    async def _connect(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(
            self._database_url, autocommit=True, connect_timeout=max(1, int(self._connect_timeout)),
            application_name="telemetry-ingest-registry", **TCP_KEEPALIVES,
        )

    async def _load(self) -> None:
        # One kept connection for the queries (the LISTEN connection is busy waiting for notifications).
        # The query answers within DB_TIMEOUT_SECONDS even when the server is paused: requests wait on it.
        async def query(slot: ConnectionSlot) -> tuple[psycopg.AsyncConnection, list]:
            conn = self._query_conn
            if conn is None or conn.closed:
                conn = await self._connect()
            slot.use(conn)
            try:
                return conn, await (await conn.execute(LOAD_SQL)).fetchall()
            except BaseException:
                if self._query_conn is conn:
                    self._query_conn = None
                await conn.close()  # here, once nothing waits on its socket any more
                raise

        loop = asyncio.get_running_loop()
        try:
            self._query_conn, rows = await call_before(loop.time() + self._connect_timeout, query)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            if not isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, OSError, TimeoutError)):
                # Reachable but refusing (privilege, missing table): an operator must act.
                log.error("registry cannot be read", extra={"fields": {"error": _first_line(exc)}})
            self._query_conn = None  # the query closes it (an abandoned one when its wait ends)
            raise RegistryUnavailable(_first_line(exc)) from exc
        tenants = {}
        for slug, schema_name, prefix, token, previous, expires in rows:
            tenants[slug] = Tenant(
                slug=slug,
                schema_name=schema_name,
                topic_prefix=f"tenants/{prefix}/",
                token_sha256=_hex(token) or b"",
                previous_token_sha256=_hex(previous),
                previous_token_expires_at=expires,
            )
        changed = tenants != self.tenants
        self.tenants = tenants
        self.loaded = True
        if changed:
            log.info("registry loaded", extra={"fields": {"tenants": len(tenants)}})

    async def reload(self, fresh: bool = False) -> None:
        """Reload now; concurrent callers share one query.

        ``fresh``: the query must start after this call, so that it sees every change committed
        before it (the listener after a NOTIFY: a query already running may have read the registry
        before that change).  Otherwise a query already running will do.

        The query runs in a task of its own: a caller that is cancelled (a request, the poll or the
        listener at shutdown) must neither cancel it for the others nor leave the query connection
        in the middle of a statement.
        """
        arrived = time.monotonic()
        while True:
            inflight = self._inflight
            if inflight is None:
                self._inflight_started = started = time.monotonic()
                self._inflight = inflight = asyncio.ensure_future(self._load_once(started))
                return await asyncio.shield(inflight)
            if not fresh or self._inflight_started >= arrived:
                return await asyncio.shield(inflight)
            try:  # started too early for us: let it finish, then run our own
                await asyncio.shield(inflight)
            except RegistryUnavailable:
                pass
            if self._completed_started >= arrived:
                return

    async def _load_once(self, started: float) -> None:
        try:
            await self._load()
        except RegistryUnavailable:
            raise
        except Exception as exc:  # a bug, not an outage: callers answer 503 rather than 500
            log.exception("registry reload failed unexpectedly")
            raise RegistryUnavailable(f"unexpected error: {type(exc).__name__}") from exc
        else:
            self._completed_started = max(self._completed_started, started)
        finally:
            self._inflight = None

    async def lookup(self, slug: str) -> Tenant | None:
        tenant = self.tenants.get(slug)
        if tenant is None:
            await self.force_reload()
            tenant = self.tenants.get(slug)
        return tenant

    async def force_reload(self) -> None:
        """Return once a reload that started after this call has completed.

        Such reloads are started at most every REGISTRY_FORCED_RELOAD_MS per process and
        shared by every request waiting for one, so a flood of unknown tenants or tokens
        costs the database a few queries a second, and no request is refused on stale data.
        Raises RegistryUnavailable when the database cannot be read.
        """
        arrived = time.monotonic()
        while True:
            if self._completed_started >= arrived:
                return
            if self._inflight is not None:
                started = self._inflight_started
                try:
                    await asyncio.shield(self._inflight)
                except RegistryUnavailable:
                    if started >= arrived:
                        raise
                continue
            delay = self._last_forced + self._forced_min - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            self._last_forced = time.monotonic()
            await self.reload()
            return

    async def start(self) -> None:
        try:
            await self.reload()
        except RegistryUnavailable as exc:
            log.warning("registry not loaded at start; will retry", extra={"fields": {"error": str(exc)}})
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._poll())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        inflight = self._inflight
        if inflight is not None:  # a reload still using the query connection
            inflight.cancel()
            await asyncio.gather(inflight, return_exceptions=True)
        await self._drop_query_conn()

    async def _drop_query_conn(self) -> None:
        conn, self._query_conn = self._query_conn, None
        if conn is not None:
            await conn.close()  # never raises: it only drops the libpq connection

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds if self.loaded else 1.0)
            try:
                await self.reload()
            except RegistryUnavailable:
                pass
            except Exception:
                log.exception("registry poll failed")

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                async with await self._connect() as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    # Notifications sent while we were not listening are lost: catch up first.
                    await self.reload(fresh=True)
                    delay = 0.1
                    while True:
                        notified = False
                        async for _ in conn.notifies(timeout=LISTEN_CHECK_SECONDS, stop_after=1):
                            notified = True
                        if notified:
                            await self.reload(fresh=True)
                        else:  # quiet for a while: is the connection still there?
                            # psycopg's own cancellation may hold this task ~10 s on a hung server;
                            # only the listener waits for it.
                            async with asyncio.timeout(self._connect_timeout):
                                await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except (RegistryUnavailable, psycopg.Error, OSError, TimeoutError) as exc:
                log.warning("registry listener disconnected; reconnecting",
                            extra={"fields": {"error": _first_line(exc), "retry_in": delay}})
            except Exception:
                log.exception("registry listener failed; reconnecting")
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_RETRY_MAX_SECONDS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
