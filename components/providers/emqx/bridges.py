"""The message path to the ingest service: the HTTP connector, the per-tenant HTTP actions and rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pulumi.dynamic import CheckFailure, CheckResult

from components.providers.emqx.base import (
    _check_emqx_name,
    _delete_tolerating_missing,
    _EmqxProvider,
    _get_or_none,
    _path_segment,
    fingerprint,
)
from components.providers.emqx.client import (
    REDACTED,
    EmqxApi,
    EmqxApiError,
)


def _converge_enable_or_put(provider: _EmqxProvider, api: EmqxApi, olds: Mapping[str, Any],
                            news: Mapping[str, Any]) -> None:
    """Restore a connector or action switched off in the dashboard, or apply any other change.

    When `enable` is all that differs (`PUT .../enable/false` in the dashboard writes
    `enable: false` into the config), flip it back with `PUT .../enable/true` (204) rather
    than a full PUT. Otherwise one PUT carries everything, `enable` included. Updating an
    enabled action restarts its buffer workers (what they held is lost, the metrics restart at
    zero: `emqx_bridge_v2:uninstall_bridge_v2/4`), so no PUT is sent that is not needed.
    """
    changed = provider.changed_keys(news, olds) + provider.secret_changes(olds, news)
    if changed == ["enable"]:
        state = "true" if news.get("enable", True) else "false"
        path = f"{provider.enable_path}/{_path_segment(provider.object_id(news))}/enable/{state}"
        if api.call("PUT", path, accept=(204, 404)).status == 204:
            return
    provider.put(api, news)  # also re-creates an object deleted behind our back


# ---- connector --------------------------------------------------------------------------


class EmqxConnectorProvider(_EmqxProvider):
    """An HTTP connector, id `http:<name>`. Do not put secrets in its headers: they would be
    kept in the outputs; per-tenant credentials belong to the action's `bearer_token`."""

    kind = "EMQX connector"
    compared_keys = ("name", "url", "headers", "connect_timeout", "pool_size", "enable_pipelining",
                     "health_check_interval", "enable")
    replace_keys = ("name",)
    legacy_defaults: ClassVar[dict[str, Any]] = {"enable": True}  # stacks from before `enable` was compared
    enable_path = "/connectors"

    def object_id(self, props: Mapping[str, Any]) -> str:
        return f"http:{props['name']}"

    @staticmethod
    def body(props: Mapping[str, Any]) -> dict[str, Any]:
        # No type/name: a PUT body with them is 400 (section 13.6); POST adds them.
        return {"url": props["url"], "headers": dict(props["headers"]), "connect_timeout": props["connect_timeout"],
                "pool_size": props["pool_size"], "enable_pipelining": props["enable_pipelining"],
                "enable": props.get("enable", True),
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
                "enable_pipelining": found.get("enable_pipelining"), "enable": found.get("enable"),
                "health_check_interval": (found.get("resource_opts") or {}).get("health_check_interval")}

    def converge(self, api: EmqxApi, olds: Mapping[str, Any], news: Mapping[str, Any]) -> None:
        _converge_enable_or_put(self, api, olds, news)

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
                     "inflight_window", "worker_pool_size", "max_buffer_bytes", "buffer_mode", "buffer_seg_bytes",
                     "enable")
    replace_keys = ("name",)
    secret_inputs: ClassVar[dict[str, str]] = {"bearer_token": "bearer_token_sha256"}
    legacy_defaults: ClassVar[dict[str, Any]] = {"enable": True}  # stacks from before `enable` was compared
    enable_path = "/actions"

    def object_id(self, props: Mapping[str, Any]) -> str:
        return f"http:{props['name']}"

    def body(self, props: Mapping[str, Any]) -> dict[str, Any]:
        headers = {**_without_authorization(props["headers"]), "Authorization": f"Bearer {props['bearer_token']}"}
        buffer = {key: props[key] for key in ("max_buffer_bytes", "buffer_mode", "buffer_seg_bytes")
                  if props.get(key) is not None}
        return {"connector": props["connector"], "enable": props.get("enable", True),
                "parameters": {"path": props["path"], "method": props["method"], "headers": headers,
                               "body": props["body"]},
                "resource_opts": {"query_mode": props["query_mode"], "request_ttl": props["request_ttl"],
                                  "inflight_window": props["inflight_window"],
                                  "worker_pool_size": props["worker_pool_size"], **buffer}}

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
                "worker_pool_size": opts.get("worker_pool_size"), "max_buffer_bytes": opts.get("max_buffer_bytes"),
                "buffer_mode": opts.get("buffer_mode"), "buffer_seg_bytes": opts.get("buffer_seg_bytes"),
                "enable": found.get("enable"), "bearer_token_sha256": self.live_token_fingerprint(headers, props)}

    def live_token_fingerprint(self, headers: Mapping[str, Any], props: Mapping[str, Any]) -> str | None:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
        if value == REDACTED:
            return props.get("bearer_token_sha256")  # present but unreadable: assume unchanged
        if isinstance(value, str) and value.startswith("Bearer "):
            return fingerprint(value.removeprefix("Bearer "), self.object_id(props))
        return None  # header removed or replaced: the next update re-applies the token

    def converge(self, api: EmqxApi, olds: Mapping[str, Any], news: Mapping[str, Any]) -> None:
        _converge_enable_or_put(self, api, olds, news)

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


