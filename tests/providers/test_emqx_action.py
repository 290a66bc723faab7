"""The EMQX action provider: the bearer token is sent but only its fingerprint is kept, rotated,
adopted and checked for drift; an action used by a rule is never force-deleted; an action can move
to another connector in place; one force-deleted in the dashboard is drift on its rule too."""

from __future__ import annotations

import json

import pytest

from components.providers import emqx as p
from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.server import EmqxDouble
from tests.providers.emqx_provider_helpers import (
    action_props,
    api,
    connector_props,
    drift_action,
    in_state,
    prepare_connector,
    rule_props,
)


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

