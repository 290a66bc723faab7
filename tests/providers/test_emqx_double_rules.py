"""The EMQX API double keeps to the documented contract (reference/emqx-api.md), one behaviour per test:
rules (shape, duplicates, GET-only fields, PUT as 5.8's upsert and 6.x's merge, pagination)."""

from __future__ import annotations

import pytest

from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.server import EmqxDouble
from tests.providers.emqx_double_helpers import (
    RULE,
    call,
    code,
)

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

