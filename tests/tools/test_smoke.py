"""The smoke check: its row polling against real PostgreSQL, and the whole command against mosquitto.

The end-to-end tests put a stand-in for EMQX's rule + the ingest service
between the broker and the database: a subscriber that writes each message of
the tenants it is told to forward into that tenant's ``telemetry`` table.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from components.providers.telemetry_ddl import telemetry_table_ddl
from tests.devices.conftest import DeviceDb, drop_device_db, make_device_db
from tests.emqx_double.server import EmqxDouble
from tests.pg_server import PostgresServer
from tests.tools.conftest import ACME, UMC, Broker, watching_all_tenants
from tests.tools.emqx_stand_in import api_outputs, stack_emqx
from tools import smoke
from tools.smoke import losses_during, wait_for_rows

SCHEMAS = {UMC: "tenant_uberlandia_medical_center", ACME: "tenant_acme_labs"}
PREFIXES = {"umc": UMC, "acme": ACME}


@dataclass
class TenantDatabase:
    superuser_dsn: str
    endpoint: str  # databaseEndpoint: no credentials
    readers: dict[str, tuple[str, str]]  # slug -> (role, password)
    registry: DeviceDb  # the registry with both tenants, and the device-manager role

    def devices(self) -> list[tuple[str, str]]:
        return self.registry.execute("SELECT device_id, tenant FROM telemetry_registry.devices ORDER BY 1")

    def insert(self, slug: str, topic: str, payload: dict) -> None:
        table = sql.Identifier(SCHEMAS[slug], "telemetry")
        with psycopg.connect(self.superuser_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (time, device_id, topic, payload, msg_id) VALUES (now(), %s, %s, %s, %s)"
                ).format(table),
                (topic.split("/")[2], topic, json.dumps(payload), uuid.uuid4().hex),
            )

    def outputs(self, broker: Broker, emqx: EmqxDouble) -> dict:
        outputs = broker.outputs(database_endpoint=self.endpoint, **api_outputs(emqx))
        outputs["deviceManagerDsn"] = self.registry.manager_dsn
        for slug, (role, password) in self.readers.items():
            outputs["tenants"][slug]["readerRole"] = role
            outputs["readerPasswords"][slug] = password
        return outputs


@pytest.fixture()
def tenant_database(postgres_server: PostgresServer, database: str) -> Iterator[TenantDatabase]:
    """Both tenants' schemas and tables, a reader role per tenant that may SELECT only its own schema, and
    the registry with its device-manager role (deviceManagerDsn)."""
    suffix = uuid.uuid4().hex[:8]
    readers = {slug: (f"{schema}_reader_{suffix}", f"pw-{slug}") for slug, schema in SCHEMAS.items()}
    params = conninfo_to_dict(database)
    with psycopg.connect(database, autocommit=True) as conn:
        for slug, schema in SCHEMAS.items():
            role, password = readers[slug]
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            for statement in telemetry_table_ddl(schema):
                conn.execute(statement)
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.Identifier(role)))
            conn.execute(
                sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
                    sql.Identifier(schema), sql.Identifier(role)
                )
            )
    endpoint = f"postgresql://{params['host']}:{params['port']}/{params['dbname']}"
    registry = make_device_db(postgres_server, database, {slug: prefix for prefix, slug in PREFIXES.items()})
    yield TenantDatabase(database, endpoint, readers, registry)
    drop_device_db(registry)
    with psycopg.connect(database, autocommit=True) as conn:
        for role, _ in readers.values():
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture()
def emqx() -> Iterator[EmqxDouble]:
    """The EMQX management API smoke reads the loss counters from, with both tenants' rule and action."""
    with stack_emqx({slug: prefix for prefix, slug in PREFIXES.items()}) as double:
        yield double


@dataclass
class RegistryFollower:
    """Stands in for EMQX authenticating from the registry: mosquitto learns each check device smoke adds."""

    added: list[str]
    skip: set[str]


@pytest.fixture()
def broker_follows_the_registry(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> RegistryFollower:
    follower = RegistryFollower([], set())
    original = smoke.check_devices

    @contextmanager
    def following(outputs: dict, slugs, run_id: str):
        with original(outputs, slugs, run_id) as devices:
            for slug, credentials in devices.credentials.items():
                for device, password in credentials.items():
                    follower.added.append(device)
                    if slug not in follower.skip:
                        broker.add_user(device, password, f"tenants/{outputs['tenants'][slug]['topicPrefix']}/#")
            yield devices

    monkeypatch.setattr(smoke, "check_devices", following)
    return follower


@pytest.fixture()
def ingest_stand_in(broker: Broker, tenant_database: TenantDatabase) -> Iterator[set[str]]:
    """Forwards messages of the slugs in the yielded set from the broker into their tables."""
    forwarded: set[str] = set()

    def on_message(client, userdata, message):
        slug = PREFIXES.get(message.topic.split("/")[1])
        if slug in forwarded:
            tenant_database.insert(slug, message.topic, json.loads(message.payload))

    with watching_all_tenants(broker, on_message, "stand-in"):
        yield forwarded


def reader_dsn(db: TenantDatabase, slug: str) -> str:
    role, password = db.readers[slug]
    return psycopg.conninfo.make_conninfo(db.endpoint, user=role, password=password)


def test_wait_for_rows_counts_only_the_runs_rows(tenant_database: TenantDatabase) -> None:
    topic = "tenants/umc/umc_device-0/telemetry"
    for seq in (1, 2):
        tenant_database.insert(UMC, topic, {"run_id": "run-mine", "seq": seq})
    tenant_database.insert(UMC, topic, {"run_id": "run-other", "seq": 1})
    tenant_database.insert(UMC, topic, {"seq": 1})

    assert wait_for_rows(reader_dsn(tenant_database, UMC), SCHEMAS[UMC], "run-mine", 2, timeout=5) == 2


def test_wait_for_rows_sees_rows_that_arrive_while_it_polls(tenant_database: TenantDatabase) -> None:
    def late_insert() -> None:
        time.sleep(0.5)
        for seq in (1, 2, 3):
            tenant_database.insert(UMC, "tenants/umc/umc_device-0/telemetry", {"run_id": "run-late", "seq": seq})

    writer = threading.Thread(target=late_insert)
    writer.start()
    try:
        stored = wait_for_rows(reader_dsn(tenant_database, UMC), SCHEMAS[UMC], "run-late", 3, timeout=30, interval=0.1)
    finally:
        writer.join()
    assert stored == 3


def test_wait_for_rows_gives_up_with_what_it_found(tenant_database: TenantDatabase) -> None:
    tenant_database.insert(UMC, "tenants/umc/umc_device-0/telemetry", {"run_id": "run-short", "seq": 1})

    assert wait_for_rows(reader_dsn(tenant_database, UMC), SCHEMAS[UMC], "run-short", 3, timeout=0.3, interval=0.1) == 1


def test_a_reader_cannot_poll_another_tenants_schema(tenant_database: TenantDatabase) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        wait_for_rows(reader_dsn(tenant_database, UMC), SCHEMAS[ACME], "any", 1, timeout=0.1)


def test_smoke_passes_when_every_tenants_messages_are_stored(
    emqx: EmqxDouble,
    broker: Broker,
    tenant_database: TenantDatabase,
    ingest_stand_in: set[str],
    broker_follows_the_registry: RegistryFollower,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`make smoke` on a fresh stack: no device exists; the check adds its own, one per tenant, and removes them."""
    ingest_stand_in.update({UMC, ACME})
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(tenant_database.outputs(broker, emqx)))

    code = smoke.main(["--outputs-file", str(outputs), "--timeout", "20"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0, lines
    assert lines[0].startswith(f"PASS {ACME}: 3/3 messages stored in {SCHEMAS[ACME]}.telemetry")
    assert lines[1].startswith(f"PASS {UMC}: 3/3 messages stored in {SCHEMAS[UMC]}.telemetry")
    assert lines[2] == "smoke: 2 of 2 tenants passed"
    added = broker_follows_the_registry.added
    assert len(added) == 2 and all(re.fullmatch(r"smoke-[0-9a-f]{12}-[01]", device) for device in added)
    stored = tenant_database.registry.execute(
        f"SELECT DISTINCT device_id FROM {SCHEMAS[UMC]}.telemetry UNION SELECT DISTINCT device_id FROM "
        f"{SCHEMAS[ACME]}.telemetry")
    assert sorted(device for (device,) in stored) == sorted(added)  # published as the check devices, ids = usernames
    assert tenant_database.devices() == []  # and removed afterwards


def test_smoke_fails_the_tenant_whose_messages_never_arrive(
    emqx: EmqxDouble,
    broker: Broker,
    tenant_database: TenantDatabase,
    ingest_stand_in: set[str],
    broker_follows_the_registry: RegistryFollower,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ingest_stand_in.add(UMC)  # acme's messages are published and acknowledged, but never stored
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(tenant_database.outputs(broker, emqx)))

    code = smoke.main(["--outputs-file", str(outputs), "--timeout", "1", "--messages", "2"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[0].startswith(f"FAIL {ACME}: 0/2 messages stored in {SCHEMAS[ACME]}.telemetry after 1 s")
    assert "check the ingest service logs" in lines[0]
    assert lines[1].startswith(f"PASS {UMC}: 2/2 messages stored")
    assert lines[2] == "smoke: 1 of 2 tenants passed"
    assert tenant_database.devices() == []  # a failed check removes its devices too


def test_smoke_reports_broker_and_database_problems_per_tenant(
    emqx: EmqxDouble,
    broker: Broker,
    tenant_database: TenantDatabase,
    broker_follows_the_registry: RegistryFollower,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker_follows_the_registry.skip.add(UMC)  # the broker never learns umc's check device
    outputs = tenant_database.outputs(broker, emqx)
    outputs["readerPasswords"][ACME] = "wrong"
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))

    code = smoke.main(["--outputs-file", str(path), "--timeout", "1"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[0].startswith(
        f"FAIL {ACME}: cannot read {SCHEMAS[ACME]}.telemetry as {tenant_database.readers[ACME][0]}"
    )
    assert lines[1].startswith(
        f"FAIL {UMC}: publishing failed: the MQTT broker at {broker.host}:{broker.port} refused user 'smoke-"
    )
    assert lines[2] == "smoke: 0 of 2 tenants passed"


def test_smoke_names_a_tenant_the_registry_does_not_know(
    emqx: EmqxDouble, broker: Broker, tenant_database: TenantDatabase, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant_database.registry.execute("DELETE FROM telemetry_registry.tenants WHERE slug = %s", (ACME,))
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(tenant_database.outputs(broker, emqx)))
    assert smoke.main(["--outputs-file", str(path), "--tenant", ACME]) == 1
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"FAIL {ACME}: could not add a check device: unknown tenant '{ACME}'")


def test_smoke_without_device_manager_dsn_says_what_to_do(
    emqx: EmqxDouble, broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = broker.write_outputs(tmp_path / "outputs.json", **api_outputs(emqx))
    assert smoke.main(["--outputs-file", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the stack outputs have no 'deviceManagerDsn'")
    assert "--credentials-file" in err[0] and "python -m tools.devices add" in err[0]


def test_smoke_checks_only_the_named_tenant_and_rejects_unknown_ones(
    emqx: EmqxDouble,
    broker: Broker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = broker.write_outputs(tmp_path / "outputs.json", **api_outputs(emqx))

    code = smoke.main(["--outputs-file", str(path), "--tenant", "nope"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines == [
        (
            f"FAIL nope: tenant 'nope' is not in the stack outputs (known tenants: {ACME}, {UMC}): "
            "check --tenant, or add it to telemetry:tenants and run `pulumi up`"
        ),
        "smoke: 0 of 1 tenants passed",
    ]


def test_smoke_fails_a_tenant_whose_emqx_drop_counters_grew_during_the_run(
    emqx: EmqxDouble,
    broker: Broker,
    tenant_database: TenantDatabase,
    ingest_stand_in: set[str],
    broker_follows_the_registry: RegistryFollower,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every smoke message is stored, but EMQX dropped other messages of acme meanwhile (say a
    device's, after request_ttl): those were acknowledged to the device, so smoke fails."""
    ingest_stand_in.update({UMC, ACME})
    emqx.bump_action_metrics(f"tenant-{ACME}", dropped__expired=5)  # before the run: not this run's loss

    def drop_during_the_run(client, userdata, message):
        if message.topic.startswith("tenants/acme/"):
            emqx.bump_action_metrics(f"tenant-{ACME}", dropped__expired=1)

    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(tenant_database.outputs(broker, emqx)))
    with watching_all_tenants(broker, drop_during_the_run, "dropper"):
        code = smoke.main(["--outputs-file", str(outputs), "--timeout", "20"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 1, lines
    assert lines[0].startswith(f"FAIL {ACME}: 3/3 messages stored in {SCHEMAS[ACME]}.telemetry")
    # +1..+3: the dropper may still be receiving when smoke reads the counters; never the 5 from before
    assert re.search(r"EMQX lost messages during the run \(action\.dropped\.expired \+[123]\)", lines[0]), lines[0]
    assert lines[1].startswith(f"PASS {UMC}: 3/3 messages stored")


def test_smoke_without_the_emqx_api_outputs_says_what_is_missing(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = broker.write_outputs(tmp_path / "outputs.json")
    assert smoke.main(["--outputs-file", str(path)]) == 2
    assert "the stack outputs have no dashboardUrl, emqxApiKey, emqxApiSecret" in capsys.readouterr().err


def test_losses_count_growth_and_treat_a_lower_counter_as_reset() -> None:
    before = {"action.dropped.expired": 5, "action.failed": 2, "rule.failed": 0}
    after = {"action.dropped.expired": 7, "action.failed": 1, "rule.failed": 0}
    # failed went down: the metrics restarted (EMQX restart, action update), so its 1 is new
    assert losses_during(before, after) == {"action.dropped.expired": 2, "action.failed": 1}
    assert losses_during(after, after) == {}
