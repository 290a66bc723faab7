"""The Hypertable dynamic provider against a real PostgreSQL (TimescaleDB where installed)."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql
from pulumi.runtime import rpc

from components.providers.intervals import interval_micros, interval_parts, same_interval, same_window
from components.providers.postgres import ProviderError
from components.providers.telemetry_ddl import TELEMETRY_TABLE
from components.providers.timescale import HypertableProvider
from tests.pg_server import PostgresServer
from tests.providers._db_helpers import create_schema, execute, fetch_all, fetch_one, table_exists

SCHEMA = "tenant_acme"


def props(dsn: str, **overrides) -> dict:
    base = {
        "dsn": dsn,
        "schema_name": SCHEMA,
        "chunk_interval": "1 day",
        "retention": "365 days",
        "compress_after": "7 days",
        "drop_data_on_delete": False,
        "ready_timeout": 10,
    }
    base.update(overrides)
    return base


def jobs(dsn: str, schema: str = SCHEMA) -> dict[str, tuple[int, dict]]:
    rows = fetch_all(
        dsn,
        "SELECT proc_name, job_id, config FROM timescaledb_information.jobs "
        "WHERE hypertable_schema = %s AND hypertable_name = %s",
        (schema, TELEMETRY_TABLE),
    )
    assert len({row[0] for row in rows}) == len(rows), f"duplicate policies: {rows}"
    return {proc: (job_id, config) for proc, job_id, config in rows}


def chunk_interval(dsn: str, schema: str = SCHEMA):
    row = fetch_one(
        dsn,
        "SELECT time_interval FROM timescaledb_information.dimensions "
        "WHERE hypertable_schema = %s AND hypertable_name = %s AND column_name = 'time'",
        (schema, TELEMETRY_TABLE),
    )
    return row[0] if row else None


@pytest.fixture()
def tsdb(timescaledb: str) -> str:
    create_schema(timescaledb, SCHEMA)
    return timescaledb


@pytest.fixture()
def created(tsdb: str):
    result = HypertableProvider().create(props(tsdb))
    return tsdb, result


# --------------------------------------------------------------------------- intervals (no TimescaleDB needed)

SAME = [
    ("1 day", "24:00:00"),
    ("1 day", "1 days"),
    ("1 day", "1d"),
    ("1 day", "@ 1 day"),
    ("7 days", "1 week"),
    ("90 minutes", "01:30:00"),
    ("2 hours 30 minutes", "02:30"),
    ("1 mon", "30 days"),
    ("1 year", "12 months"),
    ("1.5 hours", "90 min"),
    ("15 minutes", "00:15:00"),
    ("365 days", "365 days"),
    ("1 year 2 mons 3 days 04:05:06", "1 year 2 months 3 days 4 hours 5 minutes 6 seconds"),
    ("500 ms", "00:00:00.5"),
    ("0.1 year", "1 mon"),
    ("1.5 years", "1 year 6 mons"),
]
DIFFERENT = [("1 day", "2 days"), ("1 day", "23:59:59"), ("1 hour", "1 minute"), ("7 days", "7 hours")]
# Policy windows: what `now() - window` gives, not what `=` says.
SAME_WINDOW = [("1 year", "12 months"), ("1 day", "24:00:00"), ("7 days", "1 week"), ("1.5 years", "18 mons")]
DIFFERENT_WINDOW = [("1 year", "360 days"), ("1 mon", "30 days"), ("1 year", "365 days"), ("1 day", "2 days")]


@pytest.mark.parametrize(("left", "right"), SAME)
def test_same_interval_agrees_with_postgresql(database: str, left: str, right: str) -> None:
    assert fetch_one(database, "SELECT %s::interval = %s::interval", (left, right))[0] is True
    assert same_interval(left, right)


@pytest.mark.parametrize(("left", "right"), DIFFERENT)
def test_different_intervals_agree_with_postgresql(database: str, left: str, right: str) -> None:
    assert fetch_one(database, "SELECT %s::interval = %s::interval", (left, right))[0] is False
    assert not same_interval(left, right)


def test_interval_parser_reads_what_postgresql_prints(database: str) -> None:
    for text, _ in SAME:
        printed = fetch_one(database, "SELECT %s::interval::text", (text,))[0]
        assert interval_micros(printed) == interval_micros(text), (text, printed)


@pytest.mark.parametrize(("left", "right"), SAME_WINDOW)
def test_same_window_agrees_with_calendar_arithmetic(database: str, left: str, right: str) -> None:
    # timestamp (no time zone) arithmetic: the calendar without DST, as in the UTC database.
    at = "2028-03-31 00:00"  # the year before holds 29 February
    query = "SELECT %s::timestamp - %s::interval = %s::timestamp - %s::interval"
    assert fetch_one(database, query, (at, left, at, right))[0]
    assert same_window(left, right)


@pytest.mark.parametrize(("left", "right"), DIFFERENT_WINDOW)
def test_different_windows_agree_with_calendar_arithmetic(database: str, left: str, right: str) -> None:
    at = "2028-03-31 00:00"  # the year before holds 29 February
    query = "SELECT %s::timestamp - %s::interval, %s::timestamp - %s::interval"
    moments = fetch_one(database, query, (at, left, at, right))
    assert moments[0] != moments[1]
    assert not same_window(left, right)


def test_interval_parts_keep_months_apart() -> None:
    assert interval_parts("1 year 2 mons 3 days 04:05:06") == (14, 3 * 86_400_000_000 + 14_706_000_000)
    assert interval_parts("@ 1 mon 2 days ago") == (-1, -2 * 86_400_000_000)
    assert interval_parts("1.5 mons") == (1, 15 * 86_400_000_000)


@pytest.mark.parametrize("text", ["P1D", "one day", "1 fortnight", "", "1 day 2"])
def test_interval_parser_rejects_what_it_does_not_understand(text: str) -> None:
    with pytest.raises(ValueError):
        interval_micros(text)


def test_check_reports_bad_intervals_by_key() -> None:
    result = HypertableProvider().check({}, props("dsn", chunk_interval="one day", retention="-1 day"))
    reasons = {failure.property: failure.reason for failure in result.failures}
    assert set(reasons) == {"chunk_interval", "retention"}
    assert "one day" in reasons["chunk_interval"] and "positive" in reasons["retention"]


# --------------------------------------------------------------------------- diff (pure)


def test_diff_schema_change_replaces_and_intervals_compare_semantically() -> None:
    provider = HypertableProvider()
    olds = props("dsn-a")
    assert provider.diff("id", olds, props("dsn-a")).changes is False
    equivalent = provider.diff("id", olds, props("dsn-a", chunk_interval="24:00:00", retention="365 days"))
    assert equivalent.changes is False

    replaced = provider.diff("id", olds, props("dsn-a", schema_name="tenant_other"))
    assert replaced.changes is True and replaced.replaces == ["schema_name"]

    unknown = provider.diff("id", olds, props("dsn-a", schema_name=rpc.UNKNOWN))
    assert unknown.replaces == ["schema_name"]

    for change in ({"chunk_interval": "2 days"}, {"retention": None}, {"compress_after": "1 day"}, {"dsn": "dsn-b"}):
        in_place = provider.diff("id", olds, {**props("dsn-a"), **change})
        assert in_place.changes is True and in_place.replaces == [], change


def test_diff_compares_policy_windows_by_calendar() -> None:
    """`1 year` = `360 days` for `=`, but a retention of 360 days drops five more days of data."""
    provider = HypertableProvider()
    olds = props("dsn-a", retention="1 year", compress_after="1 mon")
    assert provider.diff("id", olds, props("dsn-a", retention="12 months", compress_after="1 mon")).changes is False
    assert provider.diff("id", olds, props("dsn-a", retention="360 days", compress_after="1 mon")).changes is True
    assert provider.diff("id", olds, props("dsn-a", retention="1 year", compress_after="30 days")).changes is True
    # A chunk interval is microseconds on the server: there `1 mon` is 30 days.
    monthly = provider.diff("id", props("dsn-a", chunk_interval="1 mon"), props("dsn-a", chunk_interval="30 days"))
    assert monthly.changes is False


def test_unparsable_dsn_does_not_leak_the_password() -> None:
    with pytest.raises(ProviderError, match="dsn input is not a valid connection string") as raised:
        HypertableProvider().create(props("postgresql://postgres:s3%zzcr3t@127.0.0.1:5432/telemetry"))
    message = str(raised.value)
    assert message.startswith(f"Hypertable {SCHEMA}.telemetry: ")
    # libpq's own message would be: invalid percent-encoded token: "s3%zzcr3t"
    assert "zz" not in message and "cr3t" not in message


# --------------------------------------------------------------------------- without TimescaleDB


def test_missing_timescaledb_is_one_clear_error(plain_postgres_server: PostgresServer) -> None:
    dsn = plain_postgres_server.create_database("plain_pg")
    create_schema(dsn, SCHEMA)
    with pytest.raises(ProviderError) as raised:
        HypertableProvider().create(props(dsn))
    message = str(raised.value)
    assert "TimescaleDB is not available on 127.0.0.1" in message
    assert "use the timescale/timescaledb image or add shared_preload_libraries=timescaledb" in message
    installed = fetch_one(dsn, "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")[0]
    if installed:
        assert "not started with timescaledb in shared_preload_libraries" in message
    else:
        assert "extension is not installed on the server" in message
    # One sentence, not a chained traceback of the psycopg error.
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None or raised.value.__suppress_context__
    assert "\n" not in message
    assert not table_exists(dsn, SCHEMA, TELEMETRY_TABLE)


def test_unreachable_server_fails_after_bounded_retries(postgres_server: PostgresServer) -> None:
    dsn = postgres_server.dsn().replace(f"port={postgres_server.port}", "port=1")
    with pytest.raises(ProviderError, match=r"127\.0\.0\.1:1 did not accept connections within 1s"):
        HypertableProvider().create(props(dsn, ready_timeout=1))


def test_wrong_password_fails_at_once_without_leaking_it(postgres_server: PostgresServer) -> None:
    dsn = postgres_server.dsn(password="not-the-password")
    with pytest.raises(ProviderError, match="cannot log in") as raised:
        HypertableProvider().create(props(dsn, ready_timeout=30))
    assert "not-the-password" not in str(raised.value)


# --------------------------------------------------------------------------- with TimescaleDB


def test_create_builds_hypertable_and_policies(created) -> None:
    dsn, result = created
    assert result.id == f"{SCHEMA}.{TELEMETRY_TABLE}"
    outs = result.outs
    version = fetch_one(dsn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")[0]
    assert outs["timescaledb_version"] == version
    assert (outs["schema_name"], outs["table"]) == (SCHEMA, TELEMETRY_TABLE)
    assert (outs["chunk_interval"], outs["retention"], outs["compress_after"]) == ("1 day", "365 days", "7 days")

    assert fetch_one(
        dsn,
        "SELECT num_dimensions, compression_enabled FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = %s AND hypertable_name = %s",
        (SCHEMA, TELEMETRY_TABLE),
    ) == (1, True)
    assert same_interval(str(fetch_one(dsn, "SELECT %s::interval::text", (chunk_interval(dsn),))[0]), "1 day")
    policies = jobs(dsn)
    assert set(policies) == {"policy_retention", "policy_compression"}
    assert policies["policy_retention"][0] == outs["retention_job_id"]
    assert policies["policy_compression"][0] == outs["compression_job_id"]
    assert same_interval(policies["policy_retention"][1]["drop_after"], "365 days")
    assert same_interval(policies["policy_compression"][1]["compress_after"], "7 days")
    settings = fetch_all(
        dsn,
        "SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc "
        "FROM timescaledb_information.compression_settings WHERE hypertable_schema = %s ORDER BY attname",
        (SCHEMA,),
    )
    assert ("device_id", 1, None, None) in settings
    assert ("time", None, 1, False) in settings
    indexes = {row[0] for row in fetch_all(dsn, "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (SCHEMA,))}
    assert {"telemetry_msg_id_time_key", "telemetry_device_id_time_idx"} <= indexes


def test_policies_are_optional(tsdb: str) -> None:
    outs = HypertableProvider().create(props(tsdb, retention=None, compress_after=None)).outs
    assert jobs(tsdb) == {}
    assert (outs["retention"], outs["retention_job_id"], outs["compression_job_id"]) == (None, None, None)


def test_policies_run_with_run_job(created) -> None:
    """The jobs are real: run them by hand (the scheduler is unreliable on PostgreSQL 15.20)."""
    dsn, result = created
    # The scheduler may start a job at the moment run_job does (a deadlock between the two): pause them.
    for job in ("retention_job_id", "compression_job_id"):
        execute(dsn, "SELECT alter_job(%s, scheduled => false)", (result.outs[job],))
    execute(
        dsn,
        sql.SQL(
            "INSERT INTO {} (time, device_id, topic, payload, msg_id) VALUES "
            "(now() - interval '400 days', 'd1', 't', '{{}}', 'old'), "
            "(now() - interval '30 days', 'd1', 't', '{{}}', 'mid'), (now(), 'd1', 't', '{{}}', 'new')"
        ).format(sql.Identifier(SCHEMA, TELEMETRY_TABLE)),
    )
    execute(dsn, "CALL run_job(%s)", (result.outs["retention_job_id"],))
    execute(dsn, "CALL run_job(%s)", (result.outs["compression_job_id"],))
    remaining = fetch_all(
        dsn, sql.SQL("SELECT msg_id FROM {} ORDER BY time").format(sql.Identifier(SCHEMA, TELEMETRY_TABLE))
    )
    assert [row[0] for row in remaining] == ["mid", "new"]
    compressed = fetch_one(
        dsn,
        "SELECT count(*) FILTER (WHERE is_compressed) FROM timescaledb_information.chunks WHERE hypertable_schema = %s",
        (SCHEMA,),
    )[0]
    assert compressed == 1


def test_read_without_drift_returns_the_outputs(created) -> None:
    _, result = created
    read = HypertableProvider().read(result.id, result.outs)
    assert read.id == result.id
    assert read.outs == result.outs


def test_read_keeps_the_users_spelling_of_an_equal_interval(tsdb: str) -> None:
    provider = HypertableProvider()
    result = provider.create(props(tsdb, chunk_interval="24:00:00", retention="1 year"))
    assert result.outs["chunk_interval"] == "24:00:00" and result.outs["retention"] == "1 year"
    assert provider.read(result.id, result.outs).outs == result.outs
    assert (
        provider.diff(result.id, result.outs, props(tsdb, chunk_interval="1 day", retention="12 months")).changes
        is False
    )
    # Equal for `=`, not for the policy: the change must reach the server.
    assert provider.diff(result.id, result.outs, props(tsdb, retention="360 days")).changes is True
    outs = provider.update(result.id, result.outs, props(tsdb, retention="360 days")).outs
    assert outs["retention"] == "360 days" and jobs(tsdb)["policy_retention"][1]["drop_after"] == "360 days"
    with pytest.raises(ProviderError, match="retention is '360 days' on the server but '1 year' in the stack"):
        provider.create(props(tsdb, retention="1 year"))


def test_read_is_stable_under_another_interval_style(tsdb: str) -> None:
    """A database set to IntervalStyle iso_8601 prints 'P1D': refresh must still show no drift."""
    dbname = psycopg.conninfo.conninfo_to_dict(tsdb)["dbname"]
    execute(tsdb, sql.SQL("ALTER DATABASE {} SET IntervalStyle = 'iso_8601'").format(sql.Identifier(dbname)))
    assert fetch_one(tsdb, "SELECT interval '1 day'::text")[0] == "P1D"
    provider = HypertableProvider()
    result = provider.create(props(tsdb))
    assert (result.outs["chunk_interval"], result.outs["retention"], result.outs["compress_after"]) == (
        "1 day",
        "365 days",
        "7 days",
    )
    assert provider.read(result.id, result.outs).outs == result.outs
    assert provider.diff(result.id, result.outs, props(tsdb)).changes is False
    assert provider.create(props(tsdb)).outs == result.outs  # adopts instead of reporting a conflict
    policies = jobs(tsdb)
    assert same_window(policies["policy_retention"][1]["drop_after"], "365 days")
    assert same_window(policies["policy_compression"][1]["compress_after"], "7 days")


def test_read_shows_drift(created) -> None:
    dsn, result = created
    regclass = sql.Identifier(SCHEMA, TELEMETRY_TABLE).as_string(None)
    execute(dsn, "SELECT remove_retention_policy(%s::regclass)", (regclass,))
    execute(dsn, "SELECT set_chunk_time_interval(%s::regclass, interval '2 days')", (regclass,))
    outs = HypertableProvider().read(result.id, result.outs).outs
    assert outs["retention"] is None and outs["retention_job_id"] is None
    assert same_interval(outs["chunk_interval"], "2 days")
    assert outs["compress_after"] == "7 days"
    # The next `up` sees the difference and converges back to the inputs in place.
    provider = HypertableProvider()
    diff = provider.diff(result.id, outs, props(dsn))
    assert diff.changes is True and diff.replaces == []
    fixed = provider.update(result.id, outs, props(dsn)).outs
    assert fixed["retention"] == "365 days" and fixed["chunk_interval"] == "1 day"
    assert set(jobs(dsn)) == {"policy_retention", "policy_compression"}


def test_update_in_place(created) -> None:
    dsn, result = created
    provider = HypertableProvider()
    news = props(dsn, chunk_interval="12 hours", retention="30 days", compress_after=None)
    diff = provider.diff(result.id, result.outs, news)
    assert diff.changes is True and diff.replaces == []
    outs = provider.update(result.id, result.outs, news).outs
    assert (outs["chunk_interval"], outs["retention"], outs["compress_after"]) == ("12 hours", "30 days", None)
    assert fetch_one(dsn, "SELECT %s = interval '12 hours'", (chunk_interval(dsn),))[0] is True
    policies = jobs(dsn)
    assert set(policies) == {"policy_retention"}
    assert same_interval(policies["policy_retention"][1]["drop_after"], "30 days")
    assert outs["retention_job_id"] == policies["policy_retention"][0]

    again = provider.update(
        result.id, outs, props(dsn, chunk_interval="12 hours", retention="30 days", compress_after="3 days")
    ).outs
    assert same_interval(jobs(dsn)["policy_compression"][1]["compress_after"], "3 days")
    assert again["compression_job_id"] == jobs(dsn)["policy_compression"][0]
    # Only the DSN changed: nothing to do on the server, but the new DSN is kept in the outputs.
    moved = provider.update(
        result.id,
        again,
        {**props(dsn, chunk_interval="12 hours", retention="30 days", compress_after="3 days"), "dsn": dsn + " "},
    )
    assert moved.outs["dsn"] == dsn + " " and moved.outs["retention_job_id"] == again["retention_job_id"]


def test_create_over_identical_hypertable_adopts_it(created) -> None:
    dsn, result = created
    again = HypertableProvider().create(props(dsn, chunk_interval="24:00:00"))
    assert again.id == result.id
    assert again.outs["retention_job_id"] == result.outs["retention_job_id"]
    assert again.outs["compression_job_id"] == result.outs["compression_job_id"]
    assert len(jobs(dsn)) == 2


def test_create_over_different_hypertable_fails_clearly(created) -> None:
    dsn, _ = created
    with pytest.raises(ProviderError) as raised:
        HypertableProvider().create(props(dsn, chunk_interval="2 days", retention=None))
    message = str(raised.value)
    assert f"Hypertable {SCHEMA}.telemetry" in message
    assert "chunk_interval is '1 day' on the server but '2 days' in the stack" in message
    assert "retention is '365 days' on the server but not set in the stack" in message
    assert "compress_after" not in message
    assert "set_chunk_time_interval" in message
    assert set(jobs(dsn)) == {"policy_retention", "policy_compression"}


def test_create_over_a_foreign_table_fails_clearly(tsdb: str) -> None:
    execute(tsdb, sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(SCHEMA, TELEMETRY_TABLE)))
    with pytest.raises(ProviderError, match="without the column"):
        HypertableProvider().create(props(tsdb))


def test_create_without_schema_fails_clearly(timescaledb: str) -> None:
    with pytest.raises(ProviderError, match=f"schema '{SCHEMA}' does not exist.*pulumi_postgresql.Schema"):
        HypertableProvider().create(props(timescaledb))


def test_delete_keeps_data_and_removes_policies(created) -> None:
    dsn, result = created
    table = sql.Identifier(SCHEMA, TELEMETRY_TABLE)
    execute(
        dsn,
        sql.SQL("INSERT INTO {} (time, device_id, topic, payload, msg_id) VALUES (now(), 'd', 't', %s, 'm')").format(
            table
        ),
        (json.dumps({"v": 1}),),
    )
    provider = HypertableProvider()
    provider.delete(result.id, result.outs)
    assert fetch_one(dsn, sql.SQL("SELECT count(*) FROM {}").format(table))[0] == 1
    assert jobs(dsn) == {}
    assert provider.read(result.id, result.outs).id == result.id
    # Re-creating after such a delete adopts the table and adds the policies back.
    again = provider.create(props(dsn))
    assert set(jobs(dsn)) == {"policy_retention", "policy_compression"}
    assert again.outs["retention_job_id"] is not None


def test_delete_with_drop_data_on_delete_and_delete_again(tsdb: str) -> None:
    provider = HypertableProvider()
    result = provider.create(props(tsdb, drop_data_on_delete=True))
    provider.delete(result.id, result.outs)
    assert not table_exists(tsdb, SCHEMA, TELEMETRY_TABLE)
    assert jobs(tsdb) == {}
    provider.delete(result.id, result.outs)  # already gone: not an error
    gone = provider.read(result.id, result.outs)
    assert gone.id == "" and gone.outs == {}


def test_delete_when_schema_is_gone_is_not_an_error(created) -> None:
    dsn, result = created
    execute(dsn, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(SCHEMA)))
    HypertableProvider().delete(result.id, result.outs)
    assert HypertableProvider().read(result.id, result.outs).id == ""


def test_update_of_a_vanished_hypertable_asks_for_refresh(created) -> None:
    dsn, result = created
    execute(dsn, sql.SQL("DROP TABLE {}").format(sql.Identifier(SCHEMA, TELEMETRY_TABLE)))
    with pytest.raises(ProviderError, match="pulumi refresh"):
        HypertableProvider().update(result.id, result.outs, props(dsn, retention="30 days"))


def test_replacement_schema_gets_its_own_hypertable(created) -> None:
    dsn, result = created
    provider = HypertableProvider()
    news = props(dsn, schema_name="tenant_acme_v2")
    assert provider.diff(result.id, result.outs, news).replaces == ["schema_name"]
    create_schema(dsn, "tenant_acme_v2")
    replacement = provider.create(news)
    provider.delete(result.id, result.outs)
    assert replacement.id == "tenant_acme_v2.telemetry"
    assert set(jobs(dsn, "tenant_acme_v2")) == {"policy_retention", "policy_compression"}
    assert jobs(dsn) == {}


def test_sql_errors_name_resource_call_and_reason(created) -> None:
    dsn, result = created
    # A retention window the server refuses: the message carries the server's own reason.
    with pytest.raises(ProviderError) as raised:
        HypertableProvider().update(result.id, result.outs, props(dsn, retention="1 fortnight"))
    message = str(raised.value)
    assert message.startswith(f"Hypertable {SCHEMA}.telemetry: setting the retention policy")
    assert "invalid input syntax for type interval" in message
    assert isinstance(raised.value.__context__, psycopg.Error) and raised.value.__suppress_context__


def test_tenants_created_in_parallel_on_a_fresh_database(timescaledb: str) -> None:
    """Pulumi creates the tenants' Hypertables at once; the first ones race to create the extension."""
    from concurrent.futures import ThreadPoolExecutor

    schemas = [f"tenant_{index}" for index in range(6)]
    for schema in schemas:
        create_schema(timescaledb, schema)
    with ThreadPoolExecutor(len(schemas)) as pool:
        results = list(
            pool.map(lambda schema: HypertableProvider().create(props(timescaledb, schema_name=schema)), schemas)
        )
    assert [result.id for result in results] == [f"{schema}.telemetry" for schema in schemas]
    assert all(set(jobs(timescaledb, schema)) == {"policy_retention", "policy_compression"} for schema in schemas)
