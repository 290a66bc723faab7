"""Device users of the built-in-database authenticator and their per-username authorization rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from pulumi.dynamic import CheckFailure, CheckResult

from components.providers.emqx.base import (
    _authenticator_gone,
    _delete_tolerating_missing,
    _EmqxProvider,
    _get_or_none,
)
from components.providers.emqx.caches import drain_authorization_caches
from components.providers.emqx.client import (
    AUTHZ_USER_RULES_PATH,
    USERS_PATH,
    EmqxApi,
    EmqxApiError,
    EmqxConflictError,
)

# ---- authn user -------------------------------------------------------------------------


class EmqxUserProvider(_EmqxProvider):
    """A device user of the built-in-database authenticator. The password is never readable
    from EMQX: it is tracked through `password_sha256`.

    A user that already exists in EMQX is someone's: adopting it would reset its password and lock
    out whoever uses it. Create therefore refuses, naming the user, unless the input
    `adopt_existing` is true (the operator says the user is this resource's, e.g. after the state
    was lost); then the stack's password is applied. The stack itself no longer creates device
    users (devices are registry rows); the class stays for the state of older stacks and for
    anyone building on these providers."""

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
        if not props.get("adopt_existing"):
            raise EmqxConflictError(
                f"{self.label(props)} already exists in EMQX's built-in database and was not created by this "
                "resource; taking it over would reset its password and lock out whoever uses it. Choose another "
                "user id, delete the user in EMQX, or set adopt_existing=True if it is really this resource's"
            )
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
    the first match wins.

    The outputs hold the rules as EMQX stores and returns them (`qos` and `retain` filled in), so
    a refresh right after create or update shows no change. Every update and delete empties the
    authorization caches (caches.py): EMQX does not, and a narrowed or removed ACL would otherwise
    keep allowing connected clients for up to the cache TTL.
    """

    kind = "EMQX user ACL"
    compared_keys = ("username", "rules")
    replace_keys = ("username",)

    def object_id(self, props: Mapping[str, Any]) -> str:
        return str(props["username"])

    def rules_path(self, props: Mapping[str, Any]) -> str:
        return f"{AUTHZ_USER_RULES_PATH}/{quote(self.object_id(props), safe='')}"

    def comparable(self, props: Mapping[str, Any]) -> dict[str, Any]:
        return {"username": props.get("username"), "rules": _normalised_acl_rules(props.get("rules"))}

    def outputs(self, props: Mapping[str, Any]) -> dict[str, Any]:
        return {**super().outputs(props), "rules": _normalised_acl_rules(props.get("rules"))}

    def converge(self, api: EmqxApi, olds: Mapping[str, Any], news: Mapping[str, Any]) -> None:
        self.put(api, news)
        drain_authorization_caches(api)

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
        drain_authorization_caches(api)


