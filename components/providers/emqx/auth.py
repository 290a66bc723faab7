"""Stack-wide access control: the built-in-database authenticator and the authorization configuration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.providers.emqx.base import (
    _delete_tolerating_missing,
    _EmqxProvider,
    _get_or_none,
    _refuse_while_listed,
    differences,
)
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


