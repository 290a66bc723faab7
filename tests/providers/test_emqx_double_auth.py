"""The EMQX API double keeps to the documented contract (reference/emqx-api.md), one behaviour per test:
the built-in authenticator and its users, authorization sources, per-user rules and settings."""

from __future__ import annotations

from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.server import EmqxDouble
from tests.providers.emqx_double_helpers import (
    AUTHENTICATOR,
    AUTHZ_USERS,
    USERS,
    call,
    code,
)

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

