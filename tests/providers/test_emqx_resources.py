"""The EMQX Resource classes under Pulumi mocks (typed resources, secret inputs and outputs) and
their providers as Pulumi serialises them (pickled without state or secrets)."""

from __future__ import annotations

import asyncio
from typing import Any

import dill
import pulumi
import pytest
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

from components.providers import emqx as p

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


# ---- the providers, as Pulumi pickles them into the stack's state ----------------------------


def test_providers_pickle_without_state_or_secrets() -> None:
    for provider in (p.EmqxAuthenticatorProvider(), p.EmqxAuthorizationProvider(), p.EmqxConnectorProvider(),
                     p.EmqxActionProvider(), p.EmqxRuleProvider(), p.EmqxUserProvider(), p.EmqxUserAclProvider()):
        assert vars(provider) == {}
        assert type(dill.loads(dill.dumps(provider, recurse=True))) is type(provider)

