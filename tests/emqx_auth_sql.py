"""EMQX's PostgreSQL authenticator and authorization source, emulated from EMQX's source.

Stands in for, at tags v5.8.9 and 6.2.2 of emqx/emqx:
* parsing the configured query: ``emqx_template:parse/2`` with
  ``strip_double_quote`` and ``emqx_template_sql:parse_prepstmt/2`` with
  ``parameters => '$n'`` (``${var}`` and ``"${var}"`` become ``$1``, ``$2``, ...
  in order; ``'${var}'`` keeps its quotes, so PostgreSQL sees ``'$1'``;
  ``${$}`` is a literal ``$``), and the handling of placeholders that are not
  allowed (``emqx_auth_utils``/``emqx_auth_template``: 5.8.9 re-parses the
  whole parameter list as one string, which breaks it; 6.2.2 binds each such
  placeholder as its own literal text ``${name}``);
* binding (``render_sql_params``): an undefined value binds as ``''``;
  ``peerhost`` as text; ``peerport`` as decimal text (6.2.2);
* running it as a named prepared statement (``epgsql:parse2`` +
  ``prepared_query2``) as the role EMQX logs in with; any error (including a
  refused connection) is a query error;
* reading the result: ``emqx_authn_postgresql:authenticate/2`` with
  ``emqx_authn_utils`` (first row only, columns by name, ``password_hash``
  falling back to ``password``, ``salt`` defaulting to ``''``,
  ``is_superuser`` truthiness, 6.2.2 ``clientid_override``) and
  ``emqx_passwd`` for the hash check; ``emqx_authz_postgresql:authorize/4``
  with ``emqx_authz_utils``, ``emqx_authz_rule_raw`` and ``emqx_authz_rule``
  (rows in order, first match wins, topic placeholders, ``eq``, ``+``/``#``,
  malformed rows skipped in 5.8.9 and a backend failure in 6.2.2, 6.2.2's
  who-columns);
* the chains around them: ``emqx_authn_chains:do_authenticate/3`` (ignore goes
  on, anything else stops, exceptions per version, nothing accepted means
  ``not_authorized``) and ``emqx_authz``/``emqx_access_control`` (superusers
  skip authorization, sources in order, ``no_match`` last);
* the caches: the per-connection authorization cache (``emqx_authz_cache``)
  and 6.2.2's node-wide query-result cache (``emqx_auth_cache``).

It is strict where EMQX is: anything this module does not model (bcrypt, TLS
placeholders' certificate parsing, regex who-columns) raises
``NotModelled`` instead of guessing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

V5_8 = "5.8.9"
V6_2 = "6.2.2"
VERSIONS = (V5_8, V6_2)

# emqx_authn.hrl AUTHN_DEFAULT_ALLOWED_VARS; emqx_authz_postgresql ALLOWED_VARS / emqx_authz.hrl.
_CLIENT_ATTRS = "client_attrs"  # a namespace: client_attrs.<name>
AUTHN_ALLOWED = {
    V5_8: ("username", "clientid", "password", "peerhost", "cert_subject", "cert_common_name", "cert_pem", "zone"),
    V6_2: (
        "username", "clientid", "password", "peerhost", "peerport", "cert_subject", "cert_common_name",
        "cert_pem", "zone", "listener",
    ),
}
AUTHZ_ALLOWED = {
    V5_8: ("username", "clientid", "peerhost", "cert_common_name", "cert_subject", "zone"),
    V6_2: ("cert_common_name", "cert_subject", "peerhost", "peerport", "clientid", "username", "zone", "listener"),
}
# emqx_authz_rule ALLOWED_VARS: what a returned topic may contain.
TOPIC_ALLOWED = ("username", "clientid", "cert_common_name", "zone")

_PH = r"\$\{[.]?([a-zA-Z0-9._]*)\}"
_TEMPLATE_STRIP = re.compile(rf'"{_PH}"|{_PH}|\$\{{(\$)\}}')
_TEMPLATE_PLAIN = re.compile(rf"{_PH}|\$\{{(\$)\}}")


class NotModelled(Exception):
    """A case this emulator does not cover; a test reaching it must not pass by accident."""


class QueryError(Exception):
    """What ``emqx_resource:simple_sync_query`` returns as ``{error, Reason}``."""


class ProviderCrash(Exception):
    """An exception inside the provider (e.g. ``{salt_not_string, null}``), caught by the chain."""


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class Var:
    name: str

    @property
    def accessor(self) -> list[str]:
        return [] if self.name == "" else self.name.split(".")


DOLLAR = object()  # the token of an escaped literal `$` (`${$}`)
Part = str | Var | object


def parse_template(text: str, *, strip_double_quote: bool) -> list[Part]:
    """``emqx_template:parse/2``: literal text, variables and escaped dollars, in order."""
    pattern = _TEMPLATE_STRIP if strip_double_quote else _TEMPLATE_PLAIN
    parts: list[Part] = []
    position = 0
    for match in pattern.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        groups = [g for g in match.groups()]
        if groups[-1] == "$":
            parts.append(DOLLAR)
        else:
            parts.append(Var(next(g for g in groups[:-1] if g is not None)))
        position = match.end()
    if position < len(text):
        parts.append(text[position:])
    return parts


def _is_allowed(name: str, allowed: Sequence[str]) -> bool:
    return name in allowed or name.startswith(_CLIENT_ATTRS + ".")


@dataclass(frozen=True)
class PreparedQuery:
    """A configured query as EMQX prepares it: the statement text and the parameter template."""

    statement: str
    # One entry per bound parameter: a Var, or literal pieces (what disallowed placeholders become).
    params: tuple[tuple[Part, ...], ...]
    disallowed: tuple[str, ...]


def parse_sql(query: str, allowed: Sequence[str], version: str) -> PreparedQuery:
    """``emqx_auth_utils:parse_sql/3`` (5.8.9) / ``emqx_auth_template:parse_sql/3`` (6.2.2)."""
    template = parse_template(query, strip_double_quote=True)
    statement, n = [], 0
    for part in template:
        if isinstance(part, Var):
            n += 1
            statement.append(f"${n}")
        else:
            statement.append("$" if part is DOLLAR else part)
    variables = [part for part in template if isinstance(part, Var)]
    disallowed = tuple(sorted({v.name for v in variables if not _is_allowed(v.name, allowed)}))
    if not disallowed:
        params = tuple((v,) for v in variables)
    elif version == V5_8:
        # prerender_disallowed_placeholders, then emqx_template:parse/1 of the concatenation: the
        # list of parameters becomes one flat template, with a `$` token and a literal per
        # disallowed placeholder, so there are more parameters than `$n` in the statement.
        rendered = "".join("${" + v.name + "}" if _is_allowed(v.name, allowed) else "${$}{" + v.name + "}"
                           for v in variables)
        params = tuple((piece,) for piece in parse_template(rendered, strip_double_quote=False))
    else:
        # parse_deep of the list: each parameter is its own template; a disallowed one renders
        # as the literal text ${name}.
        params = tuple(
            (v,) if _is_allowed(v.name, allowed) else tuple(parse_template("${$}{" + v.name + "}",
                                                                            strip_double_quote=False))
            for v in variables
        )
    return PreparedQuery("".join(statement), params, disallowed)


# --------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class Client:
    """The bindings EMQX renders placeholders from (the client info / credential map)."""

    clientid: str | None
    username: str | None
    password: bytes | None = None
    peerhost: str | None = "127.0.0.1"
    peerport: int | None = 53412
    zone: str | None = "default"
    listener: str | None = "tcp:default"
    cert_common_name: str | None = None
    cert_subject: str | None = None
    cert_pem: bytes | None = None
    client_attrs: Mapping[str, str] = field(default_factory=dict)
    is_superuser: bool = False

    def lookup(self, accessor: list[str]) -> Any:
        """``emqx_template:lookup_var/2``: None when undefined."""
        if not accessor:
            raise NotModelled("${.} (the whole client map) is not modelled")
        head, *rest = accessor
        value: Any = getattr(self, head, None) if head in self.__dataclass_fields__ else None
        for key in rest:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value


def _render_var(var: Var, client: Client) -> Any:
    """``render_var`` + ``emqx_utils_sql:to_sql_value``."""
    value = client.lookup(var.accessor)
    if value is None:
        return ""  # "Any allowed but undefined binding will be replaced with empty string"
    if var.name == "cert_pem":
        return base64.b64encode(value).decode()
    if var.name == "peerport":
        return str(value)
    return value


def render_params(prepared: PreparedQuery, client: Client, version: str) -> list[Any]:
    rendered: list[Any] = []
    for pieces in prepared.params:
        if len(pieces) == 1 and isinstance(pieces[0], Var):
            rendered.append(_render_var(pieces[0], client))
        elif version == V6_2:
            rendered.append("".join("$" if p is DOLLAR else str(p) for p in pieces))
        else:
            (piece,) = pieces
            rendered.append(36 if piece is DOLLAR else piece)  # the `$` token is the integer 36 in Erlang
    return rendered


# --------------------------------------------------------------------------- running the query


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


class PgConnector:
    """``emqx_postgresql`` / ``emqx_auth_postgresql_connector``: one named prepared statement, run as ``dsn``'s role."""

    def __init__(self, dsn: str, query: str, allowed: Sequence[str], version: str, connect_timeout: int = 3):
        self.dsn = dsn
        self.version = version
        self.prepared = parse_sql(query, allowed, version)
        self.connect_timeout = connect_timeout
        self.executed: list[tuple[str, list[Any]]] = []  # what PostgreSQL received

    def run(self, client: Client) -> QueryResult:
        params = render_params(self.prepared, client, self.version)
        self.executed.append((self.prepared.statement, params))
        wire: list[Any] = []
        for value in params:
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise QueryError(f"invalid UTF-8 in a bound value: {error}") from None
            wire.append(value if isinstance(value, str) else str(value))
        try:
            with psycopg.connect(self.dsn, connect_timeout=self.connect_timeout, autocommit=True) as conn:
                cursor = psycopg.RawCursor(conn)
                # prepare=True: a named server-side prepared statement, as epgsql:parse2 makes.
                cursor.execute(self.prepared.statement, wire, prepare=True)
                columns = tuple(column.name for column in cursor.description or ())
                return QueryResult(columns, tuple(cursor.fetchall()))
        except psycopg.Error as error:
            raise QueryError(str(error).strip()) from None


# --------------------------------------------------------------------------- password hashes


def _hex(data: bytes) -> str:
    return data.hex()


def _compare_caseless(computed: Any, stored: Any) -> bool:
    if not isinstance(computed, str | bytes) or not isinstance(stored, str | bytes):
        # string:lowercase/1 on a non-string (e.g. NULL -> null) raises inside the provider.
        raise ProviderCrash(f"cannot compare with {stored!r}")
    a = computed.decode() if isinstance(computed, bytes) else computed
    b = stored.decode() if isinstance(stored, bytes) else stored
    return hmac.compare_digest(a.lower().encode(), b.lower().encode())


def check_password(algorithm: Mapping[str, Any], salt: Any, password_hash: Any, password: bytes, version: str) -> bool:
    """``emqx_authn_password_hashing:check_password/4`` and ``emqx_passwd:check_pass/3``."""
    name = algorithm["name"]
    if name == "bcrypt":
        raise NotModelled("bcrypt is not modelled here: the stack's authenticator uses sha256")
    if name == "pbkdf2":
        if not isinstance(salt, str | bytes):
            raise ProviderCrash(f"pbkdf2 salt {salt!r}")
        salt_bytes = salt.encode() if isinstance(salt, str) else salt
        dk = algorithm.get("dk_length") or hashlib.new(algorithm["mac_fun"]).digest_size
        derived = hashlib.pbkdf2_hmac(algorithm["mac_fun"], password, salt_bytes, algorithm["iterations"], dk)
        return _compare_caseless(_hex(derived), password_hash)
    position = algorithm.get("salt_position", "prefix")
    if position == "disable":
        data = password
    else:
        if not isinstance(salt, str | bytes):
            raise ProviderCrash(f"{{salt_not_string, {salt!r}}}")
        salt_bytes = salt.encode() if isinstance(salt, str) else salt
        data = salt_bytes + password if position == "prefix" else password + salt_bytes
    if name == "plain":
        if version == V6_2:  # 6.x compares plain passwords case-sensitively
            if not isinstance(password_hash, str | bytes):
                raise ProviderCrash(f"cannot compare with {password_hash!r}")
            stored = password_hash.encode() if isinstance(password_hash, str) else password_hash
            return hmac.compare_digest(data, stored)
        return _compare_caseless(data, password_hash)
    return _compare_caseless(_hex(hashlib.new({"sha": "sha1"}.get(name, name), data).digest()), password_hash)


def to_bool(value: Any) -> bool:
    """``emqx_authn_utils:to_bool/1``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value >= 1
    if isinstance(value, str):
        if value in ("true", "1"):
            return True
        try:
            return int(value) >= 1
        except ValueError:
            return False
    return False


# --------------------------------------------------------------------------- authentication


@dataclass(frozen=True)
class AuthnOutcome:
    """``ignore``, ``{ok, #{is_superuser, clientid_override?}}`` or ``{error, Reason}``; ``crash`` for an exception."""

    kind: str  # "ignore" | "ok" | "error" | "crash"
    reason: str | None = None
    is_superuser: bool = False
    clientid_override: str | None = None


class PostgresAuthenticator:
    """``password_based:postgresql`` with a password hash algorithm."""

    def __init__(self, dsn: str, query: str, algorithm: Mapping[str, Any], version: str,
                 *, security_profile: str = "legacy", node_cache: NodeCache | None = None):
        self.version = version
        self.algorithm = dict(algorithm)
        self.security_profile = security_profile
        self.connector = PgConnector(dsn, query, AUTHN_ALLOWED[version], version)
        self.node_cache = node_cache

    def _backend_failure(self) -> AuthnOutcome:
        if self.version == V6_2 and self.security_profile == "hardened":
            return AuthnOutcome("error", "not_authorized")
        return AuthnOutcome("ignore", "backend failure")

    def authenticate(self, client: Client) -> AuthnOutcome:
        if client.password is None:
            # 5.8.9 stops the chain; 6.2.2 lets the next authenticator try.
            return AuthnOutcome("error", "bad_username_or_password") if self.version == V5_8 else AuthnOutcome("ignore")
        try:
            result = self._query(client)
        except QueryError as error:
            return AuthnOutcome("ignore", str(error)) if self.version == V5_8 else self._backend_failure()
        if not result.rows:
            return AuthnOutcome("ignore")
        selected = dict(zip(result.columns, result.rows[0], strict=True))
        password_hash = selected.get("password_hash", selected.get("password", _MISSING))
        if password_hash is _MISSING:
            return AuthnOutcome("error", "not_authorized")
        salt = selected.get("salt", b"")
        try:
            matches = check_password(self.algorithm, salt, password_hash, client.password, self.version)
        except ProviderCrash as error:
            return AuthnOutcome("crash", str(error))
        if not matches:
            return AuthnOutcome("error", "bad_username_or_password")
        override = None
        if self.version == V6_2:
            value = selected.get("clientid_override")
            override = value if isinstance(value, str) and value != "" else None
        return AuthnOutcome("ok", is_superuser=to_bool(selected.get("is_superuser")), clientid_override=override)

    def _query(self, client: Client) -> QueryResult:
        if self.version == V6_2 and self.node_cache is not None:
            return self.node_cache.fetch(("authn", self.connector.prepared, client), lambda: self.connector.run(client))
        return self.connector.run(client)


_MISSING = object()


def authenticate(chain: Sequence[Callable[[Client], AuthnOutcome]], client: Client, version: str,
                 security_profile: str = "legacy") -> AuthnOutcome:
    """``emqx_authn_chains:do_authenticate/3``: the first non-ignore answer decides; none → not_authorized."""
    for provider in chain:
        outcome = provider(client)
        if outcome.kind == "crash":
            if version == V6_2 and security_profile == "hardened":
                return AuthnOutcome("error", "not_authorized")
            continue  # 5.8.9: with_provider_failed; 6.2.2 legacy: ignore
        if outcome.kind != "ignore":
            return outcome
    return AuthnOutcome("error", "not_authorized")


# --------------------------------------------------------------------------- authorization


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


# --------------------------------------------------------------------------- caches


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
