"""The EMQX management-API client: HTTP Basic with an API key, bounded waits, readable errors.

Facts about the API (status codes, redaction, 5.8 vs 6.x) come from
`/work/shared/reference/emqx-api.md`; section numbers in comments refer to it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import requests

REDACTED = "******"
DEFAULT_READY_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
STATUS_READ_TIMEOUT_S = 5.0
MAX_READY_POLL_INTERVAL_S = 2.0
BUILTIN_AUTHENTICATOR_ID = "password_based:built_in_database"
POSTGRES_AUTHENTICATOR_ID = "password_based:postgresql"
USERS_PATH = f"/authentication/{BUILTIN_AUTHENTICATOR_ID}/users"
AUTHZ_USER_RULES_PATH = "/authorization/sources/built_in_database/rules/users"
CONNECTION_KEYS = ("api_url", "api_key", "api_secret")
# Names EMQX accepts for connectors and actions (section 4).
EMQX_NAME_PATTERN = re.compile(r"^[0-9a-zA-Z][-0-9a-zA-Z_]{0,253}$")
# Keys whose values never appear in messages we build.
SENSITIVE_KEYS = frozenset(
    {"password", "secret", "token", "authorization", "proxy-authorization", "api_secret", "bearer_token"}
)
# Maps compared exactly (EMQX replaces them as a whole); other objects are compared as subsets
# because EMQX fills in defaults for the keys we do not send.
EXACT_MAP_KEYS = frozenset({"headers", "client_rules", "foreign_user_rules"})
DEFAULT_AUTHZ_CACHE: dict[str, Any] = {"enable": True, "max_size": 32, "ttl": "1m", "excludes": []}
# Salted SHA-256 rather than bcrypt: device passwords are generated with high entropy, so a slow
# hash buys nothing against offline guessing, while bcrypt would cost tens of milliseconds of
# broker CPU on every device CONNECT (and much more during a reconnect storm).
DEFAULT_PASSWORD_HASH: dict[str, Any] = {"name": "sha256", "salt_position": "suffix"}


# ---- errors -----------------------------------------------------------------------------


class EmqxApiError(Exception):
    """Any failure talking to EMQX. The message names the resource, the call and EMQX's reason."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 reason: str = "", extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.reason = status, code, reason
        self.extra = dict(extra or {})


class EmqxNotReadyError(EmqxApiError):
    """EMQX did not answer 200 on /api/v5/status within the ready timeout."""


class EmqxConflictError(EmqxApiError):
    """The object already exists in EMQX with content different from the stack's."""


# ---- the REST client --------------------------------------------------------------------


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    body: Any


def _secret_values(value: Any, key: str = "") -> list[str]:
    """The secret strings inside a request body, so error messages can be scrubbed of them."""
    if isinstance(value, Mapping):
        return [s for k, v in value.items() for s in _secret_values(v, str(k))]
    if isinstance(value, list):
        return [s for item in value for s in _secret_values(item, key)]
    if isinstance(value, str) and key.lower() in SENSITIVE_KEYS and value != REDACTED:
        return [value, value.removeprefix("Bearer ")]
    return []


def _wire(value: Any) -> Any:
    """A request body as EMQX's schema wants it: whole numbers as JSON integers.

    The Pulumi engine carries every number as a float64, so a dynamic provider receives
    `pool_size=8.0`, `max_rules=100.0`, `cache.max_size=32.0`...; EMQX's integer fields
    (typerefl `pos_integer()`, `range(1, N)`) refuse `8.0` with a 400 schema error.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wire(item) for item in value]
    return value


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text


def _emqx_reason(message: Any) -> str:
    """EMQX's `message` is often itself a JSON document (section 4): decode it when it is."""
    if isinstance(message, str):
        try:
            decoded = json.loads(message)
        except ValueError:
            return message
        return json.dumps(decoded, sort_keys=True) if isinstance(decoded, (dict, list)) else message
    return json.dumps(message, sort_keys=True)


class EmqxApi:
    """A client for one resource operation: HTTP Basic with an API key, explicit timeouts."""

    def __init__(self, api_url: str, api_key: str, api_secret: str, resource: str,
                 ready_timeout: float = DEFAULT_READY_TIMEOUT_S) -> None:
        if not str(api_url).startswith(("http://", "https://")):
            raise EmqxApiError(f"{resource}: api_url must start with http:// or https://, got {api_url!r}")
        if not ready_timeout or float(ready_timeout) <= 0:
            raise EmqxApiError(f"{resource}: ready_timeout must be a positive number of seconds")
        self.base_url = str(api_url).rstrip("/")
        self.resource = resource
        self.ready_timeout = float(ready_timeout)
        self._auth = (api_key, api_secret)
        self._session = requests.Session()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._session.close()

    @classmethod
    def for_resource(cls, props: Mapping[str, Any], resource: str) -> EmqxApi:
        """A client built from a resource's inputs or outputs, once EMQX answers /status."""
        api = cls(props["api_url"], props["api_key"], props["api_secret"], resource,
                  props.get("ready_timeout") or DEFAULT_READY_TIMEOUT_S)
        try:
            api.wait_ready()
        except EmqxNotReadyError:
            api._session.close()
            raise
        return api

    def wait_ready(self) -> None:
        """Poll the unauthenticated /api/v5/status until it answers 200, with a bounded wait."""
        deadline = time.monotonic() + self.ready_timeout
        delay, last_answer = 0.1, "none"
        while True:
            remaining = deadline - time.monotonic()
            try:
                answer = self._session.get(f"{self.base_url}/api/v5/status",
                                           timeout=(min(CONNECT_TIMEOUT_S, max(remaining, 0.1)), STATUS_READ_TIMEOUT_S))
                if answer.status_code == 200:
                    return
                last_answer = f"HTTP {answer.status_code} {answer.text[:200]!r}"
            except requests.RequestException as exc:
                last_answer = f"{type(exc).__name__} ({str(exc)[:200]})"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EmqxNotReadyError(
                    f"{self.resource}: EMQX at {self.base_url} did not become ready within "
                    f"{self.ready_timeout:g} s: last answer {last_answer}; check the container's logs "
                    "/ the emqx dashboardPort"
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_READY_POLL_INTERVAL_S)

    def call(self, method: str, path: str, body: Any = None, *,
             accept: Sequence[int] = (200, 201, 204)) -> ApiAnswer:
        """One API call; any status outside `accept` raises EmqxApiError."""
        url = f"{self.base_url}/api/v5{path}"
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(_wire(body)).encode()
            headers["Content-Type"] = "application/json"  # EMQX answers 415 without it
        try:
            response = self._session.request(method, url, data=data, headers=headers, auth=self._auth,
                                             timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
        except requests.RequestException as exc:
            raise EmqxApiError(
                f"{self.resource}: {method} {path} could not reach EMQX at {self.base_url} "
                f"({type(exc).__name__}) although it answered /api/v5/status before; "
                "check whether the EMQX container stopped or restarted"
            ) from None
        parsed = self._parse(response)
        if response.status_code in accept:
            return ApiAnswer(response.status_code, parsed)
        raise self._error(method, path, response.status_code, parsed, _secret_values(body))

    @staticmethod
    def _parse(response: requests.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def _error(self, method: str, path: str, status: int, body: Any, secrets: list[str]) -> EmqxApiError:
        code = body.get("code") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else body
        extra = {k: v for k, v in body.items() if k not in ("code", "message")} if isinstance(body, dict) else {}
        secrets = [*secrets, self._auth[1]]
        reason = _scrub(_emqx_reason(message), secrets)
        call = f"{method} {path}"
        if status == 401 and code == "BAD_API_KEY_OR_SECRET":
            # The key is wrong, expired or disabled. Where it comes from depends on who runs EMQX.
            text = (f"{self.resource}: EMQX rejected the API key at {self.base_url} ({call}: 401 {code}, "
                    f"{reason!r}): for an EMQX the stack runs, the key is the one the stack bootstraps "
                    "(emqxApiKey/emqxApiSecret outputs; a container or cluster created before the key "
                    "existed does not load it: restart EMQX); for an external EMQX, compare "
                    "telemetry:emqx.external.apiKey and apiSecret with the API keys in its dashboard "
                    "(System > API Key: enabled, not expired, role administrator)")
        else:
            details = _scrub("".join(f"; {k}: {json.dumps(v)}" for k, v in extra.items()), secrets)
            status_text = f"HTTP {status} {code}" if code else f"HTTP {status}"
            text = f"{self.resource}: {call} failed with {status_text}: {reason}{details}"
        return EmqxApiError(text, status=status, code=code, reason=reason, extra=extra)

