"""The EMQX rule provider: updates send the full body and recreate a missing rule on 5.8 and 6.x,
and the tenant rule's SQL selects the ingest contract from the tenant's topics."""

from __future__ import annotations

import pytest

from components.providers import emqx as p
from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.server import EmqxDouble
from tests.providers.emqx_provider_helpers import (
    api,
    in_state,
    rule_props,
)


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

