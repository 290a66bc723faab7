"""The `postgresql` authorization source and the authorization chain (`emqx_authz_postgresql`, `emqx_authz_rule*`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.emqx_auth_sql.connector import PgConnector
from tests.emqx_auth_sql.templates import (
    _MISSING,
    AUTHZ_ALLOWED,
    DOLLAR,
    TOPIC_ALLOWED,
    V5_8,
    V6_2,
    Client,
    NotModelled,
    QueryError,
    Var,
    _is_allowed,
    parse_template,
)

if TYPE_CHECKING:
    from tests.emqx_auth_sql.caches import NodeCache


@dataclass(frozen=True)
class Action:
    """``?authz_action(PubSub, QoS)`` with retain for publishes."""

    type: str  # "publish" | "subscribe"
    qos: int = 1
    retain: bool = False


WHO_COLUMNS_6_2 = ("username_re", "clientid_re", "zone", "zone_re", "listener", "listener_re", "ipaddr")


class BadRow(Exception):
    pass


def _words(topic: str) -> list[str]:
    return topic.split("/")


def topic_matches(name: str, topic_filter: str) -> bool:
    """``emqx_topic:match/2`` on words."""
    words, filter_words = _words(name), _words(topic_filter)
    if words and words[0].startswith("$") and filter_words and filter_words[0] in ("+", "#"):
        return False
    i = 0
    while True:
        if i == len(filter_words):
            return i == len(words)
        if filter_words[i] == "#" and i == len(filter_words) - 1:
            return True
        if i == len(words):
            return False
        if filter_words[i] != "+" and filter_words[i] != words[i]:
            return False
        i += 1


def _render_topic(template: str, client: Client) -> str | None:
    """``emqx_authz_rule:render_topic/2``: None when a variable is undefined (render_strict fails)."""
    out = []
    for part in parse_template(template, strip_double_quote=False):
        if isinstance(part, Var):
            if not _is_allowed(part.name, TOPIC_ALLOWED):
                out.append("${" + part.name + "}")  # disallowed: kept as literal text
                continue
            value = client.lookup(part.accessor)
            if value is None:
                return None
            out.append(str(value))
        else:
            out.append("$" if part is DOLLAR else part)
    return "".join(out)


def _qos_list(value: Any) -> list[int]:
    if value is None or value is _MISSING:
        return [0, 1, 2]
    if type(value) is int and 0 <= value <= 2:
        return [value]
    if isinstance(value, str):
        pieces = value.split(",")
        if all(piece in ("0", "1", "2") for piece in pieces):
            return [int(piece) for piece in pieces]
    if isinstance(value, list) and all(type(v) is int and 0 <= v <= 2 or v in ("0", "1", "2") for v in value):
        return [int(v) for v in value]
    raise BadRow(f"invalid_qos {value!r}")


def _retain(value: Any) -> str | bool:
    if value is _MISSING or value is None or value == "all":
        return "all"
    if value is True or value in ("1", "true") or (type(value) is int and value == 1):
        return True
    if value is False or value in ("0", "false") or (type(value) is int and value == 0):
        return False
    raise BadRow(f"invalid_retain {value!r}")


def match_row(row: Mapping[str, Any], client: Client, action: Action, topic: str, version: str) -> str | None:
    """One row: ``"allow"``/``"deny"`` when it matches, None when not; raises BadRow when malformed."""
    permission, action_type = row.get("permission", _MISSING), row.get("action", _MISSING)
    if permission is _MISSING or action_type is _MISSING:
        raise BadRow("missing 'permission' or 'action' field")
    raw_topic = row.get("topic", _MISSING)
    if not isinstance(raw_topic, str):
        raise BadRow(f"missing_topic_or_topics {raw_topic!r}")
    if permission not in ("allow", "deny"):
        raise BadRow(f"invalid_permission {permission!r}")
    if version == V6_2:
        for column in WHO_COLUMNS_6_2:
            if column in row:
                raise NotModelled(f"6.2.2 who-column {column!r} is not modelled; the stack's query returns none")
    kinds = {"pub": "publish", "publish": "publish", "sub": "subscribe", "subscribe": "subscribe", "all": "all"}
    if action_type not in kinds:
        raise BadRow(f"invalid_action {action_type!r}")
    kind = kinds[action_type]
    qos = _qos_list(row.get("qos", _MISSING))
    retain = _retain(row.get("retain", _MISSING)) if kind != "subscribe" else "all"
    if kind not in (action.type, "all"):
        return None
    if action.qos not in qos:
        return None
    if action.type == "publish" and retain != "all" and retain != action.retain:
        return None
    if raw_topic.startswith("eq "):
        return permission if _words(topic) == _words(raw_topic[3:]) else None
    rendered = _render_topic(raw_topic, client)
    if rendered is None:
        return None
    return permission if topic_matches(topic, rendered) else None


class PostgresAuthorizationSource:
    """Authorization source ``type: postgresql``."""

    def __init__(self, dsn: str, query: str, version: str, *, security_profile: str = "legacy",
                 node_cache: NodeCache | None = None):
        self.version = version
        self.security_profile = security_profile
        self.connector = PgConnector(dsn, query, AUTHZ_ALLOWED[version], version)
        self.node_cache = node_cache
        self.bad_rows: list[str] = []  # the match_rule_error log

    def _backend_failure(self) -> str:
        if self.version == V6_2 and self.security_profile == "hardened":
            return "deny"
        return "ignore"

    def authorize(self, client: Client, action: Action, topic: str) -> str:
        """``"allow"``, ``"deny"``, ``"nomatch"`` or (6.2.2) ``"ignore"``."""
        try:
            if self.version == V6_2 and self.node_cache is not None:
                result = self.node_cache.fetch(("authz", self.connector.prepared, client),
                                               lambda: self.connector.run(client))
            else:
                result = self.connector.run(client)
        except QueryError:
            return "nomatch" if self.version == V5_8 else self._backend_failure()
        for values in result.rows:
            row = dict(zip(result.columns, values, strict=True))
            try:
                decision = match_row(row, client, action, topic, self.version)
            except BadRow as error:
                self.bad_rows.append(str(error))
                if self.version == V5_8:
                    continue
                return self._backend_failure()
            if decision is not None:
                return decision
        return "nomatch"


def authorize(sources: Iterable[Callable[[Client, Action, str], str]], client: Client, action: Action, topic: str,
              no_match: str) -> str:
    """``emqx_access_control:authorize`` + ``emqx_authz:authorize/5``: the final ``allow``/``deny``."""
    if client.is_superuser:
        return "allow"
    for source in sources:
        decision = source(client, action, topic)
        if decision in ("allow", "deny"):
            return decision
    return no_match


