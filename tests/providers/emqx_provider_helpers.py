"""Helpers shared by the EMQX provider tests (test_emqx_lifecycle, test_emqx_client, test_emqx_authn_authz,
test_emqx_connector, test_emqx_action, test_emqx_rule, test_emqx_user_acl, test_emqx_drift): desired inputs
shaped like the props the Resource classes build, the table of one case per provider, and edits made in the
dashboard or straight into the double's state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from google.protobuf import struct_pb2
from pulumi.runtime import rpc

from components.providers import emqx as p
from tests.emqx_double.fixtures import API_KEY, API_SECRET
from tests.emqx_double.server import BUILTIN_AUTHN_ID, EmqxDouble, EmqxState

# ---- desired inputs, shaped like the props the Resource classes build ---------------------


def conn(double: EmqxDouble, **overrides: Any) -> dict[str, Any]:
    return {"api_url": double.url, "api_key": API_KEY, "api_secret": API_SECRET, "ready_timeout": 5.0, **overrides}


def authenticator_props(double: EmqxDouble) -> dict[str, Any]:
    return {**conn(double), "user_id_type": "username", "enable": True,
            "password_hash_algorithm": dict(p.DEFAULT_PASSWORD_HASH)}


def authorization_props(double: EmqxDouble, max_rules: int = 100) -> dict[str, Any]:
    return {**conn(double), "no_match": "deny", "deny_action": "disconnect", "cache": dict(p.DEFAULT_AUTHZ_CACHE),
            "include_mountpoint": False, "ignore_backend_failures": False,
            "sources": p.default_authorization_sources(max_rules), "managed_usernames": None,
            "all_rules": [], "client_rules": {}, "foreign_user_rules": {}, "node_cache": None}


def connector_props(double: EmqxDouble, name: str = "ingest") -> dict[str, Any]:
    return {**conn(double), "name": name, "url": "http://ingest:8000", "headers": {"content-type": "application/json"},
            "connect_timeout": "5s", "pool_size": 8, "enable_pipelining": 100, "health_check_interval": "15s",
            "enable": True}


DELIVERY = p.ActionDelivery.for_window()


def action_props(double: EmqxDouble, tenant: str = "a", token: str = "tok-a-0123456789") -> dict[str, Any]:
    return {**conn(double), "name": f"tenant_{tenant}", "connector": "ingest", "bearer_token": token,
            "headers": {"X-Tenant": tenant}, "path": "/ingest", "method": "post", "body": "${.}",
            "query_mode": "async", "request_ttl": DELIVERY.request_ttl, "max_buffer_bytes": DELIVERY.max_buffer_bytes,
            "buffer_mode": DELIVERY.buffer_mode, "buffer_seg_bytes": DELIVERY.buffer_seg_bytes,
            "inflight_window": 100, "worker_pool_size": 16, "enable": True}


def rule_props(double: EmqxDouble, tenant: str = "a") -> dict[str, Any]:
    return {**conn(double), "rule_id": f"tenant_{tenant}", "sql": f'SELECT * FROM "tenants/{tenant}/#"',
            "actions": [f"http:tenant_{tenant}"], "enable": True, "description": f"tenant {tenant}"}


def user_props(double: EmqxDouble, tenant: str = "a", password: str = "pw-a-0123456789",
               adopt_existing: bool = True) -> dict[str, Any]:
    # adopt_existing: the generic adoption cases below say so explicitly; see
    # test_a_user_the_stack_did_not_create_is_not_taken_over (test_emqx_user_acl.py) for the default.
    return {**conn(double), "user_id": f"dev_{tenant}", "password": password, "is_superuser": False,
            "adopt_existing": adopt_existing}


def acl_props(double: EmqxDouble, tenant: str = "a") -> dict[str, Any]:
    return {**conn(double), "username": f"dev_{tenant}", "rules": p.topic_prefix_rules(tenant)}


def prepare_connector(double: EmqxDouble) -> None:
    p.EmqxConnectorProvider().create(connector_props(double))


def prepare_authenticator(double: EmqxDouble) -> None:
    p.EmqxAuthenticatorProvider().create(authenticator_props(double))


def prepare_authorization(double: EmqxDouble) -> None:
    p.EmqxAuthorizationProvider().create(authorization_props(double))


# ---- one table row per provider ---------------------------------------------------------


@dataclass
class Case:
    id: str
    provider: p._EmqxProvider
    props: Callable[[EmqxDouble], dict[str, Any]]
    exists: Callable[[EmqxState], bool]
    drift: Callable[[EmqxDouble], None]  # what someone changes in the dashboard, through the API
    drift_key: str
    update: dict[str, Any]  # an input change applied in place
    updated: Callable[[EmqxState], bool]
    replace: dict[str, Any] | None = None  # an input change that needs a new object
    prepare: Callable[[EmqxDouble], None] = lambda double: None
    conflict: Callable[[EmqxDouble], None] | None = None  # defaults to `drift`


def api(double: EmqxDouble, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{double.url}/api/v5{path}", json=body, auth=(API_KEY, API_SECRET), timeout=5)


def dashboard_edit(double: EmqxDouble, path: str, change: Callable[[dict[str, Any]], None],
                   read_only: frozenset[str] = frozenset()) -> None:
    """What an operator does in the dashboard: GET (secrets come back as ******), edit, PUT back."""
    body = {k: v for k, v in api(double, "GET", path).json().items() if k not in read_only}
    change(body)
    answer = api(double, "PUT", path, body)
    assert answer.status_code in (200, 204), answer.text


BRIDGE_READ_ONLY = frozenset({"type", "name", "status", "status_reason", "node_status", "actions"})
RULE_READ_ONLY = frozenset({"id", "from", "created_at", "last_modified_at"})


def drift_authenticator(double: EmqxDouble) -> None:
    dashboard_edit(double, f"/authentication/{BUILTIN_AUTHN_ID}",
                   lambda b: b.update(password_hash_algorithm={"name": "bcrypt", "salt_rounds": 10}),
                   read_only=frozenset({"id"}))


def drift_settings(double: EmqxDouble) -> None:
    dashboard_edit(double, "/authorization/settings", lambda b: b.update(no_match="allow"))


def shrink_builtin_source(double: EmqxDouble) -> None:
    dashboard_edit(double, "/authorization/sources/built_in_database", lambda b: b.update(max_rules=7))


def drift_connector(double: EmqxDouble) -> None:
    dashboard_edit(double, "/connectors/http:ingest", lambda b: b.update(url="http://elsewhere:9000"),
                   read_only=BRIDGE_READ_ONLY)


def drift_action(double: EmqxDouble) -> None:
    dashboard_edit(double, "/actions/http:tenant_a", lambda b: b["parameters"].update(path="/other"),
                   read_only=BRIDGE_READ_ONLY)


def drift_rule(double: EmqxDouble) -> None:
    dashboard_edit(double, "/rules/tenant_a", lambda b: b.update(sql='SELECT * FROM "tenants/#"'),
                   read_only=RULE_READ_ONLY)


def drift_user(double: EmqxDouble) -> None:
    answer = api(double, "PUT", f"/authentication/{BUILTIN_AUTHN_ID}/users/dev_a",
                 {"password": "set-in-the-dashboard", "is_superuser": True})
    assert answer.status_code == 200, answer.text


def drift_acl(double: EmqxDouble) -> None:
    dashboard_edit(double, "/authorization/sources/built_in_database/rules/users/dev_a",
                   lambda b: b.update(rules=[{"topic": "#", "permission": "allow", "action": "all"}]))


CASES = [
    Case("authenticator", p.EmqxAuthenticatorProvider(), authenticator_props,
         exists=lambda s: BUILTIN_AUTHN_ID in s.authenticators,
         drift=drift_authenticator, drift_key="password_hash_algorithm",
         update={"password_hash_algorithm": {"name": "sha512", "salt_position": "suffix"}},
         updated=lambda s: s.authenticators[BUILTIN_AUTHN_ID]["password_hash_algorithm"]["name"] == "sha512"),
    Case("authorization", p.EmqxAuthorizationProvider(), authorization_props,
         exists=lambda s: s.authz_source("built_in_database") is not None,
         drift=drift_settings, drift_key="no_match",
         update={"sources": p.default_authorization_sources(50)},
         updated=lambda s: s.authz_source("built_in_database")["max_rules"] == 50,
         conflict=shrink_builtin_source),
    Case("connector", p.EmqxConnectorProvider(), connector_props,
         exists=lambda s: "ingest" in s.connectors,
         drift=drift_connector, drift_key="url",
         update={"pool_size": 16}, updated=lambda s: s.connectors["ingest"]["pool_size"] == 16,
         replace={"name": "ingest2"}),
    Case("action", p.EmqxActionProvider(), action_props,
         exists=lambda s: "tenant_a" in s.actions,
         drift=drift_action, drift_key="path",
         update={"inflight_window": 50},
         updated=lambda s: s.actions["tenant_a"]["resource_opts"]["inflight_window"] == 50,
         replace={"name": "tenant_a2"}, prepare=prepare_connector),
    Case("rule", p.EmqxRuleProvider(), rule_props,
         exists=lambda s: "tenant_a" in s.rules,
         drift=drift_rule, drift_key="sql",
         update={"description": "changed"}, updated=lambda s: s.rules["tenant_a"]["description"] == "changed",
         replace={"rule_id": "tenant_a2"}),
    Case("user", p.EmqxUserProvider(), user_props,
         exists=lambda s: "dev_a" in s.authn_users,
         drift=drift_user, drift_key="is_superuser",
         update={"password": "new-password-123"},
         updated=lambda s: s.authn_users["dev_a"]["password"] == "new-password-123",
         replace={"user_id": "dev_a2"}, prepare=prepare_authenticator),
    Case("user_acl", p.EmqxUserAclProvider(), acl_props,
         exists=lambda s: "dev_a" in s.authz_user_rules,
         drift=drift_acl, drift_key="rules",
         update={"rules": p.topic_prefix_rules("b")},
         updated=lambda s: s.authz_user_rules["dev_a"][0]["topic"] == "tenants/b/#",
         replace={"username": "dev_a2"}, prepare=prepare_authorization),
]


REPLACEABLE = [case for case in CASES if case.replace is not None]  # the stack-wide two never are
# The authorization settings always exist, so a missing source is drift rather than "gone".
REMOVABLE = [case for case in CASES if case.id != "authorization"]


def in_state(double: EmqxDouble, check: Callable[[EmqxState], Any]) -> Any:
    with double.state() as state:
        return check(state)


def as_the_engine_sends(props: dict[str, Any]) -> dict[str, Any]:
    """Properties as a dynamic provider receives them: through protobuf, where every number is a float64."""
    struct = struct_pb2.Struct()
    struct.update(props)
    return rpc.deserialize_properties(struct)

