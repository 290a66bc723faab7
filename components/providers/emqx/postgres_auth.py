"""The `password_based:postgresql` authenticator: devices are checked against the registry.

Body (reference 14.1; `emqx_authn_postgresql_schema`, `emqx_postgresql` on 5.8.9,
`emqx_auth_postgresql_connector` on 6.2.2): `mechanism`, `backend`, `server`, `database`,
`username`, `password`, `pool_size`, `ssl`, `query`, `password_hash_algorithm`, `enable`; the
same on both versions. What differs:

* 5.8.9 answers the POST with the stored config *unredacted*: the password comes back in clear
  (`emqx_authn_api.erl:880-887`). The answer is dropped here, never kept or shown.
* GET redacts the password as `******`, and a PUT with `******` keeps the stored one, so the
  password is tracked through `password_sha256` (like the action's bearer token) and every PUT
  sends the real one.
* 6.2 caches query results node-wide (`authentication_settings.node_cache`, on by default with
  1 minute): a disabled device or a replaced password keeps working that long. The stack sets
  it through `PUT /authentication/settings`, which replaces the whole `authentication_settings`
  root (`emqx_authn_api:authentication_settings/2`), so `ignore_backend_failures` is sent too.
  5.8 has no such path (404): nothing to set there.

The stack owns the authentication chain: any other authenticator can accept a device under
another device's client id (the built-in database checks the username only), which is exactly
the takeover the registry's query prevents. So `read` reports other authenticators
(`other_authenticators`, desired empty) and `update` removes them; create refuses when it
finds any but the built-in database one, which stacks from before devices-as-data have and
delete in the same `pulumi up`, after this authenticator exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from pulumi.dynamic import CheckFailure, CheckResult

from components.providers.emqx.backend_status import wait_until_connected
from components.providers.emqx.base import _delete_tolerating_missing, _EmqxProvider, _get_or_none
from components.providers.emqx.client import (
    BUILTIN_AUTHENTICATOR_ID,
    POSTGRES_AUTHENTICATOR_ID,
    USERS_PATH,
    EmqxApi,
    EmqxConflictError,
)

SETTINGS_PATH = "/authentication/settings"
# Connection fields of the authenticator and of the `postgresql` authorization source.
CONNECTION_FIELDS = ("server", "database", "username", "pool_size", "ssl")


def _path(authenticator_id: str) -> str:
    return f"/authentication/{quote(authenticator_id, safe=':')}"


def chain_ids(api: EmqxApi) -> list[str]:
    return [str(item.get("id")) for item in api.call("GET", "/authentication", accept=(200,)).body or []]


class EmqxPostgresAuthenticatorProvider(_EmqxProvider):
    """`password_based:postgresql`, with its database password as a secret input."""

    kind = "EMQX PostgreSQL authenticator"
    compared_keys = (*CONNECTION_FIELDS, "query", "password_hash_algorithm", "enable", "node_cache",
                     "other_authenticators")
    secret_inputs: ClassVar[dict[str, str]] = {"password": "password_sha256"}

    def object_id(self, props: Mapping[str, Any]) -> str:
        return POSTGRES_AUTHENTICATOR_ID

    @staticmethod
    def body(props: Mapping[str, Any]) -> dict[str, Any]:
        """What EMQX is sent on POST and PUT (the password included: PUT with `******` would keep an old one)."""
        return {
            "mechanism": "password_based",
            "backend": "postgresql",
            "enable": props["enable"],
            **{key: props[key] for key in ("server", "database", "username", "password", "pool_size")},
            "ssl": dict(props["ssl"]),
            "query": props["query"],
            "password_hash_algorithm": dict(props["password_hash_algorithm"]),
        }

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        missing = [CheckFailure(key, f"{key} is required") for key in ("server", "database", "username", "password",
                                                                          "query") if not news.get(key)]
        return CheckResult(news, result.failures + missing)

    def post(self, api: EmqxApi, props: Mapping[str, Any]) -> bool:
        foreign = [i for i in chain_ids(api) if i not in (POSTGRES_AUTHENTICATOR_ID, BUILTIN_AUTHENTICATOR_ID)]
        if foreign:
            raise EmqxConflictError(
                f"{self.label(props)}: EMQX already has the authenticator(s) {', '.join(foreign)}. Devices must be "
                "authenticated by the registry alone: another authenticator could accept a device under another "
                "device's client id and end that device's session. Delete them in the dashboard (Access Control > "
                "Authentication), then run again"
            )
        # 5.8.9 answers with the password in clear: the answer is not kept.
        return api.call("POST", "/authentication", self.body(props), accept=(200, 409)).status == 409

    def adopt(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        self.put(api, props)  # the stored password cannot be compared: set ours

    def live(self, api: EmqxApi, props: Mapping[str, Any]) -> dict[str, Any] | None:
        found = _get_or_none(api, _path(POSTGRES_AUTHENTICATOR_ID))
        if found is None:
            return None
        live = {key: found.get(key) for key in (*CONNECTION_FIELDS, "query", "password_hash_algorithm", "enable")}
        live["node_cache"] = self.live_node_cache(api, props)
        live["other_authenticators"] = [i for i in chain_ids(api) if i != POSTGRES_AUTHENTICATOR_ID]
        return live

    @staticmethod
    def live_node_cache(api: EmqxApi, props: Mapping[str, Any]) -> Any:
        if props.get("node_cache") is None:
            return None  # the stack leaves EMQX's own setting
        settings = _get_or_none(api, SETTINGS_PATH)
        if settings is None:
            return props.get("node_cache")  # 5.8: no node cache, nothing to compare
        return settings.get("node_cache")

    def put(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        if api.call("PUT", _path(POSTGRES_AUTHENTICATOR_ID), self.body(props), accept=(204, 404)).status == 404:
            api.call("POST", "/authentication", self.body(props), accept=(200,))  # deleted behind our back

    def converge(self, api: EmqxApi, olds: Mapping[str, Any], news: Mapping[str, Any]) -> None:
        self.put(api, news)
        for other in [i for i in chain_ids(api) if i != POSTGRES_AUTHENTICATOR_ID]:
            self.remove_other(api, news, other)

    def remove_other(self, api: EmqxApi, props: Mapping[str, Any], other: str) -> None:
        if other == BUILTIN_AUTHENTICATOR_ID:
            users = api.call("GET", f"{USERS_PATH}?page=1&limit=1", accept=(200,)).body or {}
            if users.get("data"):
                count = (users.get("meta") or {}).get("count", "some")
                raise EmqxConflictError(
                    f"{self.label(props)}: EMQX's built-in database authenticator still holds {count} user(s), and "
                    "any of them can connect under any client id. Move them to the registry "
                    "(`python -m tools.devices import`), delete them in the dashboard, then run again"
                )
        _delete_tolerating_missing(api, _path(other))

    def settle(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        # First in the chain, so it answers before anything an operator adds later.
        api.call("PUT", f"{_path(POSTGRES_AUTHENTICATOR_ID)}/position/front", accept=(204,))
        if props.get("node_cache") is not None and _get_or_none(api, SETTINGS_PATH) is not None:
            settings = {"ignore_backend_failures": False, "node_cache": dict(props["node_cache"])}
            api.call("PUT", SETTINGS_PATH, settings, accept=(204,))
        if props.get("enable", True):
            wait_until_connected(api, f"{_path(POSTGRES_AUTHENTICATOR_ID)}/status", self.label(props), props)

    def fail_if_different(self, props: Mapping[str, Any], live: Mapping[str, Any]) -> None:
        # Other authenticators are drift that update removes, not a reason to refuse adopting this one.
        super().fail_if_different(props, {**live, "other_authenticators": props.get("other_authenticators")})

    def remove(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        # The chain is then empty: EMQX lets anonymous clients connect, and the authorization the
        # stack leaves behind (no_match deny, file source disabled) lets them do nothing.
        _delete_tolerating_missing(api, _path(POSTGRES_AUTHENTICATOR_ID))
