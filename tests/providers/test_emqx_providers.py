"""The EMQX dynamic providers against the strict API double, driven the way the Pulumi engine
drives them: create -> (refresh) read -> diff against the desired inputs -> update / delete."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dill
import pulumi
import pytest
import requests
from google.protobuf import struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

from components.providers import emqx as p
from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
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
    # test_a_user_the_stack_did_not_create_is_not_taken_over for the default.
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


@pytest.fixture(params=["5.8", "6.x"])
def broker(request: pytest.FixtureRequest) -> Iterator[EmqxDouble]:
    """The lifecycle tests run against both API behaviours (rule PUT, settings defaults)."""
    double = EmqxDouble(api_key=API_KEY, api_secret=API_SECRET, version=request.param).start()
    yield double
    double.stop()


@pytest.fixture(params=CASES, ids=[case.id for case in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


@pytest.fixture(params=REPLACEABLE, ids=[case.id for case in REPLACEABLE])
def replaceable_case(request: pytest.FixtureRequest) -> Case:
    return request.param


@pytest.fixture(params=REMOVABLE, ids=[case.id for case in REMOVABLE])
def removable_case(request: pytest.FixtureRequest) -> Case:
    return request.param


def created(case: Case, double: EmqxDouble) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Prepare, create, and return (id, desired inputs, outputs as Pulumi would store them)."""
    case.prepare(double)
    props = case.props(double)
    result = case.provider.create(props)
    return result.id, props, result.outs


def in_state(double: EmqxDouble, check: Callable[[EmqxState], Any]) -> Any:
    with double.state() as state:
        return check(state)


def as_the_engine_sends(props: dict[str, Any]) -> dict[str, Any]:
    """Properties as a dynamic provider receives them: through protobuf, where every number is a float64."""
    struct = struct_pb2.Struct()
    struct.update(props)
    return rpc.deserialize_properties(struct)


# ---- the lifecycle, for every provider ----------------------------------------------------


def test_create_writes_the_object_and_read_shows_no_drift(case: Case, broker: EmqxDouble) -> None:
    id_, props, outs = created(case, broker)
    assert in_state(broker, case.exists)
    refreshed = case.provider.read(id_, outs)
    assert refreshed.id == id_ and refreshed.outs["emqx_id"] == id_
    assert case.provider.diff(id_, refreshed.outs, props).changes is False


def test_numbers_arrive_from_the_engine_as_floats_and_reach_emqx_as_integers(case: Case, broker: EmqxDouble) -> None:
    # A real `pulumi up` hands the provider pool_size=8.0, max_rules=100.0, cache.max_size=32.0...;
    # EMQX (and the double) refuse 8.0 for an integer field.
    case.prepare(broker)
    props = as_the_engine_sends(case.props(broker))
    assert props["ready_timeout"] == 5.0 and isinstance(props["ready_timeout"], float)
    result = case.provider.create(props)
    assert in_state(broker, case.exists)
    refreshed = case.provider.read(result.id, as_the_engine_sends(result.outs))
    assert case.provider.diff(result.id, as_the_engine_sends(refreshed.outs), props).changes is False
    wanted = as_the_engine_sends({**case.props(broker), **case.update})
    case.provider.update(result.id, refreshed.outs, wanted)
    assert in_state(broker, case.updated)


def test_integral_floats_are_sent_as_json_integers(emqx: EmqxDouble) -> None:
    props = as_the_engine_sends(connector_props(emqx) | {"pool_size": 16, "enable_pipelining": 1})
    assert props["pool_size"] == 16.0 and isinstance(props["pool_size"], float)
    p.EmqxConnectorProvider().create(props)
    stored = in_state(emqx, lambda s: dict(s.connectors["ingest"]))
    assert type(stored["pool_size"]) is int and type(stored["enable_pipelining"]) is int
    assert p._wire({"a": [1.0, 2.5, True, "8.0"], "b": {"c": 32.0}}) == {"a": [1, 2.5, True, "8.0"], "b": {"c": 32}}


def test_drift_made_in_the_dashboard_shows_in_read_and_diff(case: Case, broker: EmqxDouble) -> None:
    id_, props, outs = created(case, broker)
    case.drift(broker)
    refreshed = case.provider.read(id_, outs)
    assert refreshed.outs[case.drift_key] != props[case.drift_key]
    diff = case.provider.diff(id_, refreshed.outs, props)
    assert diff.changes is True and not diff.replaces
    # and the next update puts it back
    case.provider.update(id_, refreshed.outs, props)
    assert case.provider.diff(id_, case.provider.read(id_, outs).outs, props).changes is False


def test_update_in_place_converges(case: Case, broker: EmqxDouble) -> None:
    id_, props, outs = created(case, broker)
    wanted = {**props, **case.update}
    diff = case.provider.diff(id_, outs, wanted)
    assert diff.changes is True and diff.replaces == []
    new_outs = case.provider.update(id_, outs, wanted).outs
    assert in_state(broker, case.updated)
    assert case.provider.diff(id_, case.provider.read(id_, new_outs).outs, wanted).changes is False


def test_identity_change_replaces_create_before_delete(replaceable_case: Case, broker: EmqxDouble) -> None:
    case = replaceable_case
    id_, props, outs = created(case, broker)
    diff = case.provider.diff(id_, outs, {**props, **case.replace})
    assert diff.replaces == list(case.replace) and diff.delete_before_replace is False
    # Pulumi then creates the replacement and deletes the old object: both steps work.
    new = case.provider.create({**props, **case.replace})
    case.provider.delete(id_, outs)
    assert new.id != id_ and case.provider.read(new.id, new.outs).id == new.id
    assert not case.provider.read(id_, outs).id


def test_a_forced_replacement_keeping_the_id_deletes_first(case: Case, broker: EmqxDouble) -> None:
    id_, props, outs = created(case, broker)  # e.g. `pulumi up --replace`: same EMQX id on both sides
    assert case.provider.diff(id_, outs, props).delete_before_replace is True


@pytest.mark.parametrize("provider, props", [
    (p.EmqxAuthenticatorProvider(), authenticator_props), (p.EmqxAuthorizationProvider(), authorization_props)])
def test_stack_wide_objects_are_never_replaced(provider: p._EmqxProvider, props: Callable, emqx: EmqxDouble) -> None:
    desired = props(emqx)
    outs = provider.create(desired).outs
    for key in provider.compared_keys:
        changed = {**desired, key: {"name": "bcrypt"} if isinstance(desired[key], dict) else "other"}
        assert provider.diff("x", outs, changed).replaces == []


def test_delete_removes_the_object_and_is_idempotent(case: Case, broker: EmqxDouble) -> None:
    id_, _, outs = created(case, broker)
    case.provider.delete(id_, outs)
    assert not in_state(broker, case.exists)
    case.provider.delete(id_, outs)  # already gone: no error


def test_read_of_an_object_deleted_behind_pulumis_back_reports_it_gone(removable_case: Case, broker: EmqxDouble) -> None:
    case = removable_case
    id_, _, outs = created(case, broker)
    case.provider.delete(id_, outs)
    refreshed = case.provider.read(id_, outs)
    assert not refreshed.id and refreshed.outs == {}


def test_update_recreates_an_object_deleted_behind_pulumis_back(case: Case, broker: EmqxDouble) -> None:
    id_, props, outs = created(case, broker)
    case.provider.delete(id_, outs)
    if case.id == "user":
        prepare_authenticator(broker)  # deleting the authenticator (not done here) is a separate story
    case.provider.update(id_, outs, props)
    assert in_state(broker, case.exists)


def test_create_adopts_an_identical_existing_object(case: Case, broker: EmqxDouble) -> None:
    id_, props, _ = created(case, broker)
    before = in_state(broker, lambda s: copy.deepcopy(s))
    again = case.provider.create(props)
    assert again.id == id_
    after = in_state(broker, lambda s: copy.deepcopy(s))
    assert len(after.connectors) == len(before.connectors) and len(after.rules) == len(before.rules)
    assert len(after.authn_users) == len(before.authn_users) and len(after.actions) == len(before.actions)


def test_create_fails_clearly_when_the_object_exists_with_different_content(case: Case, broker: EmqxDouble) -> None:
    _, props, _ = created(case, broker)
    (case.conflict or case.drift)(broker)
    with pytest.raises(p.EmqxConflictError) as failure:
        case.provider.create(props)
    message = str(failure.value)
    assert case.provider.label(props) in message and "different content" in message
    assert ("max_rules" if case.id == "authorization" else case.drift_key) in message
    assert API_SECRET not in message


def test_wrong_api_key_says_so(case: Case, broker: EmqxDouble) -> None:
    case.prepare(broker)
    with pytest.raises(p.EmqxApiError) as failure:
        case.provider.create({**case.props(broker), "api_secret": "not-the-secret"})
    message = str(failure.value)
    assert "EMQX rejected the API key" in message
    # Both kinds of EMQX: the one the stack runs (its bootstrapped key) and an external one (config keys).
    assert "emqxApiKey" in message and "telemetry:emqx.external.apiKey" in message
    assert case.provider.label(case.props(broker)) in message and "not-the-secret" not in message
    assert failure.value.status == 401


# ---- readiness and transport failures -------------------------------------------------------


def test_create_waits_for_a_broker_that_becomes_ready(emqx: EmqxDouble) -> None:
    emqx.answer_not_ready(calls=3)
    p.EmqxConnectorProvider().create(connector_props(emqx))
    assert len(emqx.calls_to("GET", "/api/v5/status")) == 4 and emqx.count("connectors") == 1


def test_a_broker_that_never_becomes_ready_fails_with_a_bounded_clear_message(emqx: EmqxDouble) -> None:
    emqx.answer_not_ready()
    with pytest.raises(p.EmqxNotReadyError) as failure:
        p.EmqxConnectorProvider().create(connector_props(emqx) | {"ready_timeout": 0.3})
    message = str(failure.value)
    assert f"EMQX at {emqx.url} did not become ready within 0.3 s" in message
    assert "HTTP 503" in message and "dashboardPort" in message
    assert emqx.count("connectors") == 0


def test_nothing_listening_fails_after_the_ready_timeout(emqx: EmqxDouble) -> None:
    props = rule_props(emqx) | {"ready_timeout": 0.2}
    emqx.stop()
    with pytest.raises(p.EmqxNotReadyError, match=r"did not become ready within 0\.2 s: last answer ConnectionError"):
        p.EmqxRuleProvider().create(props)


def test_connection_refused_after_readiness_is_a_clear_error(emqx: EmqxDouble) -> None:
    api = p.EmqxApi(emqx.url, API_KEY, API_SECRET, "EMQX rule 'x'", ready_timeout=1)
    api.wait_ready()
    emqx.stop()
    expected = r"EMQX rule 'x': GET /rules/x could not reach EMQX .* stopped or restarted"
    with pytest.raises(p.EmqxApiError, match=expected):
        api.call("GET", "/rules/x")


def test_ready_timeout_must_be_positive(emqx: EmqxDouble) -> None:
    with pytest.raises(p.EmqxApiError, match="ready_timeout must be a positive"):
        p.EmqxApi(emqx.url, API_KEY, API_SECRET, "r", ready_timeout=0)


def test_emqx_errors_name_the_resource_call_status_and_decoded_reason(emqx: EmqxDouble) -> None:
    props = action_props(emqx)  # no connector yet
    with pytest.raises(p.EmqxApiError) as failure:
        p.EmqxActionProvider().create(props)
    message = str(failure.value)
    assert "EMQX action 'http:tenant_a': POST /actions failed with HTTP 400 BAD_REQUEST" in message
    assert '"reason": "connector_not_found_or_wrong_type"' in message  # the JSON inside message, decoded
    assert props["bearer_token"] not in message


def test_error_messages_scrub_secrets_echoed_by_emqx() -> None:
    api = p.EmqxApi("http://127.0.0.1:1", API_KEY, API_SECRET, "EMQX user 'u'")
    error = api._error("POST", "/x", 400, {"code": "BAD_REQUEST", "message": "bad value pw-secret-1 and " + API_SECRET},
                       p._secret_values({"password": "pw-secret-1"}))
    assert "pw-secret-1" not in str(error) and API_SECRET not in str(error) and "******" in str(error)


# ---- redaction and secrets ------------------------------------------------------------------


def test_redacted_connector_headers_are_ignored_when_comparing(emqx: EmqxDouble) -> None:
    props = connector_props(emqx) | {"headers": {"content-type": "application/json", "authorization": "Basic abc"}}
    outs = p.EmqxConnectorProvider().create(props).outs
    refreshed = p.EmqxConnectorProvider().read("http:ingest", outs)
    assert refreshed.outs["headers"]["authorization"] == "******"
    assert p.EmqxConnectorProvider().diff("http:ingest", refreshed.outs, props).changes is False
    assert p.EmqxConnectorProvider().create(props).id == "http:ingest"  # adopting ignores it too


def test_an_extra_header_added_in_the_dashboard_is_drift(emqx: EmqxDouble) -> None:
    props = connector_props(emqx)
    outs = p.EmqxConnectorProvider().create(props).outs
    in_state(emqx, lambda s: s.connectors["ingest"]["headers"].update({"x-debug": "1"}))
    refreshed = p.EmqxConnectorProvider().read("http:ingest", outs)
    assert p.EmqxConnectorProvider().diff("http:ingest", refreshed.outs, props).changes is True


def test_action_token_is_sent_but_never_kept_in_outputs(emqx: EmqxDouble) -> None:
    prepare_connector(emqx)
    props = action_props(emqx)
    outs = p.EmqxActionProvider().create(props).outs
    stored = in_state(emqx, lambda s: s.actions["tenant_a"]["parameters"]["headers"])
    assert stored == {"X-Tenant": "a", "Authorization": f"Bearer {props['bearer_token']}"}
    assert props["bearer_token"] not in json.dumps(outs) and "bearer_token" not in outs
    assert outs["bearer_token_sha256"] == p.fingerprint(props["bearer_token"], "http:tenant_a")
    refreshed = p.EmqxActionProvider().read("http:tenant_a", outs)
    assert refreshed.outs["bearer_token_sha256"] == outs["bearer_token_sha256"]  # "******" is not drift


def test_a_new_token_is_an_in_place_update(emqx: EmqxDouble) -> None:
    prepare_connector(emqx)
    props = action_props(emqx)
    outs = p.EmqxActionProvider().create(props).outs
    rotated = action_props(emqx, token="tok-a-rotated-987")
    diff = p.EmqxActionProvider().diff("http:tenant_a", outs, rotated)
    assert diff.changes is True and diff.replaces == []
    p.EmqxActionProvider().update("http:tenant_a", outs, rotated)
    headers = in_state(emqx, lambda s: s.actions["tenant_a"]["parameters"]["headers"])
    assert headers["Authorization"] == "Bearer tok-a-rotated-987"


def test_a_removed_authorization_header_is_drift(emqx: EmqxDouble) -> None:
    prepare_connector(emqx)
    props = action_props(emqx)
    outs = p.EmqxActionProvider().create(props).outs
    in_state(emqx, lambda s: s.actions["tenant_a"]["parameters"]["headers"].pop("Authorization"))
    refreshed = p.EmqxActionProvider().read("http:tenant_a", outs)
    assert refreshed.outs["bearer_token_sha256"] is None
    assert p.EmqxActionProvider().diff("http:tenant_a", refreshed.outs, props).changes is True


def test_a_dashboard_edit_keeps_the_token_and_shows_only_the_real_drift(emqx: EmqxDouble) -> None:
    prepare_connector(emqx)
    props = action_props(emqx)
    outs = p.EmqxActionProvider().create(props).outs
    drift_action(emqx)  # the dashboard PUTs the header back as "******"
    headers = in_state(emqx, lambda s: s.actions["tenant_a"]["parameters"]["headers"])
    assert headers["Authorization"] == f"Bearer {props['bearer_token']}"
    refreshed = p.EmqxActionProvider().read("http:tenant_a", outs)
    changed = p.EmqxActionProvider().changed_keys(props, refreshed.outs)
    assert changed == ["path"] and refreshed.outs["bearer_token_sha256"] == outs["bearer_token_sha256"]


def test_adopting_an_action_applies_our_token(emqx: EmqxDouble) -> None:
    prepare_connector(emqx)
    p.EmqxActionProvider().create(action_props(emqx, token="someone-elses-token"))
    p.EmqxActionProvider().create(action_props(emqx))
    headers = in_state(emqx, lambda s: s.actions["tenant_a"]["parameters"]["headers"])
    assert headers["Authorization"] == "Bearer tok-a-0123456789"


def test_adopting_a_user_sets_our_password(emqx: EmqxDouble) -> None:
    prepare_authenticator(emqx)
    p.EmqxUserProvider().create(user_props(emqx, password="an-old-password"))
    outs = p.EmqxUserProvider().create(user_props(emqx)).outs
    assert in_state(emqx, lambda s: s.authn_users["dev_a"]["password"]) == "pw-a-0123456789"
    assert "password" not in outs and outs["password_sha256"] == p.fingerprint("pw-a-0123456789", "dev_a")


def test_a_user_the_stack_did_not_create_is_not_taken_over(emqx: EmqxDouble) -> None:
    """Issue 14: creating a device user must not silently take over (and reset the password of) an
    existing user; EMQX answers 409 and the provider refuses unless adopt_existing says so."""
    prepare_authenticator(emqx)
    p.EmqxUserProvider().create(user_props(emqx, password="someone-elses-password"))
    with pytest.raises(p.EmqxConflictError) as failure:
        p.EmqxUserProvider().create(user_props(emqx, adopt_existing=False))
    message = str(failure.value)
    assert "EMQX user 'dev_a' already exists" in message and "adopt_existing" in message
    assert "pw-a-0123456789" not in message
    assert in_state(emqx, lambda s: s.authn_users["dev_a"]["password"]) == "someone-elses-password"


def test_user_ids_are_url_encoded(emqx: EmqxDouble) -> None:
    prepare_authenticator(emqx)
    props = user_props(emqx) | {"user_id": "site/7 dev"}
    outs = p.EmqxUserProvider().create(props).outs
    assert in_state(emqx, lambda s: "site/7 dev" in s.authn_users)
    assert p.EmqxUserProvider().read("site/7 dev", outs).id == "site/7 dev"


def test_users_are_gone_once_the_authenticator_is_deleted_in_the_dashboard(emqx: EmqxDouble) -> None:
    prepare_authenticator(emqx)
    outs = p.EmqxUserProvider().create(user_props(emqx)).outs
    answer = requests.delete(f"{emqx.url}/api/v5/authentication/{BUILTIN_AUTHN_ID}", auth=(API_KEY, API_SECRET),
                             timeout=5)
    assert answer.status_code == 204 and emqx.count("authn_users") == 0  # EMQX erases the users
    assert not p.EmqxUserProvider().read("dev_a", outs).id
    p.EmqxUserProvider().delete("dev_a", outs)  # 400 {not_found,{authenticator,...}} means gone


def test_providers_pickle_without_state_or_secrets() -> None:
    for provider in (p.EmqxAuthenticatorProvider(), p.EmqxAuthorizationProvider(), p.EmqxConnectorProvider(),
                     p.EmqxActionProvider(), p.EmqxRuleProvider(), p.EmqxUserProvider(), p.EmqxUserAclProvider()):
        assert vars(provider) == {}
        assert type(dill.loads(dill.dumps(provider, recurse=True))) is type(provider)


def test_check_rejects_names_emqx_would_refuse(emqx: EmqxDouble) -> None:
    failures = p.EmqxConnectorProvider().check({}, connector_props(emqx) | {"name": "bad name"}).failures
    assert [f.property for f in failures] == ["name"]
    assert p.EmqxConnectorProvider().check({}, connector_props(emqx) | {"name": p.UNKNOWN}).failures == []


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


def test_acls_are_written_with_put_and_need_the_builtin_source(emqx: EmqxDouble) -> None:
    with pytest.raises(p.EmqxApiError, match="EmqxAuthorization resource must come first"):
        p.EmqxUserAclProvider().create(acl_props(emqx))
    prepare_authorization(emqx)
    p.EmqxUserAclProvider().create(acl_props(emqx))
    assert emqx.calls_to("POST", "/api/v5/authorization/sources/built_in_database/rules") == []
    rules = in_state(emqx, lambda s: s.authz_user_rules["dev_a"])
    assert [(r["topic"], r["action"]) for r in rules] == [("tenants/a/#", "publish"), ("tenants/a/#", "subscribe")]


# ---- connector / action / rule specifics -------------------------------------------------


def test_deleting_a_connector_still_used_by_an_action_fails_clearly(emqx: EmqxDouble) -> None:
    prepare_connector(emqx)
    p.EmqxActionProvider().create(action_props(emqx))
    with pytest.raises(p.EmqxApiError) as failure:
        p.EmqxConnectorProvider().delete("http:ingest", connector_props(emqx))
    message = str(failure.value)
    assert "EMQX connector 'http:ingest': DELETE /connectors/http:ingest failed with HTTP 400" in message
    assert "active channels" in message and "point them at another connector" in message
    assert emqx.count("connectors") == 1


def test_deleting_an_action_a_rule_uses_fails_and_never_forces(emqx: EmqxDouble) -> None:
    prepare_connector(emqx)
    outs = p.EmqxActionProvider().create(action_props(emqx)).outs
    p.EmqxRuleProvider().create(rule_props(emqx))
    with pytest.raises(p.EmqxApiError, match=r'rules: \["tenant_a"\]'):
        p.EmqxActionProvider().delete("http:tenant_a", outs)
    assert not [c for c in emqx.calls if "also_delete_dep_actions" in c[1]]
    assert in_state(emqx, lambda s: s.rules["tenant_a"]["actions"]) == ["http:tenant_a"]


def test_action_can_move_to_another_connector_in_place(emqx: EmqxDouble) -> None:
    prepare_connector(emqx)
    p.EmqxConnectorProvider().create(connector_props(emqx, name="ingest2"))
    props = action_props(emqx)
    outs = p.EmqxActionProvider().create(props).outs
    moved = props | {"connector": "ingest2"}
    assert p.EmqxActionProvider().diff("http:tenant_a", outs, moved).replaces == []
    p.EmqxActionProvider().update("http:tenant_a", outs, moved)
    p.EmqxConnectorProvider().delete("http:ingest", connector_props(emqx))  # now unused: allowed
    assert emqx.count("connectors") == 1


@pytest.mark.parametrize("version", ["emqx", "emqx_6x"])
def test_rule_update_sends_the_full_body_on_5_8_and_6x(version: str, request: pytest.FixtureRequest) -> None:
    double: EmqxDouble = request.getfixturevalue(version)
    provider, props = p.EmqxRuleProvider(), rule_props(double)
    outs = provider.create(props).outs
    in_state(double, lambda s: s.rules["tenant_a"].update(name="set in the dashboard"))
    wanted = props | {"actions": [], "enable": False}
    provider.update("tenant_a", outs, wanted)
    rule = in_state(double, lambda s: dict(s.rules["tenant_a"]))
    assert rule["actions"] == [] and rule["enable"] is False and rule["description"] == "tenant a"
    assert provider.diff("tenant_a", provider.read("tenant_a", outs).outs, wanted).changes is False


@pytest.mark.parametrize("version", ["emqx", "emqx_6x"])
def test_rule_update_recreates_a_missing_rule_on_5_8_and_6x(version: str, request: pytest.FixtureRequest) -> None:
    double: EmqxDouble = request.getfixturevalue(version)
    provider, props = p.EmqxRuleProvider(), rule_props(double)
    outs = provider.create(props).outs
    in_state(double, lambda s: s.rules.clear())
    provider.update("tenant_a", outs, props)
    assert in_state(double, lambda s: s.rules["tenant_a"]["sql"]) == props["sql"]
    expected_posts = 2 if version == "emqx_6x" else 1  # 6.x: PUT is 404, then POST
    assert len(double.calls_to("POST", "/api/v5/rules")) == expected_posts


# ---- a whole tenant ---------------------------------------------------------------------


def create_tenant(double: EmqxDouble, tenant: str) -> dict[str, tuple[p._EmqxProvider, str, dict[str, Any]]]:
    objects = {
        "user": (p.EmqxUserProvider(), user_props(double, tenant, password=f"pw-{tenant}-0123456789")),
        "acl": (p.EmqxUserAclProvider(), acl_props(double, tenant)),
        "action": (p.EmqxActionProvider(), action_props(double, tenant, token=f"tok-{tenant}-0123456789")),
        "rule": (p.EmqxRuleProvider(), rule_props(double, tenant)),
    }
    made = {}
    for kind, (provider, props) in objects.items():
        result = provider.create(props)
        made[kind] = (provider, result.id, result.outs)
    return made


def tenant_snapshot(double: EmqxDouble, tenant: str) -> dict[str, Any]:
    with double.state() as state:
        return copy.deepcopy({
            "user": state.authn_users.get(f"dev_{tenant}"), "acl": state.authz_user_rules.get(f"dev_{tenant}"),
            "action": state.actions.get(f"tenant_{tenant}"), "rule": state.rules.get(f"tenant_{tenant}")})


def test_two_tenants_share_a_connector_and_one_leaves_cleanly(emqx: EmqxDouble) -> None:
    prepare_authenticator(emqx)
    prepare_authorization(emqx)
    prepare_connector(emqx)
    tenant_a = create_tenant(emqx, "a")
    create_tenant(emqx, "b")
    b_before = tenant_snapshot(emqx, "b")
    for kind in ("rule", "action", "acl", "user"):  # reverse dependency order, as Pulumi deletes
        provider, id_, outs = tenant_a[kind]
        provider.delete(id_, outs)
    assert all(value is None for value in tenant_snapshot(emqx, "a").values())
    assert tenant_snapshot(emqx, "b") == b_before
    assert emqx.count("connectors") == 1 and emqx.count("authenticators") == 1


# ---- the Resource classes, under Pulumi mocks ------------------------------------------------


class _EchoMocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


def test_resources_register_typed_secret_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: dict[str, tuple[str, list[str], dict[str, Any]]] = {}
    original = MockMonitor.RegisterResource

    def spy(self: MockMonitor, request: Any) -> Any:
        inputs = rpc.deserialize_properties(request.object)
        registered[request.name] = (request.type, list(request.additionalSecretOutputs), inputs)
        return original(self, request)

    monkeypatch.setattr(MockMonitor, "RegisterResource", spy)
    asyncio.set_event_loop(asyncio.new_event_loop())  # an earlier asyncio.run() leaves none current
    pulumi.runtime.set_mocks(_EchoMocks(), preview=False)

    @pulumi.runtime.test
    def build() -> pulumi.Output:
        connection = p.EmqxConnection(api_url="http://127.0.0.1:18083", api_key="k", api_secret="s3cret")
        p.EmqxAuthenticator("authn", p.EmqxAuthenticatorArgs(connection))
        p.EmqxAuthorization("authz", p.EmqxAuthorizationArgs(connection))
        connector = p.EmqxConnector("conn", p.EmqxConnectorArgs(connection, name="ingest", url="http://ingest:8000"))
        action = p.EmqxAction("act", p.EmqxActionArgs(connection, name="tenant_a", connector=connector.name,
                                                      bearer_token="tok", headers={"X-Tenant": "a"}))
        p.EmqxRule("rule", p.EmqxRuleArgs(connection, rule_id="tenant_a", sql='SELECT * FROM "tenants/a/#"',
                                          actions=[action.emqx_id]))
        p.EmqxUser("user", p.EmqxUserArgs(connection, user_id="dev_a", password="pw"))
        p.EmqxUserAcl("acl", p.EmqxUserAclArgs(connection, username="dev_a", rules=p.topic_prefix_rules("a")))
        return action.emqx_id

    build()
    registered.pop("project-stack", None)  # the mocks' stack resource
    assert {name: typ for name, (typ, _, _) in registered.items()} == {
        "authn": "pulumi-python:dynamic/emqx:Authenticator", "authz": "pulumi-python:dynamic/emqx:Authorization",
        "conn": "pulumi-python:dynamic/emqx:Connector", "act": "pulumi-python:dynamic/emqx:Action",
        "rule": "pulumi-python:dynamic/emqx:Rule", "user": "pulumi-python:dynamic/emqx:User",
        "acl": "pulumi-python:dynamic/emqx:UserAcl"}
    for name, (_, secret_outputs, inputs) in registered.items():  # the provider needs it to delete later
        assert "api_secret" in secret_outputs and rpc.is_rpc_secret(inputs["api_secret"]), name
    _, action_secrets, action_inputs = registered["act"]
    assert {"bearer_token", "bearer_token_sha256"} <= set(action_secrets)
    assert rpc.is_rpc_secret(action_inputs["bearer_token"])
    _, user_secrets, user_inputs = registered["user"]
    assert {"password", "password_sha256"} <= set(user_secrets) and rpc.is_rpc_secret(user_inputs["password"])


# ---- the double's refusals, met through the providers ------------------------------------------


def test_an_unknown_body_field_is_refused_and_reported_with_emqxs_reason(emqx: EmqxDouble) -> None:
    # bcrypt takes salt_rounds, not salt_position: EMQX's schema check refuses the unknown field.
    props = authenticator_props(emqx) | {"password_hash_algorithm": {"name": "bcrypt", "salt_position": "suffix"}}
    with pytest.raises(p.EmqxApiError) as failure:
        p.EmqxAuthenticatorProvider().create(props)
    message = str(failure.value)
    assert message.startswith("EMQX authenticator 'password_based:built_in_database': POST /authentication failed "
                              "with HTTP 400 BAD_REQUEST")
    assert "salt_position" in message and "unknown_fields" in message
    assert emqx.count("authenticators") == 0


def test_a_body_sent_without_json_content_type_gets_415(emqx: EmqxDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    # The client always labels its JSON; were it to forget, EMQX (and the double) answer 415.
    send = requests.Session.request

    def without_content_type(self, method, url, **kwargs):
        kwargs["headers"] = {k: v for k, v in (kwargs.get("headers") or {}).items() if k != "Content-Type"}
        return send(self, method, url, **kwargs)

    prepare_connector(emqx)
    p.EmqxActionProvider().create(action_props(emqx))
    monkeypatch.setattr(requests.Session, "request", without_content_type)
    with pytest.raises(p.EmqxApiError, match=r"POST /rules failed with HTTP 415 UNSUPPORTED_MEDIA_TYPE"):
        p.EmqxRuleProvider().create(rule_props(emqx))
    assert emqx.count("rules") == 0


def test_an_action_force_deleted_in_the_dashboard_is_drift_on_its_rule_too(emqx: EmqxDouble) -> None:
    """Someone deletes the action in the dashboard, telling EMQX to drop it from its rules too."""
    prepare_connector(emqx)
    action, rule = p.EmqxActionProvider(), p.EmqxRuleProvider()
    action_outs = action.create(action_props(emqx)).outs
    rule_outs = rule.create(rule_props(emqx)).outs
    answer = api(emqx, "DELETE", "/actions/http:tenant_a?also_delete_dep_actions=true")
    assert answer.status_code == 204
    # refresh: the action is gone, and the rule that survived no longer points at it
    assert action.read("http:tenant_a", action_outs).id is None
    refreshed = rule.read("tenant_a", rule_outs).outs
    assert refreshed["actions"] == []
    assert rule.diff("tenant_a", refreshed, rule_props(emqx)).changes is True
    # up: the action is created again and the rule updated back to it
    action.create(action_props(emqx))
    rule.update("tenant_a", refreshed, rule_props(emqx))
    assert in_state(emqx, lambda s: s.rules["tenant_a"]["actions"]) == ["http:tenant_a"]


def test_the_tenant_rule_sql_selects_the_ingest_contract_from_the_tenant_topics(emqx: EmqxDouble) -> None:
    from components.tenant import RULE_COLUMNS, rule_sql

    # The columns the ingest service reads (DESIGN.md, "Ingest service contract"), all of them
    # message.publish event columns.
    assert [c.strip() for c in RULE_COLUMNS.split(",")] == [
        "id", "clientid", "username", "topic", "payload", "qos", "publish_received_at", "timestamp"]
    props = rule_props(emqx) | {"rule_id": "tenant-umc", "sql": rule_sql("tenants/umc/#"), "actions": []}
    outs = p.EmqxRuleProvider().create(props).outs
    got = api(emqx, "GET", "/rules/tenant-umc").json()
    assert got["from"] == ["tenants/umc/#"] and got["sql"] == props["sql"]
    assert p.EmqxRuleProvider().diff("tenant-umc", p.EmqxRuleProvider().read("tenant-umc", outs).outs,
                                     props).changes is False
