"""What EMQX did with each tenant's messages: rule and action metrics, and losses.

    python -m tools.status [--stack dev | --outputs-file outputs.json] [--tenant SLUG ...]

For every tenant it reads, through the EMQX management API (``dashboardUrl`` and the API key in
the stack outputs), the tenant's rule and HTTP action: whether they (and the shared connector)
are enabled, the delivery window (`request_ttl`), and their metrics - matched, success,
failed, retried, dropped by reason, queuing, inflight. EMQX acknowledges a device's QoS 1
publish before the action delivers it, so `dropped.*` and `failed` are messages the devices
were told were delivered and that never reached the database (README "Delivery guarantees").
Metrics live in EMQX's memory: they restart at zero when EMQX restarts or the action is updated.

Exit code: 0 when every object is enabled and nothing was lost, 1 when something was lost or is
disabled or missing, 2 when the outputs or the API could not be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from components.providers.emqx.client import EmqxApi, EmqxApiError
from components.tenant import emqx_name
from tools import ToolError
from tools.simulate import add_source_arguments
from tools.stack_outputs import load_outputs, tenant_slugs

CONNECTOR_ID = "http:ingest"  # the stack's one HTTP connector (components/emqx.py)
DROP_REASONS = ("expired", "queue_full", "resource_stopped", "resource_not_found", "other")
# Counters that only grow when a message is lost: the action's drops and final failures, and the
# rule's own failures (a message its SQL or its action call could not handle).
LOSS_COUNTERS = (*(f"action.dropped.{reason}" for reason in DROP_REASONS), "action.failed",
                 "rule.failed", "rule.actions.failed", "rule.actions.discarded")
RULE_SHOWN = ("matched", "passed", "failed", "actions.success", "actions.failed", "actions.discarded")
ACTION_SHOWN = ("matched", "success", "failed", "retried", "late_reply", "queuing", "inflight")


@dataclass
class TenantStatus:
    slug: str
    rule_id: str
    action_id: str
    problems: list[str] = field(default_factory=list)  # disabled or missing objects
    rule: dict[str, Any] = field(default_factory=dict)  # rule metrics
    action: dict[str, Any] = field(default_factory=dict)  # action metrics
    window: str = "?"

    def counters(self) -> dict[str, int]:
        """Every loss counter, as `action.dropped.expired`, `rule.failed`, ..."""
        values = {f"action.{key}": value for key, value in self.action.items()}
        values |= {f"rule.{key}": value for key, value in self.rule.items()}
        return {name: int(values.get(name, 0)) for name in LOSS_COUNTERS}

    @property
    def lost(self) -> int:
        return sum(self.counters().values())

    def lines(self) -> list[str]:
        head = f"{'OK  ' if not self.problems and not self.lost else 'WARN'} {self.slug}: rule {self.rule_id}, " \
               f"action {self.action_id}, delivery window {self.window}"
        lines = [head, *(f"     ! {problem}" for problem in self.problems)]
        if self.rule:
            lines.append("     rule:   " + "  ".join(f"{k} {self.rule.get(k, 0)}" for k in RULE_SHOWN))
        if self.action:
            lines.append("     action: " + "  ".join(f"{k} {self.action.get(k, 0)}" for k in ACTION_SHOWN))
            reasons = ", ".join(f"{r} {self.action.get(f'dropped.{r}', 0)}" for r in DROP_REASONS)
            lines.append(f"             dropped {self.action.get('dropped', 0)} ({reasons})")
        return lines


def emqx_api(outputs: dict[str, Any]) -> EmqxApi:
    """A management-API client from the stack outputs (dashboardUrl, emqxApiKey, emqxApiSecret)."""
    missing = [name for name in ("dashboardUrl", "emqxApiKey", "emqxApiSecret") if not outputs.get(name)]
    if missing:
        raise ToolError(f"the stack outputs have no {', '.join(missing)}: deploy the current program "
                        "(`pulumi up`) and read the outputs with --show-secrets")
    try:
        api = EmqxApi(outputs["dashboardUrl"], outputs["emqxApiKey"], outputs["emqxApiSecret"], "EMQX status",
                      ready_timeout=10)
        api.wait_ready()
    except EmqxApiError as error:
        raise ToolError(str(error)) from None
    return api


def _get(api: EmqxApi, path: str) -> dict[str, Any] | None:
    answer = api.call("GET", path, accept=(200, 404))
    return answer.body if answer.status == 200 else None


def tenant_status(api: EmqxApi, slug: str) -> TenantStatus:
    name = emqx_name(slug)
    status = TenantStatus(slug, rule_id=name, action_id=f"http:{name}")
    try:
        rule = _get(api, f"/rules/{name}")
        action = _get(api, f"/actions/{status.action_id}")
        if rule is None:
            status.problems.append(f"rule {name} is missing: run `pulumi up`")
        else:
            if rule.get("enable") is False:
                status.problems.append(f"rule {name} is disabled: run `pulumi refresh` and `pulumi up`")
            status.rule = (_get(api, f"/rules/{name}/metrics") or {}).get("metrics", {})
        if action is None:
            status.problems.append(f"action {status.action_id} is missing: run `pulumi up`")
        else:
            if action.get("enable") is False:
                status.problems.append(f"action {status.action_id} is disabled: its messages are dropped; "
                                       "run `pulumi refresh` and `pulumi up`")
            status.window = str((action.get("resource_opts") or {}).get("request_ttl", "?"))
            status.action = (_get(api, f"/actions/{status.action_id}/metrics") or {}).get("metrics", {})
    except EmqxApiError as error:
        raise ToolError(str(error)) from None
    return status


def connector_problems(api: EmqxApi) -> list[str]:
    try:
        connector = _get(api, f"/connectors/{CONNECTOR_ID}")
    except EmqxApiError as error:
        raise ToolError(str(error)) from None
    if connector is None:
        return [f"connector {CONNECTOR_ID} is missing: run `pulumi up`"]
    if connector.get("enable") is False:
        return [(f"connector {CONNECTOR_ID} is disabled: every tenant's messages are dropped; "
                 "run `pulumi refresh` and `pulumi up`")]
    if connector.get("status") != "connected":
        return [f"connector {CONNECTOR_ID} is {connector.get('status')}: check the ingest service"]
    return []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.status",
                                     description="Show each tenant's EMQX rule and action metrics and losses.")
    add_source_arguments(parser)
    parser.add_argument("--tenant", "-t", action="append", help="show only this tenant (repeatable; default: all)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        outputs = load_outputs(stack=args.stack, outputs_file=args.outputs_file)
        slugs = args.tenant or tenant_slugs(outputs)
        with emqx_api(outputs) as api:
            shared = connector_problems(api)
            statuses = [tenant_status(api, slug) for slug in slugs]
    except ToolError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    for problem in shared:
        print(f"WARN {problem}")
    for status in statuses:
        print("\n".join(status.lines()))
    attention = bool(shared) or any(s.problems or s.lost for s in statuses)
    lost = sum(s.lost for s in statuses)
    print(f"status: {len(statuses)} tenants, {lost} messages lost since the metrics last started"
          + ("; see the WARN lines" if attention else ""))
    return 1 if attention else 0


if __name__ == "__main__":
    sys.exit(main())
