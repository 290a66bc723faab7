"""DATABASE_URL_FILE: the stack hands the service its DSN as a file (never an environment variable)."""

from __future__ import annotations

import pytest
from ingest_service.config import ConfigError, load_settings

DSN = "postgresql://ingest_writer:s3cret@timescaledb:5432/telemetry"


def test_the_dsn_is_read_from_the_file(tmp_path):
    secret = tmp_path / "database-url"
    secret.write_text(DSN + "\n")
    assert load_settings({"DATABASE_URL_FILE": str(secret)}).database_url == DSN


def test_an_unreadable_file_names_the_variable_and_the_fix(tmp_path):
    missing = tmp_path / "absent"
    with pytest.raises(ConfigError) as caught:
        load_settings({"DATABASE_URL_FILE": str(missing)})
    message = str(caught.value)
    assert message.startswith(f"DATABASE_URL_FILE='{missing}' cannot be read (No such file or directory)")
    assert "s3cret" not in message


def test_an_empty_file_is_an_error(tmp_path):
    empty = tmp_path / "database-url"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty; write the writer role's DSN into it"):
        load_settings({"DATABASE_URL_FILE": str(empty)})
