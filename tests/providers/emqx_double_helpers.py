"""Request bodies and a raw HTTP client shared by the EMQX API double's own tests (test_emqx_double_*.py)."""

from __future__ import annotations

from typing import Any

import requests

from tests.emqx_double.fixtures import API_KEY, API_SECRET
from tests.emqx_double.server import EmqxDouble

AUTH = (API_KEY, API_SECRET)
USERS = "/authentication/password_based:built_in_database/users"
AUTHZ_USERS = "/authorization/sources/built_in_database/rules/users"
CONNECTOR = {"type": "http", "name": "ingest", "url": "http://ingest:8000"}
ACTION = {"type": "http", "name": "tenant_a", "connector": "ingest",
          "parameters": {"path": "/ingest", "method": "post", "body": "${.}",
                         "headers": {"X-Tenant": "a", "Authorization": "Bearer tok-a-123"}}}
RULE = {"id": "tenant_a", "sql": 'SELECT * FROM "tenants/a/#"', "actions": ["http:tenant_a"]}
AUTHENTICATOR = {"mechanism": "password_based", "backend": "built_in_database", "user_id_type": "username",
                 "password_hash_algorithm": {"name": "sha256", "salt_position": "suffix"}}


def call(double: EmqxDouble, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("auth", AUTH)
    if body is not None:
        kwargs["json"] = body
    return requests.request(method, f"{double.url}/api/v5{path}", timeout=5, **kwargs)


def code(response: requests.Response) -> str:
    return response.json()["code"]


def with_connector_and_action(double: EmqxDouble) -> None:
    assert call(double, "POST", "/connectors", CONNECTOR).status_code == 201
    assert call(double, "POST", "/actions", ACTION).status_code == 201

