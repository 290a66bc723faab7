"""MQTT clients: CONNECT through the authentication chain, and what a publish or subscribe gets.

Tests connect a client through authentication (`EmqxDouble.mqtt_connect`) or place one as
connected (`EmqxDouble.connect`), and ask what a publish or subscribe would get
(`EmqxDouble.authorize`). What it stands in for:

* `apps/emqx/src/emqx_channel.erl:579-619` and `emqx_cm.erl:297-336` (reference 14.4): the client
  id is settled first, then authentication runs; a client that fails it is refused (CONNACK
  0x86/0x87) and never touches the existing session of that client id. One that passes ends the
  existing session of the same client id, whoever held it ("session taken over"), and with
  `clean_start=false` takes its session over. Nothing compares the usernames.
* `emqx_authn_chains.erl:667-734` (through tests/emqx_auth_sql.authenticate): the enabled
  authenticators in chain order; `ignore` moves on, anything else decides, nothing accepting is
  `not_authorized`; an empty (or all disabled) chain lets everyone in. The built-in database
  checks the username (or client id, by `user_id_type`) and its password only; the PostgreSQL
  authenticator runs its configured query (postgres.py).

* `apps/emqx/src/emqx_access_control.erl:103-153` and `emqx_authz.erl:482-556`: superusers are
  allowed; the enabled sources are tried in order, the first `allow`/`deny` wins; nothing
  matching falls to `authorization.no_match`; the final decision is cached per connection.
* `emqx_authz_mnesia.erl:100-122`: inside `built_in_database`, the clientid rules, then the
  username rules, then the `all` rules; the first matching rule decides.
* `emqx_authz_postgresql.erl`: the `postgresql` source runs its configured query (postgres.py);
  `nomatch` (and 6.2's `ignore` on a backend failure) moves to the next source.
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
from dataclasses import dataclass
from typing import Any

from tests.emqx_auth_sql import Action, AuthnOutcome, Client, authenticate
from tests.emqx_double.postgres import POSTGRES_AUTHN_ID, PostgresBackends, emulator_version
from tests.emqx_double.schema import BUILTIN_AUTHN_ID, Answer, ApiError, Request, duration_ms, now_ms
from tests.emqx_double.state import ConnectedClient, EmqxState


class DoubleClock:
    """Milliseconds for the double's caches: real (monotonic) time until a test freezes or advances it.

    Frozen, every reading is a nanosecond after the previous one, so that events keep their order
    (an entry cached after a drain is newer than the drain, as in EMQX)."""

    def __init__(self) -> None:
        self._frozen_at: float | None = None

    @property
    def now(self) -> float:
        if self._frozen_at is None:
            return time.monotonic() * 1000
        self._frozen_at += 1e-6
        return self._frozen_at

    def freeze(self) -> None:
        if self._frozen_at is None:
            self._frozen_at = self.now

    def advance(self, seconds: float) -> None:
        self.freeze()
        assert self._frozen_at is not None
        self._frozen_at += seconds * 1000


@dataclass(frozen=True)
class Connack:
    """What the broker answered a CONNECT: `success`, `not_authorized` (0x87) or `bad_username_or_password` (0x86)."""

    reason: str
    session_present: bool = False

    @property
    def accepted(self) -> bool:
        return self.reason == "success"


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
    postgres: PostgresBackends
    clock: DoubleClock

    def _client_routes(self) -> list[tuple[str, tuple[str, ...], Any]]:
        cache = ("clients", "*", "authorization", "cache")
        return [("GET", cache, self._get_client_cache), ("DELETE", cache, self._delete_client_cache)]

    # ---- test-side API -------------------------------------------------------------------

    def mqtt_connect(self, clientid: str, username: str | None, password: str | None, *,
                     clean_start: bool = True) -> Connack:
        """A CONNECT with these credentials, through the configured authentication chain."""
        with self._lock:  # type: ignore[attr-defined]
            secret = password.encode() if password is not None else None
            outcome = self._authenticate(Client(clientid=clientid, username=username, password=secret))
            if outcome.kind != "ok":
                return Connack(outcome.reason or "not_authorized")
            existing = self._state.clients.pop(clientid, None)
            if existing is not None:  # emqx_cm: discarded or taken over, whoever held it
                self._state.sessions_ended.append((clientid, existing.username, "session taken over"))
            self._state.clients[clientid] = ConnectedClient(clientid, username or "", outcome.is_superuser)
            return Connack("success", session_present=existing is not None and not clean_start)

    def _authenticate(self, client: Client) -> AuthnOutcome:
        chain = [(authn_id, config) for authn_id, config in self._state.authenticators.items() if config["enable"]]
        if not chain:
            return AuthnOutcome("ok")  # no authenticator: anonymous clients are accepted
        providers = []
        for authn_id, config in chain:
            if authn_id == BUILTIN_AUTHN_ID:
                providers.append(lambda c, config=config: self._builtin_authenticate(c, config))
            elif authn_id == POSTGRES_AUTHN_ID and self.postgres.authenticator is not None:
                providers.append(self.postgres.authenticator.authenticate)
        return authenticate(providers, client, emulator_version(self.version))

    def _builtin_authenticate(self, client: Client, config: dict[str, Any]) -> AuthnOutcome:
        """emqx_authn_mnesia: the user found by username (or client id), then its password; unknown is ignore."""
        user_id = client.clientid if config["user_id_type"] == "clientid" else client.username
        user = self._state.authn_users.get(user_id or "")
        if user is None:
            return AuthnOutcome("ignore")
        if client.password is None or client.password.decode() != user["password"]:
            return AuthnOutcome("error", "bad_username_or_password")
        return AuthnOutcome("ok", is_superuser=user["is_superuser"])

    def connect(self, clientid: str, username: str, *, is_superuser: bool = False) -> None:
        """A client placed as connected, without authentication (for tests of authorization alone)."""
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
            now = self.clock.now / 1000
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
            if self._state.clients.pop(client.clientid, None) is not None:
                self._state.sessions_ended.append((client.clientid, client.username, "not authorized (publish)"))
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
            elif source["type"] == "postgresql" and self.postgres.source is not None:
                decision = self.postgres.source.authorize(
                    Client(clientid=client.clientid, username=client.username), Action(action, qos, retain), topic)
                if decision in ("allow", "deny"):
                    return decision
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
