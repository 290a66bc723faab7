"""The Pulumi resources for EMQX objects: typed args, and the secret outputs of each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.providers.emqx.auth import EmqxAuthenticatorProvider, EmqxAuthorizationProvider
from components.providers.emqx.bridges import EmqxActionProvider, EmqxConnectorProvider, EmqxRuleProvider
from components.providers.emqx.client import DEFAULT_AUTHZ_CACHE, DEFAULT_PASSWORD_HASH, DEFAULT_READY_TIMEOUT_S
from components.providers.emqx.users import EmqxUserAclProvider, EmqxUserProvider

# ---- Pulumi resources -------------------------------------------------------------------


@dataclass
class EmqxConnection:
    """Where and how to reach the EMQX management API; every resource carries it."""

    api_url: pulumi.Input[str]
    api_key: pulumi.Input[str]
    api_secret: pulumi.Input[str]
    ready_timeout: pulumi.Input[float] = DEFAULT_READY_TIMEOUT_S

    def props(self) -> dict[str, Any]:
        return {"api_url": self.api_url, "api_key": self.api_key,
                "api_secret": pulumi.Output.secret(self.api_secret), "ready_timeout": self.ready_timeout}


def _options(opts: pulumi.ResourceOptions | None, secret_outputs: Sequence[str]) -> pulumi.ResourceOptions:
    secrets = pulumi.ResourceOptions(additional_secret_outputs=["api_secret", *secret_outputs])
    return pulumi.ResourceOptions.merge(opts, secrets)


@dataclass
class EmqxAuthenticatorArgs:
    connection: EmqxConnection
    password_hash_algorithm: pulumi.Input[Mapping[str, Any]] = field(
        default_factory=lambda: dict(DEFAULT_PASSWORD_HASH))
    user_id_type: pulumi.Input[str] = "username"
    enable: pulumi.Input[bool] = True


class EmqxAuthenticator(pulumi.dynamic.Resource, module="emqx", name="Authenticator"):
    """The built-in-database authenticator. Outputs: emqx_id, user_id_type, password_hash_algorithm, enable."""

    emqx_id: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxAuthenticatorArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "user_id_type": args.user_id_type,
                 "password_hash_algorithm": args.password_hash_algorithm, "enable": args.enable, "emqx_id": None}
        super().__init__(EmqxAuthenticatorProvider(), resource_name, props, _options(opts, []))


@dataclass
class EmqxAuthorizationArgs:
    connection: EmqxConnection
    no_match: pulumi.Input[str] = "deny"
    deny_action: pulumi.Input[str] = "disconnect"
    cache: pulumi.Input[Mapping[str, Any]] = field(default_factory=lambda: dict(DEFAULT_AUTHZ_CACHE))
    max_rules: pulumi.Input[int] = 100


class EmqxAuthorization(pulumi.dynamic.Resource, module="emqx", name="Authorization"):
    """Deny-by-default authorization. Outputs: emqx_id, no_match, deny_action, cache, max_rules,
    built_in_database_enabled, file_source_enabled."""

    emqx_id: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxAuthorizationArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "no_match": args.no_match, "deny_action": args.deny_action,
                 "cache": args.cache, "max_rules": args.max_rules,
                 # What this resource is for: checked on read like any other input.
                 "built_in_database_enabled": True, "file_source_enabled": False, "emqx_id": None}
        super().__init__(EmqxAuthorizationProvider(), resource_name, props, _options(opts, []))


@dataclass
class EmqxConnectorArgs:
    connection: EmqxConnection
    name: pulumi.Input[str]
    url: pulumi.Input[str]
    headers: pulumi.Input[Mapping[str, str]] = field(default_factory=lambda: {"content-type": "application/json"})
    connect_timeout: pulumi.Input[str] = "5s"
    pool_size: pulumi.Input[int] = 8
    enable_pipelining: pulumi.Input[int] = 100
    health_check_interval: pulumi.Input[str] = "15s"


class EmqxConnector(pulumi.dynamic.Resource, module="emqx", name="Connector"):
    """An HTTP connector. Outputs: emqx_id (`http:<name>`), name, url, headers, ..."""

    emqx_id: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxConnectorArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "name": args.name, "url": args.url, "headers": args.headers,
                 "connect_timeout": args.connect_timeout, "pool_size": args.pool_size,
                 "enable_pipelining": args.enable_pipelining, "health_check_interval": args.health_check_interval,
                 "emqx_id": None}
        super().__init__(EmqxConnectorProvider(), resource_name, props, _options(opts, []))


@dataclass
class EmqxActionArgs:
    connection: EmqxConnection
    name: pulumi.Input[str]
    connector: pulumi.Input[str]  # the connector's name (not its id)
    bearer_token: pulumi.Input[str]  # secret; sent as "Authorization: Bearer <token>"
    headers: pulumi.Input[Mapping[str, str]] = field(default_factory=dict)  # e.g. {"X-Tenant": slug}
    path: pulumi.Input[str] = "/ingest"
    method: pulumi.Input[str] = "post"
    body: pulumi.Input[str] = "${.}"
    query_mode: pulumi.Input[str] = "async"
    request_ttl: pulumi.Input[str] = "45s"
    inflight_window: pulumi.Input[int] = 100
    worker_pool_size: pulumi.Input[int] = 16


class EmqxAction(pulumi.dynamic.Resource, module="emqx", name="Action"):
    """An HTTP action. Outputs: emqx_id (`http:<name>`, what a rule's actions list takes), name,
    connector, path, method, headers, body, query_mode, request_ttl, inflight_window,
    worker_pool_size, bearer_token_sha256 (secret). The token itself is not an output."""

    emqx_id: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxActionArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "name": args.name, "connector": args.connector,
                 "bearer_token": pulumi.Output.secret(args.bearer_token), "headers": args.headers,
                 "path": args.path, "method": args.method, "body": args.body, "query_mode": args.query_mode,
                 "request_ttl": args.request_ttl, "inflight_window": args.inflight_window,
                 "worker_pool_size": args.worker_pool_size, "bearer_token_sha256": None, "emqx_id": None}
        super().__init__(EmqxActionProvider(), resource_name, props,
                         _options(opts, ["bearer_token", "bearer_token_sha256"]))


@dataclass
class EmqxRuleArgs:
    connection: EmqxConnection
    rule_id: pulumi.Input[str]
    sql: pulumi.Input[str]
    actions: pulumi.Input[Sequence[pulumi.Input[str]]]  # action ids, e.g. [action.emqx_id]
    enable: pulumi.Input[bool] = True
    description: pulumi.Input[str] = ""


class EmqxRule(pulumi.dynamic.Resource, module="emqx", name="Rule"):
    """A rule. Outputs: emqx_id (= rule_id), rule_id, sql, actions, enable, description."""

    emqx_id: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxRuleArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "rule_id": args.rule_id, "sql": args.sql, "actions": args.actions,
                 "enable": args.enable, "description": args.description, "emqx_id": None}
        super().__init__(EmqxRuleProvider(), resource_name, props, _options(opts, []))


@dataclass
class EmqxUserArgs:
    connection: EmqxConnection
    user_id: pulumi.Input[str]
    password: pulumi.Input[str]  # secret
    is_superuser: pulumi.Input[bool] = False


class EmqxUser(pulumi.dynamic.Resource, module="emqx", name="User"):
    """A device user. Outputs: emqx_id (= user_id), user_id, is_superuser, password_sha256 (secret)."""

    emqx_id: pulumi.Output[str]
    user_id: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxUserArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "user_id": args.user_id, "password": pulumi.Output.secret(args.password),
                 "is_superuser": args.is_superuser, "password_sha256": None, "emqx_id": None}
        super().__init__(EmqxUserProvider(), resource_name, props,
                         _options(opts, ["password", "password_sha256"]))


def topic_prefix_rules(topic_prefix: str) -> list[dict[str, Any]]:
    """The ACL of a tenant's device: publish and subscribe under `tenants/<prefix>/#` only."""
    topic = f"tenants/{topic_prefix}/#"
    return [{"topic": topic, "permission": "allow", "action": "publish"},
            {"topic": topic, "permission": "allow", "action": "subscribe"}]


@dataclass
class EmqxUserAclArgs:
    connection: EmqxConnection
    username: pulumi.Input[str]
    rules: pulumi.Input[Sequence[Mapping[str, Any]]]  # e.g. topic_prefix_rules("umc")


class EmqxUserAcl(pulumi.dynamic.Resource, module="emqx", name="UserAcl"):
    """The authorization rules of one username. Outputs: emqx_id (= username), username, rules."""

    emqx_id: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxUserAclArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "username": args.username, "rules": args.rules, "emqx_id": None}
        super().__init__(EmqxUserAclProvider(), resource_name, props, _options(opts, []))
