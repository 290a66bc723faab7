"""A strict, stateful double of the EMQX 5.8 management API, served on a real loopback socket.

It stands in for the broker in provider tests, so it enforces what
/work/shared/reference/emqx-api.md documents (section 13 wins where sections differ):

* HTTP Basic auth with one configured key/secret; `/status` and `/api/v5/status` need none.
  401 `AUTHORIZATION_HEADER_ERROR` without a usable header, 401 `BAD_API_KEY_OR_SECRET` for a
  wrong key or secret, both with `WWW-Authenticate`.
* Bodies must be JSON (`Content-Type: application/json`, else 415); unknown fields are 400, and
  so are wrongly typed values the way EMQX's hocon schema sees them: `8.0` or `true` for an
  integer field, a duration that is not like "15s", a non-boolean `enable`. (The Pulumi engine
  turns every number into a float, so a provider that forwards `pool_size=8.0` is caught here.)
* Responses are shaped like EMQX's: defaults filled in, `created_at`/`last_modified_at` on
  actions, the `file` authorization source read and written as its `rules` text (no `path`), and
  secrets redacted as emqx_utils_redact does it (sensitive keys; inside `headers` only the
  Authorization and Proxy-Authorization headers; never a lone `${placeholder}`).
* Connectors, actions, rules, the built-in-database authenticator and its users, the
  `built_in_database` and `file` authorization sources, per-username authorization rules and
  the authorization settings, with the documented status codes, duplicates, delete-order
  checks, redaction of secrets in responses (`******`, which also means "keep" on PUT) and
  the rule PUT difference between 5.8 (upsert that replaces) and 6.x (404 when missing, merge).

Anything the double does not model answers 404, so a provider that strays is noticed.
Tests may read and change the state directly through `EmqxDouble.state()` (as an operator
in the dashboard would) and look at the calls made through `EmqxDouble.calls`.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REDACTED = "******"
# emqx_utils_redact:is_sensitive_key/1: keys (compared exactly) whose values EMQX replaces by
# "******" in responses. Inside a `headers` map only the header names below count, compared
# case-insensitively after trimming (is_sensitive_header/1); other headers are never redacted.
SENSITIVE_KEYS = frozenset(
    {"account_key", "aws_secret_access_key", "password", "private_key", "secret", "secret_access_key",
     "access_key_secret", "access_key_id", "secret_key", "security_token", "sp_private_key", "token", "jwt",
     "bind_password"}
)
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization"})
# redact_v/1 keeps a value that is one placeholder (`${var}`) and `file://` references.
SINGLE_PLACEHOLDER = re.compile(r"^\$\{[^{}]*\}$")
# hocon_postprocess:duration/1 ("15s", "1h30m", "500ms"); emqx_schema's duration types also take
# plain integers (milliseconds). Floats, "15 s" or "15sec" are schema errors.
DURATION_PATTERN = re.compile(r"^([0-9.]+(f|w|d|h|ms|m|s))+$", re.IGNORECASE)
NAME_PATTERN = re.compile(r"^[0-9a-zA-Z][-0-9a-zA-Z_]*$")
BUILTIN_AUTHN_ID = "password_based:built_in_database"
KNOWN_AUTHZ_SOURCE_TYPES = frozenset(
    {"built_in_database", "file", "http", "mongodb", "mysql", "postgresql", "redis", "ldap"}
)

DEFAULT_HTTP_HEADERS = {
    "accept": "application/json",
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "content-type": "application/json",
    "keep-alive": "timeout=5",
}
CONNECTOR_FIELDS = frozenset(
    {"url", "headers", "connect_timeout", "pool_type", "pool_size", "enable_pipelining", "ssl",
     "enable", "description", "tags", "resource_opts", "request", "retry_interval"}
)
CONNECTOR_DROPPED_FIELDS = frozenset({"request", "retry_interval"})
CONNECTOR_RESOURCE_OPTS = frozenset({"health_check_interval", "start_after_created", "start_timeout"})
CONNECTOR_DEFAULTS: dict[str, Any] = {
    "headers": DEFAULT_HTTP_HEADERS,
    "connect_timeout": "15s",
    "pool_type": "random",
    "pool_size": 8,
    "enable_pipelining": 100,
    "ssl": {"enable": False},
    "enable": True,
    "description": "",
    "resource_opts": {"health_check_interval": "15s", "start_after_created": True, "start_timeout": "5s"},
}
ACTION_FIELDS = frozenset(
    {"connector", "enable", "description", "tags", "parameters", "resource_opts", "local_topic",
     # hidden in the schema (emqx_bridge_v2_schema:common_fields/0) but accepted, and returned by GET
     "created_at", "last_modified_at"}
)
ACTION_PARAMETERS = frozenset({"path", "method", "headers", "body", "max_retries", "request_timeout"})
ACTION_RESOURCE_OPTS = frozenset(
    {"query_mode", "request_ttl", "request_timeout", "inflight_window", "worker_pool_size",
     "health_check_interval", "max_buffer_bytes", "buffer_mode", "buffer_seg_bytes",
     "metrics_flush_interval", "resume_interval", "start_after_created", "start_timeout"}
)
# Section 13.8: accepted in an action's resource_opts but silently dropped.
ACTION_DROPPED_RESOURCE_OPTS = frozenset({"start_after_created", "start_timeout"})
ACTION_DEFAULTS: dict[str, Any] = {
    "enable": True,
    "description": "",
    "parameters": {"path": "", "method": "post", "headers": DEFAULT_HTTP_HEADERS, "max_retries": 2},
    "resource_opts": {
        "query_mode": "async", "request_ttl": "45s", "inflight_window": 100, "worker_pool_size": 16,
        "health_check_interval": "15s", "max_buffer_bytes": "256MB",
    },
}
RULE_FIELDS = frozenset({"sql", "actions", "enable", "description", "name"})
RULE_DEFAULTS: dict[str, Any] = {"actions": [], "enable": True, "description": "", "name": ""}
AUTHN_FIELDS = frozenset(
    {"mechanism", "backend", "user_id_type", "password_hash_algorithm", "enable", "bootstrap_file",
     "bootstrap_type"}
)
AUTHN_DEFAULTS: dict[str, Any] = {
    "user_id_type": "username",
    "password_hash_algorithm": {"name": "sha256", "salt_position": "prefix"},
    "enable": True,
    "bootstrap_file": "${EMQX_ETC_DIR}/auth-built-in-db-bootstrap.csv",
    "bootstrap_type": "plain",
}
SIMPLE_HASHES = frozenset({"plain", "md5", "sha", "sha256", "sha512"})
# The API schemas of the sources (emqx_authz_*_schema api_source_refs/0): the `file` source is
# read and written through its `rules` text (required); `path` belongs to the config file only.
AUTHZ_SOURCE_FIELDS = {
    "built_in_database": frozenset({"type", "enable", "max_rules"}),
    "file": frozenset({"type", "enable", "rules"}),
}
# Stored like the raw config plus the file's content; the API view drops `path` (read_files/1).
DEFAULT_FILE_SOURCE: dict[str, Any] = {
    "type": "file",
    "enable": True,
    "path": "${EMQX_ETC_DIR}/acl.conf",
    "rules": '{allow, {username, {re, "^dashboard$"}}, subscribe, ["$SYS/#"]}.\n'
             '{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.\n{allow, all}.\n',
}
AUTHZ_RULE_FIELDS = frozenset({"topic", "permission", "action", "qos", "retain"})
SETTINGS_KEYS = ("no_match", "deny_action", "cache")
CACHE_DEFAULTS: dict[str, Any] = {"enable": True, "max_size": 32, "ttl": "1m", "excludes": []}


class ApiError(Exception):
    """An EMQX error answer: `{"code": ..., "message": ...}` plus optional extra fields."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def bad_request(message: str, code: str = "BAD_REQUEST", **extra: Any) -> ApiError:
    return ApiError(400, code, message, **extra)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def validation_error(path: str, reason: str, **details: Any) -> ApiError:
    # EMQX puts a JSON document inside "message" for schema errors (emqx_utils_api:to_json/1).
    return bad_request(json.dumps({"kind": "validation_error", "path": path, "reason": reason, **details}))


def reject_unknown_fields(body: Any, allowed: frozenset[str], path: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise validation_error(path, "expected an object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise validation_error(path, "unknown_fields", unknown=",".join(unknown))
    return body


def require_int(value: Any, path: str, low: int | None = None, high: int | None = None) -> int:
    """An integer field: JSON `8.0` (or `true`) is a schema error in EMQX, as it is here."""
    if type(value) is not int or (low is not None and value < low) or (high is not None and value > high):
        raise validation_error(path, f"expected an integer in [{low}, {high}]", value=value)
    return value


def require_duration(value: Any, path: str, infinity: bool = False) -> Any:
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, str) and (DURATION_PATTERN.match(value) or value.isdigit()
                                   or (infinity and value == "infinity")):
        return value
    raise validation_error(path, "expected a duration such as \"15s\"", value=value)


def require_bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):  # hocon converts these strings
        return value == "true"
    raise validation_error(path, "expected a boolean", value=value)


def require_enum(value: Any, path: str, allowed: tuple[str, ...]) -> Any:
    if value not in allowed or not isinstance(value, str):
        raise validation_error(path, f"expected one of {', '.join(allowed)}", value=value)
    return value


def require_object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise validation_error(path, "expected an object")
    return value


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def with_defaults(body: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults one level into nested objects; a supplied `headers` map replaces the default."""
    merged = copy.deepcopy(defaults)
    for key, value in body.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "headers":
            merged[key] = with_defaults(value, merged[key])
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def is_sensitive_header(name: Any) -> bool:
    return str(name).strip().lower() in SENSITIVE_HEADERS


def _redacted(value: Any) -> Any:
    if isinstance(value, str) and (SINGLE_PLACEHOLDER.match(value) or value.startswith("file://")):
        return value
    return REDACTED  # any other value, strings, lists and objects alike


def redact(value: Any) -> Any:
    """emqx_utils_redact:redact/1."""
    if isinstance(value, dict):
        redacted = {}
        for key, item in value.items():
            if key == "headers" and isinstance(item, dict):
                redacted[key] = {h: _redacted(v) if is_sensitive_header(h) else v for h, v in item.items()}
            elif key in SENSITIVE_KEYS:
                redacted[key] = _redacted(item)
            else:
                redacted[key] = redact(item)
        return redacted
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def deobfuscate(new: dict[str, Any], old: dict[str, Any],
                sensitive: Callable[[Any], bool] = lambda key: False) -> dict[str, Any]:
    """emqx_utils_redact:deobfuscate/2: a `******` under a sensitive key (or sensitive header) of a
    PUT body means "keep the stored value"; one with nothing stored is dropped. A `******` under
    any other key is taken literally."""
    def is_redacted(key: Any, value: Any) -> bool:
        return value == REDACTED and (key in SENSITIVE_KEYS or sensitive(key))

    kept: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            if not is_redacted(key, value):
                kept[key] = value
        elif isinstance(value, dict) and isinstance(old[key], dict):
            kept[key] = deobfuscate(value, old[key], is_sensitive_header if key == "headers" else sensitive)
        else:
            kept[key] = old[key] if is_redacted(key, value) else value
    return kept


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


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
    authz_settings: dict[str, Any] = field(default_factory=dict)

    def authz_source(self, source_type: str) -> dict[str, Any] | None:
        return next((s for s in self.authz_sources if s["type"] == source_type), None)


@dataclass
class Request:
    method: str
    segments: list[str]  # decoded path segments after /api/v5
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw_body: bytes

    def json_body(self) -> Any:
        content_type = self.headers.get("content-type", "")
        if not content_type.split(";")[0].strip().lower() == "application/json":
            raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "content-type:application/json Required")
        try:
            return json.loads(self.raw_body or b"null")
        except ValueError as exc:
            raise bad_request(f"invalid JSON body: {exc}") from None

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request, list[str]], Answer]


class EmqxDouble:
    """The double. `start()` serves it on 127.0.0.1:<ephemeral port>; `url` is the base URL."""

    def __init__(self, api_key: str = "test-key", api_secret: str = "test-secret", version: str = "5.8") -> None:
        if version not in ("5.8", "6.x"):
            raise ValueError("version must be '5.8' or '6.x'")
        self.api_key, self.api_secret, self.version = api_key, api_secret, version
        self._lock = threading.RLock()
        self._state = EmqxState(authz_settings=self._default_settings())
        self.calls: list[tuple[str, str]] = []  # (METHOD, raw path) of every request, in order
        self._status_failures_left = 0
        self._ready = True
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._routes = self._build_routes()

    # ---- lifecycle and test-only access -------------------------------------------------

    def start(self) -> EmqxDouble:
        double = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body in one segment: avoids Nagle + delayed-ACK stalls on keep-alive.
            disable_nagle_algorithm = True
            wbufsize = 64 * 1024

            def setup(self) -> None:
                super().setup()
                with double._lock:
                    double._connections.add(self.connection)

            def finish(self) -> None:
                with double._lock:
                    double._connections.discard(self.connection)
                super().finish()

            def do_GET(self) -> None:
                double._serve(self)

            do_POST = do_PUT = do_DELETE = do_GET

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open keep-alive connections, as a stopped broker would."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for connection in list(self._connections):
                with suppress(OSError):  # already closed by the client
                    connection.shutdown(socket.SHUT_RDWR)

    @property
    def url(self) -> str:
        assert self._server is not None, "the double is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @contextmanager
    def state(self) -> Iterator[EmqxState]:
        """Read or change the stored objects directly, as someone in the dashboard would."""
        with self._lock:
            yield self._state

    def count(self, kind: str) -> int:
        """How many objects of one kind exist: connectors, actions, rules, authenticators, authn_users, ..."""
        with self._lock:
            return len(getattr(self._state, kind))

    def answer_not_ready(self, calls: int | None = None) -> None:
        """Make /status answer 503: for the next `calls` calls, or until `set_ready()` when None."""
        with self._lock:
            if calls is None:
                self._ready = False
            else:
                self._status_failures_left = calls

    def set_ready(self) -> None:
        with self._lock:
            self._ready, self._status_failures_left = True, 0

    def calls_to(self, method: str, path_prefix: str) -> list[str]:
        return [path for m, path in self.calls if m == method and path.startswith(path_prefix)]

    def _default_settings(self) -> dict[str, Any]:
        # 6.0 changed the default no_match to deny (#15820).
        no_match = "deny" if self.version == "6.x" else "allow"
        return {"no_match": no_match, "deny_action": "ignore", "cache": copy.deepcopy(CACHE_DEFAULTS)}

    # ---- HTTP plumbing -----------------------------------------------------------------

    def _serve(self, http: BaseHTTPRequestHandler) -> None:
        length = int(http.headers.get("Content-Length") or 0)
        raw_body = http.rfile.read(length) if length else b""
        split = urlsplit(http.path)
        with self._lock:
            self.calls.append((http.command, split.path))
        try:
            answer = self._dispatch(http, split.path, split.query, raw_body)
        except ApiError as err:
            answer = Answer(err.status, {"code": err.code, "message": err.message, **err.extra})
            if err.status == 401:
                answer.headers["WWW-Authenticate"] = 'Basic Realm="emqx-dashboard"'
        self._write(http, answer)

    @staticmethod
    def _write(http: BaseHTTPRequestHandler, answer: Answer) -> None:
        if answer.body is None:
            payload, content_type = b"", None
        elif isinstance(answer.body, str):
            payload, content_type = answer.body.encode(), "text/plain"
        else:
            payload, content_type = json.dumps(answer.body).encode(), "application/json"
        http.send_response(answer.status)
        for name, value in answer.headers.items():
            http.send_header(name, value)
        if content_type:
            http.send_header("Content-Type", content_type)
        http.send_header("Content-Length", str(len(payload)))
        http.end_headers()
        http.wfile.write(payload)

    def _dispatch(self, http: BaseHTTPRequestHandler, path: str, query: str, raw_body: bytes) -> Answer:
        # cowboy_router splits first, then URL-decodes each segment: %2F stays inside a segment.
        segments = [unquote(s) for s in path.strip("/").split("/")]
        request = Request(
            method=http.command,
            segments=segments[2:] if segments[:2] == ["api", "v5"] else segments,
            query=parse_qs(query),
            headers={k.lower(): v for k, v in http.headers.items()},
            raw_body=raw_body,
        )
        if segments in (["status"], ["api", "v5", "status"]):
            return self._status(request)
        if segments[:2] != ["api", "v5"]:
            raise not_found("Request path not found")
        self._authorize(request.headers.get("authorization"))
        for method, pattern, handler in self._routes:
            captured = self._match(pattern, request.segments)
            if captured is not None and method == request.method:
                with self._lock:
                    return handler(request, captured)
        raise not_found("Request path not found")

    @staticmethod
    def _match(pattern: tuple[str, ...], segments: list[str]) -> list[str] | None:
        if len(pattern) != len(segments):
            return None
        captured = []
        for expected, actual in zip(pattern, segments, strict=True):
            if expected == "*":
                captured.append(actual)
            elif expected != actual:
                return None
        return captured

    def _authorize(self, header: str | None) -> None:
        scheme, _, credentials = (header or "").partition(" ")
        if scheme.lower() == "bearer":
            raise ApiError(401, "BAD_TOKEN", "Get a token by POST /login")  # the double issues no tokens
        if scheme.lower() != "basic":
            raise ApiError(401, "AUTHORIZATION_HEADER_ERROR", "Support authorization: basic/bearer")
        try:
            key, _, secret = base64.b64decode(credentials).decode().partition(":")
        except ValueError:
            raise ApiError(401, "AUTHORIZATION_HEADER_ERROR", "Support authorization: basic/bearer") from None
        if (key, secret) != (self.api_key, self.api_secret):
            raise ApiError(401, "BAD_API_KEY_OR_SECRET", "Check api_key/api_secret")

    def _status(self, request: Request) -> Answer:
        headers = {"retry-after": "15"}  # sent on 200 as well (section 13.2)
        with self._lock:
            if not self._ready or self._status_failures_left > 0:
                self._status_failures_left = max(0, self._status_failures_left - 1)
                return Answer(503, None, headers)
        if request.query_value("format") == "json":
            body: Any = {"node_name": "emqx@127.0.0.1", "rel_vsn": "v5.8.9",
                         "broker_status": "started", "app_status": "running"}
        else:
            body = "Node emqx@127.0.0.1 is started\nemqx is running"
        return Answer(200, body, headers)

    def _build_routes(self) -> list[tuple[str, tuple[str, ...], Handler]]:
        users = ("authentication", "*", "users")
        authz_users = ("authorization", "sources", "built_in_database", "rules", "users")
        return [
            ("GET", ("connectors",), self._list_connectors),
            ("POST", ("connectors",), self._create_connector),
            ("GET", ("connectors", "*"), self._get_connector),
            ("PUT", ("connectors", "*"), self._update_connector),
            ("DELETE", ("connectors", "*"), self._delete_connector),
            ("GET", ("actions",), self._list_actions),
            ("POST", ("actions",), self._create_action),
            ("GET", ("actions", "*"), self._get_action),
            ("PUT", ("actions", "*"), self._update_action),
            ("DELETE", ("actions", "*"), self._delete_action),
            ("GET", ("rules",), self._list_rules),
            ("POST", ("rules",), self._create_rule),
            ("GET", ("rules", "*"), self._get_rule),
            ("PUT", ("rules", "*"), self._update_rule),
            ("DELETE", ("rules", "*"), self._delete_rule),
            ("GET", ("authentication",), self._list_authenticators),
            ("POST", ("authentication",), self._create_authenticator),
            ("GET", ("authentication", "*"), self._get_authenticator),
            ("PUT", ("authentication", "*"), self._update_authenticator),
            ("DELETE", ("authentication", "*"), self._delete_authenticator),
            ("GET", users, self._list_users),
            ("POST", users, self._create_user),
            ("GET", (*users, "*"), self._get_user),
            ("PUT", (*users, "*"), self._update_user),
            ("DELETE", (*users, "*"), self._delete_user),
            ("GET", ("authorization", "sources"), self._list_sources),
            ("POST", ("authorization", "sources"), self._create_source),
            ("GET", ("authorization", "sources", "*"), self._get_source),
            ("PUT", ("authorization", "sources", "*"), self._update_source),
            ("DELETE", ("authorization", "sources", "*"), self._delete_source),
            ("GET", authz_users, self._list_authz_users),
            ("POST", authz_users, self._create_authz_users),
            ("GET", (*authz_users, "*"), self._get_authz_user),
            ("PUT", (*authz_users, "*"), self._put_authz_user),
            ("DELETE", (*authz_users, "*"), self._delete_authz_user),
            ("GET", ("authorization", "settings"), self._get_settings),
            ("PUT", ("authorization", "settings"), self._put_settings),
            ("DELETE", ("authorization", "cache"), lambda request, _: Answer(204)),
        ]

    @staticmethod
    def _paginate(request: Request, items: list[Any]) -> Answer:
        try:
            page = int(request.query_value("page") or 1)
            limit = int(request.query_value("limit") or 100)
        except ValueError:
            raise bad_request("page_limit_invalid") from None
        if page < 1 or not 1 <= limit <= 10000:
            raise bad_request("page_limit_invalid")
        chunk = items[(page - 1) * limit: page * limit]
        meta = {"page": page, "limit": limit, "hasnext": page * limit < len(items), "count": len(items)}
        return Answer(200, {"data": chunk, "meta": meta})

    # ---- connectors --------------------------------------------------------------------

    @staticmethod
    def _connector_name(connector_id: str) -> str:
        connector_type, _, name = connector_id.partition(":")
        if connector_type != "http" or not name:
            raise not_found(f"Invalid connector ID, expected <type>:<name>, got: {connector_id}")
        return name

    def _validate_connector(self, body: Any, path: str) -> dict[str, Any]:
        url = body.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://[^/@#]+", url) or "#" in url:
            raise validation_error(f"{path}.url", "bad or missing url")
        resource_opts = reject_unknown_fields(body.get("resource_opts", {}), CONNECTOR_RESOURCE_OPTS,
                                              f"{path}.resource_opts")
        for key in ("health_check_interval", "start_timeout"):
            if key in resource_opts:
                require_duration(resource_opts[key], f"{path}.resource_opts.{key}")
        if "start_after_created" in resource_opts:
            require_bool(resource_opts["start_after_created"], f"{path}.resource_opts.start_after_created")
        for key in ("pool_size", "enable_pipelining"):
            if key in body:
                require_int(body[key], f"{path}.{key}", low=1)
        if "connect_timeout" in body:
            require_duration(body["connect_timeout"], f"{path}.connect_timeout")
        if "pool_type" in body:
            require_enum(body["pool_type"], f"{path}.pool_type", ("random", "hash"))
        if "headers" in body:
            require_object(body["headers"], f"{path}.headers")
        if "enable" in body:
            require_bool(body["enable"], f"{path}.enable")
        return with_defaults({k: v for k, v in body.items() if k not in CONNECTOR_DROPPED_FIELDS},
                             CONNECTOR_DEFAULTS)

    def _connector_view(self, name: str) -> dict[str, Any]:
        config = self._state.connectors[name]
        users = sorted(a for a, c in self._state.actions.items() if c["connector"] == name)
        return redact({**config, "type": "http", "name": name, "status": "connected",
                       "node_status": [{"node": "emqx@127.0.0.1", "status": "connected"}], "actions": users})

    def _list_connectors(self, request: Request, _: list[str]) -> Answer:
        return Answer(200, [self._connector_view(name) for name in sorted(self._state.connectors)])

    def _create_connector(self, request: Request, _: list[str]) -> Answer:
        body = reject_unknown_fields(request.json_body(), CONNECTOR_FIELDS | {"type", "name"}, "connector")
        if body.get("type") != "http":
            raise validation_error("connector.type", "the double supports only type http")
        name = body.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.match(name) or len(name) >= 255:
            raise bad_request(f"Invalid name format: {name!r}")
        if name in self._state.connectors:
            raise bad_request("connector already exists", code="ALREADY_EXISTS")
        config = {k: v for k, v in body.items() if k not in ("type", "name")}
        self._state.connectors[name] = self._validate_connector(config, "connector")
        return Answer(201, self._connector_view(name))

    def _get_connector(self, request: Request, captured: list[str]) -> Answer:
        name = self._connector_name(captured[0])
        if name not in self._state.connectors:
            raise not_found(f"Connector lookup failed: connector named '{name}' of type http does not exist.")
        return Answer(200, self._connector_view(name))

    def _update_connector(self, request: Request, captured: list[str]) -> Answer:
        name = self._connector_name(captured[0])
        body = reject_unknown_fields(request.json_body(), CONNECTOR_FIELDS, "connector")
        if name not in self._state.connectors:
            raise not_found(f"Connector lookup failed: connector named '{name}' of type http does not exist.")
        body = deobfuscate(body, self._state.connectors[name])
        self._state.connectors[name] = self._validate_connector(body, "connector")
        return Answer(200, self._connector_view(name))

    def _delete_connector(self, request: Request, captured: list[str]) -> Answer:
        name = self._connector_name(captured[0])
        if name not in self._state.connectors:
            raise not_found(f"Connector lookup failed: connector named '{name}' of type http does not exist.")
        channels = sorted(f"action:http:{a}" for a, c in self._state.actions.items() if c["connector"] == name)
        if channels:  # section 13.7: disabled actions count too
            raise bad_request(
                '{<<"Cannot delete connector while there are active channels defined for this connector">>, '
                f"{channels}}}"
            )
        del self._state.connectors[name]
        return Answer(204)

    # ---- actions -----------------------------------------------------------------------

    @staticmethod
    def _action_name(action_id: str) -> str:
        action_type, _, name = action_id.partition(":")
        if action_type != "http" or not name:
            raise not_found(f"Invalid bridge ID, expected <type>:<name>, got: {action_id}")
        return name

    def _validate_action(self, body: dict[str, Any], path: str) -> dict[str, Any]:
        connector = body.get("connector")
        if not isinstance(connector, str):
            raise validation_error(f"{path}.connector", "required_field")
        if connector not in self._state.connectors:
            raise bad_request(json.dumps({"reason": "connector_not_found_or_wrong_type",
                                          "connector_name": connector, "connector_type": "http"}))
        if "parameters" not in body:
            raise validation_error(f"{path}.parameters", "required_field")
        parameters = reject_unknown_fields(body["parameters"], ACTION_PARAMETERS, f"{path}.parameters")
        if parameters.get("method", "post") not in ("post", "put", "get", "delete"):
            raise validation_error(f"{path}.parameters.method", "must be post, put, get or delete")
        if "headers" in parameters:
            require_object(parameters["headers"], f"{path}.parameters.headers")
        if "max_retries" in parameters:
            require_int(parameters["max_retries"], f"{path}.parameters.max_retries", low=0)
        for key in ("path", "body"):
            if key in parameters and not isinstance(parameters[key], str):
                raise validation_error(f"{path}.parameters.{key}", "expected a string template")
        resource_opts = reject_unknown_fields(body.get("resource_opts", {}), ACTION_RESOURCE_OPTS,
                                              f"{path}.resource_opts")
        if resource_opts.get("query_mode", "async") not in ("async", "sync"):
            raise validation_error(f"{path}.resource_opts.query_mode", "must be async or sync")
        for key in ("request_ttl", "request_timeout"):  # request_timeout: the alias of request_ttl
            if key in resource_opts:
                require_duration(resource_opts[key], f"{path}.resource_opts.{key}", infinity=True)
        for key in ("health_check_interval", "metrics_flush_interval", "resume_interval"):
            if key in resource_opts:
                require_duration(resource_opts[key], f"{path}.resource_opts.{key}")
        if "inflight_window" in resource_opts:
            require_int(resource_opts["inflight_window"], f"{path}.resource_opts.inflight_window", low=1)
        if "worker_pool_size" in resource_opts:
            require_int(resource_opts["worker_pool_size"], f"{path}.resource_opts.worker_pool_size", 1, 1024)
        if "enable" in body:
            require_bool(body["enable"], f"{path}.enable")
        for key in ("created_at", "last_modified_at"):
            if key in body:
                require_int(body[key], f"{path}.{key}")
        kept_opts = {k: v for k, v in resource_opts.items() if k not in ACTION_DROPPED_RESOURCE_OPTS}
        return with_defaults({**body, "resource_opts": kept_opts}, ACTION_DEFAULTS)

    def _action_view(self, name: str) -> dict[str, Any]:
        config = self._state.actions[name]
        return redact({**config, "type": "http", "name": name, "status": "connected",
                       "node_status": [{"node": "emqx@127.0.0.1", "status": "connected"}]})

    def _list_actions(self, request: Request, _: list[str]) -> Answer:
        return Answer(200, [self._action_view(name) for name in sorted(self._state.actions)])

    def _create_action(self, request: Request, _: list[str]) -> Answer:
        body = reject_unknown_fields(request.json_body(), ACTION_FIELDS | {"type", "name"}, "action")
        if body.get("type") != "http":
            raise validation_error("action.type", "the double supports only type http")
        name = body.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.match(name) or len(name) >= 255:
            raise bad_request(f"Invalid name format: {name!r}")
        if name in self._state.actions:
            raise bad_request("bridge already exists", code="ALREADY_EXISTS")
        config = self._validate_action({k: v for k, v in body.items() if k not in ("type", "name")}, "action")
        self._state.actions[name] = self._stamped(config)
        return Answer(201, self._action_view(name))

    def _get_action(self, request: Request, captured: list[str]) -> Answer:
        name = self._action_name(captured[0])
        if name not in self._state.actions:
            raise not_found(f"Bridge lookup failed: bridge named '{name}' of type http does not exist.")
        return Answer(200, self._action_view(name))

    def _update_action(self, request: Request, captured: list[str]) -> Answer:
        name = self._action_name(captured[0])
        body = reject_unknown_fields(request.json_body(), ACTION_FIELDS, "action")
        if name not in self._state.actions:
            raise not_found(f"Bridge lookup failed: bridge named '{name}' of type http does not exist.")
        body = deobfuscate(body, self._state.actions[name])
        # created_at is reset unless the body carries it (section 13.8)
        self._state.actions[name] = self._stamped(self._validate_action(body, "action"))
        return Answer(200, self._action_view(name))

    @staticmethod
    def _stamped(config: dict[str, Any]) -> dict[str, Any]:
        """emqx_bridge_v2: ensure_created_at/1 keeps a given created_at; last_modified_at is now."""
        now = now_ms()
        return {**config, "created_at": config.get("created_at", now), "last_modified_at": now}

    def _delete_action(self, request: Request, captured: list[str]) -> Answer:
        name = self._action_name(captured[0])
        if name not in self._state.actions:
            raise not_found(f"Bridge lookup failed: bridge named '{name}' of type http does not exist.")
        action_id = f"http:{name}"
        dependants = sorted(r for r, rule in self._state.rules.items() if action_id in rule["actions"])
        if dependants:
            if request.query_value("also_delete_dep_actions") != "true":
                raise bad_request("Cannot delete action while active rules are depending on it",
                                  rules=dependants)
            for rule_id in dependants:  # the rules stay; only the reference goes
                rule = self._state.rules[rule_id]
                rule["actions"] = [a for a in rule["actions"] if a != action_id]
        del self._state.actions[name]
        return Answer(204)

    # ---- rules -------------------------------------------------------------------------

    @staticmethod
    def _rule_sources(sql: Any) -> list[str]:
        match = re.match(r'(?is)^\s*(select|foreach)\s.+?\sfrom\s+((?:"[^"]*"\s*,?\s*)+)', sql or "")
        if not isinstance(sql, str) or match is None:
            raise bad_request(f"Bad Arguments: {{select_and_transform, invalid SQL: {sql!r}}}")
        return re.findall(r'"([^"]*)"', match.group(2))

    @staticmethod
    def _normalise_rule_actions(actions: Any) -> list[Any]:
        if not isinstance(actions, list):
            raise bad_request("Bad Arguments: actions must be a list")
        normalised = []
        for action in actions:
            if isinstance(action, str):
                kind, _, name = action.partition(":")
                normalised.append(f"http:{name}" if kind == "webhook" else action)
            elif isinstance(action, dict) and "function" in action:
                normalised.append(action)
            else:
                raise bad_request(f"Bad Arguments: invalid action {action!r}")
        return normalised

    def _store_rule(self, rule_id: str, raw: dict[str, Any]) -> None:
        self._rule_sources(raw.get("sql"))
        # The rules API checks no schema itself, but the config update does (hocon, 400 "Bad Arguments").
        for key, kind in (("enable", bool), ("description", str), ("name", str)):
            if key in raw and not isinstance(raw[key], kind):
                raise bad_request(f"Bad Arguments: {{rules.{rule_id}.{key}, expected {kind.__name__}, "
                                  f"got {raw[key]!r}}}")
        raw["actions"] = self._normalise_rule_actions(raw.get("actions", []))
        previous = self._state.rules.get(rule_id)
        created_at = previous["created_at"] if previous else now_rfc3339()
        self._state.rules[rule_id] = {**raw, "created_at": created_at, "last_modified_at": now_rfc3339()}

    def _rule_view(self, rule_id: str) -> dict[str, Any]:
        rule = self._state.rules[rule_id]
        return {"id": rule_id, **rule, "from": self._rule_sources(rule["sql"])}

    def _list_rules(self, request: Request, _: list[str]) -> Answer:
        ids = sorted(self._state.rules, reverse=True)  # section 13.4: descending key order
        return self._paginate(request, [self._rule_view(rule_id) for rule_id in ids])

    def _create_rule(self, request: Request, _: list[str]) -> Answer:
        body = reject_unknown_fields(request.json_body(), RULE_FIELDS | {"id"}, "rule")
        rule_id = body.pop("id", None)
        if rule_id is None:
            rule_id = secrets.token_hex(4)
        if rule_id == "":
            raise bad_request("empty rule id is not allowed")
        if rule_id in self._state.rules:
            raise bad_request("rule id already exists")
        self._store_rule(rule_id, with_defaults(body, RULE_DEFAULTS))
        return Answer(201, self._rule_view(rule_id))

    def _get_rule(self, request: Request, captured: list[str]) -> Answer:
        if captured[0] not in self._state.rules:
            raise not_found("Rule Id Not Found")
        return Answer(200, self._rule_view(captured[0]))

    def _update_rule(self, request: Request, captured: list[str]) -> Answer:
        rule_id = captured[0]
        body = reject_unknown_fields(request.json_body(), RULE_FIELDS, "rule")
        existing = self._state.rules.get(rule_id)
        if self.version == "6.x":
            if existing is None:
                raise not_found("Rule Id Not Found")
            kept = {k: v for k, v in existing.items() if k in RULE_FIELDS}
            raw = {**kept, **body}  # 6.x merges the body into the stored rule
        else:
            raw = with_defaults(body, RULE_DEFAULTS)  # 5.8: upsert, the body replaces the rule
        self._store_rule(rule_id, raw)
        return Answer(200, self._rule_view(rule_id))

    def _delete_rule(self, request: Request, captured: list[str]) -> Answer:
        if self._state.rules.pop(captured[0], None) is None:
            raise not_found("Rule Id Not Found")
        return Answer(204)

    # ---- authentication ----------------------------------------------------------------

    @staticmethod
    def _validate_hash_algorithm(algorithm: Any) -> None:
        if not isinstance(algorithm, dict) or "name" not in algorithm:
            raise validation_error("password_hash_algorithm", "expected an object with a name")
        name = algorithm["name"]
        if name == "bcrypt":
            reject_unknown_fields(algorithm, frozenset({"name", "salt_rounds"}), "password_hash_algorithm")
            require_int(algorithm.get("salt_rounds", 10), "password_hash_algorithm.salt_rounds", 5, 10)
        elif name in SIMPLE_HASHES:
            reject_unknown_fields(algorithm, frozenset({"name", "salt_position"}), "password_hash_algorithm")
            if algorithm.get("salt_position", "prefix") not in ("disable", "prefix", "suffix"):
                raise validation_error("password_hash_algorithm.salt_position", "must be disable|prefix|suffix")
        elif name == "pbkdf2":
            reject_unknown_fields(algorithm, frozenset({"name", "mac_fun", "iterations", "dk_length"}),
                                  "password_hash_algorithm")
            for key in ("iterations", "dk_length"):
                if key in algorithm:
                    require_int(algorithm[key], f"password_hash_algorithm.{key}", low=1)
        else:
            raise validation_error("password_hash_algorithm.name", f"unknown algorithm {name!r}")

    def _validate_authenticator(self, body: Any) -> dict[str, Any]:
        body = reject_unknown_fields(body, AUTHN_FIELDS, "authentication")
        if (body.get("mechanism"), body.get("backend")) != ("password_based", "built_in_database"):
            raise validation_error("authentication", "the double supports only password_based:built_in_database")
        if body.get("user_id_type", "username") not in ("username", "clientid"):
            raise validation_error("authentication.user_id_type", "must be username or clientid")
        if "enable" in body:
            require_bool(body["enable"], "authentication.enable")
        algorithm = body.get("password_hash_algorithm", AUTHN_DEFAULTS["password_hash_algorithm"])
        self._validate_hash_algorithm(algorithm)
        if algorithm["name"] == "bcrypt":
            algorithm = {"salt_rounds": 10, **algorithm}
        elif algorithm["name"] in SIMPLE_HASHES:
            algorithm = {"salt_position": "prefix", **algorithm}
        return {**with_defaults(body, AUTHN_DEFAULTS), "password_hash_algorithm": algorithm}

    def _authenticator_view(self, authn_id: str) -> dict[str, Any]:
        return redact({"id": authn_id, **self._state.authenticators[authn_id]})

    def _list_authenticators(self, request: Request, _: list[str]) -> Answer:
        return Answer(200, [self._authenticator_view(i) for i in self._state.authenticators])

    def _create_authenticator(self, request: Request, _: list[str]) -> Answer:
        config = self._validate_authenticator(request.json_body())
        if BUILTIN_AUTHN_ID in self._state.authenticators:
            raise ApiError(409, "ALREADY_EXISTS", f"Authenticator '{BUILTIN_AUTHN_ID}' already exist")
        self._state.authenticators[BUILTIN_AUTHN_ID] = config
        self._state.global_chain_exists = True
        return Answer(200, self._authenticator_view(BUILTIN_AUTHN_ID))

    def _require_authenticator(self, authn_id: str) -> None:
        if authn_id not in self._state.authenticators:
            raise not_found(f"Authenticator '{authn_id}' does not exist")

    def _get_authenticator(self, request: Request, captured: list[str]) -> Answer:
        self._require_authenticator(captured[0])
        return Answer(200, self._authenticator_view(captured[0]))

    def _update_authenticator(self, request: Request, captured: list[str]) -> Answer:
        authn_id = captured[0]
        body = request.json_body()
        self._require_authenticator(authn_id)
        body = reject_unknown_fields(body, AUTHN_FIELDS, "authentication")
        if f"{body.get('mechanism')}:{body.get('backend')}" != authn_id:
            raise bad_request("Change of authentication type is not allowed")
        body = deobfuscate(body, self._state.authenticators[authn_id])
        self._state.authenticators[authn_id] = self._validate_authenticator(body)
        return Answer(204)

    def _delete_authenticator(self, request: Request, captured: list[str]) -> Answer:
        if not self._state.global_chain_exists:
            raise not_found("Authenticator not found in the 'global' scope")
        if self._state.authenticators.pop(captured[0], None) is not None and captured[0] == BUILTIN_AUTHN_ID:
            self._state.authn_users.clear()  # the provider's destroy/1 erases its user group
        return Answer(204)  # "Idempotence intended" once the chain exists

    def _users_authenticator(self, authn_id: str) -> None:
        if authn_id != BUILTIN_AUTHN_ID or authn_id not in self._state.authenticators:
            if self._state.global_chain_exists:
                raise bad_request(f"User error: {{not_found,{{authenticator,<<\"{authn_id}\">>}}}}")
            raise not_found(f"Authenticator '{authn_id}' does not exist")

    def _list_users(self, request: Request, captured: list[str]) -> Answer:
        self._users_authenticator(captured[0])
        users = [{"user_id": u, "is_superuser": v["is_superuser"]} for u, v in sorted(self._state.authn_users.items())]
        return self._paginate(request, users)

    def _create_user(self, request: Request, captured: list[str]) -> Answer:
        body = reject_unknown_fields(request.json_body(), frozenset({"user_id", "password", "is_superuser"}), "user")
        self._users_authenticator(captured[0])
        user_id, password = body.get("user_id"), body.get("password")
        if not isinstance(user_id, str) or not user_id or not isinstance(password, str) or not password:
            raise bad_request("user_id and password are required and must not be empty")
        if user_id in self._state.authn_users:
            raise ApiError(409, "ALREADY_EXISTS", "User already exists")
        is_superuser = require_bool(body.get("is_superuser", False), "user.is_superuser")
        self._state.authn_users[user_id] = {"password": password, "is_superuser": is_superuser}
        return Answer(201, {"user_id": user_id, "is_superuser": is_superuser})

    def _get_user(self, request: Request, captured: list[str]) -> Answer:
        self._users_authenticator(captured[0])
        user = self._state.authn_users.get(captured[1])
        if user is None:
            raise not_found("User not found")
        return Answer(200, {"user_id": captured[1], "is_superuser": user["is_superuser"]})

    def _update_user(self, request: Request, captured: list[str]) -> Answer:
        body = reject_unknown_fields(request.json_body(), frozenset({"password", "is_superuser"}), "user")
        self._users_authenticator(captured[0])
        if not isinstance(body.get("password"), str) or not body["password"]:
            raise validation_error("user.password", "required_field")
        user = self._state.authn_users.get(captured[1])
        if user is None:
            raise not_found("User not found")
        user["password"] = body["password"]
        user["is_superuser"] = require_bool(body.get("is_superuser", user["is_superuser"]), "user.is_superuser")
        return Answer(200, {"user_id": captured[1], "is_superuser": user["is_superuser"]})

    def _delete_user(self, request: Request, captured: list[str]) -> Answer:
        self._users_authenticator(captured[0])
        if self._state.authn_users.pop(captured[1], None) is None:
            raise not_found("User not found")
        return Answer(204)

    # ---- authorization sources, rules and settings ---------------------------------------

    def _source_type(self, source_type: str) -> str:
        if source_type not in KNOWN_AUTHZ_SOURCE_TYPES:  # section 13.12: unknown type is 400
            raise bad_request(f"Invalid source type: {source_type}")
        return source_type

    def _validate_source(self, body: Any) -> dict[str, Any]:
        source_type = body.get("type") if isinstance(body, dict) else None
        if source_type not in AUTHZ_SOURCE_FIELDS:
            raise validation_error("source.type", f"the double supports only {sorted(AUTHZ_SOURCE_FIELDS)}")
        body = reject_unknown_fields(body, AUTHZ_SOURCE_FIELDS[source_type], "source")
        enable = require_bool(body.get("enable", True), "source.enable")
        if source_type == "built_in_database":
            max_rules = require_int(body.get("max_rules", 100), "source.max_rules", low=1)
            return {"type": source_type, "enable": enable, "max_rules": max_rules}
        if not isinstance(body.get("rules"), str):
            raise validation_error("source.rules", "required_field")
        return {**DEFAULT_FILE_SOURCE, "enable": enable, "rules": body["rules"]}

    @staticmethod
    def _source_view(source: dict[str, Any]) -> dict[str, Any]:
        # emqx_authz_file:read_files/1 answers the file's content as `rules`, without `path`.
        return redact({k: v for k, v in source.items() if not (source["type"] == "file" and k == "path")})

    def _list_sources(self, request: Request, _: list[str]) -> Answer:
        return Answer(200, {"sources": [self._source_view(s) for s in self._state.authz_sources]})

    def _create_source(self, request: Request, _: list[str]) -> Answer:
        source = self._validate_source(request.json_body())
        if self._state.authz_source(source["type"]) is not None:
            raise bad_request(f"{{duplicated_authz_source_type,{source['type']}}}")
        self._state.authz_sources.insert(0, source)  # POST prepends
        return Answer(204)

    def _existing_source(self, source_type: str) -> dict[str, Any]:
        source = self._state.authz_source(self._source_type(source_type))
        if source is None:
            raise not_found(f"Not found: {source_type}")
        return source

    def _get_source(self, request: Request, captured: list[str]) -> Answer:
        return Answer(200, self._source_view(self._existing_source(captured[0])))

    def _update_source(self, request: Request, captured: list[str]) -> Answer:
        body = request.json_body()
        existing = self._existing_source(captured[0])
        if not isinstance(body, dict) or body.get("type") != captured[0]:
            raise bad_request("Type mismatch")
        updated = self._validate_source(deobfuscate(body, existing))
        index = self._state.authz_sources.index(existing)
        self._state.authz_sources[index] = updated
        return Answer(204)

    def _delete_source(self, request: Request, captured: list[str]) -> Answer:
        source = self._existing_source(captured[0])
        if source["type"] == "built_in_database" and source["enable"]:
            self._state.authz_user_rules.clear()  # section 13.12: deleting an enabled one wipes its rules
        self._state.authz_sources.remove(source)
        return Answer(204)

    def _builtin_source(self) -> dict[str, Any]:
        source = self._state.authz_source("built_in_database")
        if source is None:
            raise not_found("Not found: built_in_database")
        return source

    def _validate_authz_rules(self, rules: Any, max_rules: int) -> list[dict[str, Any]]:
        if not isinstance(rules, list):
            raise validation_error("rules", "expected an array")
        if len(rules) > max_rules:
            raise bad_request("The rules length exceeds the maximum limit.")
        checked = []
        for index, rule in enumerate(rules):
            rule = reject_unknown_fields(rule, AUTHZ_RULE_FIELDS, f"rules.{index}")
            if not isinstance(rule.get("topic"), str) or not rule["topic"]:
                raise validation_error(f"rules.{index}.topic", "required_field")
            if rule.get("permission") not in ("allow", "deny"):
                raise validation_error(f"rules.{index}.permission", "must be allow or deny")
            if rule.get("action") not in ("publish", "subscribe", "all"):
                raise validation_error(f"rules.{index}.action", "must be publish, subscribe or all")
            qos = rule.get("qos", [0, 1, 2])
            if not isinstance(qos, list):
                raise validation_error(f"rules.{index}.qos", "must be a list of 0, 1, 2")
            for item in qos:
                require_int(item, f"rules.{index}.qos", 0, 2)
            retain = rule.get("retain", "all")
            if not (isinstance(retain, bool) or retain == "all"):
                raise validation_error(f"rules.{index}.retain", "must be true, false or all")
            checked.append({"qos": [0, 1, 2], "retain": "all", **rule})
        return checked

    def _list_authz_users(self, request: Request, _: list[str]) -> Answer:
        self._builtin_source()
        items = [{"username": u, "rules": r} for u, r in sorted(self._state.authz_user_rules.items())]
        return self._paginate(request, items)

    def _create_authz_users(self, request: Request, _: list[str]) -> Answer:
        body = request.json_body()
        source = self._builtin_source()
        if not isinstance(body, list):
            raise validation_error("users", "expected an array")
        entries = [reject_unknown_fields(e, frozenset({"username", "rules"}), "users") for e in body]
        if not all(isinstance(e.get("username"), str) and e["username"] for e in entries):
            raise validation_error("users.username", "required_field")
        # Validation of every entry runs before anything is written.
        checked = {e.get("username"): self._validate_authz_rules(e.get("rules"), source["max_rules"]) for e in entries}
        for username in checked:
            if username in self._state.authz_user_rules:
                raise ApiError(409, "ALREADY_EXISTS", f"User '{username}' already exist")
        self._state.authz_user_rules.update(checked)
        return Answer(204)

    def _get_authz_user(self, request: Request, captured: list[str]) -> Answer:
        self._builtin_source()
        rules = self._state.authz_user_rules.get(captured[0])
        if rules is None:
            raise not_found("Not Found")
        return Answer(200, {"username": captured[0], "rules": rules})

    def _put_authz_user(self, request: Request, captured: list[str]) -> Answer:
        body = reject_unknown_fields(request.json_body(), frozenset({"username", "rules"}), "user")
        source = self._builtin_source()
        if body.get("username") != captured[0]:  # section 13.13: the handler's pattern match fails
            raise ApiError(500, "INTERNAL_ERROR", "function_clause")
        self._state.authz_user_rules[captured[0]] = self._validate_authz_rules(body.get("rules"), source["max_rules"])
        return Answer(204)

    def _delete_authz_user(self, request: Request, captured: list[str]) -> Answer:
        self._builtin_source()
        if self._state.authz_user_rules.pop(captured[0], None) is None:
            raise not_found("Username Not Found")
        return Answer(204)

    def _get_settings(self, request: Request, _: list[str]) -> Answer:
        return Answer(200, copy.deepcopy(self._state.authz_settings))

    def _put_settings(self, request: Request, _: list[str]) -> Answer:
        extra_keys = {"include_mountpoint", "ignore_backend_failures"} if self.version == "6.x" else set()
        body = reject_unknown_fields(request.json_body(), frozenset(SETTINGS_KEYS) | extra_keys, "settings")
        missing = [key for key in SETTINGS_KEYS if key not in body]
        if missing and self.version == "5.8":  # section 13.14: the handler pattern-matches all three
            raise ApiError(500, "INTERNAL_ERROR", "function_clause")
        settings = {**self._default_settings(), **body}
        if settings["no_match"] not in ("allow", "deny"):
            raise validation_error("settings.no_match", "must be allow or deny")
        if settings["deny_action"] not in ("ignore", "disconnect"):
            raise validation_error("settings.deny_action", "must be ignore or disconnect")
        cache = reject_unknown_fields(settings["cache"], frozenset(CACHE_DEFAULTS), "settings.cache")
        if "enable" in cache:
            require_bool(cache["enable"], "settings.cache.enable")
        if "max_size" in cache:
            require_int(cache["max_size"], "settings.cache.max_size", 1, 1048576)
        if "ttl" in cache:
            require_duration(cache["ttl"], "settings.cache.ttl")
        if "excludes" in cache and not (isinstance(cache["excludes"], list)
                                        and all(isinstance(t, str) for t in cache["excludes"])):
            raise validation_error("settings.cache.excludes", "expected an array of topic filters")
        settings["cache"] = {**CACHE_DEFAULTS, **cache}
        self._state.authz_settings = settings
        return Answer(200, copy.deepcopy(settings))
