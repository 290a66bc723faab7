"""What the double stores: the broker's config objects, Mnesia tables, metrics and connected clients."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from tests.emqx_double.schema import DEFAULT_FILE_SOURCE


@dataclass
class ConnectedClient:
    """A connected MQTT client as authorization sees it: one channel process with its own cache.

    `cache` maps (action, topic) to (decision, monotonic time stored): emqx_authz_cache keeps
    one such table per connection process (apps/emqx/src/emqx_authz_cache.erl).
    """

    clientid: str
    username: str
    is_superuser: bool = False
    cache: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)


@dataclass
class EmqxState:
    """Everything the double stores. Secrets are kept in clear here; responses redact them."""

    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> config
    actions: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> config
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> raw rule
    authenticators: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> config
    global_chain_exists: bool = False  # created by the first authenticator, never removed
    authn_users: dict[str, dict[str, Any]] = field(default_factory=dict)  # user_id -> password, is_superuser
    authz_sources: list[dict[str, Any]] = field(default_factory=lambda: [copy.deepcopy(DEFAULT_FILE_SOURCE)])
    authz_user_rules: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # username -> rules
    authz_client_rules: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # clientid -> rules
    authz_all_rules: list[dict[str, Any]] = field(default_factory=list)  # the `all` table
    authz_settings: dict[str, Any] = field(default_factory=dict)
    node_cache: dict[str, Any] = field(default_factory=dict)  # 6.x only: authorization.node_cache
    authn_settings: dict[str, Any] = field(default_factory=dict)  # 6.x only: authentication_settings
    # Counters and gauges per action name / rule id; what emqx_metrics_worker keeps in memory.
    action_metrics: dict[str, dict[str, int]] = field(default_factory=dict)
    rule_metrics: dict[str, dict[str, int]] = field(default_factory=dict)
    clients: dict[str, ConnectedClient] = field(default_factory=dict)  # clientid -> client
    # (clientid, username, why) of every session the broker ended: takeover, deny_action disconnect.
    sessions_ended: list[tuple[str, str, str]] = field(default_factory=list)
    # drain_cache/0 stores a timestamp; entries cached before it count as expired.
    authz_cache_drained_at: float = float("-inf")
    cache_drains: int = 0  # DELETE /authorization/cache calls
    node_cache_resets: int = 0  # POST /authorization/node_cache/reset calls (6.x)

    def authz_source(self, source_type: str) -> dict[str, Any] | None:
        return next((s for s in self.authz_sources if s["type"] == source_type), None)
