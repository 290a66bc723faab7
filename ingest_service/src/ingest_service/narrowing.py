"""Narrowing a failed batch down, so that only what caused the failure fails.

A batch holds many requests of many tenants.  When it fails for a reason other
than an outage, its requests are tried again apart, concurrently and within
each request's deadline: per tenant (a tenant whose table is missing, not
granted or locked must not stop the others), then per request (one expensive
request), then per row for values the database refuses (the refused payloads
are stored as JSON strings, the others keep their JSON).

A tenant found stalling on its own is marked slow: its next requests are
written apart from the shared batches (one statement at a time, in its own
lane) until one of them commits, so a locked table stalls only that tenant.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from ingest_service import metrics
from ingest_service.database import (
    REJECTED,
    STALLED,
    UNAVAILABLE,
    UNWRITABLE,
    DatabaseUnavailable,
    Pending,
    RowWriter,
    describe,
    fail,
    failure_kind,
)
from ingest_service.messages import RequestError

log = logging.getLogger("ingest_service.writer")

# Statements at once for narrowing down and for slow tenants' lanes, per process (each takes a
# connection from the pool's spares).
ISOLATION_CONNECTIONS = 4
# Statements spent finding the rows of one request that the database refuses; past that, the
# rows still refused are stored as JSON strings together (nothing is dropped either way).
ROW_SPLIT_STATEMENTS = 32
MAX_LANE_ROWS = 5_000


def succeed(items: list[Pending]) -> None:
    per_tenant: dict[str, int] = {}
    for item in items:
        done, item.done = item.done, None
        if done is not None:
            per_tenant[item.tenant.slug] = per_tenant.get(item.tenant.slug, 0) + len(item.rows)
            done(None)
    for slug, rows in per_tenant.items():
        metrics.count_rows(slug, rows)


class Narrower:
    def __init__(self, rows: RowWriter) -> None:
        self._rows = rows
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(ISOLATION_CONNECTIONS)
        self.slow_tenants: dict[str, deque[Pending]] = {}  # schema name -> requests waiting in its lane
        self._lanes: set[asyncio.Task] = set()

    @property
    def busy(self) -> bool:
        return bool(self._lanes)

    async def stop(self) -> None:
        for task in self._lanes:
            task.cancel()
        await asyncio.gather(*self._lanes, return_exceptions=True)
        for queued in self.slow_tenants.values():
            fail(list(queued), DatabaseUnavailable("service is shutting down"))

    async def settle(self, items: list[Pending], exc: BaseException, deadline: float) -> None:
        """``items`` failed together with ``exc``: commit what can be, answer each item once."""
        kind = failure_kind(exc)
        if kind == UNAVAILABLE or self._loop.time() >= deadline:
            fail(items, DatabaseUnavailable(describe(exc)))
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
                                        "sqlstate": getattr(exc, "sqlstate", None), "error": describe(exc)}})
            # An operator must act; 503 keeps EMQX retrying meanwhile.
            fail(items, DatabaseUnavailable(f"the tenant's table is not writable: {describe(exc)}"))
            return
        else:
            if kind == STALLED:
                self._mark_slow(items[0])
            if len(items) > 1:
                parts = [[item] for item in items]
            elif kind == REJECTED:
                await self._store_rows_apart(items[0], deadline)
                return
            else:
                metrics.DB_ERRORS.labels("stalled").inc()
                log.warning("a request did not commit within DB_TIMEOUT_SECONDS; answered 503",
                            extra={"fields": {"tenant": items[0].tenant.slug, "rows": len(items[0].rows)}})
                fail(items, DatabaseUnavailable(describe(exc)))
                return
        await asyncio.gather(*(self._try_part(part, deadline) for part in parts))

    async def _try_part(self, items: list[Pending], deadline: float) -> None:
        try:
            async with self._slots:
                now = self._loop.time()
                # Several requests: keep half of the time to narrow down further.
                await self._rows.write(items, deadline if len(items) == 1 else now + (deadline - now) / 2)
        except Exception as exc:  # noqa: BLE001 - every failure is classified and answered
            await self.settle(items, exc, deadline)
        else:
            succeed(items)

    async def _store_rows_apart(self, item: Pending, deadline: float) -> None:
        """The database refused a value of this request: store each row as JSON where it can be,
        and only the refused ones as JSON strings (the payload verbatim: nothing is dropped)."""
        work = [item.rows]
        statements = 0
        while work:
            rows = work.pop()
            part = [Pending(item.tenant, rows, None, 0, deadline)]
            try:
                async with self._slots:
                    statements += 1
                    await self._rows.write(part, deadline)
                continue
            except Exception as exc:  # noqa: BLE001 - every failure is classified and answered
                if failure_kind(exc) != REJECTED:
                    fail([item], DatabaseUnavailable(describe(exc)))
                    return
            if len(rows) > 1 and statements < ROW_SPLIT_STATEMENTS:
                half = len(rows) // 2
                work += [rows[half:], rows[:half]]
                continue
            try:
                async with self._slots:
                    statements += 1
                    await self._rows.write(part, deadline, as_strings=True)
            except Exception as exc:  # noqa: BLE001 - every failure is classified and answered
                if failure_kind(exc) == REJECTED:
                    log.warning("database rejected a request's values",
                                extra={"fields": {"tenant": item.tenant.slug, "sqlstate": getattr(exc, "sqlstate", None)}})
                    fail([item], RequestError(400, "bad_request", f"the database rejected a value: {describe(exc)}"))
                else:
                    fail([item], DatabaseUnavailable(describe(exc)))
                return
        succeed([item])

    # -- slow tenants -------------------------------------------------------------------------------

    def _mark_slow(self, item: Pending) -> None:
        schema = item.tenant.schema_name
        if schema not in self.slow_tenants:
            log.warning("tenant's writes stall; writing them apart until one commits",
                        extra={"fields": {"tenant": item.tenant.slug}})
            self.slow_tenants[schema] = deque()

    def to_lane(self, item: Pending) -> None:
        """Queue a slow tenant's request in that tenant's lane."""
        schema = item.tenant.schema_name
        queued = self.slow_tenants[schema]
        queued.append(item)
        if len(queued) == 1:
            task = asyncio.create_task(self._lane(schema, queued))
            self._lanes.add(task)
            task.add_done_callback(self._lanes.discard)

    async def _lane(self, schema: str, queued: deque[Pending]) -> None:
        while queued:
            items: list[Pending] = []
            rows = 0
            while queued and rows < MAX_LANE_ROWS:
                items.append(queued[0])
                rows += len(queued.popleft().rows)
            deadline = min(item.deadline for item in items)
            try:
                async with self._slots:
                    await self._rows.write(items, deadline)
            except Exception as exc:  # noqa: BLE001 - every failure is classified and answered
                kind = failure_kind(exc)
                if kind in (STALLED, UNAVAILABLE) or len(items) == 1:
                    fail(items, DatabaseUnavailable(describe(exc)))
                else:
                    await self.settle(items, exc, deadline)
            else:
                succeed(items)
                if self.slow_tenants.get(schema) is queued and not queued:
                    del self.slow_tenants[schema]
                    log.info("tenant's writes commit again", extra={"fields": {"tenant": items[0].tenant.slug}})
