"""Writing rows to the tenants' tables: the pool, one write with its deadline, and what a failure means."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ingest_service.deadline import ConnectionSlot, DeadlineExceeded, abandon
from ingest_service.messages import Row, json_string
from ingest_service.registry import TCP_KEEPALIVES
from ingest_service.statements import MAX_TENANTS_PER_STATEMENT, StatementCache

if TYPE_CHECKING:
    from ingest_service.registry import Tenant

Done = Callable[[BaseException | None], None]

# SQLSTATE classes that say "try again later": connection exceptions, insufficient
# resources, operator intervention (shutdown), system errors, transaction rollback.
TRANSIENT_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})
RETRY_PAUSE_SECONDS = 0.05
# The server checks this often whether the client of a running statement is still there, so an
# abandoned statement (a lock wait, a huge insert) is rolled back within a second (PostgreSQL 14+).
CLIENT_CONNECTION_CHECK_MS = 1000


class DatabaseUnavailable(Exception):
    """The rows were not (known to be) committed; the request answers 503 and EMQX retries."""


def transient(exc: BaseException) -> bool:
    if isinstance(exc, (PoolTimeout, TimeoutError, OSError)):
        return True
    if isinstance(exc, psycopg.Error):
        if exc.sqlstate is None:
            return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
        return exc.sqlstate[:2] in TRANSIENT_CLASSES
    return False


def rejects_value(exc: BaseException) -> bool:
    """The database refused a value (bad data, not an outage or a privilege problem)."""
    return isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)) or (
        isinstance(exc, psycopg.Error) and exc.sqlstate is not None and exc.sqlstate[:2] in ("22", "23", "54")
    )


STALLED, UNAVAILABLE, REJECTED, UNWRITABLE = "stalled", "unavailable", "rejected", "unwritable"


def failure_kind(exc: BaseException) -> str:
    if isinstance(exc, DeadlineExceeded):
        return STALLED  # slow for this write: perhaps only for one of its tenants or requests
    if transient(exc):
        return UNAVAILABLE
    if rejects_value(exc):
        return REJECTED
    return UNWRITABLE  # a missing table or privilege: an operator must act


def describe(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        # The primary message only: DETAIL lines may quote the offending value.
        return f"{exc.sqlstate or type(exc).__name__}: {exc.diag.message_primary}"
    if isinstance(exc, PoolTimeout):
        return "no database connection available within DB_TIMEOUT_SECONDS"
    if isinstance(exc, TimeoutError):
        return str(exc) or "database did not answer within DB_TIMEOUT_SECONDS"
    text = str(exc).strip()
    return type(exc).__name__ + (f": {text.splitlines()[0]}" if text else "")


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
    """One request's rows, waiting to be committed; ``done`` is called once, with None or the failure."""

    __slots__ = ("deadline", "done", "rows", "size", "tenant")

    def __init__(self, tenant: Tenant, rows: list[Row], done: Done | None, size: int, deadline: float) -> None:
        self.tenant = tenant
        self.rows = rows
        self.done = done
        self.size = size  # the request body's bytes: what the queued rows hold in memory, roughly
        self.deadline = deadline  # loop time by which the request must be answered


def fail(items: list[Pending], exc: Exception) -> None:
    for item in items:
        done, item.done = item.done, None
        if done is not None:
            done(exc)


def _consume(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()  # an abandoned write fails by design


class Write:
    """One write of some requests' rows, running in a task of its own, retried after transient errors."""

    def __init__(self, rows: RowWriter, items: list[Pending], until: float, as_strings: bool = False) -> None:
        self.items = items
        self.until = until
        self.slot = ConnectionSlot()
        self.task = asyncio.get_running_loop().create_task(
            rows.write_retrying(rows.statements(items, as_strings), self.slot, until))

    async def wait(self, timeout: float | None = None) -> bool:
        """Whether the write ended (committed or failed) within ``timeout`` (default: until its deadline)."""
        remaining = self.until - asyncio.get_running_loop().time()
        done, _ = await asyncio.wait((self.task,), timeout=max(0.0, remaining if timeout is None else timeout))
        return bool(done)

    async def outcome(self) -> None:
        """Wait until the deadline; raise the write's failure, or DeadlineExceeded after abandoning it."""
        if not await self.wait():
            self.slot.abandoned = True
            abandon(self.slot.connection)
            self.task.add_done_callback(_consume)
            raise DeadlineExceeded("database did not answer within DB_TIMEOUT_SECONDS")
        self.task.result()


class RowWriter:
    """Statements for some requests' rows, and running them on the pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._sql = StatementCache()

    async def write(self, items: list[Pending], until: float, as_strings: bool = False) -> None:
        """Commit the rows by ``until``, or raise (DeadlineExceeded once the connection was abandoned)."""
        await Write(self, items, until, as_strings).outcome()

    def statements(self, items: list[Pending], as_strings: bool) -> list[tuple[bytes, list]]:
        groups: dict[str, list[dict]] = {}
        for item in items:
            rows = groups.get(item.tenant.schema_name)
            if rows is None:
                rows = groups[item.tenant.schema_name] = []
            if as_strings:
                rows.extend({"t": t, "d": d, "tp": tp, "p": json_string(p), "m": m} for t, d, tp, p, m in item.rows)
            else:
                rows.extend({"t": t, "d": d, "tp": tp, "p": p, "m": m} for t, d, tp, p, m in item.rows)
        schema_names = sorted(groups)
        statements = []
        for start in range(0, len(schema_names), MAX_TENANTS_PER_STATEMENT):
            chunk = tuple(schema_names[start:start + MAX_TENANTS_PER_STATEMENT])
            params = [orjson.dumps(groups[name]).decode() for name in chunk]
            statements.append((self._sql.insert(chunk), params))
        return statements

    async def write_retrying(self, statements: list[tuple[bytes, list]], slot: ConnectionSlot, until: float) -> None:
        """Run the statements; after a transient error retry (inserts are idempotent) while there is time."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._execute(statements, slot, until)
                return
            except Exception as exc:
                if slot.abandoned or not transient(exc) or until - loop.time() <= RETRY_PAUSE_SECONDS:
                    raise
            await asyncio.sleep(RETRY_PAUSE_SECONDS)

    async def _execute(self, statements: list[tuple[bytes, list]], slot: ConnectionSlot, until: float) -> None:
        timeout = max(0.001, until - asyncio.get_running_loop().time())
        async with self._pool.connection(timeout=timeout) as conn:
            slot.use(conn)
            try:
                if len(statements) == 1:
                    await conn.execute(*statements[0])  # autocommit: one round trip, one commit
                else:
                    async with conn.transaction():
                        for statement in statements:
                            await conn.execute(*statement)
            finally:
                # Back to the pool (or discarded) next: abandoning it then would cut another write's.
                slot.connection = None
