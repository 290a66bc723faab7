"""The EMQX API double keeps to the documented contract (reference/emqx-api.md), one behaviour per test:
HTTP connectors and actions (defaults, redaction, duplicates, PUT rules, deletes while in use)."""

from __future__ import annotations

import json

from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.server import EmqxDouble
from tests.providers.emqx_double_helpers import (
    ACTION,
    CONNECTOR,
    RULE,
    call,
    code,
    with_connector_and_action,
)

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

