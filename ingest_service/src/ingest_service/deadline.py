"""Database calls that answer by a deadline, whatever the database does.

``asyncio.timeout`` around a psycopg call is not enough: when it cancels the
call, psycopg first sends a cancel request (waiting up to 5 s for it) and then
waits up to 5 s more for the query to end, so a paused or unreachable server
holds the caller about DB_TIMEOUT_SECONDS + 10 s.  Here the call runs in a task
of its own; the caller stops waiting at the deadline, and the connection is
abandoned: its socket is shut down, so the task's own wait ends at once with
an error and the connection is discarded, without a cancel request that could
block.  The server notices the vanished client by itself (see
``client_connection_check_interval`` in the writer) and rolls back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg

log = logging.getLogger("ingest_service.deadline")

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """The database did not answer in time; the connection used was abandoned."""


class ConnectionSlot:
    """Where a call records the connection it is using, so that it can be abandoned."""

    __slots__ = ("abandoned", "connection")

    def __init__(self) -> None:
        self.connection: psycopg.AsyncConnection | None = None
        self.abandoned = False

    def use(self, connection: psycopg.AsyncConnection) -> psycopg.AsyncConnection:
        """Record the connection; one obtained after the deadline is cut at once."""
        self.connection = connection
        if self.abandoned:
            abandon(connection)
        return connection


def abandon(connection: psycopg.AsyncConnection | None) -> None:
    """Cut the connection's socket: whatever waits on it fails now, and nothing is sent any more."""
    if connection is None or connection.closed:
        return
    try:
        fd = connection.pgconn.socket
    except psycopg.OperationalError:
        return
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _consume(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()  # an abandoned call fails by design: do not log it as never retrieved


async def call_before(loop_deadline: float, call: Callable[[ConnectionSlot], Awaitable[T]]) -> T:
    """``await call(slot)``, but return or raise by ``loop_deadline`` (in ``loop.time()``).

    ``call`` must close a connection it used when it fails, itself: a connection abandoned here
    may still be watched by the event loop for the call's task, and closing its socket from
    outside would let the next socket opened reuse the descriptor under that watch.
    """
    loop = asyncio.get_running_loop()
    remaining = loop_deadline - loop.time()
    if remaining <= 0:
        raise DeadlineExceeded("no time left before DB_TIMEOUT_SECONDS")
    slot = ConnectionSlot()
    task = loop.create_task(call(slot))
    try:
        await asyncio.wait((task,), timeout=remaining)
    except asyncio.CancelledError:
        slot.abandoned = True
        abandon(slot.connection)
        task.add_done_callback(_consume)
        raise
    if not task.done():
        slot.abandoned = True
        abandon(slot.connection)
        task.add_done_callback(_consume)
        raise DeadlineExceeded("database did not answer within DB_TIMEOUT_SECONDS")
    return task.result()
