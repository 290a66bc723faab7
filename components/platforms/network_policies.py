"""Who may reach whom inside the namespace, in one place so a reviewer reads it at once.

* the ingest service admits only EMQX (its pods, or the external EMQX's address ranges) on 8000;
* the database admits only the ingest service and EMQX on 5432 (EMQX authenticates and
  authorizes devices from the registry: its pods, or an external EMQX's address ranges), its
  own instances (replication, and the instance manager on 8000), the
  CloudNativePG operator (5432 and 8000, as CloudNativePG's networking guide requires), and the
  admin address ranges when the stack opens a LoadBalancer for Pulumi.

A policy that selects a pod denies it every connection no rule admits. These policies restrict
ingress only; they take effect where the cluster's network plugin enforces NetworkPolicy.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.ingest import CONTAINER_PORT
from components.platforms.kubernetes_target import INGEST_POD_LABELS, KubernetesTarget

POSTGRES_PORT = 5432
INSTANCE_MANAGER_PORT = 8000


def _ports(*numbers: int) -> list[dict]:
    return [{"protocol": "TCP", "port": number} for number in numbers]


def _pods(labels: dict[str, str]) -> dict:
    return {"podSelector": {"matchLabels": labels}}


def _ranges(cidrs: list[str]) -> list[dict]:
    return [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]


@dataclass(frozen=True)
class NetworkPoliciesArgs:
    target: KubernetesTarget
    labels: dict[str, str]
    # EMQX in the cluster (its pod labels) or outside it (its address ranges): exactly one is set.
    emqx_pod_labels: dict[str, str] | None
    emqx_source_ranges: list[str]
    # None when the database is external (nothing of it runs here).
    database_pod_labels: dict[str, str] | None
    operator_namespace: str
    operator_pod_labels: dict[str, str]
    # Set when Pulumi reaches the database through a LoadBalancer.
    admin_source_ranges: list[str]


def ingest_policy_spec(args: NetworkPoliciesArgs) -> dict:
    senders = [_pods(args.emqx_pod_labels)] if args.emqx_pod_labels else _ranges(args.emqx_source_ranges)
    return {
        "podSelector": {"matchLabels": INGEST_POD_LABELS},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": senders, "ports": _ports(CONTAINER_PORT)}],
    }


def database_policy_spec(args: NetworkPoliciesArgs) -> dict:
    assert args.database_pod_labels is not None
    emqx = [_pods(args.emqx_pod_labels)] if args.emqx_pod_labels else _ranges(args.emqx_source_ranges)
    clients = [_pods(INGEST_POD_LABELS), *emqx]
    rules = [
        {"from": clients, "ports": _ports(POSTGRES_PORT)},
        {"from": [_pods(args.database_pod_labels)], "ports": _ports(POSTGRES_PORT, INSTANCE_MANAGER_PORT)},
        {
            "from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": args.operator_namespace}},
                "podSelector": {"matchLabels": args.operator_pod_labels},
            }],
            "ports": _ports(POSTGRES_PORT, INSTANCE_MANAGER_PORT),
        },
    ]
    if args.admin_source_ranges:
        rules.append({"from": _ranges(args.admin_source_ranges), "ports": _ports(POSTGRES_PORT)})
    return {"podSelector": {"matchLabels": args.database_pod_labels}, "policyTypes": ["Ingress"], "ingress": rules}


class NetworkPolicies(pulumi.ComponentResource):
    """The ingest and database ingress policies."""

    def __init__(self, resource_name: str, args: NetworkPoliciesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:kubernetes:NetworkPolicies", resource_name, None, opts)
        namespace = args.target.namespace_name
        specs = {"ingest": ingest_policy_spec(args)}
        if args.database_pod_labels is not None:
            specs["timescaledb"] = database_policy_spec(args)
        for name, spec in specs.items():
            k8s.networking.v1.NetworkPolicy(
                f"{resource_name}-{name}",
                metadata={"name": f"{name}-ingress", "namespace": namespace, "labels": args.labels},
                spec=spec,
                opts=args.target.options(self),
            )
        self.register_outputs({"policies": sorted(f"{name}-ingress" for name in specs)})
