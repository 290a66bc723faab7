"""The Pulumi resources for EMQX objects: typed args, and the secret outputs of each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.providers.emqx.auth import EmqxAuthenticatorProvider, EmqxAuthorizationProvider
from components.providers.emqx.bridges import EmqxActionProvider, EmqxConnectorProvider, EmqxRuleProvider
from components.providers.emqx.client import DEFAULT_AUTHZ_CACHE, DEFAULT_PASSWORD_HASH, DEFAULT_READY_TIMEOUT_S
from components.providers.emqx.delivery import ActionDelivery
from components.providers.emqx.postgres_auth import EmqxPostgresAuthenticatorProvider
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


def default_authorization_sources(max_rules: int = 100) -> list[dict[str, Any]]:
    """Devices' rules in the built-in database, then the shipped `file` source switched off (its
    acl.conf ends in `{allow, all}`, which would allow whatever the database does not match)."""
    return [{"type": "built_in_database", "enable": True, "max_rules": max_rules},
            {"type": "file", "enable": False}]


@dataclass
class EmqxAuthorizationArgs:
    connection: EmqxConnection
    no_match: pulumi.Input[str] = "deny"
    deny_action: pulumi.Input[str] = "disconnect"
    cache: pulumi.Input[Mapping[str, Any]] = field(default_factory=lambda: dict(DEFAULT_AUTHZ_CACHE))
    max_rules: int = 100  # of the built_in_database source, when `sources` is not given
    # The sources in evaluation order; anything else EMQX has is removed.
    sources: Sequence[Mapping[str, Any]] | None = None
    # Usernames whose built-in-database rules EmqxUserAcl resources manage: when given, the rules
    # of every other username are drift too. None leaves the `users` table to the EmqxUserAcls.
    managed_usernames: pulumi.Input[Sequence[str]] | None = None
    # 6.x only (5.8 has neither): kept at EMQX's defaults, since 6.x resets them on every settings PUT.
    include_mountpoint: pulumi.Input[bool] = False
    ignore_backend_failures: pulumi.Input[bool] = False
    # The password of the `postgresql` source in `sources` (secret; kept out of `sources`).
    database_password: pulumi.Input[str] | None = None
    # 6.2's node-wide cache of query results (`/authorization/node_cache`); None leaves EMQX's.
    node_cache: pulumi.Input[Mapping[str, Any]] | None = None
    # How long create and update wait for EMQX to report its database connection `connected`.
    status_timeout: pulumi.Input[float] | None = None


class EmqxAuthorization(pulumi.dynamic.Resource, module="emqx", name="Authorization"):
    """The broker's whole authorization configuration. Outputs: emqx_id, sources, no_match,
    deny_action, cache, include_mountpoint, ignore_backend_failures, managed_usernames, and the
    drift it removes: all_rules, client_rules, foreign_user_rules (empty when EMQX is as desired)."""

    emqx_id: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxAuthorizationArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        sources = args.sources if args.sources is not None else default_authorization_sources(args.max_rules)
        props = {**args.connection.props(), "no_match": args.no_match, "deny_action": args.deny_action,
                 "cache": args.cache, "include_mountpoint": args.include_mountpoint,
                 "ignore_backend_failures": args.ignore_backend_failures,
                 "sources": [dict(source) for source in sources], "managed_usernames": args.managed_usernames,
                 # What this resource is for: checked on read like any other input.
                 "all_rules": [], "client_rules": {}, "foreign_user_rules": {}, "emqx_id": None}
        if args.database_password is not None:
            props.update(database_password=pulumi.Output.secret(args.database_password),
                         database_password_sha256=None)
        if args.node_cache is not None:
            props["node_cache"] = args.node_cache
        if args.status_timeout is not None:
            props["status_timeout"] = args.status_timeout
        super().__init__(EmqxAuthorizationProvider(), resource_name, props,
                         _options(opts, ["database_password", "database_password_sha256"]))


@dataclass
class EmqxPostgresAuthenticatorArgs:
    connection: EmqxConnection
    server: pulumi.Input[str]  # host:port as EMQX reaches the database
    database: pulumi.Input[str]
    username: pulumi.Input[str]
    password: pulumi.Input[str]  # secret
    query: pulumi.Input[str]
    password_hash_algorithm: pulumi.Input[Mapping[str, Any]]
    pool_size: pulumi.Input[int] = 8
    ssl: pulumi.Input[Mapping[str, Any]] = field(default_factory=lambda: {"enable": False})
    enable: pulumi.Input[bool] = True
    # 6.2's node-wide cache of query results (`/authentication/settings`); None leaves EMQX's.
    node_cache: pulumi.Input[Mapping[str, Any]] | None = None
    status_timeout: pulumi.Input[float] | None = None


class EmqxPostgresAuthenticator(pulumi.dynamic.Resource, module="emqx", name="PostgresAuthenticator"):
    """`password_based:postgresql`. Outputs: emqx_id, server, database, username, pool_size, ssl,
    query, password_hash_algorithm, enable, node_cache, other_authenticators (empty when EMQX has
    no other), password_sha256 (secret). The password itself is not an output."""

    emqx_id: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxPostgresAuthenticatorArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "server": args.server, "database": args.database,
                 "username": args.username, "password": pulumi.Output.secret(args.password),
                 "pool_size": args.pool_size, "ssl": args.ssl, "query": args.query,
                 "password_hash_algorithm": args.password_hash_algorithm, "enable": args.enable,
                 "node_cache": args.node_cache, "status_timeout": args.status_timeout,
                 "other_authenticators": [], "password_sha256": None, "emqx_id": None}
        super().__init__(EmqxPostgresAuthenticatorProvider(), resource_name, props,
                         _options(opts, ["password", "password_sha256"]))


@dataclass
class EmqxConnectorArgs:
    connection: EmqxConnection
    name: pulumi.Input[str]
    url: pulumi.Input[str]
    headers: pulumi.Input[Mapping[str, str]] = field(default_factory=lambda: {"content-type": "application/json"})
    connect_timeout: pulumi.Input[str] = "5s"
    # Chosen by measurement (benchmarks/README.md, "Connector settings"): the ingest service takes
    # a connection's pipelined requests concurrently into one group commit. 8 x 100 gave the most
    # messages/s with p99 under 50 ms; 16 x 100 gained ~12% at 3x the p99, 8 x 200 lost
    # throughput (the service pauses reading beyond MAX_INFLIGHT_PER_CONNECTION=128 and p99
    # reached 190 ms), 4 x 100 and 8 x 50 lost 15-20%. Keep pool_size a multiple of the ingest
    # WORKERS (connections are dealt to workers in turn) and enable_pipelining <= 128.
    pool_size: pulumi.Input[int] = 8
    enable_pipelining: pulumi.Input[int] = 100
    health_check_interval: pulumi.Input[str] = "15s"
    enable: pulumi.Input[bool] = True


class EmqxConnector(pulumi.dynamic.Resource, module="emqx", name="Connector"):
    """An HTTP connector. Outputs: emqx_id (`http:<name>`), name, url, headers, ..."""

    emqx_id: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxConnectorArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "name": args.name, "url": args.url, "headers": args.headers,
                 "connect_timeout": args.connect_timeout, "pool_size": args.pool_size,
                 "enable_pipelining": args.enable_pipelining, "health_check_interval": args.health_check_interval,
                 "enable": args.enable, "emqx_id": None}
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
    # 16 buffer workers x 100 in flight = 1,600 requests per tenant may wait for answers, more
    # than the connector's 8 x 100 = 800 pipelined slots, so the connector (measured above) stays
    # what limits the rate; fewer would cap a busy tenant below it.
    inflight_window: pulumi.Input[int] = 100
    worker_pool_size: pulumi.Input[int] = 16
    # What survives an ingest or database outage: request_ttl, max_buffer_bytes, buffer mode (delivery.py).
    delivery: ActionDelivery = field(default_factory=ActionDelivery.for_window)
    enable: pulumi.Input[bool] = True


class EmqxAction(pulumi.dynamic.Resource, module="emqx", name="Action"):
    """An HTTP action. Outputs: emqx_id (`http:<name>`, what a rule's actions list takes), name,
    connector, path, method, headers, body, query_mode, request_ttl, inflight_window,
    worker_pool_size, max_buffer_bytes, buffer_mode, buffer_seg_bytes, enable,
    bearer_token_sha256 (secret). The token itself is not an output."""

    emqx_id: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxActionArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "name": args.name, "connector": args.connector,
                 "bearer_token": pulumi.Output.secret(args.bearer_token), "headers": args.headers,
                 "path": args.path, "method": args.method, "body": args.body, "query_mode": args.query_mode,
                 "request_ttl": args.delivery.request_ttl, "max_buffer_bytes": args.delivery.max_buffer_bytes,
                 "buffer_mode": args.delivery.buffer_mode, "buffer_seg_bytes": args.delivery.buffer_seg_bytes,
                 "inflight_window": args.inflight_window, "worker_pool_size": args.worker_pool_size,
                 "enable": args.enable, "bearer_token_sha256": None, "emqx_id": None}
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
    # Take over (and reset the password of) a user that already exists in EMQX.
    adopt_existing: pulumi.Input[bool] = False


class EmqxUser(pulumi.dynamic.Resource, module="emqx", name="User"):
    """A device user. Outputs: emqx_id (= user_id), user_id, is_superuser, password_sha256 (secret)."""

    emqx_id: pulumi.Output[str]
    user_id: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxUserArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "user_id": args.user_id, "password": pulumi.Output.secret(args.password),
                 "is_superuser": args.is_superuser, "adopt_existing": args.adopt_existing,
                 "password_sha256": None, "emqx_id": None}
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
