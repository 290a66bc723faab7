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
    describe,
    fail,
    failure_kind,
)
from ingest_service.deadline import ConnectionSlot, DeadlineExceeded, abandon
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
# A batch commits in milliseconds.  When one is still running after this, a new writer loop takes
# over the queue and the stalled one ends after its batch (at most MAX_HANDOFFS such loops at once,
# each holding a connection): the loop stays a single task with no task per batch on the fast path.
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
        self._loops: set[asyncio.Task] = set()
        self._retired: set[asyncio.Task] = set()  # loops replaced while their batch stalled: end after it
        self._stopping = False
        self._rows = RowWriter(pool)
        self._narrower = Narrower(self._rows)
        self._loop = asyncio.get_running_loop()

    async def start(self) -> None:
        for _ in range(self._writers):
            self._start_loop()

    def _start_loop(self) -> None:
        task = asyncio.create_task(self._run())
        self._loops.add(task)
        task.add_done_callback(self._loops.discard)

    async def stop(self) -> None:
        # The server has answered (or given up on) every request before this runs, so normally
        # nothing is left; otherwise let queued and committing batches finish before cancelling.
        deadline = time.monotonic() + self._timeout
        while (self._pending or self._committing or self._narrower.busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._stopping = True
        loops = list(self._loops)
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
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
        me = asyncio.current_task()
        try:
            await self._loop_batches(me)
        finally:
            self._retired.discard(me)

    async def _loop_batches(self, me: asyncio.Task) -> None:
        pending = self._pending
        while me not in self._retired:
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
            try:
                await self._commit_batch(batch, taken, me)
            except asyncio.CancelledError:
                fail(batch, DatabaseUnavailable("service is shutting down"))
                raise
            except Exception as exc:  # never let a writer loop die
                log.exception("batch failed unexpectedly")
                fail(batch, DatabaseUnavailable(f"unexpected error: {type(exc).__name__}"))
            finally:
                self._committing_bytes -= size
                self._committing -= 1

    async def _commit_batch(self, batch: list[Pending], taken: int, me: asyncio.Task) -> None:
        """Write one batch and answer its requests (narrowing it down if it fails for one of them)."""
        loop = self._loop
        now = loop.time()
        started = time.monotonic()
        deadline = batch[0].deadline  # the queue is in arrival order: the oldest request's
        if deadline <= now:
            fail(batch, DatabaseUnavailable("requests waited DB_TIMEOUT_SECONDS in the queue"))
            return
        # Keep half the time for narrowing the batch down should it stall on one of its parts.
        until = deadline if len(batch) == 1 else now + (deadline - now) / 2
        slot = ConnectionSlot()
        stalled = loop.call_later(STALL_SECONDS, self._replace, me)
        # At ``until`` the connection's socket is shut down: the write fails at once, with no cancel
        # request (psycopg's cancellation of an awaited call would hold this loop ~10 s more).
        cut = loop.call_at(until, _cut, slot)
        try:
            try:
                await self._rows.write_retrying(self._rows.statements(batch, False), slot, until)
            except Exception as exc:  # noqa: BLE001 - every failure is classified and answered
                cut.cancel()
                failure = DeadlineExceeded("database did not answer within DB_TIMEOUT_SECONDS") if (
                    slot.abandoned) else exc
                if failure_kind(failure) == UNAVAILABLE:
                    self._refuse_all(batch, failure)
                else:
                    await self._narrower.settle(batch, failure, deadline)
                return
        finally:
            stalled.cancel()
            cut.cancel()
        metrics.COMMIT_SECONDS.observe(time.monotonic() - started)
        metrics.BATCH_ROWS.observe(taken)
        succeed(batch)

    def _replace(self, loop_task: asyncio.Task) -> None:
        """A batch stalls: let a new loop take the queue; this one ends once its batch is settled."""
        if not self._stopping and loop_task in self._loops and len(self._retired) < MAX_HANDOFFS:
            self._retired.add(loop_task)
            self._start_loop()

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

    def _drain(self) -> list[Pending]:
        queued = list(self._pending)
        self._pending.clear()
        self._queued_rows = 0
        self._queued_bytes = 0
        return queued


def _cut(slot: ConnectionSlot) -> None:
    slot.abandoned = True
    abandon(slot.connection)
