"""Writing rows: group commit (the service) and one commit per request (the benchmark's baseline).

Group commit: requests append their rows to one bounded in-process queue and
await a future.  The writer loop (BATCH_WRITERS of them per process) takes
everything queued, up to BATCH_MAX_ROWS, and writes it as ONE statement: an
``INSERT ... SELECT FROM unnest(arrays)`` per tenant, joined as data-modifying
CTEs when the batch holds several tenants, run in autocommit mode, so a batch
costs one round trip and one commit.  The futures are resolved only after that
statement (and so its commit) returned.  While one batch commits the next one
accumulates, so the batch size follows the load.

Inserts are idempotent (``ON CONFLICT DO NOTHING`` on the (msg_id, time)
unique index), which makes retrying a batch whose outcome is unknown safe.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ingest_service import metrics
from ingest_service.messages import RequestError, Row, json_string
from ingest_service.registry import TCP_KEEPALIVES

if TYPE_CHECKING:
    from ingest_service.registry import Tenant

log = logging.getLogger("ingest_service.writer")

# SQLSTATE classes that say "try again later": connection exceptions, insufficient
# resources, operator intervention (shutdown), system errors, transaction rollback.
TRANSIENT_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})
RETRY_PAUSE_SECONDS = 0.05
# Before taking a batch the writer lets the event loop turn this many times, so that requests
# already read from the sockets join it: measured, batches grow from ~15 to ~25 rows and the
# throughput by ~15% at no latency cost (a timed wait, BATCH_MAX_WAIT_MS, costs latency).
GATHER_LOOP_TURNS = 4


class DatabaseUnavailable(Exception):
    """The rows were not (known to be) committed; the request answers 503 and EMQX retries."""


class QueueFull(Exception):
    """More rows are waiting than QUEUE_MAX_ROWS (or bytes than QUEUE_MAX_BYTES) allows; the request answers 503."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, (PoolTimeout, TimeoutError, OSError)):
        return True
    if isinstance(exc, psycopg.Error):
        if exc.sqlstate is None:
            return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
        return exc.sqlstate[:2] in TRANSIENT_CLASSES
    return False


def _rejects_value(exc: BaseException) -> bool:
    """The database refused a value (bad data, not an outage or a privilege problem)."""
    return isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)) or (
        isinstance(exc, psycopg.Error) and exc.sqlstate is not None and exc.sqlstate[:2] in ("22", "23", "54")
    )


# Epoch milliseconds become timestamptz on the server, exactly (interval arithmetic is integral).
# ON CONFLICT without a target: the writer role has INSERT only, and (msg_id, time) is the only
# unique index, so this skips exactly the duplicate deliveries.
_INSERT = sql.SQL(
    "INSERT INTO {table} (time, device_id, topic, payload, msg_id) "
    "SELECT timestamptz 'epoch' + t * interval '1 millisecond', d, tp, p::jsonb, m "
    # Binary parameters (%b): psycopg dumps the arrays about three times faster than as text.
    "FROM unnest(%b::int8[], %b::text[], %b::text[], %b::text[], %b::text[]) AS u(t, d, tp, p, m) "
    "ON CONFLICT DO NOTHING"
)
# A batch for several tenants is still one statement (data-modifying CTEs), so that in autocommit
# mode it costs one round trip and one commit; beyond this many tenants it is split, in a transaction.
MAX_TENANTS_PER_STATEMENT = 8


def _insert_sql(schema_names: tuple[str, ...]) -> bytes:
    inserts = [_INSERT.format(table=sql.Identifier(name, "telemetry")) for name in schema_names]
    if len(inserts) == 1:
        statement = inserts[0]
    else:
        ctes = sql.SQL(", ").join(
            sql.SQL("{} AS ({})").format(sql.Identifier(f"insert_{i}"), insert) for i, insert in enumerate(inserts[:-1])
        )
        statement = sql.SQL("WITH {} {}").format(ctes, inserts[-1])
    return statement.as_string(None).encode()


def make_pool(database_url: str, size: int, timeout: float) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        database_url,
        min_size=size,
        max_size=size,
        timeout=timeout,
        # Give up a background reconnection soon: the next request then reconnects at once,
        # instead of waiting out an exponential backoff after the database came back.
        reconnect_timeout=max(2.0, min(timeout, 10.0)),
        kwargs={"connect_timeout": max(1, int(timeout)), "application_name": "telemetry-ingest", "autocommit": True,
                **TCP_KEEPALIVES},
        open=False,
        name="ingest",
    )


class Pending:
    __slots__ = ("future", "rows", "size", "tenant")

    def __init__(self, tenant: Tenant, rows: list[Row], future: asyncio.Future, size: int = 0) -> None:
        self.tenant = tenant
        self.rows = rows
        self.future = future
        self.size = size  # the request body's bytes: what the queued rows hold in memory, roughly


class _Sql:
    """Statement text per set of tenant schemas, built once."""

    # A batch holds any subset of up to MAX_TENANTS_PER_STATEMENT tenants: with many tenants the
    # number of subsets is astronomical, so the cache is bounded (it is rebuilt in microseconds).
    MAX_ENTRIES = 1024

    def __init__(self) -> None:
        self._cache: dict[tuple[str, ...], bytes] = {}

    def insert(self, schema_names: tuple[str, ...]) -> bytes:
        query = self._cache.get(schema_names)
        if query is None:
            if len(self._cache) >= self.MAX_ENTRIES:
                self._cache.clear()
            query = self._cache[schema_names] = _insert_sql(schema_names)
        return query


class BatchWriter:
    def __init__(self, pool: AsyncConnectionPool, max_rows: int, max_wait_ms: float, queue_max_rows: int,
                 writers: int, timeout: float, queue_max_bytes: int = 64 * 1_048_576) -> None:
        self._pool = pool
        self._max_rows = max_rows
        self._max_wait = max_wait_ms / 1000.0
        self._queue_max = queue_max_rows
        # Rows alone do not bound memory: 20,000 rows of 1 MiB payloads would be 20 GiB.
        self._queue_max_bytes = queue_max_bytes
        self._queued_bytes = 0
        self._committing_bytes = 0  # taken from the queue, still in memory until their batch is done
        self._committing = 0  # batches being written
        self._writers = writers
        self._timeout = timeout
        self._pending: collections.deque[Pending] = collections.deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._sql = _Sql()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self._writers)]

    async def stop(self) -> None:
        # uvicorn has answered every request before it runs the lifespan shutdown, so normally
        # nothing is left; otherwise let queued and committing batches finish before cancelling.
        deadline = time.monotonic() + self._timeout
        while (self._pending or self._committing) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for item in self._pending:
            if not item.future.done():
                item.future.set_exception(DatabaseUnavailable("service is shutting down"))

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    async def write(self, tenant: Tenant, rows: list[Row], size: int = 0) -> None:
        count = len(rows)
        if count > self._queue_max:
            raise RequestError(413, "payload_too_large", f"{count} messages is more than QUEUE_MAX_ROWS={self._queue_max}")
        if self._queued_rows + count > self._queue_max:
            raise QueueFull(f"{self._queued_rows} rows are waiting (QUEUE_MAX_ROWS={self._queue_max})")
        # An empty queue takes any body (MAX_BODY_BYTES bounds it), so no request is refused for ever.
        held = self._queued_bytes + self._committing_bytes
        if held and held + size > self._queue_max_bytes:
            raise QueueFull(f"{held} bytes are waiting (QUEUE_MAX_BYTES={self._queue_max_bytes})")
        future = asyncio.get_running_loop().create_future()
        self._pending.append(Pending(tenant, rows, future, size))
        self._queued_rows += count
        self._queued_bytes += size
        self._wakeup.set()
        await future

    async def _run(self) -> None:
        pending = self._pending
        while True:
            while not pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._queued_rows < self._max_rows:
                for _ in range(GATHER_LOOP_TURNS):
                    await asyncio.sleep(0)
                if self._max_wait:
                    await asyncio.sleep(self._max_wait)
                if not pending:
                    continue
            batch = []
            taken = 0
            size = 0
            while pending and taken < self._max_rows:
                item = pending.popleft()
                batch.append(item)
                taken += len(item.rows)
                size += item.size
            self._queued_rows -= taken
            self._queued_bytes -= size
            self._committing_bytes += size
            self._committing += 1
            try:
                await self._commit_batch(batch, taken)
            except asyncio.CancelledError:
                _fail(batch, DatabaseUnavailable("service is shutting down"))
                raise
            except Exception as exc:  # never let a writer loop die
                log.exception("batch failed unexpectedly")
                _fail(batch, DatabaseUnavailable(f"unexpected error: {type(exc).__name__}"))
            finally:
                self._committing_bytes -= size
                self._committing -= 1

    async def _commit_batch(self, batch: list[Pending], taken: int) -> None:
        started = time.monotonic()
        try:
            await self._write_with_retry(batch, started + self._timeout)
        except Exception as exc:
            if _transient(exc):
                metrics.DB_ERRORS.labels("unavailable").inc()
                unavailable = DatabaseUnavailable(_describe(exc))
                # What is queued now would meet the same outage, one DB_TIMEOUT_SECONDS per batch:
                # refuse it at once, EMQX retries it.
                queued = self._drain()
                log.warning("database unavailable; requests refused with 503",
                            extra={"fields": {"requests": len(batch) + len(queued), "error": _describe(exc)}})
                _fail(batch, unavailable)
                _fail(queued, unavailable)
            else:
                await self._isolate(batch, exc)
            return
        metrics.COMMIT_SECONDS.observe(time.monotonic() - started)
        metrics.BATCH_ROWS.observe(taken)
        _count_rows(batch)
        for item in batch:
            if not item.future.done():
                item.future.set_result(None)

    async def _write_with_retry(self, batch: list[Pending], deadline: float, as_strings: bool = False) -> None:
        """Write and commit; after a transient error retry (idempotent) until the deadline."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("database did not answer within DB_TIMEOUT_SECONDS")
            try:
                async with asyncio.timeout(remaining):
                    await self._write(batch, remaining, as_strings)
                return
            except Exception as exc:
                if not _transient(exc) or deadline - time.monotonic() <= RETRY_PAUSE_SECONDS:
                    raise
            await asyncio.sleep(RETRY_PAUSE_SECONDS)

    async def _write(self, batch: list[Pending], timeout: float, as_strings: bool) -> None:
        groups: dict[str, tuple[list, list, list, list, list]] = {}
        for item in batch:
            columns = groups.get(item.tenant.schema_name)
            if columns is None:
                columns = groups[item.tenant.schema_name] = ([], [], [], [], [])
            times, devices, topics, payloads, ids = columns
            for t, d, tp, p, m in item.rows:
                times.append(t)
                devices.append(d)
                topics.append(tp)
                payloads.append(json_string(p) if as_strings else p)
                ids.append(m)
        schema_names = sorted(groups)
        statements = []
        for start in range(0, len(schema_names), MAX_TENANTS_PER_STATEMENT):
            chunk = tuple(schema_names[start:start + MAX_TENANTS_PER_STATEMENT])
            params = [value for name in chunk for value in groups[name]]
            statements.append((self._sql.insert(chunk), params))
        async with self._pool.connection(timeout=timeout) as conn:
            if len(statements) == 1:
                await conn.execute(*statements[0])  # autocommit: one round trip, one commit
            else:
                async with conn.transaction():
                    for statement in statements:
                        await conn.execute(*statement)

    def _drain(self) -> list[Pending]:
        queued = list(self._pending)
        self._pending.clear()
        self._queued_rows = 0
        self._queued_bytes = 0
        return queued

    async def _isolate(self, batch: list[Pending], exc: BaseException) -> None:
        """A batch was refused, not for an outage: narrow it down so that only the cause fails.

        First per tenant (a tenant whose table is missing or not granted must not stop the
        others), then, for a value the database refused, per request.
        """
        tenants: dict[str, list[Pending]] = {}
        for item in batch:
            tenants.setdefault(item.tenant.schema_name, []).append(item)
        if len(tenants) > 1:
            for group in tenants.values():
                await self._commit_batch(group, sum(len(item.rows) for item in group))
            return
        if len(batch) > 1 and _rejects_value(exc):
            for item in batch:
                await self._commit_batch([item], len(item.rows))
            return
        item = batch[0]
        deadline = time.monotonic() + self._timeout
        if _rejects_value(exc) and len(batch) == 1:
            # The database refused a payload as JSON: keep it verbatim, as a JSON string.
            try:
                await self._write_with_retry(batch, deadline, as_strings=True)
            except Exception as retry_exc:
                exc = retry_exc
            else:
                _count_rows(batch)
                if not item.future.done():
                    item.future.set_result(None)
                return
        if _rejects_value(exc) and len(batch) == 1:
            log.warning("database rejected a request's values",
                        extra={"fields": {"tenant": item.tenant.slug, "sqlstate": getattr(exc, "sqlstate", None)}})
            _fail(batch, RequestError(400, "bad_request", f"the database rejected a value: {_describe(exc)}"))
        elif _transient(exc):
            _fail(batch, DatabaseUnavailable(_describe(exc)))
        else:
            # Missing table or privilege: an operator must act; 503 keeps EMQX retrying meanwhile.
            metrics.DB_ERRORS.labels("rejected").inc()
            log.error("database refused the write for this tenant",
                      extra={"fields": {"tenant": item.tenant.slug, "schema": item.tenant.schema_name,
                                        "sqlstate": getattr(exc, "sqlstate", None), "error": _describe(exc)}})
            _fail(batch, DatabaseUnavailable(f"the tenant's table is not writable: {_describe(exc)}"))


class NaiveWriter:
    """The textbook handler, kept as the benchmark's baseline (not for production):
    each request takes a pooled connection and runs BEGIN, INSERT ... VALUES per row, COMMIT."""

    queued_rows = 0

    def __init__(self, pool: AsyncConnectionPool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._sql: dict[str, bytes] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def _insert(self, schema_name: str) -> bytes:
        query = self._sql.get(schema_name)
        if query is None:
            query = self._sql[schema_name] = (
                sql.SQL(
                    "INSERT INTO {} (time, device_id, topic, payload, msg_id) "
                    "VALUES (timestamptz 'epoch' + %s * interval '1 millisecond', %s, %s, %s::jsonb, %s) "
                    "ON CONFLICT DO NOTHING"
                ).format(sql.Identifier(schema_name, "telemetry")).as_string(None).encode()
            )
        return query

    async def write(self, tenant: Tenant, rows: list[Row], size: int = 0) -> None:
        started = time.monotonic()
        query = self._insert(tenant.schema_name)
        try:
            async with asyncio.timeout(self._timeout):
                async with self._pool.connection(timeout=self._timeout) as conn, conn.transaction():
                    for row in rows:
                        await conn.execute(query, row)
        except Exception as exc:
            if _transient(exc):
                raise DatabaseUnavailable(_describe(exc)) from None
            if _rejects_value(exc):
                raise RequestError(400, "bad_request", f"the database rejected a value: {_describe(exc)}") from None
            raise DatabaseUnavailable(f"the tenant's table is not writable: {_describe(exc)}") from None
        metrics.COMMIT_SECONDS.observe(time.monotonic() - started)
        metrics.BATCH_ROWS.observe(len(rows))
        metrics.count_rows(tenant.slug, len(rows))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        # The primary message only: DETAIL lines may quote the offending value.
        return f"{exc.sqlstate or type(exc).__name__}: {exc.diag.message_primary}"
    if isinstance(exc, PoolTimeout):
        return "no database connection available within DB_TIMEOUT_SECONDS"
    if isinstance(exc, TimeoutError):
        return str(exc) or "database did not answer within DB_TIMEOUT_SECONDS"
    text = str(exc).strip()
    return type(exc).__name__ + (f": {text.splitlines()[0]}" if text else "")


def _fail(batch: list[Pending], exc: Exception) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)


def _count_rows(batch: list[Pending]) -> None:
    per_tenant: dict[str, int] = {}
    for item in batch:
        per_tenant[item.tenant.slug] = per_tenant.get(item.tenant.slug, 0) + len(item.rows)
    for slug, rows in per_tenant.items():
        metrics.count_rows(slug, rows)
