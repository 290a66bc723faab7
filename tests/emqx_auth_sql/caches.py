"""EMQX's caches: the per-connection authorization cache and 6.2.2's node-wide query-result cache."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from tests.emqx_auth_sql.authz import Action
from tests.emqx_auth_sql.connector import QueryResult
from tests.emqx_auth_sql.templates import V6_2, Client, PreparedQuery, render_params


class Clock:
    """Milliseconds, moved by the test."""

    def __init__(self) -> None:
        self.now = 0

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


class NodeCache:
    """6.2.2 ``emqx_auth_cache``: successful query results by rendered key, valid while ``expire_at > now``."""

    def __init__(self, clock: Clock, ttl_seconds: float):
        self.clock = clock
        self.ttl = int(ttl_seconds * 1000)
        self.entries: dict[Any, tuple[QueryResult, int]] = {}

    def fetch(self, key: tuple[str, PreparedQuery, Client], query: Callable[[], QueryResult]) -> QueryResult:
        kind, prepared, client = key
        values = tuple(map(repr, render_params(prepared, client, V6_2)))
        cache_key = (kind, prepared.statement, values)
        hit = self.entries.get(cache_key)
        if hit and hit[1] > self.clock.now:
            return hit[0]
        result = query()  # a QueryError propagates and is not cached ({nocache, Error})
        self.entries[cache_key] = (result, self.clock.now + self.ttl)
        return result


class ClientAuthzCache:
    """``emqx_authz_cache``: one connection's final decisions by (action, topic), expired at ``cached_at + ttl``."""

    def __init__(self, clock: Clock, ttl_seconds: float, version: str, max_size: int = 32):
        self.clock = clock
        self.version = version
        self.ttl = int(ttl_seconds * 1000)
        self.max_size = max_size
        self.entries: OrderedDict[tuple[Action, str], tuple[str, int]] = OrderedDict()

    def check(self, action: Action, topic: str, decide: Callable[[], str]) -> str:
        if self.version == V6_2 and action.type == "subscribe":
            return decide()  # 6.2.2 caches publish decisions only
        key = (action, topic)
        hit = self.entries.get(key)
        if hit and hit[1] + self.ttl > self.clock.now:
            return hit[0]
        if hit:
            self.entries = OrderedDict((k, v) for k, v in self.entries.items() if v[1] + self.ttl > self.clock.now)
        decision = decide()
        if len(self.entries) >= self.max_size:
            newest = next(reversed(self.entries.values()))
            if newest[1] + self.ttl <= self.clock.now:
                self.entries.clear()
            else:
                self.entries.popitem(last=False)
        self.entries[key] = (decision, self.clock.now)
        return decision
