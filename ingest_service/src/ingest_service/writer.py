"""Group commit: many requests' rows in one statement and one commit.

Requests hand their rows to one bounded in-process queue with a callback.  The
writer loop (BATCH_WRITERS of them per process) takes everything queued, up to
BATCH_MAX_ROWS, and writes it as ONE statement (``statements.py``) in
autocommit mode, so a batch costs one round trip and one commit.  The callbacks
run only after that statement (and so its commit) returned.  While one batch
commits the next one accumulates, so the batch size follows the load.

Every request is answered within DB_TIMEOUT_SECONDS of its arrival: a batch
must commit by its oldest request's deadline, and a write that does not return
in time is abandoned (``deadline.py``), not cancelled.  A batch still running
after STALL_SECONDS is left to finish in the background and the loop goes on
with the queue; a batch that fails for a reason other than an outage is
narrowed down (``narrowing.py``), so one tenant's locked table or expensive
request does not turn other tenants' requests into 503s.

Inserts are idempotent (``ON CONFLICT DO NOTHING`` on the (msg_id, time)
unique index), which makes retrying a batch whose outcome is unknown safe.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING

from ingest_service import metrics
from ingest_service.database import (
    UNAVAILABLE,
    DatabaseUnavailable,
    Done,
    Pending,
    RowWriter,
    Write,
    describe,
    fail,
    failure_kind,
)
from ingest_service.messages import RequestError, Row
from ingest_service.narrowing import ISOLATION_CONNECTIONS, Narrower, succeed

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from ingest_service.registry import Tenant

log = logging.getLogger("ingest_service.writer")

# Before taking a batch the writer lets the event loop turn this many times, so that requests
# already read from the sockets join it: measured, batches grow from ~15 to ~25 rows and the
# throughput by ~15% at no latency cost (a timed wait, BATCH_MAX_WAIT_MS, costs latency).
GATHER_LOOP_TURNS = 4
# A batch commits in milliseconds; one still running after this is waited for in the background
# (at most MAX_HANDOFFS at once, each holding a connection) while the loop takes the next batch.
STALL_SECONDS = 1.0
MAX_HANDOFFS = 2
# Connections the pool may open beyond one per writer loop.
SPARE_CONNECTIONS = ISOLATION_CONNECTIONS + MAX_HANDOFFS


class QueueFull(Exception):
    """More rows are waiting than QUEUE_MAX_ROWS (or bytes than QUEUE_MAX_BYTES) allows; the request answers 503."""


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
        self._background: set[asyncio.Task] = set()  # batches handed off or being narrowed down
        self._handoffs = 0
        self._rows = RowWriter(pool)
        self._narrower = Narrower(self._rows)
        self._loop = asyncio.get_running_loop()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self._writers)]

    async def stop(self) -> None:
        # The server has answered (or given up on) every request before this runs, so normally
        # nothing is left; otherwise let queued and committing batches finish before cancelling.
        deadline = time.monotonic() + self._timeout
        while (self._pending or self._committing or self._background or self._narrower.busy) and (
                time.monotonic() < deadline):
            await asyncio.sleep(0.01)
        for task in [*self._tasks, *self._background]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        await self._narrower.stop()
        fail(list(self._pending), DatabaseUnavailable("service is shutting down"))

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
            slow = self._narrower.slow_tenants
            while pending and taken < self._max_rows:
                item = pending.popleft()
                taken += len(item.rows)
                size += item.size
                if slow and item.tenant.schema_name in slow:
                    self._narrower.to_lane(item)  # kept out of the shared batches while it stalls
                else:
                    batch.append(item)
            self._queued_rows -= taken
            self._queued_bytes -= size
            if not batch:
                continue
            self._committing_bytes += size
            self._committing += 1
            handed_off = False
            try:
                handed_off = await self._commit_batch(batch, taken, size)
            except asyncio.CancelledError:
                fail(batch, DatabaseUnavailable("service is shutting down"))
                raise
            except Exception as exc:  # never let a writer loop die
                log.exception("batch failed unexpectedly")
                fail(batch, DatabaseUnavailable(f"unexpected error: {type(exc).__name__}"))
            finally:
                if not handed_off:
                    self._committing_bytes -= size
                self._committing -= 1

    async def _commit_batch(self, batch: list[Pending], taken: int, size: int) -> bool:
        """Write one batch; True when it was left to settle in the background (which frees its bytes)."""
        now = self._loop.time()
        started = time.monotonic()
        deadline = batch[0].deadline  # the queue is in arrival order: the oldest request's
        if deadline <= now:
            fail(batch, DatabaseUnavailable("requests waited DB_TIMEOUT_SECONDS in the queue"))
            return False
        # Keep half the time for narrowing the batch down should it stall on one of its parts.
        write = Write(self._rows, batch, deadline if len(batch) == 1 else now + (deadline - now) / 2)
        if not await write.wait(STALL_SECONDS) and self._handoffs < MAX_HANDOFFS:
            self._handoffs += 1
            self._in_background(self._settle_later(write, deadline, size, handoff=True))
            return True
        try:
            await write.outcome()
        except Exception as exc:  # noqa: BLE001 - every failure is classified and answered
            if failure_kind(exc) == UNAVAILABLE:
                self._refuse_all(batch, exc)
                return False
            self._in_background(self._settle_later(write, deadline, size, failure=exc))
            return True
        metrics.COMMIT_SECONDS.observe(time.monotonic() - started)
        metrics.BATCH_ROWS.observe(taken)
        succeed(batch)
        return False

    def _refuse_all(self, batch: list[Pending], exc: BaseException) -> None:
        metrics.DB_ERRORS.labels("unavailable").inc()
        unavailable = DatabaseUnavailable(describe(exc))
        # What is queued now would meet the same outage, one DB_TIMEOUT_SECONDS per batch:
        # refuse it at once, EMQX retries it.
        queued = self._drain()
        log.warning("database unavailable; requests refused with 503",
                    extra={"fields": {"requests": len(batch) + len(queued), "error": describe(exc)}})
        fail(batch, unavailable)
        fail(queued, unavailable)

    def _in_background(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _settle_later(self, write: Write, deadline: float, size: int, handoff: bool = False,
                            failure: BaseException | None = None) -> None:
        """Wait for a batch the loop left behind, then narrow it down if it failed."""
        try:
            if failure is None:
                try:
                    await write.outcome()
                except Exception as exc:  # noqa: BLE001 - every failure is classified and answered
                    failure = exc
                else:
                    succeed(write.items)
                    return
            await self._narrower.settle(write.items, failure, deadline)
        except Exception as unexpected:  # never leave a request unanswered
            log.exception("settling a failed batch failed unexpectedly")
            fail(write.items, DatabaseUnavailable(f"unexpected error: {type(unexpected).__name__}"))
        finally:
            self._committing_bytes -= size
            if handoff:
                self._handoffs -= 1

    def _drain(self) -> list[Pending]:
        queued = list(self._pending)
        self._pending.clear()
        self._queued_rows = 0
        self._queued_bytes = 0
        return queued
