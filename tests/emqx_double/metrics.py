"""Action and rule metrics as EMQX's API reports them, per version.

Action keys: `[v5.8.9] apps/emqx_bridge/include/emqx_bridge.hrl:109-149` (?METRICS) and
`emqx_bridge_v2_api.erl:1408-1530` (format_metrics/1, aggregate_metrics/2); 6.2.2 adds
`aggregated_upload.success|failure` (`[6.2.2] emqx_bridge_v2_api.erl:1629-1706`). Rule keys:
`emqx_rule_engine_api.erl:60-100` (?METRICS_VAL), the same in both versions. `metrics` is the
sum of `node_metrics` over nodes, rates included; the double has one node.
"""

from __future__ import annotations

from typing import Any

NODE = "emqx@127.0.0.1"
ACTION_COUNTERS_58 = (
    "dropped", "dropped.other", "dropped.expired", "dropped.queue_full", "dropped.resource_not_found",
    "dropped.resource_stopped", "matched", "queuing", "queuing_bytes", "retried", "late_reply", "failed",
    "inflight", "success", "rate", "rate_last5m", "rate_max", "received",
)
ACTION_COUNTERS_6X = (*ACTION_COUNTERS_58, "aggregated_upload.success", "aggregated_upload.failure")
# emqx_resource_metrics.erl:181-216: `dropped` is the sum of the dropped.* counters.
DROPPED_REASONS = ("dropped.other", "dropped.expired", "dropped.queue_full", "dropped.resource_not_found",
                   "dropped.resource_stopped")
RULE_COUNTERS = (
    "matched", "passed", "failed", "failed.exception", "failed.no_result", "actions.total", "actions.failed",
    "actions.failed.out_of_service", "actions.failed.unknown", "actions.success", "actions.discarded",
    "matched.rate", "matched.rate.max", "matched.rate.last5m",
)


def action_keys(version: str) -> tuple[str, ...]:
    return ACTION_COUNTERS_6X if version == "6.x" else ACTION_COUNTERS_58


def empty_action_metrics(version: str) -> dict[str, int]:
    return dict.fromkeys(action_keys(version), 0)


def empty_rule_metrics() -> dict[str, int]:
    return dict.fromkeys(RULE_COUNTERS, 0)


def bump(metrics: dict[str, int], **deltas: int) -> None:
    """Add to counters (keys with `.` written as `__`, e.g. dropped__expired=3); keeps `dropped` the sum."""
    for key, delta in deltas.items():
        name = key.replace("__", ".")
        if name not in metrics:
            raise KeyError(f"no metric {name!r}; known: {', '.join(metrics)}")
        metrics[name] += delta
    if "dropped" in metrics:
        metrics["dropped"] = sum(metrics[reason] for reason in DROPPED_REASONS)


def action_answer(metrics: dict[str, int]) -> dict[str, Any]:
    return {"metrics": dict(metrics), "node_metrics": [{"node": NODE, "metrics": dict(metrics)}]}


def rule_answer(rule_id: str, metrics: dict[str, int]) -> dict[str, Any]:
    return {"id": rule_id, "metrics": dict(metrics), "node_metrics": [{"node": NODE, "metrics": dict(metrics)}]}
