"""What EMQX's schema layer does to every request and response, as the double applies it.

Field sets, defaults, type checks (hocon: integers are not floats, durations and byte sizes have
units), redaction of secrets in responses and their de-obfuscation on PUT, and the error shapes
(`{"code", "message"}`, schema errors as a JSON document inside `message`). Sources are cited
in the docstrings; `reference/emqx-api.md` sections in comments.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
# [6.2.2] emqx_bridge_v2_schema:common_action_resource_opts_subfields/0 adds these three.
ACTION_RESOURCE_OPTS_6X = frozenset({"dispatch_strategy", "health_check_interval_jitter", "health_check_timeout"})
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


# hocon_postprocess:bytesize/1 ("256MB", "64kb"); plain integers are bytes.
BYTESIZE_PATTERN = re.compile(r"^([0-9]+)(kb|mb|gb)$", re.IGNORECASE)
BYTESIZE_UNITS = {"kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3}
DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def require_bytesize(value: Any, path: str) -> Any:
    if (type(value) is int and value >= 0) or (isinstance(value, str) and BYTESIZE_PATTERN.match(value)):
        return value
    raise validation_error(path, "expected a byte size such as \"256MB\"", value=value)


def bytesize(value: Any) -> int:
    if type(value) is int:
        return value
    match = BYTESIZE_PATTERN.match(str(value))
    assert match is not None, value
    return int(match.group(1)) * BYTESIZE_UNITS[match.group(2).lower()]


def duration_ms(value: Any) -> float:
    """A validated duration in milliseconds; `infinity` is math.inf."""
    if value == "infinity":
        return float("inf")
    if type(value) is int or str(value).isdigit():
        return int(value)
    parts = re.findall(r"([0-9.]+)(ms|w|d|h|m|s)", str(value).lower())
    return sum(float(number) * DURATION_UNITS_MS[unit] for number, unit in parts)


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



def paginate(request: Request, items: list[Any]) -> Answer:
    """`page`/`limit` paging (emqx_dashboard_swagger.erl:91-92,191-243): bad values are 400."""
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
