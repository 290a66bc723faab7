"""The EMQX dynamic providers against the strict API double, driven the way the Pulumi engine
drives them: create -> (refresh) read -> diff against the desired inputs -> update / delete.

Every provider runs through the same lifecycle (one row per provider in emqx_provider_helpers.CASES),
on the 5.8 and the 6.x double (the `broker` fixture); then a whole tenant's objects together."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from components.providers import emqx as p
from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.fixtures import API_SECRET
from tests.emqx_double.server import EmqxDouble
from tests.providers.emqx_provider_helpers import (
    REMOVABLE,
    REPLACEABLE,
    Case,
    acl_props,
    action_props,
    as_the_engine_sends,
    authenticator_props,
    authorization_props,
    connector_props,
    in_state,
    prepare_authenticator,
    prepare_authorization,
    prepare_connector,
    rule_props,
    user_props,
)


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

