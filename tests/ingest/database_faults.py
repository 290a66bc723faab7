"""Faults a test inflicts on its own database: a locked tenant table, a paused server."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg

from tests.ingest.tenants import IngestDatabase, TenantSpec
from tests.pg_server import PostgresServer


@contextlib.contextmanager
def locked_table(db: IngestDatabase, tenant: TenantSpec) -> Iterator[None]:
    """While inside, the tenant's table is locked: writes to it wait (an operator's long migration)."""
    blocker = psycopg.connect(db.admin_dsn)
    try:
        blocker.execute(f'LOCK TABLE "{tenant.schema}".telemetry IN ACCESS EXCLUSIVE MODE')
        yield
    finally:
        blocker.rollback()
        blocker.close()


def waiting_on_lock(db: IngestDatabase) -> int:
    with db.admin() as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = 'telemetry-ingest'"
        ).fetchone()[0]


def _server_processes(server: PostgresServer) -> list[int]:
    postmaster = int((server.datadir / "postmaster.pid").read_text().split()[0])
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    return [postmaster, *map(int, children)]


@contextlib.contextmanager
def paused_server(server: PostgresServer) -> Iterator[None]:
    """SIGSTOP the test's own PostgreSQL (postmaster and every backend): connections stay open, nothing answers."""
    stopped = _server_processes(server)
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
