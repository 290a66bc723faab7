"""The EMQX API double keeps to the documented contract (reference/emqx-api.md), one behaviour per test."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.fixtures import API_KEY, API_SECRET
from tests.emqx_double.server import EmqxDouble

AUTH = (API_KEY, API_SECRET)
USERS = "/authentication/password_based:built_in_database/users"
AUTHZ_USERS = "/authorization/sources/built_in_database/rules/users"
CONNECTOR = {"type": "http", "name": "ingest", "url": "http://ingest:8000"}
ACTION = {"type": "http", "name": "tenant_a", "connector": "ingest",
          "parameters": {"path": "/ingest", "method": "post", "body": "${.}",
                         "headers": {"X-Tenant": "a", "Authorization": "Bearer tok-a-123"}}}
RULE = {"id": "tenant_a", "sql": 'SELECT * FROM "tenants/a/#"', "actions": ["http:tenant_a"]}
AUTHENTICATOR = {"mechanism": "password_based", "backend": "built_in_database", "user_id_type": "username",
                 "password_hash_algorithm": {"name": "sha256", "salt_position": "suffix"}}


def call(double: EmqxDouble, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("auth", AUTH)
    if body is not None:
        kwargs["json"] = body
    return requests.request(method, f"{double.url}/api/v5{path}", timeout=5, **kwargs)


def code(response: requests.Response) -> str:
    return response.json()["code"]


def with_connector_and_action(double: EmqxDouble) -> None:
    assert call(double, "POST", "/connectors", CONNECTOR).status_code == 201
    assert call(double, "POST", "/actions", ACTION).status_code == 201


# ---- authentication and status ----------------------------------------------------------


def test_missing_authorization_header_is_401_header_error(emqx: EmqxDouble) -> None:
    response = call(emqx, "GET", "/connectors", auth=None)
    assert response.status_code == 401 and code(response) == "AUTHORIZATION_HEADER_ERROR"
    assert "WWW-Authenticate" in response.headers


def test_wrong_secret_is_401_bad_api_key_with_www_authenticate(emqx: EmqxDouble) -> None:
    response = call(emqx, "GET", "/connectors", auth=(API_KEY, "wrong"))
    assert response.status_code == 401 and code(response) == "BAD_API_KEY_OR_SECRET"
    assert response.headers["WWW-Authenticate"] == 'Basic Realm="emqx-dashboard"'


def test_bearer_tokens_are_not_issued_by_the_double(emqx: EmqxDouble) -> None:
    response = call(emqx, "GET", "/rules", auth=None, headers={"Authorization": "Bearer abc"})
    assert response.status_code == 401 and code(response) == "BAD_TOKEN"


def test_status_needs_no_auth_and_sends_retry_after(emqx: EmqxDouble) -> None:
    response = requests.get(f"{emqx.url}/api/v5/status", timeout=5)
    assert response.status_code == 200 and "is running" in response.text
    assert response.headers["retry-after"] == "15"
    assert requests.get(f"{emqx.url}/status?format=json", timeout=5).json()["rel_vsn"] == "v5.8.9"


def test_status_answers_503_for_the_first_n_calls(emqx: EmqxDouble) -> None:
    emqx.answer_not_ready(calls=2)
    statuses = [requests.get(f"{emqx.url}/api/v5/status", timeout=5).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_status_answers_503_until_flipped(emqx: EmqxDouble) -> None:
    emqx.answer_not_ready()
    assert requests.get(f"{emqx.url}/api/v5/status", timeout=5).status_code == 503
    emqx.set_ready()
    assert requests.get(f"{emqx.url}/api/v5/status", timeout=5).status_code == 200


# ---- bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/connectors", "/actions", "/rules", "/authentication", USERS,
                                  "/authorization/sources", "/authorization/settings"])
def test_non_json_body_is_415(emqx: EmqxDouble, path: str) -> None:
    method = "PUT" if path == "/authorization/settings" else "POST"
    response = call(emqx, method, path, data=json.dumps({"x": 1}), headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and code(response) == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize("path,body", [
    ("/connectors", {**CONNECTOR, "max_retries": 3}),
    ("/authentication", {**AUTHENTICATOR, "salt": "x"}),
    ("/authorization/sources", {"type": "built_in_database", "enable": True, "rules": []}),
])
def test_unknown_fields_are_400_with_json_message(emqx: EmqxDouble, path: str, body: dict[str, Any]) -> None:
    response = call(emqx, "POST", path, body)
    assert response.status_code == 400 and code(response) == "BAD_REQUEST"
    assert json.loads(response.json()["message"])["reason"] == "unknown_fields"


def test_action_with_batch_size_is_400(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/connectors", CONNECTOR)
    response = call(emqx, "POST", "/actions", {**ACTION, "resource_opts": {"batch_size": 10}})
    assert response.status_code == 400


def test_path_segments_are_url_decoded(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/authentication", AUTHENTICATOR)
    call(emqx, "POST", USERS, {"user_id": "a/b c", "password": "pw-123456"})
    assert call(emqx, "GET", f"{USERS}/a%2Fb%20c").json()["user_id"] == "a/b c"
    assert call(emqx, "GET", "/authentication/password_based%3Abuilt_in_database").status_code == 200


# ---- connectors -------------------------------------------------------------------------


def test_connector_create_fills_defaults_and_get_redacts_authorization(emqx: EmqxDouble) -> None:
    body = {**CONNECTOR, "headers": {"authorization": "Bearer s3cr3t"}}
    assert call(emqx, "POST", "/connectors", body).status_code == 201
    got = call(emqx, "GET", "/connectors/http:ingest").json()
    assert got["headers"] == {"authorization": "******"} and got["pool_size"] == 8
    assert got["type"] == "http" and got["name"] == "ingest" and got["status"] == "connected"


def test_duplicate_connector_is_400_already_exists(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/connectors", CONNECTOR)
    response = call(emqx, "POST", "/connectors", CONNECTOR)
    assert response.status_code == 400 and code(response) == "ALREADY_EXISTS"


def test_connector_put_with_type_or_name_is_400(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/connectors", CONNECTOR)
    assert call(emqx, "PUT", "/connectors/http:ingest", {"url": "http://x:1", "type": "http"}).status_code == 400
    assert call(emqx, "PUT", "/connectors/http:ingest", {"url": "http://x:1", "name": "ingest"}).status_code == 400
    assert call(emqx, "PUT", "/connectors/http:ingest", {"url": "http://x:1"}).status_code == 200


def test_connector_put_on_missing_is_404(emqx: EmqxDouble) -> None:
    assert call(emqx, "PUT", "/connectors/http:nope", {"url": "http://x:1"}).status_code == 404


def test_redacted_value_in_put_keeps_the_stored_secret(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/connectors", {**CONNECTOR, "headers": {"authorization": "Bearer keep-me"}})
    call(emqx, "PUT", "/connectors/http:ingest", {"url": "http://x:1", "headers": {"authorization": "******"}})
    with emqx.state() as state:
        assert state.connectors["ingest"]["headers"]["authorization"] == "Bearer keep-me"


def test_connector_in_use_cannot_be_deleted(emqx: EmqxDouble) -> None:
    with_connector_and_action(emqx)
    response = call(emqx, "DELETE", "/connectors/http:ingest")
    assert response.status_code == 400 and "active channels" in response.json()["message"]
    assert emqx.count("connectors") == 1


def test_delete_missing_connector_is_404_and_lists_are_plain_arrays(emqx: EmqxDouble) -> None:
    assert call(emqx, "DELETE", "/connectors/http:nope").status_code == 404
    call(emqx, "POST", "/connectors", CONNECTOR)
    assert [c["name"] for c in call(emqx, "GET", "/connectors").json()] == ["ingest"]


# ---- actions ----------------------------------------------------------------------------


def test_action_needs_an_existing_connector(emqx: EmqxDouble) -> None:
    response = call(emqx, "POST", "/actions", ACTION)
    assert response.status_code == 400
    assert json.loads(response.json()["message"])["reason"] == "connector_not_found_or_wrong_type"


def test_action_get_redacts_authorization_header(emqx: EmqxDouble) -> None:
    with_connector_and_action(emqx)
    headers = call(emqx, "GET", "/actions/http:tenant_a").json()["parameters"]["headers"]
    assert headers == {"X-Tenant": "a", "Authorization": "******"}


def test_duplicate_action_is_400_already_exists_and_put_missing_is_404(emqx: EmqxDouble) -> None:
    with_connector_and_action(emqx)
    assert code(call(emqx, "POST", "/actions", ACTION)) == "ALREADY_EXISTS"
    put_body = {k: v for k, v in ACTION.items() if k not in ("type", "name")}
    assert call(emqx, "PUT", "/actions/http:other", put_body).status_code == 404
    assert call(emqx, "PUT", "/actions/http:tenant_a", {**put_body, "name": "tenant_a"}).status_code == 400


def test_action_referenced_by_a_rule_cannot_be_deleted(emqx: EmqxDouble) -> None:
    with_connector_and_action(emqx)
    call(emqx, "POST", "/rules", RULE)
    response = call(emqx, "DELETE", "/actions/http:tenant_a")
    assert response.status_code == 400 and response.json()["rules"] == ["tenant_a"]
    assert emqx.count("actions") == 1


def test_also_delete_dep_actions_removes_the_reference_and_keeps_the_rule(emqx: EmqxDouble) -> None:
    with_connector_and_action(emqx)
    call(emqx, "POST", "/rules", RULE)
    assert call(emqx, "DELETE", "/actions/http:tenant_a?also_delete_dep_actions=true").status_code == 204
    assert call(emqx, "GET", "/rules/tenant_a").json()["actions"] == []


# ---- rules ------------------------------------------------------------------------------


def test_rule_create_and_get_shape(emqx: EmqxDouble) -> None:
    created = call(emqx, "POST", "/rules", RULE)
    assert created.status_code == 201
    got = call(emqx, "GET", "/rules/tenant_a").json()
    assert got["from"] == ["tenants/a/#"] and got["enable"] is True and "created_at" in got


def test_duplicate_rule_id_is_400_bad_request(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/rules", RULE)
    response = call(emqx, "POST", "/rules", RULE)
    assert response.status_code == 400 and code(response) == "BAD_REQUEST"
    assert "rule id already exists" in response.json()["message"]


@pytest.mark.parametrize("field", ["from", "created_at", "action_details", "metadata"])
def test_rule_body_with_get_only_fields_is_400(emqx: EmqxDouble, field: str) -> None:
    call(emqx, "POST", "/rules", RULE)
    got = call(emqx, "GET", "/rules/tenant_a").json()
    body = {"sql": RULE["sql"], field: got.get(field, {})}
    assert call(emqx, "PUT", "/rules/tenant_a", body).status_code == 400


def test_rule_without_from_is_400_and_webhook_ids_are_normalised(emqx: EmqxDouble) -> None:
    assert call(emqx, "POST", "/rules", {"id": "x", "sql": "SELECT 1"}).status_code == 400
    created = call(emqx, "POST", "/rules", {**RULE, "actions": ["webhook:tenant_a"]}).json()
    assert created["actions"] == ["http:tenant_a"]


def test_rule_put_in_5_8_is_an_upsert_that_replaces(emqx: EmqxDouble) -> None:
    assert call(emqx, "PUT", "/rules/new", {"sql": RULE["sql"], "actions": ["http:x"]}).status_code == 200
    call(emqx, "PUT", "/rules/new", {"sql": RULE["sql"], "description": "d"})
    assert call(emqx, "GET", "/rules/new").json()["actions"] == []  # omitted -> default


def test_rule_put_in_6x_is_404_when_missing_and_merges(emqx_6x: EmqxDouble) -> None:
    assert call(emqx_6x, "PUT", "/rules/new", {"sql": RULE["sql"]}).status_code == 404
    call(emqx_6x, "POST", "/rules", RULE)
    call(emqx_6x, "PUT", "/rules/tenant_a", {"description": "d"})
    assert call(emqx_6x, "GET", "/rules/tenant_a").json()["actions"] == ["http:tenant_a"]


def test_rules_list_is_paginated_in_descending_order(emqx: EmqxDouble) -> None:
    for rule_id in ("a", "b", "c"):
        call(emqx, "POST", "/rules", {**RULE, "id": rule_id})
    page = call(emqx, "GET", "/rules?limit=2").json()
    assert [r["id"] for r in page["data"]] == ["c", "b"] and page["meta"]["hasnext"] is True
    assert call(emqx, "GET", "/rules?page=0").status_code == 400


def test_deleting_a_missing_rule_is_404(emqx: EmqxDouble) -> None:
    assert call(emqx, "DELETE", "/rules/nope").status_code == 404


# ---- authentication ---------------------------------------------------------------------


def test_authenticator_create_is_200_and_duplicate_409(emqx: EmqxDouble) -> None:
    created = call(emqx, "POST", "/authentication", AUTHENTICATOR)
    assert created.status_code == 200 and created.json()["id"] == "password_based:built_in_database"
    duplicate = call(emqx, "POST", "/authentication", AUTHENTICATOR)
    assert duplicate.status_code == 409 and code(duplicate) == "ALREADY_EXISTS"
    assert isinstance(call(emqx, "GET", "/authentication").json(), list)


def test_authenticator_put_cannot_change_type_and_404_when_missing(emqx: EmqxDouble) -> None:
    path = "/authentication/password_based:built_in_database"
    assert call(emqx, "PUT", path, AUTHENTICATOR).status_code == 404
    call(emqx, "POST", "/authentication", AUTHENTICATOR)
    assert call(emqx, "PUT", path, {**AUTHENTICATOR, "backend": "http"}).status_code == 400
    assert call(emqx, "PUT", path, {**AUTHENTICATOR, "enable": False}).status_code == 204


def test_deleting_the_authenticator_erases_its_users(emqx: EmqxDouble) -> None:
    path = "/authentication/password_based:built_in_database"
    assert call(emqx, "DELETE", path).status_code == 404  # no global chain yet
    call(emqx, "POST", "/authentication", AUTHENTICATOR)
    call(emqx, "POST", USERS, {"user_id": "dev1", "password": "pw-123456"})
    assert call(emqx, "DELETE", path).status_code == 204
    assert emqx.count("authn_users") == 0
    assert call(emqx, "DELETE", path).status_code == 204  # idempotent once the chain exists


def test_duplicate_user_is_409_and_passwords_are_never_returned(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/authentication", AUTHENTICATOR)
    created = call(emqx, "POST", USERS, {"user_id": "dev1", "password": "pw-123456"})
    assert created.status_code == 201 and created.json() == {"user_id": "dev1", "is_superuser": False}
    assert call(emqx, "POST", USERS, {"user_id": "dev1", "password": "other"}).status_code == 409
    listed = call(emqx, "GET", USERS).json()
    assert listed["data"] == [{"user_id": "dev1", "is_superuser": False}] and "meta" in listed


def test_user_put_requires_password_and_is_404_when_missing(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/authentication", AUTHENTICATOR)
    assert call(emqx, "PUT", f"{USERS}/nope", {"password": "pw-123456"}).status_code == 404
    call(emqx, "POST", USERS, {"user_id": "dev1", "password": "pw-123456"})
    assert call(emqx, "PUT", f"{USERS}/dev1", {"is_superuser": True}).status_code == 400
    assert call(emqx, "PUT", f"{USERS}/dev1", {"password": "new", "user_id": "dev1"}).status_code == 400


def test_user_without_authenticator_is_400_once_the_chain_exists(emqx: EmqxDouble) -> None:
    body = {"user_id": "dev1", "password": "pw-123456"}
    assert call(emqx, "POST", USERS, body).status_code == 404
    call(emqx, "POST", "/authentication", AUTHENTICATOR)
    call(emqx, "DELETE", "/authentication/password_based:built_in_database")
    assert call(emqx, "POST", USERS, body).status_code == 400


# ---- authorization ----------------------------------------------------------------------


def test_default_sources_hold_only_the_file_source(emqx: EmqxDouble) -> None:
    sources = call(emqx, "GET", "/authorization/sources").json()["sources"]
    assert [(s["type"], s["enable"]) for s in sources] == [("file", True)]


def test_builtin_source_post_prepends_and_duplicate_is_400(emqx: EmqxDouble) -> None:
    body = {"type": "built_in_database", "enable": True, "max_rules": 10}
    assert call(emqx, "POST", "/authorization/sources", body).status_code == 204
    first = call(emqx, "GET", "/authorization/sources").json()["sources"][0]
    assert first["type"] == "built_in_database"
    duplicate = call(emqx, "POST", "/authorization/sources", body)
    assert duplicate.status_code == 400 and "duplicated_authz_source_type" in duplicate.json()["message"]


def test_source_put_needs_matching_type_and_unknown_type_is_400(emqx: EmqxDouble) -> None:
    assert call(emqx, "PUT", "/authorization/sources/file", {"enable": False}).status_code == 400
    assert call(emqx, "GET", "/authorization/sources/nosuch").status_code == 400
    assert call(emqx, "GET", "/authorization/sources/built_in_database").status_code == 404
    file_source = call(emqx, "GET", "/authorization/sources/file").json()
    assert call(emqx, "PUT", "/authorization/sources/file", {**file_source, "enable": False}).status_code == 204


def test_deleting_an_enabled_builtin_source_wipes_its_rules_but_a_disabled_one_keeps_them(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/authorization/sources", {"type": "built_in_database", "enable": False})
    with emqx.state() as state:
        state.authz_user_rules["dev1"] = [{"topic": "t", "permission": "allow", "action": "all"}]
    call(emqx, "DELETE", "/authorization/sources/built_in_database")
    assert emqx.count("authz_user_rules") == 1
    call(emqx, "POST", "/authorization/sources", {"type": "built_in_database", "enable": True})
    call(emqx, "DELETE", "/authorization/sources/built_in_database")
    assert emqx.count("authz_user_rules") == 0


def test_authz_user_rules_post_conflict_writes_nothing(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/authorization/sources", {"type": "built_in_database"})
    rules = [{"topic": "tenants/a/#", "permission": "allow", "action": "publish"}]
    assert call(emqx, "POST", AUTHZ_USERS, [{"username": "dev1", "rules": rules}]).status_code == 204
    both = [{"username": "dev2", "rules": rules}, {"username": "dev1", "rules": rules}]
    assert call(emqx, "POST", AUTHZ_USERS, both).status_code == 409
    assert emqx.count("authz_user_rules") == 1


def test_authz_user_rules_put_is_an_upsert_with_defaults_filled(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/authorization/sources", {"type": "built_in_database"})
    rules = [{"topic": "tenants/a/#", "permission": "allow", "action": "publish"}]
    assert call(emqx, "PUT", f"{AUTHZ_USERS}/dev1", {"username": "dev1", "rules": rules}).status_code == 204
    got = call(emqx, "GET", f"{AUTHZ_USERS}/dev1").json()
    assert got["rules"] == [{**rules[0], "qos": [0, 1, 2], "retain": "all"}]
    assert call(emqx, "PUT", f"{AUTHZ_USERS}/dev1", {"username": "other", "rules": rules}).status_code == 500
    assert call(emqx, "DELETE", f"{AUTHZ_USERS}/nope").status_code == 404


def test_authz_rules_need_the_builtin_source_and_a_valid_action(emqx: EmqxDouble) -> None:
    rules = [{"topic": "t", "permission": "allow", "action": "publish"}]
    assert call(emqx, "PUT", f"{AUTHZ_USERS}/dev1", {"username": "dev1", "rules": rules}).status_code == 404
    call(emqx, "POST", "/authorization/sources", {"type": "built_in_database", "max_rules": 1})
    bad = [{"topic": "t", "permission": "allow", "action": "pubsub"}]
    assert call(emqx, "PUT", f"{AUTHZ_USERS}/dev1", {"username": "dev1", "rules": bad}).status_code == 400
    assert call(emqx, "PUT", f"{AUTHZ_USERS}/dev1", {"username": "dev1", "rules": rules * 2}).status_code == 400


def test_settings_put_in_5_8_needs_all_three_keys(emqx: EmqxDouble) -> None:
    assert call(emqx, "GET", "/authorization/settings").json()["no_match"] == "allow"
    assert call(emqx, "PUT", "/authorization/settings", {"no_match": "deny"}).status_code == 500
    full = {"no_match": "deny", "deny_action": "disconnect", "cache": {"enable": True}}
    answer = call(emqx, "PUT", "/authorization/settings", full)
    assert answer.status_code == 200 and answer.json()["cache"]["max_size"] == 32


def test_settings_put_rejects_unknown_keys_and_values(emqx: EmqxDouble) -> None:
    full = {"no_match": "deny", "deny_action": "disconnect", "cache": {"enable": True}}
    assert call(emqx, "PUT", "/authorization/settings", {**full, "sources": []}).status_code == 400
    assert call(emqx, "PUT", "/authorization/settings", {**full, "no_match": "maybe"}).status_code == 400
    assert call(emqx, "PUT", "/authorization/settings", {**full, "cache": {"size": 1}}).status_code == 400


def test_user_post_rejects_unknown_fields_and_empty_ids(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/authentication", AUTHENTICATOR)
    assert call(emqx, "POST", USERS, {"user_id": "d", "password": "p", "role": "x"}).status_code == 400
    assert call(emqx, "POST", USERS, {"user_id": "", "password": "p"}).status_code == 400


def test_settings_put_in_6x_resets_omitted_keys(emqx_6x: EmqxDouble) -> None:
    call(emqx_6x, "PUT", "/authorization/settings", {"no_match": "allow", "deny_action": "disconnect",
                                                     "cache": {"enable": True}})
    call(emqx_6x, "PUT", "/authorization/settings", {"no_match": "allow"})
    assert call(emqx_6x, "GET", "/authorization/settings").json()["deny_action"] == "ignore"


# ---- test-only access -------------------------------------------------------------------


def test_state_can_be_changed_directly_and_calls_are_recorded(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/rules", RULE)
    with emqx.state() as state:
        state.rules["tenant_a"]["enable"] = False
    assert call(emqx, "GET", "/rules/tenant_a").json()["enable"] is False
    assert emqx.calls_to("POST", "/api/v5/rules") == ["/api/v5/rules"]


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
