"""EMQX as code: a small management-API client and Pulumi dynamic resources for EMQX 5.8.

Facts about the API (status codes, redaction, 5.8 vs 6.x) come from
`/work/shared/reference/emqx-api.md`; section numbers in comments refer to it.

Each provider method builds its own `EmqxApi` from the resource's inputs (`api_url`,
`api_key`, `api_secret`, `ready_timeout`), because Pulumi pickles the provider object into
the state: providers hold no state and no secrets.

Shared rules of every resource here:

* create adopts an object that already exists with the same content and fails, naming the
  differences, when it exists with different content;
* read returns the live object (so `pulumi refresh` shows drift) or an empty id when it is gone;
* diff compares the desired inputs with the last known (or refreshed) state, ignoring
  values EMQX hides as `******`; secrets EMQX never returns are compared through a SHA-256
  fingerprint kept in the outputs, never the secret itself;
* update converges with PUT (and re-creates an object deleted behind Pulumi's back);
* delete is idempotent (a missing object is fine); the stack-wide authenticator and
  authorization source refuse to be deleted while device users or per-user rules are left,
  because EMQX would erase those with them.

Replacements (a new connector/action name or rule id, a new user name) are create-before-delete:
the replacement has a different EMQX id, so both can exist for a moment, and this order is
what lets dependants move over first (an action is re-pointed to the new connector before the
old connector, which EMQX refuses to delete while an action uses it, goes away).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self
from urllib.parse import quote

import pulumi
import requests
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)
from pulumi.runtime.rpc import UNKNOWN  # the preview placeholder for values not known yet

REDACTED = "******"
DEFAULT_READY_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
STATUS_READ_TIMEOUT_S = 5.0
MAX_READY_POLL_INTERVAL_S = 2.0
BUILTIN_AUTHENTICATOR_ID = "password_based:built_in_database"
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
EXACT_MAP_KEYS = frozenset({"headers"})
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
            text = (f"{self.resource}: EMQX rejected the API key at {self.base_url} ({call}: 401 {code}, "
                    f"{reason!r}): check the key/secret in the stack's EMQX bootstrap file "
                    "(api_key.bootstrap_file) and the api_key/api_secret the resources are given")
        else:
            details = _scrub("".join(f"; {k}: {json.dumps(v)}" for k, v in extra.items()), secrets)
            status_text = f"HTTP {status} {code}" if code else f"HTTP {status}"
            text = f"{self.resource}: {call} failed with {status_text}: {reason}{details}"
        return EmqxApiError(text, status=status, code=code, reason=reason, extra=extra)


# ---- comparing desired and live state ---------------------------------------------------


_MISSING = object()


def _show(value: Any, key: str) -> str:
    if value is _MISSING:
        return "nothing"
    if key.lower() in SENSITIVE_KEYS:
        return REDACTED
    return json.dumps(_wire(value), sort_keys=True)  # 8, not the engine's 8.0


def differences(desired: Any, actual: Any, path: str) -> list[str]:
    """Human-readable differences between a desired value and EMQX's; `******` matches anything.

    Objects are compared on the desired keys only (EMQX adds defaults), except maps named in
    EXACT_MAP_KEYS, where an extra key is a difference too. Lists are compared item by item.
    """
    key = path.rsplit(".", 1)[-1]
    if actual == REDACTED:
        return []
    if isinstance(desired, Mapping) and isinstance(actual, Mapping):
        found = [d for k, v in desired.items() for d in differences(v, actual.get(k, _MISSING), f"{path}.{k}")]
        if key in EXACT_MAP_KEYS:
            found += [f"{path}.{k}: EMQX has {_show(actual[k], k)}, the stack wants nothing"
                      for k in actual if k not in desired and actual[k] != REDACTED]
        return found
    if isinstance(desired, list) and isinstance(actual, list) and len(desired) == len(actual):
        pairs = enumerate(zip(desired, actual, strict=True))
        return [d for i, (want, have) in pairs for d in differences(want, have, f"{path}[{i}]")]
    if desired != actual:
        return [f"{path}: EMQX has {_show(actual, key)}, the stack wants {_show(desired, key)}"]
    return []


def fingerprint(secret: str, context: str) -> str:
    """A SHA-256 of a secret EMQX never returns, so a changed secret shows in diff."""
    return hashlib.sha256(f"{context}\x00{secret}".encode()).hexdigest()


def _path_segment(value: str) -> str:
    # EMQX URL-decodes each path segment: encode everything that could split or confuse it.
    return quote(str(value), safe=":")


# ---- the provider base ------------------------------------------------------------------


class _EmqxProvider(ResourceProvider):
    """What every EMQX provider shares; subclasses describe one kind of object.

    Subclasses set `kind`, `compared_keys` (the inputs that describe the object),
    `replace_keys` (the inputs that form EMQX's id) and `secret_inputs` (input -> the output
    holding its fingerprint), and implement `object_id`, `post`, `live`, `put` and `remove`.
    """

    kind: ClassVar[str] = "EMQX object"
    compared_keys: ClassVar[tuple[str, ...]] = ()
    replace_keys: ClassVar[tuple[str, ...]] = ()
    secret_inputs: ClassVar[dict[str, str]] = {}

    # -- hooks --
    def object_id(self, props: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def post(self, api: EmqxApi, props: Mapping[str, Any]) -> bool:
        """Create the object; True when it already existed (nothing was written)."""
        raise NotImplementedError

    def live(self, api: EmqxApi, props: Mapping[str, Any]) -> dict[str, Any] | None:
        """The live object shaped like the compared inputs, or None when it is gone."""
        raise NotImplementedError

    def put(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def remove(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def adopt(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        """Called after adopting an identical object; subclasses re-apply unreadable secrets."""

    def comparable(self, props: Mapping[str, Any]) -> dict[str, Any]:
        return {key: props.get(key) for key in self.compared_keys}

    def fingerprints(self, props: Mapping[str, Any]) -> dict[str, str]:
        return {out: fingerprint(props[secret], self.object_id(props)) for secret, out in self.secret_inputs.items()}

    # -- shared behaviour --
    def label(self, props: Mapping[str, Any]) -> str:
        return f"{self.kind} '{self.object_id(props)}'"

    def client(self, props: Mapping[str, Any]) -> EmqxApi:
        return EmqxApi.for_resource(props, self.label(props))

    def outputs(self, props: Mapping[str, Any]) -> dict[str, Any]:
        """Inputs minus plain secrets (except the API secret, needed later by delete; it is a
        secret output), plus the EMQX id and the fingerprints of the secrets."""
        outs = {k: v for k, v in props.items() if k not in self.secret_inputs and not k.startswith("__")}
        return {**outs, **self.fingerprints(props), "emqx_id": self.object_id(props)}

    def changed_keys(self, desired: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
        want, have = self.comparable(desired), self.comparable(actual)
        return [key for key in self.compared_keys if differences(want[key], have[key], key)]

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        missing = [CheckFailure(key, f"{key} is required") for key in CONNECTION_KEYS if not news.get(key)]
        return CheckResult(news, missing)

    def create(self, props: dict[str, Any]) -> CreateResult:
        with self.client(props) as api:
            if self.post(api, props):
                live = self.live(api, props)
                if live is None:  # deleted between our POST and GET: try once more
                    self.post(api, props)
                else:
                    self.fail_if_different(props, live)
                    self.adopt(api, props)
        return CreateResult(self.object_id(props), self.outputs(props))

    def fail_if_different(self, props: Mapping[str, Any], live: Mapping[str, Any]) -> None:
        want, have = self.comparable(props), self.comparable(live)
        found = [d for key in self.compared_keys for d in differences(want[key], have[key], key)]
        if found:
            raise EmqxConflictError(
                f"{self.label(props)} already exists in EMQX with different content: {'; '.join(found)}. "
                "Change the stack's settings to match, or delete the object in EMQX, then run again."
            )

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with self.client(props) as api:
            live = self.live(api, props)
        if live is None:
            return ReadResult(None, {})  # an empty id tells Pulumi the object is gone
        outs = {k: v for k, v in props.items() if k not in self.secret_inputs and not k.startswith("__")}
        return ReadResult(id_, {**outs, **live, "emqx_id": self.object_id(props)})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = self.changed_keys(news, olds)
        changed += [key for key in CONNECTION_KEYS if olds.get(key) != news.get(key)]
        changed += [secret for secret, out in self.secret_inputs.items()
                    if olds.get(out) != fingerprint(news.get(secret, ""), self.object_id(news))]
        replaces = [key for key in changed if key in self.replace_keys]
        # A diff-driven replacement has a new EMQX id: create the new object first (see the
        # module docstring). Any other replacement (`pulumi up --replace`) keeps the same id, so
        # the old object must go first: created first, it would be adopted and then deleted.
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=not replaces)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        with self.client(news) as api:
            self.put(api, news)
        return UpdateResult(self.outputs(news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with self.client(props) as api:
            self.remove(api, props)


def _is_missing(err: EmqxApiError) -> bool:
    return err.status == 404


def _authenticator_gone(err: EmqxApiError) -> bool:
    # Without the authenticator its users are gone too: 404, or 400 "{not_found,{authenticator,...}}".
    return err.status == 404 or (err.status == 400 and "not_found" in err.reason and "authenticator" in err.reason)


def _delete_tolerating_missing(api: EmqxApi, path: str, in_use_hint: str = "") -> None:
    """DELETE where a missing object is fine; a 400 (still in use) gets `in_use_hint` appended."""
    try:
        api.call("DELETE", path, accept=(204,))
    except EmqxApiError as err:
        if _is_missing(err):
            return
        if err.status == 400 and in_use_hint:
            raise EmqxApiError(f"{err}. EMQX keeps it while it is in use: {in_use_hint}", status=err.status,
                               code=err.code, reason=err.reason, extra=err.extra) from None
        raise


def _refuse_while_listed(api: EmqxApi, list_path: str, label: str, what: str, resource_class: str) -> None:
    """Refuse to delete a stack-wide object while it still holds entries that deleting it would erase.

    On `pulumi destroy` the entries (EmqxUser / EmqxUserAcl resources depend on the stack-wide
    one) are gone by now. Entries left mean either objects made outside Pulumi or a replacement
    of the stack-wide resource (say, renamed without an alias: the new one adopted the same EMQX
    object, and deleting the old one would erase everything the new one serves).
    """
    try:
        page = api.call("GET", f"{list_path}?page=1&limit=1", accept=(200,)).body
    except EmqxApiError as err:
        if _authenticator_gone(err):
            return  # nothing configured (404, or 400 for a missing authenticator): nothing to erase
        raise
    if page.get("data"):
        count = (page.get("meta") or {}).get("count", "some")
        raise EmqxApiError(
            f"{label}: not deleted because {count} {what} still exist in EMQX and deleting it would erase "
            f"them. Delete them first (they are normally {resource_class} resources deleted before this "
            "one; when this resource was renamed, add an alias instead), then run again."
        )


def _get_or_none(api: EmqxApi, path: str) -> dict[str, Any] | None:
    try:
        return api.call("GET", path, accept=(200,)).body
    except EmqxApiError as err:
        if _is_missing(err):
            return None
        raise


def _check_emqx_name(news: Mapping[str, Any], key: str, why: str = "EMQX rejects other names") -> list[CheckFailure]:
    value = news.get(key)
    if isinstance(value, str) and value != UNKNOWN and not EMQX_NAME_PATTERN.match(value):
        return [CheckFailure(key, f"{key} {value!r} must match {EMQX_NAME_PATTERN.pattern} ({why})")]
    return []


# ---- authenticator ----------------------------------------------------------------------


class EmqxAuthenticatorProvider(_EmqxProvider):
    """The stack-wide `password_based:built_in_database` authenticator.

    Never replaced: deleting it erases every device user (section 8.1), so every change is a
    PUT. Delete removes it, which would erase all its users: on `pulumi destroy` the whole stack's
    EMQX goes away and the EmqxUser resources (which depend on this one) are deleted first, so
    delete refuses, with a message, while any user is left rather than erase users silently.
    Changing `password_hash_algorithm` makes the hashes already stored unusable; re-set the
    device passwords (replace the EmqxUser resources) after such a change.
    """

    kind = "EMQX authenticator"
    compared_keys = ("user_id_type", "password_hash_algorithm", "enable")

    def object_id(self, props: Mapping[str, Any]) -> str:
        return BUILTIN_AUTHENTICATOR_ID

    @staticmethod
    def body(props: Mapping[str, Any]) -> dict[str, Any]:
        return {"mechanism": "password_based", "backend": "built_in_database",
                "user_id_type": props["user_id_type"],
                "password_hash_algorithm": dict(props["password_hash_algorithm"]),
                "enable": props["enable"]}

    def post(self, api: EmqxApi, props: Mapping[str, Any]) -> bool:
        return api.call("POST", "/authentication", self.body(props), accept=(200, 409)).status == 409

    def live(self, api: EmqxApi, props: Mapping[str, Any]) -> dict[str, Any] | None:
        found = _get_or_none(api, f"/authentication/{BUILTIN_AUTHENTICATOR_ID}")
        return None if found is None else {key: found.get(key) for key in self.compared_keys}

    def put(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        path = f"/authentication/{BUILTIN_AUTHENTICATOR_ID}"
        if api.call("PUT", path, self.body(props), accept=(204, 404)).status == 404:
            self.post(api, props)

    def remove(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        _refuse_while_listed(api, USERS_PATH, self.label(props), "device users", "EmqxUser")
        _delete_tolerating_missing(api, f"/authentication/{BUILTIN_AUTHENTICATOR_ID}")


# ---- authorization ----------------------------------------------------------------------


class EmqxAuthorizationProvider(_EmqxProvider):
    """Stack-wide authorization: the built_in_database source, the default `file` source
    disabled, and the settings (no_match / deny_action / cache).

    The settings and the `file` source exist on every broker, so create converges them; only a
    pre-existing built_in_database source with different content is a conflict. The source is
    never deleted to change it (deleting an enabled one wipes every rule, section 13.12).

    Delete leaves the broker closed: the settings stay deny-by-default and the `file` source
    (whose acl.conf ends in `{allow, all}`) stays disabled, so a broker that outlives the stack
    does not become open to every client. Only the built_in_database source is deleted, after
    Pulumi has deleted the EmqxUserAcl resources that depend on it; while any per-user rule is
    left, delete refuses with a message (deleting the enabled source would wipe them).
    """

    kind = "EMQX authorization"
    compared_keys = ("no_match", "deny_action", "cache", "max_rules", "built_in_database_enabled",
                     "file_source_enabled")

    def object_id(self, props: Mapping[str, Any]) -> str:
        return "authorization"

    @staticmethod
    def builtin_source(props: Mapping[str, Any]) -> dict[str, Any]:
        return {"type": "built_in_database", "enable": True, "max_rules": props["max_rules"]}

    @staticmethod
    def settings(props: Mapping[str, Any]) -> dict[str, Any]:
        # 5.8 answers 500 when a key is missing (section 13.14): always all three.
        return {"no_match": props["no_match"], "deny_action": props["deny_action"], "cache": dict(props["cache"])}

    def post(self, api: EmqxApi, props: Mapping[str, Any]) -> bool:
        existing = _get_or_none(api, "/authorization/sources/built_in_database")
        if existing is None:
            api.call("POST", "/authorization/sources", self.builtin_source(props), accept=(204,))
        else:
            found = differences({"enable": True, "max_rules": props["max_rules"]}, existing, "built_in_database")
            if found:
                raise EmqxConflictError(
                    f"{self.label(props)}: the built_in_database authorization source already exists in EMQX "
                    f"with different content: {'; '.join(found)}. Change max_rules to match, or fix the source "
                    "in EMQX (do not delete an enabled one: that erases its rules), then run again."
                )
        self.converge_file_source_and_settings(api, props)
        return False

    def converge_file_source_and_settings(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        file_source = _get_or_none(api, "/authorization/sources/file")
        if file_source is not None and file_source.get("enable") is not False:
            # PUT needs the full source; keep its rules/path as they are.
            api.call("PUT", "/authorization/sources/file", {**file_source, "type": "file", "enable": False},
                     accept=(204,))
        api.call("PUT", "/authorization/settings", self.settings(props), accept=(200,))

    def live(self, api: EmqxApi, props: Mapping[str, Any]) -> dict[str, Any] | None:
        settings = api.call("GET", "/authorization/settings", accept=(200,)).body
        builtin = _get_or_none(api, "/authorization/sources/built_in_database") or {}
        file_source = _get_or_none(api, "/authorization/sources/file") or {}
        return {"no_match": settings.get("no_match"), "deny_action": settings.get("deny_action"),
                "cache": settings.get("cache"), "max_rules": builtin.get("max_rules"),
                "built_in_database_enabled": builtin.get("enable", False),
                "file_source_enabled": file_source.get("enable", False)}

    def put(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        existing = _get_or_none(api, "/authorization/sources/built_in_database")
        if existing is None:
            api.call("POST", "/authorization/sources", self.builtin_source(props), accept=(204,))
        elif differences({"enable": True, "max_rules": props["max_rules"]}, existing, "built_in_database"):
            api.call("PUT", "/authorization/sources/built_in_database", self.builtin_source(props), accept=(204,))
        self.converge_file_source_and_settings(api, props)

    def remove(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        _refuse_while_listed(api, AUTHZ_USER_RULES_PATH, self.label(props), "per-user rules", "EmqxUserAcl")
        _delete_tolerating_missing(api, "/authorization/sources/built_in_database")


# ---- connector --------------------------------------------------------------------------


class EmqxConnectorProvider(_EmqxProvider):
    """An HTTP connector, id `http:<name>`. Do not put secrets in its headers: they would be
    kept in the outputs; per-tenant credentials belong to the action's `bearer_token`."""

    kind = "EMQX connector"
    compared_keys = ("name", "url", "headers", "connect_timeout", "pool_size", "enable_pipelining",
                     "health_check_interval")
    replace_keys = ("name",)

    def object_id(self, props: Mapping[str, Any]) -> str:
        return f"http:{props['name']}"

    @staticmethod
    def body(props: Mapping[str, Any]) -> dict[str, Any]:
        # No type/name: a PUT body with them is 400 (section 13.6); POST adds them.
        return {"url": props["url"], "headers": dict(props["headers"]), "connect_timeout": props["connect_timeout"],
                "pool_size": props["pool_size"], "enable_pipelining": props["enable_pipelining"],
                "resource_opts": {"health_check_interval": props["health_check_interval"]}}

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        return CheckResult(news, result.failures + _check_emqx_name(news, "name"))

    def post(self, api: EmqxApi, props: Mapping[str, Any]) -> bool:
        try:
            api.call("POST", "/connectors", {"type": "http", "name": props["name"], **self.body(props)}, accept=(201,))
        except EmqxApiError as err:
            if err.status == 400 and err.code == "ALREADY_EXISTS":
                return True
            raise
        return False

    def live(self, api: EmqxApi, props: Mapping[str, Any]) -> dict[str, Any] | None:
        found = _get_or_none(api, f"/connectors/{_path_segment(self.object_id(props))}")
        if found is None:
            return None
        return {"name": found.get("name"), "url": found.get("url"), "headers": found.get("headers"),
                "connect_timeout": found.get("connect_timeout"), "pool_size": found.get("pool_size"),
                "enable_pipelining": found.get("enable_pipelining"),
                "health_check_interval": (found.get("resource_opts") or {}).get("health_check_interval")}

    def put(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        path = f"/connectors/{_path_segment(self.object_id(props))}"
        if api.call("PUT", path, self.body(props), accept=(200, 404)).status == 404:
            self.post(api, props)  # deleted behind our back: re-create

    def remove(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        # EMQX refuses (400) while any action uses the connector; Pulumi deletes our actions first
        # because they depend on this resource, so a refusal means an action made elsewhere.
        hint = "delete the actions that use it, or point them at another connector, first"
        _delete_tolerating_missing(api, f"/connectors/{_path_segment(self.object_id(props))}", hint)


# ---- action -----------------------------------------------------------------------------


def _without_authorization(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}


class EmqxActionProvider(_EmqxProvider):
    """An HTTP action, id `http:<name>`, that posts the rule output (`${.}`) to the ingest
    service with `Authorization: Bearer <bearer_token>` plus the given headers.

    EMQX returns the Authorization header as `******`, so the token is tracked through
    `bearer_token_sha256`; an adopted action gets the token re-applied with PUT.
    Delete never passes `also_delete_dep_actions=true`: silently editing rules that still
    reference the action would hide a mistake; Pulumi deletes the dependent rule first.
    """

    kind = "EMQX action"
    compared_keys = ("name", "connector", "path", "method", "headers", "body", "query_mode", "request_ttl",
                     "inflight_window", "worker_pool_size")
    replace_keys = ("name",)
    secret_inputs: ClassVar[dict[str, str]] = {"bearer_token": "bearer_token_sha256"}

    def object_id(self, props: Mapping[str, Any]) -> str:
        return f"http:{props['name']}"

    def body(self, props: Mapping[str, Any]) -> dict[str, Any]:
        headers = {**_without_authorization(props["headers"]), "Authorization": f"Bearer {props['bearer_token']}"}
        return {"connector": props["connector"],
                "parameters": {"path": props["path"], "method": props["method"], "headers": headers,
                               "body": props["body"]},
                "resource_opts": {"query_mode": props["query_mode"], "request_ttl": props["request_ttl"],
                                  "inflight_window": props["inflight_window"],
                                  "worker_pool_size": props["worker_pool_size"]}}

    def comparable(self, props: Mapping[str, Any]) -> dict[str, Any]:
        return {**super().comparable(props), "headers": _without_authorization(props.get("headers"))}

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        failures = result.failures + _check_emqx_name(news, "name")
        if not news.get("bearer_token"):
            failures.append(CheckFailure("bearer_token", "bearer_token is required"))
        return CheckResult(news, failures)

    def post(self, api: EmqxApi, props: Mapping[str, Any]) -> bool:
        try:
            api.call("POST", "/actions", {"type": "http", "name": props["name"], **self.body(props)}, accept=(201,))
        except EmqxApiError as err:
            if err.status == 400 and err.code == "ALREADY_EXISTS":
                return True
            raise
        return False

    def adopt(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        self.put(api, props)  # the token cannot be read back: apply ours so the state is true

    def live(self, api: EmqxApi, props: Mapping[str, Any]) -> dict[str, Any] | None:
        found = _get_or_none(api, f"/actions/{_path_segment(self.object_id(props))}")
        if found is None:
            return None
        parameters, opts = found.get("parameters") or {}, found.get("resource_opts") or {}
        headers = parameters.get("headers") or {}
        return {"name": found.get("name"), "connector": found.get("connector"), "path": parameters.get("path"),
                "method": parameters.get("method"), "headers": _without_authorization(headers),
                "body": parameters.get("body"), "query_mode": opts.get("query_mode"),
                "request_ttl": opts.get("request_ttl"), "inflight_window": opts.get("inflight_window"),
                "worker_pool_size": opts.get("worker_pool_size"),
                "bearer_token_sha256": self.live_token_fingerprint(headers, props)}

    def live_token_fingerprint(self, headers: Mapping[str, Any], props: Mapping[str, Any]) -> str | None:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
        if value == REDACTED:
            return props.get("bearer_token_sha256")  # present but unreadable: assume unchanged
        if isinstance(value, str) and value.startswith("Bearer "):
            return fingerprint(value.removeprefix("Bearer "), self.object_id(props))
        return None  # header removed or replaced: the next update re-applies the token

    def put(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        path = f"/actions/{_path_segment(self.object_id(props))}"
        if api.call("PUT", path, self.body(props), accept=(200, 404)).status == 404:
            self.post(api, props)

    def remove(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        hint = "delete the rules listed, or remove this action from their actions, first"
        _delete_tolerating_missing(api, f"/actions/{_path_segment(self.object_id(props))}", hint)


# ---- rule -------------------------------------------------------------------------------


class EmqxRuleProvider(_EmqxProvider):
    """A rule, id `rule_id`. Updates send the complete desired body (never fields copied from a
    GET, which EMQX rejects), so the result is the same whether PUT replaces (5.8-5.10) or
    merges (6.x); a 404 on PUT (6.x, rule deleted behind our back) falls back to POST."""

    kind = "EMQX rule"
    compared_keys = ("rule_id", "sql", "actions", "enable", "description")
    replace_keys = ("rule_id",)

    def object_id(self, props: Mapping[str, Any]) -> str:
        return str(props["rule_id"])

    @staticmethod
    def body(props: Mapping[str, Any]) -> dict[str, Any]:
        return {"sql": props["sql"], "actions": list(props["actions"]), "enable": props["enable"],
                "description": props["description"]}

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        why = "EMQX accepts any non-empty id, but the id is a URL path segment; keep it simple"
        return CheckResult(news, result.failures + _check_emqx_name(news, "rule_id", why))

    def post(self, api: EmqxApi, props: Mapping[str, Any]) -> bool:
        try:
            api.call("POST", "/rules", {"id": props["rule_id"], **self.body(props)}, accept=(201,))
        except EmqxApiError as err:
            if err.status == 400 and "already exists" in err.reason:  # 400, not 409, for rules
                return True
            raise
        return False

    def live(self, api: EmqxApi, props: Mapping[str, Any]) -> dict[str, Any] | None:
        found = _get_or_none(api, f"/rules/{_path_segment(self.object_id(props))}")
        if found is None:
            return None
        return {"rule_id": found.get("id"), "sql": found.get("sql"), "actions": found.get("actions"),
                "enable": found.get("enable"), "description": found.get("description")}

    def put(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        path = f"/rules/{_path_segment(self.object_id(props))}"
        if api.call("PUT", path, self.body(props), accept=(200, 404)).status == 404:
            self.post(api, props)

    def remove(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        _delete_tolerating_missing(api, f"/rules/{_path_segment(self.object_id(props))}")


# ---- authn user -------------------------------------------------------------------------


class EmqxUserProvider(_EmqxProvider):
    """A device user of the built-in-database authenticator. The password is never readable
    from EMQX: it is tracked through `password_sha256` and re-applied when a user is adopted."""

    kind = "EMQX user"
    compared_keys = ("user_id", "is_superuser")
    replace_keys = ("user_id",)
    secret_inputs: ClassVar[dict[str, str]] = {"password": "password_sha256"}

    def object_id(self, props: Mapping[str, Any]) -> str:
        return str(props["user_id"])

    def user_path(self, props: Mapping[str, Any]) -> str:
        return f"{USERS_PATH}/{quote(self.object_id(props), safe='')}"

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        failures = list(result.failures)
        if not news.get("user_id"):
            failures.append(CheckFailure("user_id", "user_id must not be empty"))
        if not news.get("password"):
            failures.append(CheckFailure("password", "password must not be empty"))
        return CheckResult(news, failures)

    def post(self, api: EmqxApi, props: Mapping[str, Any]) -> bool:
        body = {"user_id": props["user_id"], "password": props["password"], "is_superuser": props["is_superuser"]}
        return api.call("POST", USERS_PATH, body, accept=(201, 409)).status == 409

    def adopt(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        self.put(api, props)  # the stored password cannot be compared: set ours

    def live(self, api: EmqxApi, props: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            found = api.call("GET", self.user_path(props), accept=(200,)).body
        except EmqxApiError as err:
            if _authenticator_gone(err):
                return None
            raise
        return {"user_id": found.get("user_id"), "is_superuser": found.get("is_superuser")}

    def put(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        body = {"password": props["password"], "is_superuser": props["is_superuser"]}
        if api.call("PUT", self.user_path(props), body, accept=(200, 404)).status == 404:
            self.post(api, props)

    def remove(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        try:
            api.call("DELETE", self.user_path(props), accept=(204,))
        except EmqxApiError as err:
            if not _authenticator_gone(err):
                raise


# ---- per-username authorization rules ---------------------------------------------------


def _normalised_acl_rules(rules: Any) -> list[dict[str, Any]]:
    """Rules with EMQX's defaults filled in, so desired and live rules compare equal."""
    return [{"qos": [0, 1, 2], "retain": "all", **dict(rule)} for rule in (rules or [])]


class EmqxUserAclProvider(_EmqxProvider):
    """The built-in-database authorization rules of one username. Written with PUT, which is an
    upsert that replaces the list (POST would be 409 for an existing user). Rule order matters:
    the first match wins."""

    kind = "EMQX user ACL"
    compared_keys = ("username", "rules")
    replace_keys = ("username",)

    def object_id(self, props: Mapping[str, Any]) -> str:
        return str(props["username"])

    def rules_path(self, props: Mapping[str, Any]) -> str:
        return f"{AUTHZ_USER_RULES_PATH}/{quote(self.object_id(props), safe='')}"

    def comparable(self, props: Mapping[str, Any]) -> dict[str, Any]:
        return {"username": props.get("username"), "rules": _normalised_acl_rules(props.get("rules"))}

    def post(self, api: EmqxApi, props: Mapping[str, Any]) -> bool:
        if self.live(api, props) is not None:
            return True
        self.put(api, props)
        return False

    def live(self, api: EmqxApi, props: Mapping[str, Any]) -> dict[str, Any] | None:
        found = _get_or_none(api, self.rules_path(props))
        return None if found is None else {"username": found.get("username"), "rules": found.get("rules")}

    def put(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        body = {"username": props["username"], "rules": _normalised_acl_rules(props["rules"])}
        try:
            api.call("PUT", self.rules_path(props), body, accept=(204,))
        except EmqxApiError as err:
            if err.status == 404:
                raise EmqxApiError(f"{err} (is the built_in_database authorization source created? the "
                                   "EmqxAuthorization resource must come first: depends_on)",
                                   status=err.status, code=err.code, reason=err.reason) from None
            raise

    def remove(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        _delete_tolerating_missing(api, self.rules_path(props))


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


@dataclass
class EmqxAuthorizationArgs:
    connection: EmqxConnection
    no_match: pulumi.Input[str] = "deny"
    deny_action: pulumi.Input[str] = "disconnect"
    cache: pulumi.Input[Mapping[str, Any]] = field(default_factory=lambda: dict(DEFAULT_AUTHZ_CACHE))
    max_rules: pulumi.Input[int] = 100


class EmqxAuthorization(pulumi.dynamic.Resource, module="emqx", name="Authorization"):
    """Deny-by-default authorization. Outputs: emqx_id, no_match, deny_action, cache, max_rules,
    built_in_database_enabled, file_source_enabled."""

    emqx_id: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxAuthorizationArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "no_match": args.no_match, "deny_action": args.deny_action,
                 "cache": args.cache, "max_rules": args.max_rules,
                 # What this resource is for: checked on read like any other input.
                 "built_in_database_enabled": True, "file_source_enabled": False, "emqx_id": None}
        super().__init__(EmqxAuthorizationProvider(), resource_name, props, _options(opts, []))


@dataclass
class EmqxConnectorArgs:
    connection: EmqxConnection
    name: pulumi.Input[str]
    url: pulumi.Input[str]
    headers: pulumi.Input[Mapping[str, str]] = field(default_factory=lambda: {"content-type": "application/json"})
    connect_timeout: pulumi.Input[str] = "5s"
    pool_size: pulumi.Input[int] = 8
    enable_pipelining: pulumi.Input[int] = 100
    health_check_interval: pulumi.Input[str] = "15s"


class EmqxConnector(pulumi.dynamic.Resource, module="emqx", name="Connector"):
    """An HTTP connector. Outputs: emqx_id (`http:<name>`), name, url, headers, ..."""

    emqx_id: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxConnectorArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "name": args.name, "url": args.url, "headers": args.headers,
                 "connect_timeout": args.connect_timeout, "pool_size": args.pool_size,
                 "enable_pipelining": args.enable_pipelining, "health_check_interval": args.health_check_interval,
                 "emqx_id": None}
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
    request_ttl: pulumi.Input[str] = "45s"
    inflight_window: pulumi.Input[int] = 100
    worker_pool_size: pulumi.Input[int] = 16


class EmqxAction(pulumi.dynamic.Resource, module="emqx", name="Action"):
    """An HTTP action. Outputs: emqx_id (`http:<name>`, what a rule's actions list takes), name,
    connector, path, method, headers, body, query_mode, request_ttl, inflight_window,
    worker_pool_size, bearer_token_sha256 (secret). The token itself is not an output."""

    emqx_id: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxActionArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "name": args.name, "connector": args.connector,
                 "bearer_token": pulumi.Output.secret(args.bearer_token), "headers": args.headers,
                 "path": args.path, "method": args.method, "body": args.body, "query_mode": args.query_mode,
                 "request_ttl": args.request_ttl, "inflight_window": args.inflight_window,
                 "worker_pool_size": args.worker_pool_size, "bearer_token_sha256": None, "emqx_id": None}
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


class EmqxUser(pulumi.dynamic.Resource, module="emqx", name="User"):
    """A device user. Outputs: emqx_id (= user_id), user_id, is_superuser, password_sha256 (secret)."""

    emqx_id: pulumi.Output[str]
    user_id: pulumi.Output[str]

    def __init__(self, resource_name: str, args: EmqxUserArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {**args.connection.props(), "user_id": args.user_id, "password": pulumi.Output.secret(args.password),
                 "is_superuser": args.is_superuser, "password_sha256": None, "emqx_id": None}
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
