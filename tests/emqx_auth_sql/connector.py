"""Running a prepared query against PostgreSQL as EMQX's connector does (`emqx_postgresql`, `emqx_auth_postgresql_connector`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from tests.emqx_auth_sql.templates import Client, QueryError, parse_sql, render_params


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


class PgConnector:
    """``emqx_postgresql`` / ``emqx_auth_postgresql_connector``: one named prepared statement, run as ``dsn``'s role."""

    def __init__(self, dsn: str, query: str, allowed: Sequence[str], version: str, connect_timeout: int = 3):
        self.dsn = dsn
        self.version = version
        self.prepared = parse_sql(query, allowed, version)
        self.connect_timeout = connect_timeout
        self.executed: list[tuple[str, list[Any]]] = []  # what PostgreSQL received

    def run(self, client: Client) -> QueryResult:
        params = render_params(self.prepared, client, self.version)
        self.executed.append((self.prepared.statement, params))
        wire: list[Any] = []
        for value in params:
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise QueryError(f"invalid UTF-8 in a bound value: {error}") from None
            wire.append(value if isinstance(value, str) else str(value))
        try:
            with psycopg.connect(self.dsn, connect_timeout=self.connect_timeout, autocommit=True) as conn:
                cursor = psycopg.RawCursor(conn)
                # prepare=True: a named server-side prepared statement, as epgsql:parse2 makes.
                cursor.execute(self.prepared.statement, wire, prepare=True)
                columns = tuple(column.name for column in cursor.description or ())
                return QueryResult(columns, tuple(cursor.fetchall()))
        except psycopg.Error as error:
            raise QueryError(str(error).strip()) from None


