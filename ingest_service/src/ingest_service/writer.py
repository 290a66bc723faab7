"""Group commit: many requests' rows in one statement and one commit.

Requests hand their rows to one bounded in-process queue with a callback.  The
writer loop (BATCH_WRITERS of them per process) takes everything queued, up to
BATCH_MAX_ROWS, and writes it as ONE statement (``statements.py``) in
autocommit mode, so a batch costs one round trip and one commit.  The callbacks
run only after that statement (and so its commit) returned.  While one batch
commits the next one accumulates, so the batch size follows the load.

Every request is answered within DB_TIMEOUT_SECONDS of its arrival: a batch
must commit by its oldest request's deadline, and a database call that does not
return in time is abandoned (``deadline.py``) instead of cancelled.

A batch that fails for a reason other than an outage does not fail its
requests together: it is handed to a background task that narrows it down
(per tenant, then per request, then per row for values the database refuses),
while the writer loop goes on with the queue.  So one tenant's stuck table or
expensive request does not turn other tenants' requests into 503s.

Inserts are idempotent (``ON CONFLICT DO NOTHING`` on the (msg_id, time)
unique index), which makes retrying a batch whose outcome is unknown safe.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ingest_service import metrics
from ingest_service.deadline import ConnectionSlot, DeadlineExceeded, call_before
from ingest_service.messages import RequestError, Row, json_string
from ingest_service.registry import TCP_KEEPALIVES
from ingest_service.statements import MAX_TENANTS_PER_STATEMENT, StatementCache

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
# Narrowing down failed batches: statements at once per process (each needs a connection), and
# failed batches being narrowed down at once; beyond that a failed batch answers 503 as a whole.
ISOLATION_CONNECTIONS = 4
MAX_ISOLATIONS = 16
# Statements spent finding the rows of one request that the database refuses; past that, the
# rows still refused are stored as JSON strings together (nothing is dropped either way).
ROW_SPLIT_STATEMENTS = 32
# The server checks this often whether the client of a running statement is still there, so an
# abandoned statement (a lock wait, a huge insert) is rolled back within a second (PostgreSQL 14+).
CLIENT_CONNECTION_CHECK_MS = 1000

Done = Callable[[BaseException | None], None]


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


STALLED, UNAVAILABLE, REJECTED, UNWRITABLE = "stalled", "unavailable", "rejected", "unwritable"


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, DeadlineExceeded):
        return STALLED  # the database is slow for this batch: perhaps only for one of its parts
    if _transient(exc):
        return UNAVAILABLE
    if _rejects_value(exc):
        return REJECTED
    return UNWRITABLE  # a missing table or privilege: an operator must act


async def _check_vanished_clients(conn: psycopg.AsyncConnection) -> None:
    try:
        await conn.execute(f"SET client_connection_check_interval = {CLIENT_CONNECTION_CHECK_MS}")
    except psycopg.Error:  # PostgreSQL 13 or older: abandoned statements then run to their end
        pass


def make_pool(database_url: str, size: int, timeout: float, spare: int = 0) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        database_url,
        min_size=size,
        max_size=size + spare,
        timeout=timeout,
        # Give up a background reconnection soon: the next request then reconnects at once,
        # instead of waiting out an exponential backoff after the database came back.
        reconnect_timeout=max(2.0, min(timeout, 10.0)),
        kwargs={"connect_timeout": max(1, int(timeout)), "application_name": "telemetry-ingest", "autocommit": True,
                **TCP_KEEPALIVES},
        configure=_check_vanished_clients,
        open=False,
        name="ingest",
    )


class Pending:
    __slots__ = ("deadline", "done", "rows", "size", "tenant")

    def __init__(self, tenant: Tenant, rows: list[Row], done: Done | None, size: int, deadline: float) -> None:
        self.tenant = tenant
        self.rows = rows
        self.done = done
        self.size = size  # the request body's bytes: what the queued rows hold in memory, roughly
        self.deadline = deadline  # loop time by which the request must be answered


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
        self._committing_bytes = 0  # taken from the queue, still in memory until their batch is settled
        self._committing = 0  # batches being written by the loops
        self._writers = writers
        self._timeout = timeout
        self._pending: collections.deque[Pending] = collections.deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._isolations: set[asyncio.Task] = set()
        self._isolation_slots = asyncio.Semaphore(ISOLATION_CONNECTIONS)
        self._sql = StatementCache()
        self._loop = asyncio.get_running_loop()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self._writers)]

    async def stop(self) -> None:
        # The server has answered (or given up on) every request before this runs, so normally
        # nothing is left; otherwise let queued and committing batches finish before cancelling.
        deadline = time.monotonic() + self._timeout
        while (self._pending or self._committing or self._isolations) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for task in [*self._tasks, *self._isolations]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._isolations, return_exceptions=True)
        _fail(list(self._pending), DatabaseUnavailable("service is shutting down"))

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def submit(self, tenant: Tenant, rows: list[Row], size: int, done: Done) -> None:
        """Queue the rows; ``done(None)`` once committed, ``done(exc)`` otherwise. Raises when refused at once."""
        count = len(rows)
        if count > self._queue_max:
            raise RequestError(413, "payload_too_large", f"{count} messages is more than QUEUE_MAX_ROWS={self._queue_max}")
        if self._queued_rows + count > self._queue_max:
            raise QueueFull(f"{self._queued_rows} rows are waiting (QUEUE_MAX_ROWS={self._queue_max})")
        # An empty queue takes any body (MAX_BODY_BYTES bounds it), so no request is refused for ever.
        held = self._queued_bytes + self._committing_bytes
        if held and held + size > self._queue_max_bytes:
            raise QueueFull(f"{held} bytes are waiting (QUEUE_MAX_BYTES={self._queue_max_bytes})")
        self._pending.append(Pending(tenant, rows, done, size, self._loop.time() + self._timeout))
        self._queued_rows += count
        self._queued_bytes += size
        self._wakeup.set()

    async def write(self, tenant: Tenant, rows: list[Row], size: int = 0) -> None:
        """``submit`` for a caller that awaits the outcome."""
        future = self._loop.create_future()

        def done(exc: BaseException | None) -> None:
            if not future.done():
                future.set_result(None) if exc is None else future.set_exception(exc)

        self.submit(tenant, rows, size, done)
        await future

    # -- the writer loop ----------------------------------------------------------------------------

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
            handed_off = False
            try:
                handed_off = await self._commit_batch(batch, taken, size)
            except asyncio.CancelledError:
                _fail(batch, DatabaseUnavailable("service is shutting down"))
                raise
            except Exception as exc:  # never let a writer loop die
                log.exception("batch failed unexpectedly")
                _fail(batch, DatabaseUnavailable(f"unexpected error: {type(exc).__name__}"))
            finally:
                if not handed_off:
                    self._committing_bytes -= size
                self._committing -= 1

    async def _commit_batch(self, batch: list[Pending], taken: int, size: int) -> bool:
        """Write one batch; True when it failed and was handed to a background isolation."""
        now = self._loop.time()
        started = time.monotonic()
        deadline = batch[0].deadline  # the queue is in arrival order: the oldest request's
        if deadline <= now:
            _fail(batch, DatabaseUnavailable("requests waited DB_TIMEOUT_SECONDS in the queue"))
            return False
        # Keep half the time for narrowing the batch down should it stall on one of its parts.
        until = deadline if len(batch) == 1 else now + (deadline - now) / 2
        try:
            await self._write_with_retry(batch, until)
        except Exception as exc:  # noqa: BLE001 - every failure is classified (_failure_kind) and answered
            kind = _failure_kind(exc)
            if kind == UNAVAILABLE:
                metrics.DB_ERRORS.labels("unavailable").inc()
                unavailable = DatabaseUnavailable(_describe(exc))
                # What is queued now would meet the same outage, one DB_TIMEOUT_SECONDS per batch:
                # refuse it at once, EMQX retries it.
                queued = self._drain()
                log.warning("database unavailable; requests refused with 503",
                            extra={"fields": {"requests": len(batch) + len(queued), "error": _describe(exc)}})
                _fail(batch, unavailable)
                _fail(queued, unavailable)
                return False
            if len(self._isolations) >= MAX_ISOLATIONS:
                _fail(batch, DatabaseUnavailable(f"{_describe(exc)}; too many failed batches to narrow down"))
                return False
            task = asyncio.create_task(self._isolate(batch, exc, deadline, size))
            self._isolations.add(task)
            task.add_done_callback(self._isolations.discard)
            return True
        metrics.COMMIT_SECONDS.observe(time.monotonic() - started)
        metrics.BATCH_ROWS.observe(taken)
        _succeed(batch)
        return False

    def _drain(self) -> list[Pending]:
        queued = list(self._pending)
        self._pending.clear()
        self._queued_rows = 0
        self._queued_bytes = 0
        return queued

    # -- database calls -----------------------------------------------------------------------------

    async def _write_with_retry(self, items: list[Pending], until: float, as_strings: bool = False) -> None:
        """Write and commit by ``until``; after a transient error retry (idempotent) while there is time."""
        statements = self._statements(items, as_strings)
        while True:
            try:
                await call_before(until, lambda slot: self._execute(statements, slot, until))
                return
            except DeadlineExceeded:
                raise
            except Exception as exc:
                if not _transient(exc) or until - self._loop.time() <= RETRY_PAUSE_SECONDS:
                    raise
            await asyncio.sleep(RETRY_PAUSE_SECONDS)

    def _statements(self, items: list[Pending], as_strings: bool) -> list[tuple[bytes, list]]:
        groups: dict[str, tuple[list, list, list, list, list]] = {}
        for item in items:
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
        return statements

    async def _execute(self, statements: list[tuple[bytes, list]], slot: ConnectionSlot, until: float) -> None:
        async with self._pool.connection(timeout=max(0.001, until - self._loop.time())) as conn:
            slot.connection = conn
            if len(statements) == 1:
                await conn.execute(*statements[0])  # autocommit: one round trip, one commit
            else:
                async with conn.transaction():
                    for statement in statements:
                        await conn.execute(*statement)

    # -- narrowing a failed batch down --------------------------------------------------------------

    async def _isolate(self, batch: list[Pending], exc: BaseException, deadline: float, size: int) -> None:
        try:
            await self._settle(batch, exc, deadline)
        except Exception as unexpected:
            log.exception("narrowing a failed batch down failed unexpectedly")
            _fail(batch, DatabaseUnavailable(f"unexpected error: {type(unexpected).__name__}"))
        finally:
            self._committing_bytes -= size

    async def _settle(self, items: list[Pending], exc: BaseException, deadline: float) -> None:
        """``items`` failed together with ``exc``: commit what can be, answer each item once."""
        kind = _failure_kind(exc)
        if kind == UNAVAILABLE or self._loop.time() >= deadline:
            _fail(items, DatabaseUnavailable(_describe(exc)))
            return
        tenants: dict[str, list[Pending]] = {}
        for item in items:
            tenants.setdefault(item.tenant.schema_name, []).append(item)
        if len(tenants) > 1:
            parts = list(tenants.values())
        elif kind == UNWRITABLE:
            tenant = items[0].tenant
            metrics.DB_ERRORS.labels("rejected").inc()
            log.error("database refused the write for this tenant",
                      extra={"fields": {"tenant": tenant.slug, "schema": tenant.schema_name,
                                        "sqlstate": getattr(exc, "sqlstate", None), "error": _describe(exc)}})
            # An operator must act; 503 keeps EMQX retrying meanwhile.
            _fail(items, DatabaseUnavailable(f"the tenant's table is not writable: {_describe(exc)}"))
            return
        elif len(items) > 1:
            parts = [[item] for item in items]
        elif kind == REJECTED:
            await self._store_rows_apart(items[0], deadline)
            return
        else:
            metrics.DB_ERRORS.labels("stalled").inc()
            log.warning("a request did not commit within DB_TIMEOUT_SECONDS; answered 503",
                        extra={"fields": {"tenant": items[0].tenant.slug, "rows": len(items[0].rows)}})
            _fail(items, DatabaseUnavailable(_describe(exc)))
            return
        await asyncio.gather(*(self._try_part(part, deadline) for part in parts))

    async def _try_part(self, items: list[Pending], deadline: float) -> None:
        try:
            async with self._isolation_slots:
                now = self._loop.time()
                until = deadline if len(items) == 1 else now + (deadline - now) / 2
                await self._write_with_retry(items, until)
        except Exception as exc:  # noqa: BLE001 - every failure is classified (_failure_kind) and answered
            await self._settle(items, exc, deadline)
        else:
            _succeed(items)

    async def _store_rows_apart(self, item: Pending, deadline: float) -> None:
        """The database refused a value of this request: store each row as JSON where it can be,
        and only the refused ones as JSON strings (the payload verbatim: nothing is dropped)."""
        work = [item.rows]
        statements = 0
        while work:
            rows = work.pop()
            part = [Pending(item.tenant, rows, None, 0, deadline)]
            try:
                async with self._isolation_slots:
                    statements += 1
                    await self._write_with_retry(part, deadline)
                continue
            except Exception as exc:  # noqa: BLE001 - every failure is classified (_failure_kind) and answered
                if _failure_kind(exc) != REJECTED:
                    _fail([item], DatabaseUnavailable(_describe(exc)))
                    return
            if len(rows) > 1 and statements < ROW_SPLIT_STATEMENTS:
                half = len(rows) // 2
                work += [rows[half:], rows[:half]]
                continue
            try:
                async with self._isolation_slots:
                    statements += 1
                    await self._write_with_retry(part, deadline, as_strings=True)
            except Exception as exc:  # noqa: BLE001 - every failure is classified (_failure_kind) and answered
                if _failure_kind(exc) == REJECTED:
                    log.warning("database rejected a request's values",
                                extra={"fields": {"tenant": item.tenant.slug, "sqlstate": getattr(exc, "sqlstate", None)}})
                    _fail([item], RequestError(400, "bad_request", f"the database rejected a value: {_describe(exc)}"))
                else:
                    _fail([item], DatabaseUnavailable(_describe(exc)))
                return
        _succeed([item])


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


def _fail(items: list[Pending], exc: Exception) -> None:
    for item in items:
        done, item.done = item.done, None
        if done is not None:
            done(exc)


def _succeed(items: list[Pending]) -> None:
    per_tenant: dict[str, int] = {}
    for item in items:
        done, item.done = item.done, None
        if done is not None:
            per_tenant[item.tenant.slug] = per_tenant.get(item.tenant.slug, 0) + len(item.rows)
            done(None)
    for slug, rows in per_tenant.items():
        metrics.count_rows(slug, rows)
