"""The SQL the writer runs: one multi-row INSERT per tenant, several tenants in one statement."""

from __future__ import annotations

from psycopg import sql

# Epoch milliseconds become timestamptz on the server, exactly (interval arithmetic is integral).
# ON CONFLICT without a target: the writer role has INSERT only, and (msg_id, time) is the only
# unique index, so this skips exactly the duplicate deliveries.
_INSERT = sql.SQL(
    "INSERT INTO {table} (time, device_id, topic, payload, msg_id) "
    "SELECT timestamptz 'epoch' + t * interval '1 millisecond', d, tp, p::jsonb, m "
    # The rows as one JSON parameter, [{"t":..,"d":..,"tp":..,"p":..,"m":..}, ...]: orjson writes it in
    # about a microsecond per row, where psycopg's (pure Python) array dumpers took several per row
    # and ~100 us per batch; PostgreSQL reads it with one parse (json, not jsonb: nothing is built).
    "FROM json_to_recordset(%s::json) AS u(t int8, d text, tp text, p text, m text) "
    "ON CONFLICT DO NOTHING"
)
# A batch for several tenants is still one statement (data-modifying CTEs), so that in autocommit
# mode it costs one round trip and one commit; beyond this many tenants it is split, in a transaction.
MAX_TENANTS_PER_STATEMENT = 8


def insert_sql(schema_names: tuple[str, ...]) -> bytes:
    inserts = [_INSERT.format(table=sql.Identifier(name, "telemetry")) for name in schema_names]
    if len(inserts) == 1:
        statement = inserts[0]
    else:
        ctes = sql.SQL(", ").join(
            sql.SQL("{} AS ({})").format(sql.Identifier(f"insert_{i}"), insert) for i, insert in enumerate(inserts[:-1])
        )
        statement = sql.SQL("WITH {} {}").format(ctes, inserts[-1])
    return statement.as_string(None).encode()


class StatementCache:
    """Statement text per set of tenant schemas, built once."""

    # A batch holds any subset of up to MAX_TENANTS_PER_STATEMENT tenants: with many tenants the
    # number of subsets is astronomical, so the cache is bounded (it is rebuilt in microseconds).
    MAX_ENTRIES = 1024

    def __init__(self) -> None:
        self._cache: dict[tuple[str, ...], bytes] = {}

    def insert(self, schema_names: tuple[str, ...]) -> bytes:
        query = self._cache.get(schema_names)
        if query is None:
            if len(self._cache) >= self.MAX_ENTRIES:
                self._cache.clear()
            query = self._cache[schema_names] = insert_sql(schema_names)
        return query
