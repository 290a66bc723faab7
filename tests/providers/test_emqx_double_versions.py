"""The EMQX API double keeps to the documented contract (reference/emqx-api.md), one behaviour per test:
issue 11's enable endpoints, metrics, rule tables and caches, and the 6.x differences, mostly on both
the 5.8 and the 6.x double (the `either` fixture)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.fixtures import API_KEY, API_SECRET
from tests.emqx_double.server import EmqxDouble
from tests.providers.emqx_double_helpers import (
    ACTION,
    CONNECTOR,
    RULE,
    call,
    with_connector_and_action,
)

# ---- issue 11: enable endpoints, metrics, rule tables, caches, 6.x differences -----------------


@pytest.fixture(params=["5.8", "6.x"])
def either(request: pytest.FixtureRequest):
    double = EmqxDouble(api_key=API_KEY, api_secret=API_SECRET, version=request.param).start()
    yield double
    double.stop()


def test_enable_endpoints_write_enable_false_into_the_config(either: EmqxDouble) -> None:
    with_connector_and_action(either)
    assert call(either, "PUT", "/actions/http:tenant_a/enable/false").status_code == 204
    action = call(either, "GET", "/actions/http:tenant_a").json()
    assert action["enable"] is False and action["status"] == "disconnected"
    assert call(either, "PUT", "/connectors/http:ingest/enable/false").status_code == 204
    assert call(either, "GET", "/connectors/http:ingest").json()["enable"] is False
    assert call(either, "PUT", "/actions/http:nope/enable/true").status_code == 404
    assert call(either, "PUT", "/actions/http:tenant_a/enable/maybe").status_code == 400


def test_action_metrics_have_the_versions_key_set_and_reset_on_update(either: EmqxDouble) -> None:
    with_connector_and_action(either)
    keys = set(call(either, "GET", "/actions/http:tenant_a/metrics").json()["metrics"])
    assert {"dropped.expired", "dropped.queue_full", "queuing", "inflight", "retried", "late_reply"} <= keys
    assert ("aggregated_upload.success" in keys) is (either.version == "6.x")
    either.bump_action_metrics("tenant_a", dropped__expired=2, dropped__queue_full=1)
    body = call(either, "GET", "/actions/http:tenant_a/metrics").json()
    assert body["metrics"]["dropped"] == 3 and body["node_metrics"][0]["metrics"]["dropped"] == 3
    update = {k: v for k, v in ACTION.items() if k not in ("type", "name")}
    assert call(either, "PUT", "/actions/http:tenant_a", update).status_code == 200  # uninstall + install
    assert call(either, "GET", "/actions/http:tenant_a/metrics").json()["metrics"]["dropped"] == 0


def test_rule_metrics_and_reset(either: EmqxDouble) -> None:
    with_connector_and_action(either)
    assert call(either, "POST", "/rules", RULE).status_code == 201
    either.bump_rule_metrics("tenant_a", matched=3, actions__discarded=1)
    body = call(either, "GET", "/rules/tenant_a/metrics").json()
    assert body["id"] == "tenant_a" and body["metrics"]["actions.discarded"] == 1
    assert call(either, "PUT", "/rules/tenant_a/metrics/reset").status_code == 204
    assert call(either, "GET", "/rules/tenant_a/metrics").json()["metrics"]["matched"] == 0
    assert call(either, "GET", "/rules/nope/metrics").status_code == 404


def test_all_and_clients_rule_tables(either: EmqxDouble) -> None:
    assert call(either, "POST", "/authorization/sources", {"type": "built_in_database"}).status_code == 204
    base = "/authorization/sources/built_in_database/rules"
    rule = [{"topic": "#", "permission": "allow", "action": "all"}]
    assert call(either, "GET", f"{base}/all").json() == {"rules": []}
    assert call(either, "POST", f"{base}/all", {"rules": rule}).status_code == 204
    assert call(either, "GET", f"{base}/all").json()["rules"][0]["retain"] == "all"
    assert call(either, "POST", f"{base}/clients", [{"clientid": "c1", "rules": rule}]).status_code == 204
    assert call(either, "POST", f"{base}/clients", [{"clientid": "c1", "rules": rule}]).status_code == 409
    assert call(either, "GET", f"{base}/clients").json()["data"][0]["clientid"] == "c1"
    assert call(either, "DELETE", base).status_code == 400  # purge needs the source disabled
    assert call(either, "DELETE", f"{base}/all").status_code == 204
    assert call(either, "DELETE", f"{base}/clients/c1").status_code == 204
    assert call(either, "DELETE", f"{base}/clients/c1").status_code == 404


def test_node_cache_exists_on_6x_only(either: EmqxDouble) -> None:
    expected = 200 if either.version == "6.x" else 404
    assert call(either, "GET", "/authorization/node_cache").status_code == expected
    assert call(either, "POST", "/authorization/node_cache/reset").status_code == (204 if expected == 200 else 404)
    assert call(either, "DELETE", "/authorization/cache").status_code == 204


def test_sources_can_be_moved_and_a_move_drains_the_cache(either: EmqxDouble) -> None:
    assert call(either, "POST", "/authorization/sources", {"type": "built_in_database"}).status_code == 204
    either.connect("c1", "u1")
    assert either.authorize("c1", "publish", "t/1") == "allow"  # the file source's {allow, all}
    with either.state() as state:
        state.authz_source("file")["enable"] = False  # no drain: written straight into the state
        state.authz_settings["no_match"] = "deny"
    assert either.authorize("c1", "publish", "t/1") == "allow"  # still cached
    body = {"position": "after:file"}
    assert call(either, "POST", "/authorization/sources/built_in_database/move", body).status_code == 204
    assert [s["type"] for s in call(either, "GET", "/authorization/sources").json()["sources"]] == [
        "file", "built_in_database"]
    assert either.authorize("c1", "publish", "t/1") == "deny"


def test_client_cache_endpoints(either: EmqxDouble) -> None:
    either.connect("c1", "u1")
    either.authorize("c1", "publish", "t/1")
    assert call(either, "GET", "/clients/c1/authorization/cache").json()[0]["topic"] == "t/1"
    assert call(either, "DELETE", "/clients/c1/authorization/cache").status_code == 204
    assert call(either, "GET", "/clients/c1/authorization/cache").json() == []
    assert call(either, "GET", "/clients/nobody/authorization/cache").json()["code"] == "CLIENTID_NOT_FOUND"


def test_6x_settings_carry_the_extra_fields_and_5_8_refuses_them(either: EmqxDouble) -> None:
    settings = call(either, "GET", "/authorization/settings").json()
    body = {"no_match": "deny", "deny_action": "ignore", "cache": {"enable": True},
            "include_mountpoint": False, "ignore_backend_failures": True}
    answer = call(either, "PUT", "/authorization/settings", body)
    if either.version == "6.x":
        assert settings["include_mountpoint"] is False and answer.status_code == 200
        assert answer.json()["ignore_backend_failures"] is True
    else:
        assert "include_mountpoint" not in settings and answer.status_code == 400


@pytest.mark.parametrize("field,value", [("max_buffer_bytes", "lots"), ("buffer_mode", "disk"),
                                         ("request_ttl", "15 minutes")])
def test_action_buffer_options_are_typed(emqx: EmqxDouble, field: str, value: Any) -> None:
    call(emqx, "POST", "/connectors", CONNECTOR)
    body = {**ACTION, "resource_opts": {field: value}}
    assert call(emqx, "POST", "/actions", body).status_code == 400


def test_6x_only_resource_opts_are_unknown_on_5_8(either: EmqxDouble) -> None:
    call(either, "POST", "/connectors", CONNECTOR)
    body = {**ACTION, "resource_opts": {"dispatch_strategy": "random"}}
    assert call(either, "POST", "/actions", body).status_code == (201 if either.version == "6.x" else 400)

