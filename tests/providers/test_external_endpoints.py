"""External endpoints for real: the program, configured with `timescaledb.external` and
`emqx.external` pointing at a local PostgreSQL and the EMQX API double, is run with an engine
stand-in that creates each resource as it is registered:

* the dynamic providers (registry, hypertable, registration, the EMQX PostgreSQL authenticator,
  authorization, connector, actions, rules) run their real `create` with exactly the
  inputs the program rendered for those endpoints, then `read` (what `pulumi refresh` does);
* pulumi-postgresql's Schema, Role, Grant and DefaultPrivileges are applied as the SQL that
  provider issues (`components.grants.to_sql`), through the connection settings of the program's
  own `pulumi_postgresql.Provider` (pulumi-postgresql needs the Pulumi CLI, which is not here);
* random passwords are generated; Docker resources (the ingest container) are only recorded.

It stands in for `pulumi up` of a stack whose database is a managed TimescaleDB and whose broker
is an existing EMQX cluster, with the EMQX double in the broker's place.
"""

from __future__ import annotations

import base64
import secrets
import string
import threading
from collections.abc import Iterator
from typing import Any
from unittest.mock import patch

import dill
import psycopg
import pytest
import requests
from psycopg import sql

from components import grants
from components.providers.emqx import EmqxApiError
from tests.emqx_double.fixtures import *  # noqa: F403 - the emqx fixture
from tests.emqx_double.fixtures import API_KEY, API_SECRET
from tests.emqx_double.server import EmqxDouble
from tests.providers._db_helpers import fetch_all, fetch_one
from tests.unit import harness
from tests.unit.test_config import dev_config
from tools import devices as devices_cli
from tools.device_files import read_credentials

INGEST_URL = "http://127.0.0.1:18000"


class EngineStandIn:
    """Creates each registered resource for real, in registration order (dependencies first)."""

    def __init__(self) -> None:
        self.postgres_providers: dict[str, dict[str, Any]] = {}
        # Roles are server-wide, unlike the test's database: dropped after each test.
        self.roles: list[str] = []
        self.created: list[tuple[str, str, Any, str, dict[str, Any]]] = []
        # One resource operation at a time: the mocks register concurrently, and concurrent GRANTs
        # on one schema make PostgreSQL answer "tuple concurrently updated" (pulumi-postgresql
        # takes locks for that); ordering is not what these tests are about.
        self.lock = threading.Lock()
        self.failed: Exception | None = None

    def new_resource(self, mocks: harness._Mocks, args) -> tuple[str, dict[str, Any]]:
        with self.lock:
            # Like `pulumi up` without --continue-on-error, nothing is created after the first
            # failure, which is kept for the test to read. The program itself runs on with
            # placeholder outputs: a failed run leaves every dependent output future failed in
            # the runtime's global state, which the next runs in this process would inherit.
            if self.failed is not None:
                return f"{args.name}-not-created", dict(args.inputs)
            try:
                return self._create(args)
            except Exception as error:  # noqa: BLE001 (any provider failure is the result under test)
                self.failed = error
                return f"{args.name}-failed", dict(args.inputs)

    def _create(self, args) -> tuple[str, dict[str, Any]]:
        # The engine hands providers plain values; secrecy is kept in the state, not in the call.
        inputs = harness.unwrap_secrets(dict(args.inputs))
        if args.typ.startswith("pulumi-python:dynamic/"):
            provider = dill.loads(base64.b64decode(inputs.pop("__provider")))
            result = provider.create(inputs)
            outs = {**inputs, **(result.outs or {})}
            self.created.append((args.typ, args.name, provider, result.id, outs))
            return result.id, outs
        if args.typ == "pulumi:providers:postgresql":
            self.postgres_providers[f"{args.name}"] = inputs
            return f"{args.name}-id", inputs
        if args.typ.startswith("postgresql:index/"):
            self._apply_sql(args.typ, inputs, self._provider_settings(args.provider))
            return f"{args.name}-id", inputs
        if args.typ == "random:index/randomPassword:RandomPassword":
            alphabet = string.ascii_letters + string.digits
            result = "".join(secrets.choice(alphabet) for _ in range(int(inputs["length"])))
            return f"{args.name}-id", {**inputs, "result": result}
        return f"{args.name}-id", inputs

    def _provider_settings(self, reference: str) -> dict[str, Any]:
        # A provider reference is "<urn>::<id>"; the urn ends with the provider's name.
        name = reference.split("::")[-2]
        return self.postgres_providers[name]

    def _apply_sql(self, type_: str, inputs: dict[str, Any], provider: dict[str, Any]) -> None:
        dsn = psycopg.conninfo.make_conninfo(
            host=provider["host"], port=provider["port"], dbname=provider["database"],
            user=provider["username"], password=provider["password"], sslmode=provider["sslmode"],
        )
        kind = type_.rsplit(":", 1)[1]
        with psycopg.connect(dsn) as conn:
            if kind == "Schema":
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(inputs["name"])))
            elif kind == "Role":
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(inputs["name"]), sql.Literal(inputs["password"])))
                self.roles.append(inputs["name"])
            elif kind == "DefaultPrivileges":
                conn.execute(grants.to_sql(grants.DefaultPrivilege(
                    owner=inputs["owner"], role=inputs["role"], schema=inputs["schema"],
                    privileges=tuple(inputs["privileges"]))))
            elif inputs["objectType"] == "schema":
                conn.execute(grants.to_sql(grants.SchemaGrant(
                    role=inputs["role"], schema=inputs["schema"], privileges=tuple(inputs["privileges"]))))
            elif inputs["objectType"] == "function":
                conn.execute(grants.to_sql(grants.FunctionGrant(
                    role=inputs["role"], schema=inputs["schema"], privileges=tuple(inputs["privileges"]),
                    functions=tuple(inputs["objects"]))))
            elif inputs["objectType"] == "column":
                conn.execute(grants.to_sql(grants.ColumnGrant(
                    role=inputs["role"], schema=inputs["schema"], privileges=tuple(inputs["privileges"]),
                    table=inputs["objects"][0], columns=tuple(inputs["columns"]))))
            else:
                conn.execute(grants.to_sql(grants.TableGrant(
                    role=inputs["role"], schema=inputs["schema"], privileges=tuple(inputs["privileges"]),
                    tables=tuple(inputs.get("objects") or ()))))


def external_config(dsn: str, double: EmqxDouble, api_secret: str = API_SECRET) -> dict[str, Any]:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    return {
        **dev_config(),
        "timescaledb": {"external": {
            "host": params["host"], "port": int(params["port"]), "database": params["dbname"], "sslmode": "disable",
            "adminUser": params["user"], "password": params["password"],
        }},
        "emqx": {"external": {"apiUrl": double.url, "apiKey": API_KEY, "apiSecret": api_secret, "ingestUrl": INGEST_URL}},
    }


@pytest.fixture()
def engine(timescaledb: str) -> Iterator[EngineStandIn]:
    """The stand-in; afterwards its roles are dropped (before the test's database is)."""
    stand_in = EngineStandIn()
    yield stand_in
    with psycopg.connect(timescaledb, autocommit=True) as conn:
        for role in stand_in.roles:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def deploy(engine: EngineStandIn, config: dict[str, Any]) -> harness.ProgramRun:
    with patch.object(harness._Mocks, "new_resource", lambda mocks, args: engine.new_resource(mocks, args)):
        return harness.run_program(config, stack="external")


def emqx_get(double: EmqxDouble, path: str) -> Any:
    answer = requests.get(f"{double.url}/api/v5{path}", auth=(API_KEY, API_SECRET), timeout=5)
    answer.raise_for_status()
    return answer.json()


def test_external_endpoints_tenant_layer_creates_everything_on_the_given_database_and_broker(timescaledb, emqx, engine):
    run = deploy(engine, external_config(timescaledb, emqx))
    assert run.error is None and engine.failed is None, run.error or engine.failed
    created = {(type_.rsplit(":", 1)[1], name) for type_, name, *_ in engine.created}
    assert ("Connector", "emqx-ingest-connector") in created and ("Hypertable", "tenant-hospital-x-hypertable") in created

    # The database: registry rows and hypertables for both tenants; roles with their grants.
    rows = fetch_all(timescaledb, "SELECT slug, schema_name, topic_prefix FROM telemetry_registry.tenants ORDER BY slug")
    assert rows == [("hospital-x", "tenant_hospital_x", "hx"),
                    ("uberlandia-medical-center", "tenant_uberlandia_medical_center", "umc")]
    hypertables = fetch_all(timescaledb, "SELECT hypertable_schema FROM timescaledb_information.hypertables ORDER BY 1")
    assert hypertables == [("tenant_hospital_x",), ("tenant_uberlandia_medical_center",)]
    assert fetch_one(timescaledb, "SELECT has_table_privilege('ingest_writer', 'tenant_hospital_x.telemetry', 'INSERT')") == (True,)
    assert fetch_one(timescaledb, "SELECT has_table_privilege('tenant_hospital_x_reader', "
                                  "'tenant_uberlandia_medical_center.telemetry', 'SELECT')") == (False,)

    # The broker: the stack's objects, pointing at the ingest URL the config gave.
    connectors = emqx_get(emqx, "/connectors")
    assert [(c["name"], c["url"]) for c in connectors] == [("ingest", INGEST_URL)]
    assert sorted(a["name"] for a in emqx_get(emqx, "/actions")) == ["tenant-hospital-x", "tenant-uberlandia-medical-center"]
    rules = {r["id"]: r["sql"] for r in emqx_get(emqx, "/rules")["data"]}
    assert rules["tenant-hospital-x"] == 'SELECT id, clientid, username, topic, payload, qos, publish_received_at, timestamp FROM "tenants/hx/#"'

    # `pulumi refresh`: every dynamic resource reads back as it was created.
    for _type, name, provider, id_, outs in engine.created:
        assert provider.read(id_, outs).id == id_, name


def test_external_endpoints_devices_added_with_the_cli_connect_through_what_the_stack_configured(
    timescaledb, emqx, engine, tmp_path
):
    """The whole device path as deployed: the CLI adds devices through deviceManagerDsn; the
    broker (the double, standing in for EMQX 5.8) checks them with the authenticator and source the
    stack created, logging in to the real database as the stack's telemetry_emqx_auth role."""
    run = deploy(engine, external_config(timescaledb, emqx))
    assert run.error is None and engine.failed is None, run.error or engine.failed
    credentials = tmp_path / "devices.csv"
    assert devices_cli.main(["add", "hx-sensor-1", "hx-sensor-2", "--tenant", "hospital-x",
                             "--dsn", run.outputs["deviceManagerDsn"], "--credentials-file", str(credentials)]) == 0
    passwords = {c.device_id: c.password for c in read_credentials(credentials)}
    assert emqx.mqtt_connect("hx-sensor-1", "hx-sensor-1", passwords["hx-sensor-1"]).accepted
    assert emqx.authorize("hx-sensor-1", "publish", "tenants/hx/hx-sensor-1/telemetry") == "allow"
    # Another device's client id, with valid credentials of its own: refused, the victim stays.
    takeover = emqx.mqtt_connect("hx-sensor-1", "hx-sensor-2", passwords["hx-sensor-2"])
    assert takeover.reason == "not_authorized" and emqx.connected("hx-sensor-1")
    assert emqx.mqtt_connect("hx-sensor-2", "hx-sensor-2", "wrong-password").reason == "bad_username_or_password"
    # Another tenant's topics: denied, and the device is disconnected (deny_action).
    assert emqx.authorize("hx-sensor-1", "publish", "tenants/umc/x/telemetry") == "deny"
    assert not emqx.connected("hx-sensor-1")


def test_external_endpoints_wrong_broker_secret_fails_with_the_resource_and_reason(timescaledb, emqx, engine):
    deploy(engine, external_config(timescaledb, emqx, api_secret="not-the-secret-0000"))
    assert isinstance(engine.failed, EmqxApiError), engine.failed
    message = str(engine.failed)
    assert "EMQX rejected the API key" in message and "401" in message and emqx.url in message
    assert "telemetry:emqx.external.apiKey" in message
    assert "not-the-secret-0000" not in message
