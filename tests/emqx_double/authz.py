"""Authorization (`/authorization/...`): sources, the built-in database's rule tables, the
settings, and the caches.

Read from `[v5.8.9] apps/emqx_auth/src/emqx_authz/emqx_authz_api_sources.erl`,
`emqx_authz_api_settings.erl`, `emqx_authz.erl`, `emqx_authz_api_cache.erl`,
`apps/emqx_auth_mnesia/src/emqx_authz_api_mnesia.erl`, and their 6.2.2 versions:

* Sources: POST prepends, a duplicate type is 400, an unknown type in the path is 400, PUT needs
  the full source with a matching `type`, `POST .../{type}/move` reorders. Every change under
  `authorization.sources` drains the per-client caches (`emqx_authz.erl:280-285`).
* Deleting an enabled `built_in_database` source wipes its rules (reference 13.12).
* Rule tables `rules/users`, `rules/clients` (paginated lists, POST of an array that is 409 when
  any entry exists and then writes nothing, PUT upsert with the id in the body equal to the path),
  `rules/all` (GET `{rules}`, POST replaces, DELETE empties) and the purge
  `DELETE .../built_in_database/rules`, allowed only while the source is disabled. Rules come back
  with `qos` and `retain` filled in (`emqx_authz_rule_raw:format_rule/1`). Writing rules does
  not drain any cache (`emqx_authz_mnesia` has no drain_cache).
* Settings: 5.8's PUT pattern-matches all three keys (500 otherwise); 6.2.2 fills omitted keys
  with defaults and has `include_mountpoint` and `ignore_backend_failures`
  (`[6.2.2] emqx_authz_api_settings.erl:69-100`).
* The `postgresql` source (postgres.py): validated per version, its password redacted in
  answers, and `GET /authorization/sources/{type}/status` reporting its database connection.
* `DELETE /authorization/cache` drains every client's cache (a timestamp, `drain_cache/0`).
  6.x only: `GET|PUT /authorization/node_cache`, `GET .../node_cache/status` and
  `POST .../node_cache/reset` (`[6.2.2] emqx_authz_api_cache.erl`); 5.8 has no such paths (404).
"""

from __future__ import annotations

import copy
from typing import Any

from tests.emqx_double.postgres import PostgresBackends, status_answer, validate_node_cache, validate_source
from tests.emqx_double.schema import (
    AUTHZ_RULE_FIELDS,
    AUTHZ_SOURCE_FIELDS,
    CACHE_DEFAULTS,
    DEFAULT_FILE_SOURCE,
    KNOWN_AUTHZ_SOURCE_TYPES,
    SETTINGS_KEYS,
    Answer,
    ApiError,
    Request,
    bad_request,
    deobfuscate,
    not_found,
    paginate,
    redact,
    reject_unknown_fields,
    require_bool,
    require_duration,
    require_int,
    validation_error,
)
from tests.emqx_double.state import EmqxState

SETTINGS_6X_DEFAULTS = {"include_mountpoint": False, "ignore_backend_failures": False}
# [6.2.2] emqx_auth_cache_schema.erl fields(config), as GET fills them in.
NODE_CACHE_DEFAULTS: dict[str, Any] = {"enable": True, "cache_ttl": "1m", "cleanup_interval": "1m",
                                       "stat_update_interval": "5s", "max_count": 1000000, "max_memory": "100MB"}
RULE_TABLES = {"users": "username", "clients": "clientid"}


def default_settings(version: str) -> dict[str, Any]:
    # 6.0 changed the default no_match to deny (#15820).
    settings = {"no_match": "deny" if version == "6.x" else "allow", "deny_action": "ignore",
                "cache": copy.deepcopy(CACHE_DEFAULTS)}
    return {**settings, **SETTINGS_6X_DEFAULTS} if version == "6.x" else settings


class AuthzApi:
    """The authorization handlers; mixed into EmqxDouble, which provides the state."""

    version: str
    _state: EmqxState
    postgres: PostgresBackends
    clock: Any

    def _authz_routes(self) -> list[tuple[str, tuple[str, ...], Any]]:
        builtin = ("authorization", "sources", "built_in_database", "rules")
        routes = [
            ("GET", ("authorization", "sources"), self._list_sources),
            ("POST", ("authorization", "sources"), self._create_source),
            ("GET", ("authorization", "sources", "*"), self._get_source),
            ("PUT", ("authorization", "sources", "*"), self._update_source),
            ("DELETE", ("authorization", "sources", "*"), self._delete_source),
            ("POST", ("authorization", "sources", "*", "move"), self._move_source),
            ("GET", ("authorization", "sources", "*", "status"), self._source_status),
            ("DELETE", builtin, self._purge_rules),
            ("GET", (*builtin, "all"), self._get_all_rules),
            ("POST", (*builtin, "all"), self._post_all_rules),
            ("DELETE", (*builtin, "all"), self._delete_all_rules),
            ("GET", ("authorization", "settings"), self._get_settings),
            ("PUT", ("authorization", "settings"), self._put_settings),
            ("DELETE", ("authorization", "cache"), self._drain_cache),
        ]
        for table in RULE_TABLES:
            routes += [
                ("GET", (*builtin, table), self._table_handler("list", table)),
                ("POST", (*builtin, table), self._table_handler("post", table)),
                ("GET", (*builtin, table, "*"), self._table_handler("get", table)),
                ("PUT", (*builtin, table, "*"), self._table_handler("put", table)),
                ("DELETE", (*builtin, table, "*"), self._table_handler("delete", table)),
            ]
        if self.version == "6.x":
            routes += [
                ("GET", ("authorization", "node_cache"), self._get_node_cache),
                ("PUT", ("authorization", "node_cache"), self._put_node_cache),
                ("GET", ("authorization", "node_cache", "status"), self._node_cache_status),
                ("POST", ("authorization", "node_cache", "reset"), self._reset_node_cache),
            ]
        return routes

    def _drain(self) -> None:
        self._state.authz_cache_drained_at = self.clock.now / 1000

    def _configure_source(self) -> None:
        """EMQX (re)creates a source's resource whenever the sources change."""
        self.postgres.configure_source(self._state.authz_source("postgresql"), self._state.node_cache)

    # ---- sources ---------------------------------------------------------------------

    def _source_type(self, source_type: str) -> str:
        if source_type not in KNOWN_AUTHZ_SOURCE_TYPES:  # section 13.12: unknown type is 400
            raise bad_request(f"Invalid source type: {source_type}")
        return source_type

    def _validate_source(self, body: Any) -> dict[str, Any]:
        source_type = body.get("type") if isinstance(body, dict) else None
        if source_type == "postgresql":
            return validate_source(body, self.version)
        if source_type not in AUTHZ_SOURCE_FIELDS:
            raise validation_error("source.type", f"the double supports only {sorted(AUTHZ_SOURCE_FIELDS)}")
        body = reject_unknown_fields(body, AUTHZ_SOURCE_FIELDS[source_type], "source")
        enable = require_bool(body.get("enable", True), "source.enable")
        if source_type == "built_in_database":
            max_rules = require_int(body.get("max_rules", 100), "source.max_rules", low=1)
            return {"type": source_type, "enable": enable, "max_rules": max_rules}
        if not isinstance(body.get("rules"), str):
            raise validation_error("source.rules", "required_field")
        return {**DEFAULT_FILE_SOURCE, "enable": enable, "rules": body["rules"]}

    @staticmethod
    def _source_view(source: dict[str, Any]) -> dict[str, Any]:
        # emqx_authz_file:read_files/1 answers the file's content as `rules`, without `path`.
        return redact({k: v for k, v in source.items() if not (source["type"] == "file" and k == "path")})

    def _list_sources(self, request: Request, _: list[str]) -> Answer:
        return Answer(200, {"sources": [self._source_view(s) for s in self._state.authz_sources]})

    def _create_source(self, request: Request, _: list[str]) -> Answer:
        source = self._validate_source(request.json_body())
        if self._state.authz_source(source["type"]) is not None:
            raise bad_request(f"{{duplicated_authz_source_type,{source['type']}}}")
        self._state.authz_sources.insert(0, source)  # POST prepends
        self._configure_source()
        self._drain()
        return Answer(204)

    def _existing_source(self, source_type: str) -> dict[str, Any]:
        source = self._state.authz_source(self._source_type(source_type))
        if source is None:
            raise not_found(f"Not found: {source_type}")
        return source

    def _get_source(self, request: Request, captured: list[str]) -> Answer:
        return Answer(200, self._source_view(self._existing_source(captured[0])))

    def _update_source(self, request: Request, captured: list[str]) -> Answer:
        body = request.json_body()
        existing = self._existing_source(captured[0])
        if not isinstance(body, dict) or body.get("type") != captured[0]:
            raise bad_request("Type mismatch")
        updated = self._validate_source(deobfuscate(body, existing))
        index = self._state.authz_sources.index(existing)
        self._state.authz_sources[index] = updated
        self._configure_source()
        self._drain()
        return Answer(204)

    def _delete_source(self, request: Request, captured: list[str]) -> Answer:
        source = self._existing_source(captured[0])
        if source["type"] == "built_in_database" and source["enable"]:
            self._wipe_builtin_rules()  # section 13.12: deleting an enabled one wipes its rules
        self._state.authz_sources.remove(source)
        self._configure_source()
        self._drain()
        return Answer(204)

    def _source_status(self, request: Request, captured: list[str]) -> Answer:
        source = self._existing_source(captured[0])
        if source["type"] != "postgresql":
            return Answer(200, status_answer("connected"))  # file, built_in_database: no resource
        return Answer(200, status_answer(self.postgres.status(source) if source["enable"] else "stopped"))

    def _move_source(self, request: Request, captured: list[str]) -> Answer:
        source = self._existing_source(captured[0])
        body = reject_unknown_fields(request.json_body(), frozenset({"position"}), "move")
        position = body.get("position")
        others = [s for s in self._state.authz_sources if s is not source]
        if position == "front":
            index = 0
        elif position == "rear":
            index = len(others)
        elif isinstance(position, str) and position.partition(":")[0] in ("before", "after"):
            where, _, anchor_type = position.partition(":")
            anchor = next((s for s in others if s["type"] == anchor_type), None)
            if anchor is None:
                raise not_found(f"Not found: {anchor_type}")
            index = others.index(anchor) + (1 if where == "after" else 0)
        else:
            raise bad_request(f"Invalid parameter. Unknown position: {position!r}")
        others.insert(index, source)
        self._state.authz_sources = others
        self._drain()
        return Answer(204)

    # ---- the built-in database's rule tables ---------------------------------------------

    def _wipe_builtin_rules(self) -> None:
        self._state.authz_user_rules.clear()
        self._state.authz_client_rules.clear()
        self._state.authz_all_rules = []

    def _builtin_source(self) -> dict[str, Any]:
        source = self._state.authz_source("built_in_database")
        if source is None:
            raise not_found("Not found: built_in_database")
        return source

    def _validate_authz_rules(self, rules: Any, max_rules: int) -> list[dict[str, Any]]:
        if not isinstance(rules, list):
            raise validation_error("rules", "expected an array")
        if len(rules) > max_rules:
            raise bad_request("The rules length exceeds the maximum limit.")
        checked = []
        for index, rule in enumerate(rules):
            rule = reject_unknown_fields(rule, AUTHZ_RULE_FIELDS, f"rules.{index}")
            if not isinstance(rule.get("topic"), str) or not rule["topic"]:
                raise validation_error(f"rules.{index}.topic", "required_field")
            if rule.get("permission") not in ("allow", "deny"):
                raise validation_error(f"rules.{index}.permission", "must be allow or deny")
            if rule.get("action") not in ("publish", "subscribe", "all"):
                raise validation_error(f"rules.{index}.action", "must be publish, subscribe or all")
            qos = rule.get("qos", [0, 1, 2])
            if not isinstance(qos, list):
                raise validation_error(f"rules.{index}.qos", "must be a list of 0, 1, 2")
            for item in qos:
                require_int(item, f"rules.{index}.qos", 0, 2)
            retain = rule.get("retain", "all")
            if not (isinstance(retain, bool) or retain == "all"):
                raise validation_error(f"rules.{index}.retain", "must be true, false or all")
            checked.append({"qos": [0, 1, 2], "retain": "all", **rule})
        return checked

    def _table(self, table: str) -> dict[str, list[dict[str, Any]]]:
        return self._state.authz_user_rules if table == "users" else self._state.authz_client_rules

    def _table_handler(self, operation: str, table: str) -> Any:
        key = RULE_TABLES[table]
        return lambda request, captured: getattr(self, f"_table_{operation}")(request, captured, table, key)

    def _table_list(self, request: Request, _: list[str], table: str, key: str) -> Answer:
        self._builtin_source()
        items = [{key: name, "rules": rules} for name, rules in sorted(self._table(table).items())]
        return paginate(request, items)

    def _table_post(self, request: Request, _: list[str], table: str, key: str) -> Answer:
        body = request.json_body()
        source = self._builtin_source()
        if not isinstance(body, list):
            raise validation_error(table, "expected an array")
        entries = [reject_unknown_fields(e, frozenset({key, "rules"}), table) for e in body]
        if not all(isinstance(e.get(key), str) and e[key] for e in entries):
            raise validation_error(f"{table}.{key}", "required_field")
        # Validation of every entry runs before anything is written.
        checked = {e[key]: self._validate_authz_rules(e.get("rules"), source["max_rules"]) for e in entries}
        for name in checked:
            if name in self._table(table):
                who = "User" if table == "users" else "Client"
                raise ApiError(409, "ALREADY_EXISTS", f"{who} '{name}' already exist")
        self._table(table).update(checked)
        return Answer(204)

    def _table_get(self, request: Request, captured: list[str], table: str, key: str) -> Answer:
        self._builtin_source()
        rules = self._table(table).get(captured[0])
        if rules is None:
            raise not_found("Not Found")
        return Answer(200, {key: captured[0], "rules": rules})

    def _table_put(self, request: Request, captured: list[str], table: str, key: str) -> Answer:
        body = reject_unknown_fields(request.json_body(), frozenset({key, "rules"}), table)
        source = self._builtin_source()
        if body.get(key) != captured[0]:  # section 13.13: the handler's pattern match fails
            raise ApiError(500, "INTERNAL_ERROR", "function_clause")
        self._table(table)[captured[0]] = self._validate_authz_rules(body.get("rules"), source["max_rules"])
        return Answer(204)

    def _table_delete(self, request: Request, captured: list[str], table: str, key: str) -> Answer:
        self._builtin_source()
        if self._table(table).pop(captured[0], None) is None:
            raise not_found("Username Not Found" if table == "users" else "ClientID Not Found")
        return Answer(204)

    def _get_all_rules(self, request: Request, _: list[str]) -> Answer:
        self._builtin_source()
        return Answer(200, {"rules": copy.deepcopy(self._state.authz_all_rules)})

    def _post_all_rules(self, request: Request, _: list[str]) -> Answer:
        body = reject_unknown_fields(request.json_body(), frozenset({"rules"}), "all")
        source = self._builtin_source()
        self._state.authz_all_rules = self._validate_authz_rules(body.get("rules"), source["max_rules"])
        return Answer(204)

    def _delete_all_rules(self, request: Request, _: list[str]) -> Answer:
        self._builtin_source()
        self._state.authz_all_rules = []
        return Answer(204)

    def _purge_rules(self, request: Request, _: list[str]) -> Answer:
        source = self._state.authz_source("built_in_database")
        if source is None:
            raise ApiError(404, "BAD_REQUEST", "'built_in_database' type source is not found.")
        if source["enable"]:
            raise bad_request("'built_in_database' type source must be disabled before purge.")
        self._wipe_builtin_rules()
        return Answer(204)

    # ---- settings and caches ---------------------------------------------------------------

    def _get_settings(self, request: Request, _: list[str]) -> Answer:
        return Answer(200, copy.deepcopy(self._state.authz_settings))

    def _put_settings(self, request: Request, _: list[str]) -> Answer:
        extra_keys = set(SETTINGS_6X_DEFAULTS) if self.version == "6.x" else set()
        body = reject_unknown_fields(request.json_body(), frozenset(SETTINGS_KEYS) | extra_keys, "settings")
        missing = [key for key in SETTINGS_KEYS if key not in body]
        if missing and self.version == "5.8":  # section 13.14: the handler pattern-matches all three
            raise ApiError(500, "INTERNAL_ERROR", "function_clause")
        settings = {**default_settings(self.version), **body}  # 6.x: omitted keys get their defaults
        if settings["no_match"] not in ("allow", "deny"):
            raise validation_error("settings.no_match", "must be allow or deny")
        if settings["deny_action"] not in ("ignore", "disconnect"):
            raise validation_error("settings.deny_action", "must be ignore or disconnect")
        for key in extra_keys:
            require_bool(settings[key], f"settings.{key}")
        cache = reject_unknown_fields(settings["cache"], frozenset(CACHE_DEFAULTS), "settings.cache")
        if "enable" in cache:
            require_bool(cache["enable"], "settings.cache.enable")
        if "max_size" in cache:
            require_int(cache["max_size"], "settings.cache.max_size", 1, 1048576)
        if "ttl" in cache:
            require_duration(cache["ttl"], "settings.cache.ttl")
        if "excludes" in cache and not (isinstance(cache["excludes"], list)
                                        and all(isinstance(t, str) for t in cache["excludes"])):
            raise validation_error("settings.cache.excludes", "expected an array of topic filters")
        settings["cache"] = {**CACHE_DEFAULTS, **cache}
        self._state.authz_settings = settings
        return Answer(200, copy.deepcopy(settings))

    def _drain_cache(self, request: Request, _: list[str]) -> Answer:
        self._drain()
        self._state.cache_drains += 1
        return Answer(204)

    def _get_node_cache(self, request: Request, _: list[str]) -> Answer:
        return Answer(200, {**NODE_CACHE_DEFAULTS, **self._state.node_cache})

    def _put_node_cache(self, request: Request, _: list[str]) -> Answer:
        self._state.node_cache = validate_node_cache(request.json_body(), "node_cache")
        self._configure_source()
        return Answer(204)

    def _node_cache_status(self, request: Request, _: list[str]) -> Answer:
        counter = {"value": 0, "rate": {"rate": 0.0, "rate_max": 0.0, "rate_last5m": 0.0}}
        metrics = {"hits": counter, "misses": counter, "inserts": counter, "count": 0, "memory": 0}
        return Answer(200, {"metrics": metrics, "node_metrics": [{"node": "emqx@127.0.0.1", "metrics": metrics}]})

    def _reset_node_cache(self, request: Request, _: list[str]) -> Answer:
        self._state.node_cache_resets += 1
        self.postgres.reset(lambda backends: backends.source)
        return Answer(204)
