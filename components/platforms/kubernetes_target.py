"""The Kubernetes cluster and namespace the stack deploys into, and the names every component shares.

Everything the stack renders lives in one namespace; every Kubernetes resource goes through one
explicit provider, so `telemetry:kubernetes.context` picks the cluster and nothing depends on
whichever context happens to be current.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

# The Kubernetes version the rendered objects are written and validated for (tests validate every
# object against this version's OpenAPI schema); the oldest minor version the stack supports.
KUBERNETES_VERSION = "1.33"

# Pod labels the network policies select on. The operators set their own labels on the pods they
# run (EMQX Operator `apps/v2beta1/const.go`, CloudNativePG `pkg/utils/labels_annotations.go`).
INGEST_POD_LABELS = {"app.kubernetes.io/name": "telemetry-ingest", "app.kubernetes.io/component": "ingest"}


def emqx_pod_labels(emqx_name: str) -> dict[str, str]:
    return {"apps.emqx.io/instance": emqx_name, "apps.emqx.io/managed-by": "emqx-operator"}


def database_pod_labels(cluster_name: str) -> dict[str, str]:
    return {"cnpg.io/cluster": cluster_name}


def awaited_metadata(name: str, namespace: pulumi.Input[str], labels: dict[str, str], timeout_seconds: int) -> dict:
    """Metadata of a custom resource Pulumi waits for until its operator reports it Ready."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": {"pulumi.com/waitFor": "condition=Ready", "pulumi.com/timeoutSeconds": str(timeout_seconds)},
    }


def stack_labels(project: str, stack: str) -> dict[str, str]:
    # `kubectl get all -l telemetry.stack=<stack>` lists one stack's objects.
    return {"app.kubernetes.io/part-of": project, "app.kubernetes.io/managed-by": "pulumi", "telemetry.stack": stack}


@dataclass(frozen=True)
class KubernetesTargetArgs:
    namespace: str
    # A kubeconfig context; None uses the current one.
    context: str | None
    labels: dict[str, str]


class KubernetesTarget(pulumi.ComponentResource):
    """The provider for the chosen cluster and the stack's namespace (protected: deleting a
    namespace deletes everything in it, the database volumes included)."""

    provider: k8s.Provider
    namespace: k8s.core.v1.Namespace
    namespace_name: str

    def __init__(self, resource_name: str, args: KubernetesTargetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:kubernetes:Target", resource_name, None, opts)
        self.provider = k8s.Provider(
            f"{resource_name}-provider",
            context=args.context,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.namespace = k8s.core.v1.Namespace(
            f"{resource_name}-namespace",
            metadata={"name": args.namespace, "labels": args.labels},
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, protect=True, retain_on_delete=True),
        )
        self.namespace_name = args.namespace
        self.register_outputs({"namespace": args.namespace})

    def options(self, parent: pulumi.Resource, *depends_on: pulumi.Resource, **extra) -> pulumi.ResourceOptions:
        """Options for a namespaced object: parented to its component, through this cluster's provider."""
        return pulumi.ResourceOptions(
            parent=parent, provider=self.provider, depends_on=[self.namespace, *depends_on], **extra
        )


def load_balancer_address(status, service: str) -> str:
    """The address a cloud load balancer was given (Pulumi waits for it before a Service is created)."""
    ingress = (status.load_balancer.ingress if status and status.load_balancer else None) or []
    for entry in ingress:
        if entry.ip or entry.hostname:
            return entry.ip or entry.hostname
    raise pulumi.RunError(
        f"the LoadBalancer Service {service!r} has no address: the cluster gave it none; check that the cluster "
        "has a load-balancer controller, or set the endpoint explicitly (see README, Platforms > kubernetes)"
    )
