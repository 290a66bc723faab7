"""The EMQX double's PostgreSQL authenticator and source keep to EMQX 5.8.9's and 6.2.2's contract.

What each test pins is cited in tests/emqx_double/postgres.py and authn.py (reference 14.1,
14.2); these are the strictness checks the providers are tested against.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.fixtures import API_KEY, API_SECRET
from tests.emqx_double.server import EmqxDouble
from tests.pg_server import SUPERUSER, SUPERUSER_PASSWORD

AUTHN = {"mechanism": "password_based", "backend": "postgresql", "server": "db:5432", "database": "telemetry",
         "username": "emqx", "password": "s3cret-db-password", "query": "SELECT password_hash FROM t WHERE u = ${username}",
         "password_hash_algorithm": {"name": "sha256", "salt_position": "suffix"}}
SOURCE = {"type": "postgresql", "server": "db:5432", "database": "telemetry", "username": "emqx",
          "password": "s3cret-db-password", "query": "SELECT permission, action, topic FROM acl WHERE u = ${username}"}
ID = "password_based:postgresql"


@pytest.fixture(params=["5.8", "6.x"])
def either(request: pytest.FixtureRequest) -> Any:
    double = EmqxDouble(api_key=API_KEY, api_secret=API_SECRET, version=request.param).start()
    yield double
    double.stop()


def call(double: EmqxDouble, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{double.url}/api/v5{path}", json=body, auth=(API_KEY, API_SECRET), timeout=5)


def reason(response: requests.Response) -> str:
    return response.json()["message"]


def test_authenticator_post_answers_the_password_in_clear_on_5_8_only(either: EmqxDouble) -> None:
    answer = call(either, "POST", "/authentication", AUTHN)
    assert answer.status_code == 200 and answer.json()["id"] == ID
    assert answer.json()["password"] == ("s3cret-db-password" if either.version == "5.8" else "******")
    shown = call(either, "GET", f"/authentication/{ID}").json()
    assert shown["password"] == "******" and shown["pool_size"] == 8 and shown["ssl"]["enable"] is False
    assert call(either, "GET", "/authentication").json()[0]["password"] == "******"
    assert call(either, "POST", "/authentication", AUTHN).status_code == 409


@pytest.mark.parametrize("missing", ["server", "database", "username", "query"])
def test_authenticator_required_fields(either: EmqxDouble, missing: str) -> None:
    body = {key: value for key, value in AUTHN.items() if key != missing}
    answer = call(either, "POST", "/authentication", body)
    assert answer.status_code == 400 and missing in reason(answer)


def test_authenticator_fields_differ_by_version(either: EmqxDouble) -> None:
    for extra in ({"connect_timeout": "5s"}, {"precondition": ""}):
        answer = call(either, "POST", "/authentication", {**AUTHN, **extra})
        assert answer.status_code == (200 if either.version == "6.x" else 400), extra
        call(either, "DELETE", f"/authentication/{ID}")
    for bad in ({"pool_size": 8.0}, {"server": "db:5432/x"}, {"database": ""}, {"unknown": 1},
                {"password_hash_algorithm": {"name": "bcrypt", "salt_rounds": 10}},
                {"ssl": {"enable": True, "verify": "sometimes"}}):
        assert call(either, "POST", "/authentication", {**AUTHN, **bad}).status_code == 400, bad


def test_authenticator_put_with_the_redacted_password_keeps_the_stored_one(either: EmqxDouble) -> None:
    call(either, "POST", "/authentication", AUTHN)
    assert call(either, "PUT", f"/authentication/{ID}", {**AUTHN, "password": "******", "pool_size": 2}).status_code == 204
    with either.state() as state:
        assert state.authenticators[ID]["password"] == "s3cret-db-password"
        assert state.authenticators[ID]["pool_size"] == 2
    answer = call(either, "PUT", f"/authentication/{ID}", {**AUTHN, "backend": "built_in_database"})
    assert answer.status_code == 400 and "Change of authentication type" in reason(answer)


def test_status_reports_what_emqx_reaches(either: EmqxDouble, postgres_server) -> None:
    call(either, "POST", "/authentication", {**AUTHN, "server": "127.0.0.1:1"})
    status = call(either, "GET", f"/authentication/{ID}/status").json()
    assert status["status"] == "disconnected" and status["node_status"][0]["status"] == "disconnected"
    host_port = f"127.0.0.1:{postgres_server.port}"
    call(either, "PUT", f"/authentication/{ID}", {**AUTHN, "server": host_port, "username": SUPERUSER,
                                                   "password": SUPERUSER_PASSWORD, "database": "postgres"})
    assert call(either, "GET", f"/authentication/{ID}/status").json()["status"] == "connected"
    assert call(either, "GET", "/authentication/password_based:nothing/status").status_code == 404


def test_chain_order_and_position(either: EmqxDouble) -> None:
    call(either, "POST", "/authentication", {"mechanism": "password_based", "backend": "built_in_database"})
    call(either, "POST", "/authentication", AUTHN)  # appended
    assert [a["id"] for a in call(either, "GET", "/authentication").json()] == [
        "password_based:built_in_database", ID]
    assert call(either, "PUT", f"/authentication/{ID}/position/front").status_code == 204
    assert [a["id"] for a in call(either, "GET", "/authentication").json()][0] == ID
    assert call(either, "PUT", f"/authentication/{ID}/position/after:password_based:built_in_database").status_code == 204
    assert [a["id"] for a in call(either, "GET", "/authentication").json()][-1] == ID
    assert call(either, "PUT", f"/authentication/{ID}/position/sideways").status_code == 400


def test_authn_settings_and_node_cache_exist_on_6x_only(either: EmqxDouble) -> None:
    if either.version == "5.8":
        assert call(either, "GET", "/authentication/settings").status_code == 404
        assert call(either, "POST", "/authentication/node_cache/reset").status_code == 404
        return
    settings = call(either, "GET", "/authentication/settings").json()
    assert settings["node_cache"]["enable"] is True and settings["node_cache"]["cache_ttl"] == "1m"
    assert call(either, "PUT", "/authentication/settings", {"node_cache": {"enable": True, "cache_ttl": "5s"}}
                ).status_code == 204
    # The whole root is replaced: what was left out is back to its default.
    settings = call(either, "GET", "/authentication/settings").json()
    assert settings["node_cache"]["cache_ttl"] == "5s" and settings["ignore_backend_failures"] is False
    assert call(either, "PUT", "/authentication/settings", {"node_cache": {"ttl": "5s"}}).status_code == 400
    assert call(either, "POST", "/authentication/node_cache/reset").status_code == 204


def test_source_is_validated_redacted_and_keeps_its_password_on_put(either: EmqxDouble) -> None:
    assert call(either, "POST", "/authorization/sources", {**SOURCE, "query": ""}).status_code == 400
    assert call(either, "POST", "/authorization/sources", {k: v for k, v in SOURCE.items() if k != "server"}
                ).status_code == 400
    extra = call(either, "POST", "/authorization/sources", {**SOURCE, "connect_timeout": "5s"})
    assert extra.status_code == (204 if either.version == "6.x" else 400)
    if extra.status_code == 204:
        call(either, "DELETE", "/authorization/sources/postgresql")
    assert call(either, "POST", "/authorization/sources", SOURCE).status_code == 204
    shown = call(either, "GET", "/authorization/sources/postgresql").json()
    assert shown["password"] == "******" and shown["enable"] is True
    assert call(either, "PUT", "/authorization/sources/postgresql", {**shown, "pool_size": 3}).status_code == 204
    with either.state() as state:
        assert state.authz_source("postgresql")["password"] == "s3cret-db-password"
    assert call(either, "GET", "/authorization/sources/postgresql/status").json()["status"] == "disconnected"
