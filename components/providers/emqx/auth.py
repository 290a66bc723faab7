"""Stack-wide access control: the authorization configuration, and the built-in-database authenticator
of stacks from before devices-as-data (kept so their state loads and deletes; the registry's
authenticator is postgres_auth.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from components.providers.emqx.authz_config import (
    converge_sources,
    live_configuration,
    put_node_cache,
    put_settings,
    remove_foreign_rules,
)
from components.providers.emqx.backend_status import wait_until_connected
from components.providers.emqx.base import (
    _delete_tolerating_missing,
    _EmqxProvider,
    _get_or_none,
    _refuse_while_listed,
    differences,
)
from components.providers.emqx.caches import drain_authorization_caches
from components.providers.emqx.client import (
    AUTHZ_USER_RULES_PATH,
    BUILTIN_AUTHENTICATOR_ID,
    USERS_PATH,
    EmqxApi,
    EmqxConflictError,
)

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
    """The broker's whole authorization configuration, owned by the stack (authz_config.py).

    Inputs: `sources`, the desired sources in evaluation order: the registry's `postgresql`
    source (devices as data), then the shipped `file` source switched off (its acl.conf ends in
    `{allow, all}`, which would allow whatever the database does not match; stacks from before
    devices-as-data had `built_in_database` first instead); `database_password`, the password
    of the `postgresql` source, a secret input kept out of `sources` and tracked through
    `database_password_sha256` (EMQX answers `******`); the settings (`no_match`,
    `deny_action`, `cache`, and on 6.x `include_mountpoint`, `ignore_backend_failures`);
    `node_cache`, 6.2's node-wide cache of query results; `managed_usernames`, when given, the
    usernames whose built-in-database rules EmqxUserAcl resources own. Desired and compared as
    well: `all_rules: []`, `client_rules: {}`, `foreign_user_rules: {}` - anything EMQX holds
    there was written outside the stack and can open one tenant's topics to another, so `read`
    reports it and `update` deletes it, then empties the authorization caches.

    With a `postgresql` source the write is checked: EMQX accepts a source whose database it
    cannot reach, so create and update wait (`status_timeout`) until the source reports
    `connected`, and fail with what EMQX was told to reach otherwise.

    The source list is never converged by deleting a source the stack still wants (deleting an
    enabled built_in_database source wipes every rule, section 13.12); only a pre-existing
    built_in_database source with different settings is a conflict on create.

    Delete leaves the broker closed: the settings stay deny-by-default and the `file` source
    stays disabled, so a broker that outlives the stack does not become open to every client.
    The stack's other sources are deleted (a `built_in_database` one after Pulumi has deleted
    the EmqxUserAcl resources that depend on it; while any per-user rule is left, delete
    refuses with a message).
    """

    kind = "EMQX authorization"
    compared_keys = ("no_match", "deny_action", "cache", "include_mountpoint", "ignore_backend_failures",
                     "sources", "all_rules", "client_rules", "foreign_user_rules", "node_cache")
    secret_inputs: ClassVar[dict[str, str]] = {"database_password": "database_password_sha256"}

    def object_id(self, props: Mapping[str, Any]) -> str:
        return "authorization"

    @staticmethod
    def written_sources(props: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The sources as EMQX is sent them: the `postgresql` one with its password."""
        password = props.get("database_password")
        return [{**source, "password": password} if source["type"] == "postgresql" and password is not None
                else dict(source) for source in props["sources"]]

    def post(self, api: EmqxApi, props: Mapping[str, Any]) -> bool:
        wanted = next((s for s in props["sources"] if s["type"] == "built_in_database"), None)
        existing = _get_or_none(api, "/authorization/sources/built_in_database")
        if wanted is not None and existing is not None:
            found = differences(dict(wanted), existing, "built_in_database")
            if found:
                raise EmqxConflictError(
                    f"{self.label(props)}: the built_in_database authorization source already exists in EMQX "
                    f"with different content: {'; '.join(found)}. Change max_rules to match, or fix the source "
                    "in EMQX (do not delete an enabled one: that erases its rules), then run again."
                )
        self.put(api, props)
        return False

    def live(self, api: EmqxApi, props: Mapping[str, Any]) -> dict[str, Any] | None:
        return live_configuration(api, props)

    def put(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        # Created or adopted: a source EMQX already has may hold another password; write ours.
        self.write(api, props, force=[s["type"] for s in props["sources"] if s["type"] == "postgresql"])

    def converge(self, api: EmqxApi, olds: Mapping[str, Any], news: Mapping[str, Any]) -> None:
        self.write(api, news, force=["postgresql"] if self.secret_changes(olds, news) else [])

    def write(self, api: EmqxApi, props: Mapping[str, Any], force: list[str]) -> None:
        converge_sources(api, self.label(props), self.written_sources(props), force)
        remove_foreign_rules(api, props.get("managed_usernames"))
        put_settings(api, props)
        put_node_cache(api, props)
        # Rule-table deletions and a settings change do not drain the caches by themselves.
        drain_authorization_caches(api)

    def settle(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        for source in props.get("sources") or []:
            if source["type"] == "postgresql" and source.get("enable", True):
                connection = {**source, "status_timeout": props.get("status_timeout")}
                wait_until_connected(api, "/authorization/sources/postgresql/status", self.label(props), connection)

    def remove(self, api: EmqxApi, props: Mapping[str, Any]) -> None:
        _refuse_while_listed(api, AUTHZ_USER_RULES_PATH, self.label(props), "per-user rules", "EmqxUserAcl")
        # State from before `sources` was an input knows only the built-in database.
        for source in props.get("sources") or [{"type": "built_in_database"}]:
            if source["type"] != "file":  # the file source stays, disabled: its acl.conf allows all
                _delete_tolerating_missing(api, f"/authorization/sources/{quote(source['type'], safe='')}")
