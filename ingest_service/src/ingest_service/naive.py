"""The textbook handler, kept as the benchmark's baseline (not for production): each request takes a
pooled connection and runs BEGIN, one INSERT ... VALUES per row, COMMIT."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from ingest_service import metrics
from ingest_service.database import DatabaseUnavailable, Done, describe, rejects_value, transient
from ingest_service.messages import RequestError, Row

if TYPE_CHECKING:
    from ingest_service.registry import Tenant


class NaiveWriter:
    queued_rows = 0

    def __init__(self, pool: AsyncConnectionPool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._sql: dict[str, bytes] = {}
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

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

    def submit(self, tenant: Tenant, rows: list[Row], size: int, done: Done) -> None:
        task = asyncio.create_task(self._write(tenant, rows, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, tenant: Tenant, rows: list[Row], done: Done) -> None:
        started = time.monotonic()
        query = self._insert(tenant.schema_name)
        try:
            async with asyncio.timeout(self._timeout):
                async with self._pool.connection(timeout=self._timeout) as conn, conn.transaction():
                    for row in rows:
                        await conn.execute(query, row)
        except Exception as exc:  # noqa: BLE001 - every failure becomes the request's answer
            if transient(exc):
                done(DatabaseUnavailable(describe(exc)))
            elif rejects_value(exc):
                done(RequestError(400, "bad_request", f"the database rejected a value: {describe(exc)}"))
            else:
                done(DatabaseUnavailable(f"the tenant's table is not writable: {describe(exc)}"))
            return
        metrics.COMMIT_SECONDS.observe(time.monotonic() - started)
        metrics.BATCH_ROWS.observe(len(rows))
        metrics.count_rows(tenant.slug, len(rows))
        done(None)
