"""Connectors and actions (`/connectors`, `/actions`): CRUD, enable/disable and action metrics.

Behaviour read from `[v5.8.9] apps/emqx_connector/src/emqx_connector_api.erl`,
`emqx_connector.erl`, `apps/emqx_bridge/src/emqx_bridge_v2_api.erl` and `emqx_bridge_v2.erl`
(6.2.2 alike unless noted):

* `PUT /{connectors|actions}/{id}/enable/{true|false}` answers 204 and writes `enable` into the
  stored config (pre_config_update: `OldConfig#{<<"enable">> => ...}`; actions also stamp
  `last_modified_at`), so a GET afterwards shows `enable: false`; the path value is a boolean
  (400 otherwise); a missing object is 404.
* Disabling or updating an enabled action uninstalls it first (`uninstall_bridge_v2/4`:
  stop_workers, remove_channel, clear_metrics): its metrics start again from zero and what its
  buffer held is gone.
* `GET /actions/{id}/metrics` answers the version's key set (metrics.py); `PUT .../metrics/reset`
  answers 204.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.emqx_double.metrics import action_answer, empty_action_metrics
from tests.emqx_double.schema import (
    ACTION_DEFAULTS,
    ACTION_DROPPED_RESOURCE_OPTS,
    ACTION_FIELDS,
    ACTION_PARAMETERS,
    ACTION_RESOURCE_OPTS,
    ACTION_RESOURCE_OPTS_6X,
    CONNECTOR_DEFAULTS,
    CONNECTOR_DROPPED_FIELDS,
    CONNECTOR_FIELDS,
    CONNECTOR_RESOURCE_OPTS,
    NAME_PATTERN,
    Answer,
    Request,
    bad_request,
    deobfuscate,
    not_found,
    now_ms,
    redact,
    reject_unknown_fields,
    require_bool,
    require_bytesize,
    require_duration,
    require_enum,
    require_int,
    require_object,
    validation_error,
    with_defaults,
)
from tests.emqx_double.state import EmqxState


def path_boolean(value: str) -> bool:
    """A boolean path parameter (`param_path_enable/0`): anything but true/false is 400."""
    if value not in ("true", "false"):
        raise bad_request(f"the enable path parameter must be true or false, got {value!r}")
    return value == "true"


class BridgesApi:
    """The connector and action handlers; mixed into EmqxDouble, which provides the state."""

    version: str
    _state: EmqxState

    def _bridge_routes(self) -> list[tuple[str, tuple[str, ...], Any]]:
        return [
            ("GET", ("connectors",), self._list_connectors),
            ("POST", ("connectors",), self._create_connector),
            ("GET", ("connectors", "*"), self._get_connector),
            ("PUT", ("connectors", "*"), self._update_connector),
            ("DELETE", ("connectors", "*"), self._delete_connector),
            ("PUT", ("connectors", "*", "enable", "*"), self._enable_connector),
            ("GET", ("actions",), self._list_actions),
            ("POST", ("actions",), self._create_action),
            ("GET", ("actions", "*"), self._get_action),
            ("PUT", ("actions", "*"), self._update_action),
            ("DELETE", ("actions", "*"), self._delete_action),
            ("PUT", ("actions", "*", "enable", "*"), self._enable_action),
            ("GET", ("actions", "*", "metrics"), self._action_metrics),
            ("PUT", ("actions", "*", "metrics", "reset"), self._reset_action_metrics),
        ]

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
        status = "connected" if config["enable"] else "stopped"  # a disabled connector's resource is stopped
        return redact({**config, "type": "http", "name": name, "status": status,
                       "node_status": [{"node": "emqx@127.0.0.1", "status": status}], "actions": users})

    def _enable_connector(self, request: Request, captured: list[str]) -> Answer:
        name = self._connector_name(captured[0])
        enable = path_boolean(captured[1])
        if name not in self._state.connectors:
            raise not_found(f"Connector lookup failed: connector named '{name}' of type http does not exist.")
        self._state.connectors[name]["enable"] = enable
        return Answer(204)

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
        allowed_opts = ACTION_RESOURCE_OPTS | (ACTION_RESOURCE_OPTS_6X if self.version == "6.x" else frozenset())
        resource_opts = reject_unknown_fields(body.get("resource_opts", {}), allowed_opts, f"{path}.resource_opts")
        for key in ("max_buffer_bytes", "buffer_seg_bytes"):
            if key in resource_opts:
                require_bytesize(resource_opts[key], f"{path}.resource_opts.{key}")
        if "buffer_mode" in resource_opts:
            require_enum(resource_opts["buffer_mode"], f"{path}.resource_opts.buffer_mode",
                         ("memory_only", "volatile_offload"))
        if "dispatch_strategy" in resource_opts:
            require_enum(resource_opts["dispatch_strategy"], f"{path}.resource_opts.dispatch_strategy",
                         ("per_clientid", "random"))
        if resource_opts.get("query_mode", "async") not in ("async", "sync"):
            raise validation_error(f"{path}.resource_opts.query_mode", "must be async or sync")
        for key in ("request_ttl", "request_timeout"):  # request_timeout: the alias of request_ttl
            if key in resource_opts:
                require_duration(resource_opts[key], f"{path}.resource_opts.{key}", infinity=True)
        for key in ("health_check_interval", "metrics_flush_interval", "resume_interval",
                    "health_check_interval_jitter", "health_check_timeout"):
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
        defaults = ACTION_DEFAULTS
        if self.version == "6.x":  # [6.2.2] emqx_resource_schema.erl:90-94; emqx_bridge_v2_schema.erl:465-482
            defaults = {**ACTION_DEFAULTS, "resource_opts": {
                **ACTION_DEFAULTS["resource_opts"], "dispatch_strategy": "per_clientid",
                "health_check_interval_jitter": "0ms", "health_check_timeout": "60s"}}
        return with_defaults({**body, "resource_opts": kept_opts}, defaults)

    def _action_view(self, name: str) -> dict[str, Any]:
        config = self._state.actions[name]
        connector = self._state.connectors.get(config["connector"], {})
        if config["enable"] and connector.get("enable"):
            status, reason = "connected", ""
        else:  # emqx_bridge_v2:lookup/3: a channel that is not installed
            status, reason = "disconnected", "Not installed"
        return redact({**config, "type": "http", "name": name, "status": status, "status_reason": reason,
                       "node_status": [{"node": "emqx@127.0.0.1", "status": status}]})

    def _existing_action(self, action_id: str) -> str:
        name = self._action_name(action_id)
        if name not in self._state.actions:
            raise not_found(f"Bridge lookup failed: bridge named '{name}' of type http does not exist.")
        return name

    def _uninstall_action(self, name: str) -> None:
        """uninstall_bridge_v2/4 of an enabled action: the buffer workers stop and the metrics are cleared."""
        if self._state.actions[name]["enable"]:
            self._state.action_metrics[name] = empty_action_metrics(self.version)

    def _enable_action(self, request: Request, captured: list[str]) -> Answer:
        name = self._existing_action(captured[0])
        enable = path_boolean(captured[1])
        if not enable:
            self._uninstall_action(name)
        self._state.actions[name] = {**self._state.actions[name], "enable": enable, "last_modified_at": now_ms()}
        return Answer(204)

    def _action_metrics(self, request: Request, captured: list[str]) -> Answer:
        name = self._existing_action(captured[0])
        metrics = self._state.action_metrics.setdefault(name, empty_action_metrics(self.version))
        return Answer(200, action_answer(metrics))

    def _reset_action_metrics(self, request: Request, captured: list[str]) -> Answer:
        name = self._existing_action(captured[0])
        self._state.action_metrics[name] = empty_action_metrics(self.version)
        return Answer(204)

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
        self._state.action_metrics[name] = empty_action_metrics(self.version)
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
        updated = self._stamped(self._validate_action(body, "action"))
        self._uninstall_action(name)  # post_config_update: uninstall the old, install the new
        self._state.actions[name] = updated
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
        self._state.action_metrics.pop(name, None)
        return Answer(204)

