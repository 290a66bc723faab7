"""The stack-wide EMQX authenticator and authorization providers: changes are PUTs, never deletes;
deletes refuse while device users or per-user rules are left; the broker denies by default; drift
of the file and built-in sources is seen and fixed; the 6.x settings."""

from __future__ import annotations

import pytest

from components.providers import emqx as p
from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.server import BUILTIN_AUTHN_ID, EmqxDouble
from tests.providers.emqx_provider_helpers import (
    acl_props,
    authenticator_props,
    authorization_props,
    in_state,
    user_props,
)

# ---- authenticator and authorization specifics ---------------------------------------------


def test_authenticator_changes_are_puts_never_deletes(emqx: EmqxDouble) -> None:
    provider, props = p.EmqxAuthenticatorProvider(), authenticator_props(emqx)
    outs = provider.create(props).outs
    p.EmqxUserProvider().create(user_props(emqx))
    provider.update(BUILTIN_AUTHN_ID, outs, props | {"enable": False})
    assert emqx.calls_to("DELETE", "/api/v5/authentication") == []
    assert emqx.calls_to("PUT", "/api/v5/authentication/password_based:built_in_database")
    assert emqx.count("authn_users") == 1


def test_authenticator_delete_refuses_while_users_are_left(emqx: EmqxDouble) -> None:
    provider, props = p.EmqxAuthenticatorProvider(), authenticator_props(emqx)
    outs = provider.create(props).outs
    user_outs = p.EmqxUserProvider().create(user_props(emqx)).outs
    with pytest.raises(p.EmqxApiError, match=r"EMQX authenticator '.*': not deleted because 1 device users still"):
        provider.delete(BUILTIN_AUTHN_ID, outs)
    assert emqx.count("authn_users") == 1 and emqx.count("authenticators") == 1
    p.EmqxUserProvider().delete("dev_a", user_outs)
    provider.delete(BUILTIN_AUTHN_ID, outs)
    assert emqx.count("authenticators") == 0


def test_authorization_delete_refuses_while_acls_are_left(emqx: EmqxDouble) -> None:
    provider, props = p.EmqxAuthorizationProvider(), authorization_props(emqx)
    outs = provider.create(props).outs
    p.EmqxUserAclProvider().create(acl_props(emqx))
    with pytest.raises(p.EmqxApiError, match="not deleted because 1 per-user rules still exist"):
        provider.delete("authorization", outs)
    assert emqx.count("authz_user_rules") == 1


def test_authorization_create_makes_the_broker_deny_by_default(emqx: EmqxDouble) -> None:
    p.EmqxAuthorizationProvider().create(authorization_props(emqx))
    with emqx.state() as state:
        assert [s["type"] for s in state.authz_sources] == ["built_in_database", "file"]
        file_source = state.authz_source("file")
        assert file_source["enable"] is False and "{allow, all}" in file_source["rules"]  # kept as it was
        assert state.authz_settings["no_match"] == "deny" and state.authz_settings["deny_action"] == "disconnect"


def test_authorization_update_never_deletes_the_builtin_source(emqx: EmqxDouble) -> None:
    provider, props = p.EmqxAuthorizationProvider(), authorization_props(emqx)
    outs = provider.create(props).outs
    p.EmqxUserAclProvider().create(acl_props(emqx))
    provider.update("authorization", outs, props | {"sources": p.default_authorization_sources(20),
                                                    "deny_action": "ignore"})
    assert emqx.calls_to("DELETE", "/api/v5/authorization/sources") == []
    assert emqx.count("authz_user_rules") == 1
    assert in_state(emqx, lambda s: s.authz_source("built_in_database")["max_rules"]) == 20


def test_authorization_drift_of_the_file_source_is_seen_and_fixed(emqx: EmqxDouble) -> None:
    provider, props = p.EmqxAuthorizationProvider(), authorization_props(emqx)
    outs = provider.create(props).outs
    in_state(emqx, lambda s: s.authz_source("file").update(enable=True))
    refreshed = provider.read("authorization", outs)
    assert refreshed.outs["sources"][1] == {"type": "file", "enable": True}
    assert provider.changed_keys(props, refreshed.outs) == ["sources"]
    provider.update("authorization", refreshed.outs, props)
    assert in_state(emqx, lambda s: s.authz_source("file")["enable"]) is False


def test_authorization_recreates_a_deleted_builtin_source_on_update(emqx: EmqxDouble) -> None:
    provider, props = p.EmqxAuthorizationProvider(), authorization_props(emqx)
    outs = provider.create(props).outs
    in_state(emqx, lambda s: s.authz_sources.remove(s.authz_source("built_in_database")))
    refreshed = provider.read("authorization", outs)
    assert refreshed.outs["sources"] == [{"type": "file", "enable": False}]
    assert provider.diff("authorization", refreshed.outs, props).changes is True
    provider.update("authorization", refreshed.outs, props)
    assert in_state(emqx, lambda s: s.authz_source("built_in_database")["enable"]) is True


def test_authorization_delete_leaves_the_broker_closed(emqx: EmqxDouble) -> None:
    provider, props = p.EmqxAuthorizationProvider(), authorization_props(emqx)
    outs = provider.create(props).outs
    provider.delete("authorization", outs)
    with emqx.state() as state:
        assert state.authz_source("built_in_database") is None
        assert state.authz_source("file")["enable"] is False and state.authz_settings["no_match"] == "deny"


def test_authorization_on_6x(emqx_6x: EmqxDouble) -> None:
    provider, props = p.EmqxAuthorizationProvider(), authorization_props(emqx_6x)
    outs = provider.create(props).outs
    assert provider.diff("authorization", provider.read("authorization", outs).outs, props).changes is False

