"""Rules (`/rules`): CRUD with the 5.8 / 6.x PUT difference, and rule metrics.

Read from `[v5.8.9] apps/emqx_rule_engine/src/emqx_rule_engine_api.erl` and
`emqx_rule_engine.erl`, and `[6.2.2] emqx_rule_engine_api.erl:498-512`:

* 5.8: PUT is an upsert and the body replaces the rule (omitted fields fall back to defaults,
  `enable: true` among them); 6.x: PUT on a missing id is 404 and the body is merged into the
  stored rule, so `{"enable": false}` alone disables it.
* `GET /rules/{id}/metrics` answers `{id, metrics, node_metrics}` with the keys in metrics.py;
  `PUT /rules/{id}/metrics/reset` answers 204; both 404 for a missing rule.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from tests.emqx_double.metrics import empty_rule_metrics, rule_answer
from tests.emqx_double.schema import (
    RULE_DEFAULTS,
    RULE_FIELDS,
    Answer,
    Request,
    bad_request,
    not_found,
    now_rfc3339,
    paginate,
    reject_unknown_fields,
    with_defaults,
)
from tests.emqx_double.state import EmqxState


class RulesApi:
    """The rule handlers; mixed into EmqxDouble, which provides the state."""

    version: str
    _state: EmqxState

    def _rule_routes(self) -> list[tuple[str, tuple[str, ...], Any]]:
        return [
            ("GET", ("rules",), self._list_rules),
            ("POST", ("rules",), self._create_rule),
            ("GET", ("rules", "*"), self._get_rule),
            ("PUT", ("rules", "*"), self._update_rule),
            ("DELETE", ("rules", "*"), self._delete_rule),
            ("GET", ("rules", "*", "metrics"), self._rule_metrics),
            ("PUT", ("rules", "*", "metrics", "reset"), self._reset_rule_metrics),
        ]

    def _existing_rule(self, rule_id: str) -> str:
        if rule_id not in self._state.rules:
            raise not_found("Rule Id Not Found")
        return rule_id

    def _rule_metrics(self, request: Request, captured: list[str]) -> Answer:
        rule_id = self._existing_rule(captured[0])
        return Answer(200, rule_answer(rule_id, self._state.rule_metrics.setdefault(rule_id, empty_rule_metrics())))

    def _reset_rule_metrics(self, request: Request, captured: list[str]) -> Answer:
        self._state.rule_metrics[self._existing_rule(captured[0])] = empty_rule_metrics()
        return Answer(204)

    @staticmethod
    def _rule_sources(sql: Any) -> list[str]:
        match = re.match(r'(?is)^\s*(select|foreach)\s.+?\sfrom\s+((?:"[^"]*"\s*,?\s*)+)', sql or "")
        if not isinstance(sql, str) or match is None:
            raise bad_request(f"Bad Arguments: {{select_and_transform, invalid SQL: {sql!r}}}")
        return re.findall(r'"([^"]*)"', match.group(2))

    @staticmethod
    def _normalise_rule_actions(actions: Any) -> list[Any]:
        if not isinstance(actions, list):
            raise bad_request("Bad Arguments: actions must be a list")
        normalised = []
        for action in actions:
            if isinstance(action, str):
                kind, _, name = action.partition(":")
                normalised.append(f"http:{name}" if kind == "webhook" else action)
            elif isinstance(action, dict) and "function" in action:
                normalised.append(action)
            else:
                raise bad_request(f"Bad Arguments: invalid action {action!r}")
        return normalised

    def _store_rule(self, rule_id: str, raw: dict[str, Any]) -> None:
        self._rule_sources(raw.get("sql"))
        # The rules API checks no schema itself, but the config update does (hocon, 400 "Bad Arguments").
        for key, kind in (("enable", bool), ("description", str), ("name", str)):
            if key in raw and not isinstance(raw[key], kind):
                raise bad_request(f"Bad Arguments: {{rules.{rule_id}.{key}, expected {kind.__name__}, "
                                  f"got {raw[key]!r}}}")
        raw["actions"] = self._normalise_rule_actions(raw.get("actions", []))
        previous = self._state.rules.get(rule_id)
        created_at = previous["created_at"] if previous else now_rfc3339()
        self._state.rules[rule_id] = {**raw, "created_at": created_at, "last_modified_at": now_rfc3339()}

    def _rule_view(self, rule_id: str) -> dict[str, Any]:
        rule = self._state.rules[rule_id]
        return {"id": rule_id, **rule, "from": self._rule_sources(rule["sql"])}

    def _list_rules(self, request: Request, _: list[str]) -> Answer:
        ids = sorted(self._state.rules, reverse=True)  # section 13.4: descending key order
        return paginate(request, [self._rule_view(rule_id) for rule_id in ids])

    def _create_rule(self, request: Request, _: list[str]) -> Answer:
        body = reject_unknown_fields(request.json_body(), RULE_FIELDS | {"id"}, "rule")
        rule_id = body.pop("id", None)
        if rule_id is None:
            rule_id = secrets.token_hex(4)
        if rule_id == "":
            raise bad_request("empty rule id is not allowed")
        if rule_id in self._state.rules:
            raise bad_request("rule id already exists")
        self._store_rule(rule_id, with_defaults(body, RULE_DEFAULTS))
        return Answer(201, self._rule_view(rule_id))

    def _get_rule(self, request: Request, captured: list[str]) -> Answer:
        if captured[0] not in self._state.rules:
            raise not_found("Rule Id Not Found")
        return Answer(200, self._rule_view(captured[0]))

    def _update_rule(self, request: Request, captured: list[str]) -> Answer:
        rule_id = captured[0]
        body = reject_unknown_fields(request.json_body(), RULE_FIELDS, "rule")
        existing = self._state.rules.get(rule_id)
        if self.version == "6.x":
            if existing is None:
                raise not_found("Rule Id Not Found")
            kept = {k: v for k, v in existing.items() if k in RULE_FIELDS}
            raw = {**kept, **body}  # 6.x merges the body into the stored rule
        else:
            raw = with_defaults(body, RULE_DEFAULTS)  # 5.8: upsert, the body replaces the rule
        self._store_rule(rule_id, raw)
        return Answer(200, self._rule_view(rule_id))

    def _delete_rule(self, request: Request, captured: list[str]) -> Answer:
        if self._state.rules.pop(captured[0], None) is None:
            raise not_found("Rule Id Not Found")
        self._state.rule_metrics.pop(captured[0], None)
        return Answer(204)
