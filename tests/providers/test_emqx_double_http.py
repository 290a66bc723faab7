"""The EMQX API double keeps to the documented contract (reference/emqx-api.md), one behaviour per test:
API-key authentication, the status endpoint, request bodies and paths, and the test-only access."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.fixtures import API_KEY
from tests.emqx_double.server import EmqxDouble
from tests.providers.emqx_double_helpers import (
    ACTION,
    AUTHENTICATOR,
    CONNECTOR,
    RULE,
    USERS,
    call,
    code,
)

# ---- authentication and status ----------------------------------------------------------


def test_missing_authorization_header_is_401_header_error(emqx: EmqxDouble) -> None:
    response = call(emqx, "GET", "/connectors", auth=None)
    assert response.status_code == 401 and code(response) == "AUTHORIZATION_HEADER_ERROR"
    assert "WWW-Authenticate" in response.headers


def test_wrong_secret_is_401_bad_api_key_with_www_authenticate(emqx: EmqxDouble) -> None:
    response = call(emqx, "GET", "/connectors", auth=(API_KEY, "wrong"))
    assert response.status_code == 401 and code(response) == "BAD_API_KEY_OR_SECRET"
    assert response.headers["WWW-Authenticate"] == 'Basic Realm="emqx-dashboard"'


def test_bearer_tokens_are_not_issued_by_the_double(emqx: EmqxDouble) -> None:
    response = call(emqx, "GET", "/rules", auth=None, headers={"Authorization": "Bearer abc"})
    assert response.status_code == 401 and code(response) == "BAD_TOKEN"


def test_status_needs_no_auth_and_sends_retry_after(emqx: EmqxDouble) -> None:
    response = requests.get(f"{emqx.url}/api/v5/status", timeout=5)
    assert response.status_code == 200 and "is running" in response.text
    assert response.headers["retry-after"] == "15"
    assert requests.get(f"{emqx.url}/status?format=json", timeout=5).json()["rel_vsn"] == "v5.8.9"


def test_status_answers_503_for_the_first_n_calls(emqx: EmqxDouble) -> None:
    emqx.answer_not_ready(calls=2)
    statuses = [requests.get(f"{emqx.url}/api/v5/status", timeout=5).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_status_answers_503_until_flipped(emqx: EmqxDouble) -> None:
    emqx.answer_not_ready()
    assert requests.get(f"{emqx.url}/api/v5/status", timeout=5).status_code == 503
    emqx.set_ready()
    assert requests.get(f"{emqx.url}/api/v5/status", timeout=5).status_code == 200


# ---- bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/connectors", "/actions", "/rules", "/authentication", USERS,
                                  "/authorization/sources", "/authorization/settings"])
def test_non_json_body_is_415(emqx: EmqxDouble, path: str) -> None:
    method = "PUT" if path == "/authorization/settings" else "POST"
    response = call(emqx, method, path, data=json.dumps({"x": 1}), headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and code(response) == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize("path,body", [
    ("/connectors", {**CONNECTOR, "max_retries": 3}),
    ("/authentication", {**AUTHENTICATOR, "salt": "x"}),
    ("/authorization/sources", {"type": "built_in_database", "enable": True, "rules": []}),
])
def test_unknown_fields_are_400_with_json_message(emqx: EmqxDouble, path: str, body: dict[str, Any]) -> None:
    response = call(emqx, "POST", path, body)
    assert response.status_code == 400 and code(response) == "BAD_REQUEST"
    assert json.loads(response.json()["message"])["reason"] == "unknown_fields"


def test_action_with_batch_size_is_400(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/connectors", CONNECTOR)
    response = call(emqx, "POST", "/actions", {**ACTION, "resource_opts": {"batch_size": 10}})
    assert response.status_code == 400


def test_path_segments_are_url_decoded(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/authentication", AUTHENTICATOR)
    call(emqx, "POST", USERS, {"user_id": "a/b c", "password": "pw-123456"})
    assert call(emqx, "GET", f"{USERS}/a%2Fb%20c").json()["user_id"] == "a/b c"
    assert call(emqx, "GET", "/authentication/password_based%3Abuilt_in_database").status_code == 200


# ---- test-only access -------------------------------------------------------------------


def test_state_can_be_changed_directly_and_calls_are_recorded(emqx: EmqxDouble) -> None:
    call(emqx, "POST", "/rules", RULE)
    with emqx.state() as state:
        state.rules["tenant_a"]["enable"] = False
    assert call(emqx, "GET", "/rules/tenant_a").json()["enable"] is False
    assert emqx.calls_to("POST", "/api/v5/rules") == ["/api/v5/rules"]

