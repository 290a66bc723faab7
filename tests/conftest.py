"""Fixtures shared by every test layer: a real, throwaway PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.pg_server import PostgresServer, find_bindir, start_server


def _require_server_binaries() -> None:
    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries are not installed (apt-get install postgresql-15, or set PG_BINDIR)")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole run (TimescaleDB preloaded when installed)."""
    _require_server_binaries()
    server = start_server()
    yield server
    server.destroy()


@pytest.fixture()
def plain_postgres_server() -> Iterator[PostgresServer]:
    """A server of the test's own, without TimescaleDB preloaded: one it may stop, or one that lacks the extension."""
    _require_server_binaries()
    server = start_server(preload_timescaledb=False)
    yield server
    server.destroy()


@pytest.fixture()
def database(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database for one test; yields the superuser's DSN for it."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    dsn = postgres_server.create_database(name)
    yield dsn
    postgres_server.drop_database(name)


@pytest.fixture()
def timescaledb(postgres_server: PostgresServer, database: str) -> str:
    """A fresh database on a server with TimescaleDB preloaded; skips where it is not installed."""
    if not postgres_server.preload_timescaledb:
        pytest.skip(
            "TimescaleDB is not installed on this PostgreSQL server "
            "(no timescaledb.so in pg_config --pkglibdir); hypertable and policy checks need it"
        )
    return database
