"""The EMQX API double keeps to the documented contract (reference/emqx-api.md), one behaviour per test:
the types, durations and shapes EMQX's schema enforces, and what is redacted and what is not."""

from __future__ import annotations

from typing import Any

import pytest

from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.server import EmqxDouble
from tests.providers.emqx_double_helpers import (
    ACTION,
    AUTHZ_USERS,
    CONNECTOR,
    RULE,
    call,
    code,
    with_connector_and_action,
)

# ---- types, durations and shapes EMQX's schema enforces --------------------------------------


@pytest.mark.parametrize("path,body", [
    ("/connectors", {**CONNECTOR, "pool_size": 8.0}),  # what a Pulumi number looks like unconverted
    ("/connectors", {**CONNECTOR, "enable_pipelining": True}),
    ("/authorization/sources", {"type": "built_in_database", "enable": True, "max_rules": 100.0}),
])
def test_integer_fields_refuse_floats_and_booleans(emqx: EmqxDouble, path: str, body: dict[str, Any]) -> None:
    response = call(emqx, "POST", path, body)
    assert response.status_code == 400 and code(response) == "BAD_REQUEST"
    assert emqx.count("connectors") == 0 and emqx.count("authz_sources") == 1


def test_action_integer_and_duration_fields_are_checked(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/connectors", CONNECTOR)
    for opts in ({"inflight_window": 100.0}, {"worker_pool_size": 2000}, {"request_ttl": "45 s"},
                 {"request_ttl": 45.0}):
        assert call(emqx, "POST", "/actions", {**ACTION, "resource_opts": opts}).status_code == 400, opts
    assert emqx.count("actions") == 0
    ok = {"inflight_window": 100, "worker_pool_size": 16, "request_ttl": "infinity"}
    assert call(emqx, "POST", "/actions", {**ACTION, "resource_opts": ok}).status_code == 201


@pytest.mark.parametrize("value", ["5 s", "5sec", 5.0, ""])
def test_connector_durations_are_checked(emqx: EmqxDouble, value: Any) -> None:
    assert call(emqx, "POST", "/connectors", {**CONNECTOR, "connect_timeout": value}).status_code == 400
    assert call(emqx, "POST", "/connectors", {**CONNECTOR, "connect_timeout": "1m30s"}).status_code == 201


def test_settings_cache_fields_are_typed(emqx: EmqxDouble) -> None:
    full = {"no_match": "deny", "deny_action": "disconnect"}
    for cache in ({"max_size": 32.0}, {"ttl": "1 minute"}, {"excludes": "t/#"}, {"enable": "yes"}):
        assert call(emqx, "PUT", "/authorization/settings", {**full, "cache": cache}).status_code == 400, cache
    good = {"enable": True, "max_size": 32, "ttl": "1m", "excludes": ["$SYS/#"]}
    assert call(emqx, "PUT", "/authorization/settings", {**full, "cache": good}).json()["cache"] == good


def test_authz_rule_qos_and_retain_are_typed(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/authorization/sources", {"type": "built_in_database"})
    base = {"topic": "t", "permission": "allow", "action": "publish"}
    for extra in ({"qos": [0.0, 1.0]}, {"qos": [True]}, {"retain": 1}):
        body = {"username": "dev1", "rules": [{**base, **extra}]}
        assert call(emqx, "PUT", f"{AUTHZ_USERS}/dev1", body).status_code == 400, extra
    assert emqx.count("authz_user_rules") == 0


def test_file_source_is_read_and_written_as_rules_text_without_path(emqx: EmqxDouble) -> None:
    got = call(emqx, "GET", "/authorization/sources/file").json()
    assert set(got) == {"type", "enable", "rules"} and "{allow, all}" in got["rules"]
    listed = call(emqx, "GET", "/authorization/sources").json()["sources"]
    assert listed == [got]
    path = "/authorization/sources/file"
    assert call(emqx, "PUT", path, {**got, "path": "/opt/emqx/etc/acl.conf"}).status_code == 400
    assert call(emqx, "PUT", path, {"type": "file", "enable": False}).status_code == 400  # rules required
    assert call(emqx, "PUT", path, {**got, "enable": False}).status_code == 204


def test_action_get_carries_created_at_and_a_put_without_it_resets_it(emqx: EmqxDouble) -> None:
    with_connector_and_action(emqx)
    got = call(emqx, "GET", "/actions/http:tenant_a").json()
    assert isinstance(got["created_at"], int) and isinstance(got["last_modified_at"], int)
    put_body = {k: v for k, v in ACTION.items() if k not in ("type", "name")}
    with emqx.state() as state:
        state.actions["tenant_a"]["created_at"] = 1
    assert call(emqx, "PUT", "/actions/http:tenant_a", {**put_body, "created_at": 1}).status_code == 200
    assert call(emqx, "GET", "/actions/http:tenant_a").json()["created_at"] == 1
    assert call(emqx, "PUT", "/actions/http:tenant_a", put_body).status_code == 200
    assert call(emqx, "GET", "/actions/http:tenant_a").json()["created_at"] > 1


def test_only_authorization_headers_are_redacted_inside_headers(emqx: EmqxDouble) -> None:
    headers = {"Authorization": "Bearer s3cr3t", " Proxy-Authorization": "Basic x", "token": "visible",
               "X-Tenant": "a"}
    call(emqx, "POST", "/connectors", {**CONNECTOR, "headers": headers})
    got = call(emqx, "GET", "/connectors/http:ingest").json()["headers"]
    assert got == {"Authorization": "******", " Proxy-Authorization": "******", "token": "visible", "X-Tenant": "a"}


def test_a_single_placeholder_is_not_redacted(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/connectors", {**CONNECTOR, "headers": {"authorization": "${auth}"}})
    assert call(emqx, "GET", "/connectors/http:ingest").json()["headers"] == {"authorization": "${auth}"}


def test_stars_under_an_ordinary_key_are_taken_literally(emqx: EmqxDouble) -> None:
    with_connector_and_action(emqx)
    put_body = {k: v for k, v in ACTION.items() if k not in ("type", "name")}
    put_body = {**put_body, "parameters": {**put_body["parameters"], "path": "******",
                                          "headers": {"X-Tenant": "a", "Authorization": "******"}}}
    assert call(emqx, "PUT", "/actions/http:tenant_a", put_body).status_code == 200
    with emqx.state() as state:
        parameters = state.actions["tenant_a"]["parameters"]
        assert parameters["path"] == "******" and parameters["headers"]["Authorization"] == "Bearer tok-a-123"


@pytest.mark.parametrize("field,value", [("enable", "yes"), ("description", 7), ("name", None)])
def test_rule_fields_are_typed_by_the_config_check(emqx: EmqxDouble, field: str, value: Any) -> None:
    response = call(emqx, "POST", "/rules", {**RULE, field: value})
    assert response.status_code == 400 and "Bad Arguments" in response.json()["message"]
    assert emqx.count("rules") == 0


def test_authz_user_rules_post_needs_a_username(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/authorization/sources", {"type": "built_in_database"})
    rules = [{"topic": "t", "permission": "allow", "action": "publish"}]
    assert call(emqx, "POST", AUTHZ_USERS, [{"rules": rules}]).status_code == 400
    assert emqx.count("authz_user_rules") == 0

