"""Start-up configuration and the message rules that need no database."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from ingest_service.config import ConfigError, load_settings
from ingest_service.messages import RequestError, TimeWindow, parse_rows, payload_json

# These messages date from 1970: outside the default window, which has tests of its own.
ANY_TIME = TimeWindow(max_age_seconds=1e11, max_ahead_seconds=1e11)


def _run(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PORT", "WORKERS")}
    return subprocess.run([sys.executable, "-m", "ingest_service"], env={**base, **env}, capture_output=True,
                          text=True, timeout=30, check=False)


def test_missing_database_url_is_one_clear_line_and_exit_code_2():
    result = _run({})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "DATABASE_URL is not set" in lines[0]


def test_invalid_setting_names_the_variable():
    result = _run({"DATABASE_URL": "postgresql://x@127.0.0.1:1/x", "WORKERS": "many"})
    assert result.returncode == 2
    assert "WORKERS='many' is not an integer" in result.stderr


def test_defaults():
    settings = load_settings({"DATABASE_URL": "postgresql://x@db/x"})
    assert (settings.port, settings.workers, settings.ingest_mode, settings.log_level) == (8000, 2, "batched", "INFO")
    with pytest.raises(ConfigError, match="INGEST_MODE"):
        load_settings({"DATABASE_URL": "postgresql://x@db/x", "INGEST_MODE": "fast"})
    assert settings.queue_max_bytes == 64 * 1_048_576
    with pytest.raises(ConfigError, match="QUEUE_MAX_BYTES=10 is out of range"):
        load_settings({"DATABASE_URL": "postgresql://x@db/x", "QUEUE_MAX_BYTES": "10"})


@pytest.mark.parametrize(
    ("payload", "stored"),
    [
        ('{"t": 1}', '{"t": 1}'),  # JSON text is stored as sent
        ("plain", '"plain"'),
        ('{"a":"\\u0000"}', orjson.dumps('{"a":"\\u0000"}').decode()),
        ("a\x00b", '{"base64":"YQBi"}'),
        ({"t": 1}, '{"t":1}'),
        (None, "null"),
    ],
)
def test_payload_json(payload, stored):
    assert payload_json(payload) == stored


def test_rows_are_checked_before_anything_is_written():
    body = orjson.dumps([
        {"id": "1", "clientid": "d", "username": "d", "topic": "tenants/a/x", "payload": "p", "publish_received_at": 5},
        {"id": "2", "clientid": "d", "username": "d", "topic": "tenants/b/x", "payload": "p", "publish_received_at": 5},
    ])
    with pytest.raises(RequestError) as refused:
        parse_rows(body, "tenants/a/", ANY_TIME)
    assert refused.value.status == 403
    assert parse_rows(body[:-1] + b"]", "tenants/", ANY_TIME)[0] == (5, "d", "tenants/a/x", '"p"', "1")
    # Level boundaries: "tenants/a" is the prefix's own level; "tenants/ab..." is another tenant's.
    for topic in ("tenants/a", "tenants/a/x/y"):
        assert parse_rows(orjson.dumps({"id": "1", "clientid": "d", "username": "d", "topic": topic, "payload": "p",
                                        "publish_received_at": 5}), "tenants/a/", ANY_TIME)[0][2] == topic
    for topic in ("tenants/ab", "tenants/ab/x", "tenants/", "tenants", "Tenants/a/x", "tenants/a "):
        with pytest.raises(RequestError) as refused:
            parse_rows(orjson.dumps({"id": "1", "clientid": "d", "username": "d", "topic": topic, "payload": "p",
                                     "publish_received_at": 5}), "tenants/a/", ANY_TIME)
        assert refused.value.status == 403, topic
    with pytest.raises(RequestError, match="longer than"):
        parse_rows(orjson.dumps({"id": "1", "clientid": "é" * 600, "username": "é" * 600, "topic": "tenants/a/x", "payload": "",
                                 "publish_received_at": 1}), "tenants/a/", ANY_TIME)


def test_values_rendered_undefined_are_missing_values():
    base = {"id": "1", "clientid": "d", "username": "d", "topic": "tenants/a/x", "payload": "p"}
    # A time EMQX rendered as "undefined" falls back to the other time field ...
    rows = parse_rows(orjson.dumps({**base, "publish_received_at": "undefined", "timestamp": 7}), "tenants/a/", ANY_TIME)
    assert rows[0][0] == 7
    # ... and with neither there is no time at all.
    with pytest.raises(RequestError, match="neither"):
        parse_rows(orjson.dumps({**base, "publish_received_at": "undefined", "timestamp": "undefined"}), "tenants/a/", ANY_TIME)
    with pytest.raises(RequestError, match="neither"):
        parse_rows(orjson.dumps({**base, "publish_received_at": "undefined"}), "tenants/a/", ANY_TIME)
    # An id rendered "undefined" would make distinct messages duplicates of each other: refused.
    with pytest.raises(RequestError, match="'id' is missing") as refused:
        parse_rows(orjson.dumps({**base, "id": "undefined", "publish_received_at": 5}), "tenants/a/", ANY_TIME)
    assert refused.value.status == 400
    # Any other text in a time field is still refused.
    with pytest.raises(RequestError, match="must be an integer"):
        parse_rows(orjson.dumps({**base, "publish_received_at": "5"}), "tenants/a/", ANY_TIME)


def test_statement_cache_stays_bounded_with_many_tenant_combinations():
    # A batch may hold any subset of tenants: the per-subset statement cache must not grow for ever.
    from ingest_service.statements import StatementCache as _Sql

    cache = _Sql()
    for first in range(60):
        for second in range(first + 1, 60):
            statement = cache.insert((f"tenant_{first}", f"tenant_{second}"))
            assert f'"tenant_{first}"."telemetry"'.encode() in statement
    assert len(cache._cache) <= _Sql.MAX_ENTRIES
