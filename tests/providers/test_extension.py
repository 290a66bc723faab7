"""The TimescaleExtension provider against a real server with two TimescaleDB versions installed.

Stands in for an image bump on a kept volume: the databases hold the extension at the old
version, the server's library directory has both (the official images ship the previous
versions' libraries), and `pulumi up` must bring every database to the new one, with the
update as the first statement of a fresh session.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from components.providers.extension import TimescaleExtensionProvider, version_from_image
from components.providers.postgres import ProviderError
from tests.conftest import _require_server_binaries
from tests.pg_server import PostgresServer, find_bindir, start_server, timescaledb_installed

OLD, NEW = "2.17.2", "2.28.3"


def test_version_follows_the_image_tag():
    assert version_from_image("timescale/timescaledb:2.17.2-pg16") == "2.17.2"
    assert version_from_image("timescale/timescaledb-ha:pg16.4-ts2.28.3") == "2.28.3"
    assert version_from_image("timescale/timescaledb@sha256:" + "0" * 64) is None


@pytest.fixture(scope="module")
def two_version_server() -> Iterator[PostgresServer]:
    """A server of its own (the provider converges every database on it), with both versions available."""
    _require_server_binaries()
    if not timescaledb_installed(find_bindir()):
        pytest.skip("TimescaleDB is not installed on this PostgreSQL server; the upgrade test needs it")
    server = start_server(preload_timescaledb=True)
    try:
        with psycopg.connect(server.dsn()) as conn:
            available = {row[0] for row in conn.execute(
                "SELECT version FROM pg_available_extension_versions WHERE name = 'timescaledb'"
            )}
        if not {OLD, NEW} <= available:
            pytest.skip(
                f"the upgrade test needs TimescaleDB {OLD} and {NEW} installed in the same server; "
                f"this one has {', '.join(sorted(available)) or 'none'}"
            )
        yield server
    finally:
        server.destroy()


def _props(server: PostgresServer, version: str | None, image: str | None = None) -> dict:
    return {
        "dsn": server.dsn("telemetry"),
        "image": image or f"timescale/timescaledb:{version}-pg16",
        "version": version,
        "ready_timeout": 30,
    }


def _versions(server: PostgresServer) -> dict[str, str]:
    found = {}
    for database in ("postgres", "telemetry"):
        with psycopg.connect(server.dsn(database)) as conn:
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
            found[database] = row[0] if row else None
    return found


def test_an_image_bump_updates_the_extension_in_every_database(two_version_server):
    server = two_version_server
    server.create_database("telemetry")
    for database in ("postgres", "telemetry"):
        with psycopg.connect(server.dsn(database), autocommit=True) as conn:
            conn.execute(f"CREATE EXTENSION timescaledb VERSION '{OLD}'")
    with psycopg.connect(server.dsn("telemetry"), autocommit=True) as conn:
        conn.execute("CREATE TABLE readings (time timestamptz NOT NULL, value double precision)")
        conn.execute("SELECT create_hypertable('readings', 'time')")
        conn.execute("INSERT INTO readings SELECT t, 1.0 FROM generate_series(now() - interval '3 days', now(), "
                     "interval '1 hour') AS t")
    provider = TimescaleExtensionProvider()

    created = provider.create(_props(server, OLD))  # the stack adopts what the volume holds
    assert created.outs["installed"] == {"postgres": OLD, "telemetry": OLD}

    bumped = _props(server, NEW)
    assert provider.diff("timescaledb", created.outs, bumped).changes  # the preview shows the bump
    # A client still on the old library does not stop the update: it runs in a fresh session.
    with psycopg.connect(server.dsn("telemetry"), autocommit=True) as old_session:
        old_session.execute("SELECT count(*) FROM readings").fetchone()
        updated = provider.update("timescaledb", created.outs, bumped)
    assert updated.outs["installed"] == {"postgres": NEW, "telemetry": NEW}
    assert _versions(server) == {"postgres": NEW, "telemetry": NEW}
    with psycopg.connect(server.dsn("telemetry")) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 73
        assert conn.execute("SELECT count(*) FROM show_chunks('readings')").fetchone()[0] >= 1
    read = provider.read("timescaledb", updated.outs)
    assert read.outs["installed"] == {"postgres": NEW, "telemetry": NEW}
    assert not provider.diff("timescaledb", read.outs, bumped).changes


def test_a_version_the_image_lacks_is_refused_with_the_versions_it_has(two_version_server):
    with pytest.raises(ProviderError) as caught:
        TimescaleExtensionProvider().create(_props(two_version_server, "9.9.9", "timescale/timescaledb:9.9.9-pg16"))
    message = str(caught.value)
    assert "cannot install timescaledb '9.9.9'" in message and OLD in message and NEW in message
    assert "telemetry:timescaledb.image" in message


def test_a_database_left_on_another_version_shows_as_a_change():
    olds = {"image": "i", "version": NEW, "dsn": "d", "ready_timeout": 30,
            "installed": {"postgres": NEW, "telemetry": OLD}}
    news = {key: olds[key] for key in ("image", "version", "dsn", "ready_timeout")}
    assert TimescaleExtensionProvider().diff("timescaledb", olds, news).changes
