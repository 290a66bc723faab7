"""What every EMQX provider shares: comparing desired and live state, and the provider base.

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

Each provider method builds its own `EmqxApi` from the resource's inputs (`api_url`,
`api_key`, `api_secret`, `ready_timeout`), because Pulumi pickles the provider object into
the state: providers hold no state and no secrets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

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

from components.providers.emqx.client import (
    CONNECTION_KEYS,
    EMQX_NAME_PATTERN,
    EXACT_MAP_KEYS,
    REDACTED,
    SENSITIVE_KEYS,
    EmqxApi,
    EmqxApiError,
    EmqxConflictError,
    _wire,
)

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
    # Compared keys added after stacks were created: the value their old state stands for, so
    # the first `pulumi up` after an upgrade does not see a change that is not there.
    legacy_defaults: ClassVar[dict[str, Any]] = {}

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

    def settle(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        """Called after every create and update: what must hold once the object is written (for
        example EMQX reaching a backend it only reports through a status endpoint)."""

    def comparable(self, props: Mapping[str, Any]) -> dict[str, Any]:
        return {key: props.get(key) for key in self.compared_keys}

    def fingerprints(self, props: Mapping[str, Any]) -> dict[str, str]:
        # A secret input may be optional (absent from state written before it existed).
        return {out: fingerprint(props[secret], self.object_id(props))
                for secret, out in self.secret_inputs.items() if props.get(secret) is not None}

    def secret_changes(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        """The secret inputs whose fingerprint differs from the one recorded in `olds`."""
        return [secret for secret, out in self.secret_inputs.items()
                if news.get(secret) is not None and olds.get(out) != fingerprint(news[secret], self.object_id(news))]

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
        actual = {**{k: v for k, v in self.legacy_defaults.items() if k not in actual}, **actual}
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
            self.settle(api, props)
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
        changed += self.secret_changes(olds, news)
        replaces = [key for key in changed if key in self.replace_keys]
        # A diff-driven replacement has a new EMQX id: create the new object first (see the
        # module docstring). Any other replacement (`pulumi up --replace`) keeps the same id, so
        # the old object must go first: created first, it would be adopted and then deleted.
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=not replaces)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        with self.client(news) as api:
            self.converge(api, olds, news)
            self.settle(api, news)
        return UpdateResult(self.outputs(news))

    def converge(self, api: EmqxApi, olds: Mapping[str, Any], news: Mapping[str, Any]) -> None:
        """Make EMQX match `news`, knowing the last state `olds`; the default is one PUT."""
        self.put(api, news)

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
