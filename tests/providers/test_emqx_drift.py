"""Issue 11 against both EMQX versions of the double: enable flags and rule tables as drift, a
refresh right after `up` that shows no change, and authorization caches emptied after narrowing.

Every test runs on the 5.8 and the 6.x double (the `broker` fixture)."""

from __future__ import annotations

from typing import Any

import pytest

from components.providers import emqx as p
from tests.emqx_double.fixtures import API_KEY, API_SECRET
from tests.emqx_double.server import EmqxDouble
from tests.providers.emqx_provider_helpers import (
    BRIDGE_READ_ONLY,
    RULE_READ_ONLY,
    Case,
    acl_props,
    action_props,
    api,
    as_the_engine_sends,
    authorization_props,
    connector_props,
    dashboard_edit,
    in_state,
    prepare_authorization,
    prepare_connector,
    rule_props,
)

# ---- refresh right after up ---------------------------------------------------------------


def test_refresh_right_after_create_and_update_shows_no_change(case: Case, broker: EmqxDouble) -> None:
    """`pulumi refresh --expect-no-changes` after `up`: the engine compares the outputs of
    create/update with those of read, both carried through its protobuf serialization."""
    case.prepare(broker)
    props = as_the_engine_sends(case.props(broker))
    created = case.provider.create(props)
    stored = as_the_engine_sends(created.outs)
    assert as_the_engine_sends(case.provider.read(created.id, stored).outs) == stored
    wanted = as_the_engine_sends({**case.props(broker), **case.update})
    updated = as_the_engine_sends(case.provider.update(created.id, stored, wanted).outs)
    assert as_the_engine_sends(case.provider.read(created.id, updated).outs) == updated


def test_acl_outputs_hold_the_rules_as_emqx_returns_them(broker: EmqxDouble) -> None:
    prepare_authorization(broker)
    outs = p.EmqxUserAclProvider().create(acl_props(broker)).outs
    assert all(rule["qos"] == [0, 1, 2] and rule["retain"] == "all" for rule in outs["rules"])
    live = api(broker, "GET", "/authorization/sources/built_in_database/rules/users/dev_a").json()["rules"]
    assert outs["rules"] == live


# ---- enable flags ---------------------------------------------------------------------------


def test_an_action_disabled_in_the_dashboard_is_drift_and_is_enabled_again(broker: EmqxDouble) -> None:
    prepare_connector(broker)
    provider, props = p.EmqxActionProvider(), action_props(broker)
    outs = provider.create(props).outs
    broker.bump_action_metrics("tenant_a", matched=5, success=5)
    assert api(broker, "PUT", "/actions/http:tenant_a/enable/false").status_code == 204
    assert api(broker, "GET", "/actions/http:tenant_a").json()["enable"] is False  # EMQX writes it into the config
    refreshed = provider.read("http:tenant_a", outs).outs
    assert refreshed["enable"] is False
    assert provider.changed_keys(props, refreshed) == ["enable"]
    broker.bump_action_metrics("tenant_a", matched=1, success=1)
    puts_before = len(broker.calls_to("PUT", "/api/v5/actions/http:tenant_a"))
    provider.update("http:tenant_a", refreshed, props)
    assert in_state(broker, lambda s: s.actions["tenant_a"]["enable"]) is True
    # Only the enable endpoint: a full PUT would restart the buffer workers and clear the metrics.
    assert broker.calls_to("PUT", "/api/v5/actions/http:tenant_a")[puts_before:] == [
        "/api/v5/actions/http:tenant_a/enable/true"]
    assert api(broker, "GET", "/actions/http:tenant_a/metrics").json()["metrics"]["success"] == 1
    assert provider.diff("http:tenant_a", provider.read("http:tenant_a", outs).outs, props).changes is False


def test_a_connector_disabled_in_the_dashboard_is_drift_and_is_enabled_again(broker: EmqxDouble) -> None:
    provider, props = p.EmqxConnectorProvider(), connector_props(broker)
    outs = provider.create(props).outs
    assert api(broker, "PUT", "/connectors/http:ingest/enable/false").status_code == 204
    assert api(broker, "GET", "/connectors/http:ingest").json()["status"] == "stopped"
    refreshed = provider.read("http:ingest", outs).outs
    assert refreshed["enable"] is False and provider.diff("http:ingest", refreshed, props).changes is True
    provider.update("http:ingest", refreshed, props)
    assert broker.calls_to("PUT", "/api/v5/connectors/http:ingest")[-1] == "/api/v5/connectors/http:ingest/enable/true"
    assert in_state(broker, lambda s: s.connectors["ingest"]["enable"]) is True


def test_a_rule_disabled_in_the_dashboard_is_drift_and_is_enabled_again(broker: EmqxDouble) -> None:
    provider, props = p.EmqxRuleProvider(), rule_props(broker)
    outs = provider.create(props).outs
    if broker.version == "6.x":  # 6.x merges a partial body into the rule
        assert api(broker, "PUT", "/rules/tenant_a", {"enable": False}).status_code == 200
    else:  # 5.8 replaces the rule: the dashboard sends all of it back
        dashboard_edit(broker, "/rules/tenant_a", lambda b: b.update(enable=False), read_only=RULE_READ_ONLY)
    refreshed = provider.read("tenant_a", outs).outs
    assert refreshed["enable"] is False and provider.changed_keys(props, refreshed) == ["enable"]
    provider.update("tenant_a", refreshed, props)
    rule = in_state(broker, lambda s: dict(s.rules["tenant_a"]))
    assert rule["enable"] is True and rule["sql"] == props["sql"] and rule["actions"] == props["actions"]


@pytest.mark.parametrize("provider, props", [(p.EmqxActionProvider(), action_props),
                                             (p.EmqxConnectorProvider(), connector_props)])
def test_state_written_before_enable_was_compared_shows_no_change(provider: p._EmqxProvider, props: Any,
                                                                  broker: EmqxDouble) -> None:
    """Stacks deployed before this release have no `enable` in their state: no spurious update."""
    prepare_connector(broker)
    desired = props(broker)
    outs = provider.create(desired).outs
    legacy = {k: v for k, v in outs.items() if k != "enable"}
    assert provider.diff(outs["emqx_id"], legacy, desired).changes is False


def test_an_action_change_beyond_enable_is_one_full_put(broker: EmqxDouble) -> None:
    prepare_connector(broker)
    provider, props = p.EmqxActionProvider(), action_props(broker)
    outs = provider.create(props).outs
    dashboard_edit(broker, "/actions/http:tenant_a", lambda b: b.update(enable=False) or b["parameters"].update(
        path="/other"), read_only=BRIDGE_READ_ONLY)
    refreshed = provider.read("http:tenant_a", outs).outs
    assert sorted(provider.changed_keys(props, refreshed)) == ["enable", "path"]
    provider.update("http:tenant_a", refreshed, props)
    action = in_state(broker, lambda s: s.actions["tenant_a"])
    assert action["enable"] is True and action["parameters"]["path"] == "/ingest"
    assert "/api/v5/actions/http:tenant_a/enable/true" not in broker.calls_to("PUT", "/api/v5/actions")


def test_the_action_carries_the_delivery_window_and_its_buffer(broker: EmqxDouble) -> None:
    prepare_connector(broker)
    wide = p.ActionDelivery.for_window("2h")
    props = action_props(broker) | {"request_ttl": wide.request_ttl, "max_buffer_bytes": wide.max_buffer_bytes}
    p.EmqxActionProvider().create(props)
    opts = api(broker, "GET", "/actions/http:tenant_a").json()["resource_opts"]
    assert (opts["request_ttl"], opts["max_buffer_bytes"]) == ("2h", "450MB")
    assert (opts["buffer_mode"], opts["buffer_seg_bytes"]) == ("volatile_offload", "4MB")
    # the values another engineer is measuring stay as they were
    assert (opts["worker_pool_size"], opts["inflight_window"]) == (16, 100)


# ---- the authorization configuration as a whole ----------------------------------------------


def test_rules_added_to_the_all_and_clients_tables_are_reported_and_removed(broker: EmqxDouble) -> None:
    provider, props = p.EmqxAuthorizationProvider(), authorization_props(broker)
    outs = provider.create(props).outs
    p.EmqxUserAclProvider().create(acl_props(broker))
    allow_all = [{"topic": "#", "permission": "allow", "action": "all"}]
    rules_path = "/authorization/sources/built_in_database/rules"
    assert api(broker, "POST", f"{rules_path}/all", {"rules": allow_all}).status_code == 204
    assert api(broker, "POST", f"{rules_path}/clients", [{"clientid": "c1", "rules": allow_all}]).status_code == 204
    refreshed = provider.read("authorization", outs).outs
    assert refreshed["all_rules"][0]["topic"] == "#" and list(refreshed["client_rules"]) == ["c1"]
    assert sorted(provider.changed_keys(props, refreshed)) == ["all_rules", "client_rules"]
    drains = in_state(broker, lambda s: s.cache_drains)
    provider.update("authorization", refreshed, props)
    with broker.state() as state:
        assert state.authz_all_rules == [] and state.authz_client_rules == {}
        assert list(state.authz_user_rules) == ["dev_a"]  # the stack's own per-user rules stay
        assert state.cache_drains == drains + 1
    assert provider.diff("authorization", provider.read("authorization", outs).outs, props).changes is False


def test_rules_of_unmanaged_usernames_are_drift_when_the_managed_names_are_given(broker: EmqxDouble) -> None:
    provider = p.EmqxAuthorizationProvider()
    props = authorization_props(broker) | {"managed_usernames": ["dev_a"]}
    outs = provider.create(props).outs
    p.EmqxUserAclProvider().create(acl_props(broker))
    p.EmqxUserAclProvider().create(acl_props(broker, "intruder"))
    refreshed = provider.read("authorization", outs).outs
    assert list(refreshed["foreign_user_rules"]) == ["dev_intruder"]
    provider.update("authorization", refreshed, props)
    assert list(in_state(broker, lambda s: s.authz_user_rules)) == ["dev_a"]


def test_source_order_and_an_enabled_file_source_are_restored(broker: EmqxDouble) -> None:
    provider, props = p.EmqxAuthorizationProvider(), authorization_props(broker)
    outs = provider.create(props).outs
    assert api(broker, "POST", "/authorization/sources/file/move", {"position": "front"}).status_code == 204
    in_state(broker, lambda s: s.authz_source("file").update(enable=True))
    refreshed = provider.read("authorization", outs).outs
    assert [s["type"] for s in refreshed["sources"]] == ["file", "built_in_database"]
    provider.update("authorization", refreshed, props)
    with broker.state() as state:
        assert [(s["type"], s["enable"]) for s in state.authz_sources] == [("built_in_database", True),
                                                                          ("file", False)]


def test_settings_are_sent_whole_for_the_version_at_hand(broker: EmqxDouble) -> None:
    """5.8 refuses the 6.x keys (unknown fields); 6.x resets any key left out of a PUT."""
    provider, props = p.EmqxAuthorizationProvider(), authorization_props(broker)
    outs = provider.create(props).outs
    settings = api(broker, "GET", "/authorization/settings").json()
    if broker.version == "6.x":
        assert settings["ignore_backend_failures"] is False
        changed = {**settings, "ignore_backend_failures": True, "no_match": "allow"}
        assert api(broker, "PUT", "/authorization/settings", changed).status_code == 200
        refreshed = provider.read("authorization", outs).outs
        assert sorted(provider.changed_keys(props, refreshed)) == ["ignore_backend_failures", "no_match"]
        provider.update("authorization", refreshed, props)
        settings = api(broker, "GET", "/authorization/settings").json()
        assert settings["ignore_backend_failures"] is False and settings["no_match"] == "deny"
    else:
        assert "ignore_backend_failures" not in settings and settings["no_match"] == "deny"


# ---- authorization caches --------------------------------------------------------------------


def connected_device(broker: EmqxDouble) -> None:
    prepare_authorization(broker)
    broker.connect("dev-a-1", "dev_a")


def test_a_narrowed_acl_takes_effect_for_connected_clients(broker: EmqxDouble) -> None:
    connected_device(broker)
    provider, props = p.EmqxUserAclProvider(), acl_props(broker)
    outs = provider.create(props).outs
    assert broker.authorize("dev-a-1", "publish", "tenants/a/t") == "allow"  # and cached
    provider.update("dev_a", outs, props | {"rules": p.topic_prefix_rules("b")})
    assert broker.authorize("dev-a-1", "publish", "tenants/a/t") == "deny"
    assert not broker.connected("dev-a-1")  # deny_action: disconnect


def test_without_a_drain_a_connected_client_keeps_its_cached_allow(broker: EmqxDouble) -> None:
    """What EMQX does when rules change without a drain (someone edits the table): the old
    decision stays for up to cache.ttl; this is why the providers drain."""
    connected_device(broker)
    p.EmqxUserAclProvider().create(acl_props(broker))
    assert broker.authorize("dev-a-1", "publish", "tenants/a/t") == "allow"
    in_state(broker, lambda s: s.authz_user_rules.update(dev_a=[]))
    assert broker.authorize("dev-a-1", "publish", "tenants/a/t") == "allow"
    assert api(broker, "DELETE", "/authorization/cache").status_code == 204
    assert broker.authorize("dev-a-1", "publish", "tenants/a/t") == "deny"


def test_a_removed_device_acl_takes_effect_for_connected_clients(broker: EmqxDouble) -> None:
    connected_device(broker)
    provider, props = p.EmqxUserAclProvider(), acl_props(broker)
    outs = provider.create(props).outs
    assert broker.authorize("dev-a-1", "publish", "tenants/a/t") == "allow"
    provider.delete("dev_a", outs)
    assert broker.authorize("dev-a-1", "publish", "tenants/a/t") == "deny"


def test_the_node_cache_is_reset_where_it_exists(broker: EmqxDouble) -> None:
    before = in_state(broker, lambda s: (s.cache_drains, s.node_cache_resets))
    with p.EmqxApi(broker.url, API_KEY, API_SECRET, "test") as client:
        p.drain_authorization_caches(client)
    after = in_state(broker, lambda s: (s.cache_drains, s.node_cache_resets))
    assert after == (before[0] + 1, before[1] + (1 if broker.version == "6.x" else 0))
