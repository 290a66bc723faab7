"""Small database helpers for the provider tests (superuser DSN in, plain values out)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql


def execute(dsn: str, statement: Any, params: Any | None = None) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement, params)


def fetch_all(dsn: str, statement: Any, params: Any | None = None) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


def fetch_one(dsn: str, statement: Any, params: Any | None = None) -> tuple | None:
    rows = fetch_all(dsn, statement, params)
    return rows[0] if rows else None


def create_schema(dsn: str, schema_name: str) -> None:
    """What the tenant's pulumi_postgresql.Schema does before the Hypertable runs."""
    execute(dsn, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema_name)))


def table_exists(dsn: str, schema_name: str, table: str) -> bool:
    return (
        fetch_one(dsn, "SELECT to_regclass(%s)", (sql.Identifier(schema_name, table).as_string(None),))[0] is not None
    )
