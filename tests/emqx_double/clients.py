"""Connected clients as authorization sees them: the decision chain and the per-client cache.

Tests connect a client (`EmqxDouble.connect`) and ask what a publish or subscribe would get
(`EmqxDouble.authorize`). What it stands in for:

* `apps/emqx/src/emqx_access_control.erl:103-153` and `emqx_authz.erl:482-556`: superusers are
  allowed; the enabled sources are tried in order, the first `allow`/`deny` wins; nothing
  matching falls to `authorization.no_match`; the final decision is cached per connection.
* `emqx_authz_mnesia.erl:100-122`: inside `built_in_database`, the clientid rules, then the
  username rules, then the `all` rules; the first matching rule decides.
* The shipped `acl.conf` ends in `{allow, all}.`: an enabled `file` source whose rules still
  contain it allows everything that reaches it (other file rules are not modelled).
* `apps/emqx/src/emqx_authz_cache.erl`: entries live `cache.ttl`; an entry stored before the last
  drain (`DELETE /authorization/cache`, or any change of the sources) counts as expired; 6.2.2
  caches publish decisions only (`[6.2.2] emqx_authz_cache.erl:88,112`).
* `deny_action: disconnect` disconnects a client whose publish is denied.
* `GET|DELETE /clients/{clientid}/authorization/cache` (`emqx_mgmt_api_clients.erl:238-264`):
  404 `CLIENTID_NOT_FOUND` for a client that is not connected.
"""

from __future__ import annotations

import time
from typing import Any

from tests.emqx_double.schema import Answer, ApiError, Request, duration_ms, now_ms
from tests.emqx_double.state import ConnectedClient, EmqxState


def _level_matches(pattern: list[str], levels: list[str]) -> bool:
    for index, level in enumerate(pattern):
        if level == "#":
            return True
        if index >= len(levels) or (level != "+" and level != levels[index]):
            return False
    return len(pattern) == len(levels)


def topic_matches(rule_topic: str, topic: str, client: ConnectedClient) -> bool:
    """emqx_authz_rule:match_topics/3: `eq` is literal; placeholders are filled, then MQTT wildcards."""
    if rule_topic.startswith("eq "):
        return rule_topic[3:] == topic
    rendered = rule_topic.replace("${username}", client.username).replace("${clientid}", client.clientid)
    return _level_matches(rendered.split("/"), topic.split("/"))


def rule_matches(rule: dict[str, Any], action: str, topic: str, qos: int, retain: bool,
                 client: ConnectedClient) -> bool:
    if rule["action"] not in ("all", action) or qos not in rule.get("qos", [0, 1, 2]):
        return False
    if action == "publish" and rule.get("retain", "all") not in ("all", retain):
        return False
    return topic_matches(rule["topic"], topic, client)


class ClientsApi:
    """Connected clients and their caches; mixed into EmqxDouble, which provides the state."""

    version: str
    _state: EmqxState

    def _client_routes(self) -> list[tuple[str, tuple[str, ...], Any]]:
        cache = ("clients", "*", "authorization", "cache")
        return [("GET", cache, self._get_client_cache), ("DELETE", cache, self._delete_client_cache)]

    # ---- test-side API -------------------------------------------------------------------

    def connect(self, clientid: str, username: str, *, is_superuser: bool = False) -> None:
        """A client connects (authentication is not modelled here)."""
        with self._lock:  # type: ignore[attr-defined]
            self._state.clients[clientid] = ConnectedClient(clientid, username, is_superuser)

    def connected(self, clientid: str) -> bool:
        with self._lock:  # type: ignore[attr-defined]
            return clientid in self._state.clients

    def authorize(self, clientid: str, action: str, topic: str, *, qos: int = 1, retain: bool = False) -> str:
        """What EMQX answers a connected client's publish or subscribe: "allow" or "deny"."""
        with self._lock:  # type: ignore[attr-defined]
            client = self._state.clients[clientid]
            settings = self._state.authz_settings
            cache = settings["cache"]
            cacheable = cache["enable"] and (self.version == "5.8" or action == "publish")
            key = (f"{action}:{qos}:{retain}", topic)
            now = time.monotonic()
            if cacheable and key in client.cache:
                decision, stored_at = client.cache[key]
                fresh = stored_at > self._state.authz_cache_drained_at
                if fresh and (now - stored_at) * 1000 < duration_ms(cache["ttl"]):
                    return self._apply(client, action, decision)
            decision = self._decide(client, action, topic, qos, retain)
            if cacheable:
                client.cache[key] = (decision, now)
            return self._apply(client, action, decision)

    def _apply(self, client: ConnectedClient, action: str, decision: str) -> str:
        if decision == "deny" and action == "publish" and self._state.authz_settings["deny_action"] == "disconnect":
            self._state.clients.pop(client.clientid, None)
        return decision

    def _decide(self, client: ConnectedClient, action: str, topic: str, qos: int, retain: bool) -> str:
        if client.is_superuser:
            return "allow"
        for source in self._state.authz_sources:
            if not source["enable"]:
                continue
            if source["type"] == "built_in_database":
                tables = (self._state.authz_client_rules.get(client.clientid, []),
                          self._state.authz_user_rules.get(client.username, []), self._state.authz_all_rules)
                for rules in tables:
                    for rule in rules:
                        if rule_matches(rule, action, topic, qos, retain, client):
                            return rule["permission"]
            elif source["type"] == "file" and "{allow, all}." in source.get("rules", ""):
                return "allow"
        return self._state.authz_settings["no_match"]

    # ---- HTTP ------------------------------------------------------------------------------

    def _client(self, clientid: str) -> ConnectedClient:
        client = self._state.clients.get(clientid)
        if client is None:
            raise ApiError(404, "CLIENTID_NOT_FOUND", "Client ID not found")
        return client

    def _get_client_cache(self, request: Request, captured: list[str]) -> Answer:
        client = self._client(captured[0])
        entries = [{"access": access, "topic": topic, "result": decision, "updated_time": now_ms()}
                   for (access, topic), (decision, stored_at) in client.cache.items()
                   if stored_at > self._state.authz_cache_drained_at]
        return Answer(200, entries)

    def _delete_client_cache(self, request: Request, captured: list[str]) -> Answer:
        self._client(captured[0]).cache.clear()
        return Answer(204)
