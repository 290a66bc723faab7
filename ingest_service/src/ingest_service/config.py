"""Settings read from the environment; every error names the variable and the fix."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

INGEST_MODES = ("batched", "naive")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message is one sentence for the operator."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    port: int = 8000
    host: str = "0.0.0.0"
    workers: int = 2
    batch_max_rows: int = 500
    batch_max_wait_ms: float = 0.0
    batch_writers: int = 1
    queue_max_rows: int = 20_000
    queue_max_bytes: int = 64 * 1_048_576
    max_body_bytes: int = 1_048_576
    registry_reload_seconds: float = 30.0
    registry_forced_reload_ms: float = 100.0
    db_timeout_seconds: float = 5.0
    db_pool_size: int = 4
    log_level: str = "INFO"
    ingest_mode: str = "batched"
    # HTTP: EMQX pipelines up to enable_pipelining (default 100) requests per connection.
    max_inflight_per_connection: int = 128
    max_header_bytes: int = 16_384
    read_timeout_seconds: float = 10.0
    idle_timeout_seconds: float = 30.0
    max_message_age_seconds: float = 7 * 86_400.0
    max_message_ahead_seconds: float = 3_600.0


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; set it to a whole number between {minimum} and {maximum}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={value} is out of range; set it between {minimum} and {maximum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float, maximum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to a number between {minimum} and {maximum}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={value} is out of range; set it between {minimum} and {maximum}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...], upper: bool = False) -> str:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value = raw.upper() if upper else raw.lower()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r} is not valid; use one of {', '.join(choices)}")
    return value


def _database_url_from_file(env: Mapping[str, str]) -> str:
    """DATABASE_URL_FILE: the DSN in a file, so that the password is not in the process environment."""
    path = env.get("DATABASE_URL_FILE", "").strip()
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as file:
            value = file.read().strip()
    except OSError as error:
        raise ConfigError(
            f"DATABASE_URL_FILE={path!r} cannot be read ({error.strerror}); point it at a file this user may read "
            "that holds the writer role's DSN"
        ) from None
    if not value:
        raise ConfigError(f"DATABASE_URL_FILE={path!r} is empty; write the writer role's DSN into it")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError with a one-line message on the first problem."""
    env = os.environ if env is None else env
    database_url = env.get("DATABASE_URL", "").strip() or _database_url_from_file(env)
    if not database_url:
        raise ConfigError(
            "DATABASE_URL is not set; set it to the writer role's PostgreSQL DSN, "
            "e.g. postgresql://ingest_writer:PASSWORD@timescaledb:5432/telemetry"
        )
    return Settings(
        database_url=database_url,
        port=_int(env, "PORT", 8000, 1, 65535),
        host=env.get("HOST", "").strip() or "0.0.0.0",
        workers=_int(env, "WORKERS", 2, 1, 64),
        batch_max_rows=_int(env, "BATCH_MAX_ROWS", 500, 1, 100_000),
        batch_max_wait_ms=_float(env, "BATCH_MAX_WAIT_MS", 0.0, 0.0, 1000.0),
        batch_writers=_int(env, "BATCH_WRITERS", 1, 1, 32),
        queue_max_rows=_int(env, "QUEUE_MAX_ROWS", 20_000, 1, 10_000_000),
        queue_max_bytes=_int(env, "QUEUE_MAX_BYTES", 64 * 1_048_576, 1024, 1 << 40),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", 1_048_576, 256, 1 << 30),
        registry_reload_seconds=_float(env, "REGISTRY_RELOAD_SECONDS", 30.0, 0.1, 86_400.0),
        registry_forced_reload_ms=_float(env, "REGISTRY_FORCED_RELOAD_MS", 100.0, 0.0, 60_000.0),
        db_timeout_seconds=_float(env, "DB_TIMEOUT_SECONDS", 5.0, 0.1, 600.0),
        db_pool_size=_int(env, "DB_POOL_SIZE", 4, 1, 200),
        log_level=_choice(env, "LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
        ingest_mode=_choice(env, "INGEST_MODE", "batched", INGEST_MODES),
        max_inflight_per_connection=_int(env, "MAX_INFLIGHT_PER_CONNECTION", 128, 1, 100_000),
        max_header_bytes=_int(env, "MAX_HEADER_BYTES", 16_384, 1024, 1_048_576),
        read_timeout_seconds=_float(env, "READ_TIMEOUT_SECONDS", 10.0, 0.5, 3600.0),
        idle_timeout_seconds=_float(env, "IDLE_TIMEOUT_SECONDS", 30.0, 0.5, 86_400.0),
        max_message_age_seconds=_float(env, "MAX_MESSAGE_AGE_SECONDS", 7 * 86_400.0, 1.0, 100 * 365 * 86_400.0),
        max_message_ahead_seconds=_float(env, "MAX_MESSAGE_AHEAD_SECONDS", 3_600.0, 1.0, 100 * 365 * 86_400.0),
    )


def settings_or_report() -> Settings | None:
    """The settings from the environment; None after printing the problem as one line for the operator."""
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"ingest_service: configuration error: {exc}", file=sys.stderr)
        return None
