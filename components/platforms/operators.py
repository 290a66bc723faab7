"""The operators that run EMQX and TimescaleDB on Kubernetes: required, or installed at pinned versions.

* `operators.install: false` (the default): the cluster's administrators run the operators; the
  stack checks on every preview that each one serves the API version it writes, and fails with
  the fix when one is missing (`operator_check.py`).
* `operators.install: true`: the stack installs CloudNativePG from its release manifest and the
  EMQX Operator from its Helm chart, both at the versions below. Both are rendered client-side
  (yaml/v2 ConfigFile, helm/v4 Chart), so their CRDs are resources of this program and the
  custom resources that use them preview on the first `pulumi up`. The EMQX Operator's webhook
  certificate comes from cert-manager, which must already run (EMQX's own install guide).

The custom resources the stack writes are validated in the tests against the CRDs of exactly
these versions (tests/fixtures/crds/).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.platforms.kubernetes_target import KubernetesTarget
from components.platforms.operator_check import RequiredOperator

CNPG_VERSION = "1.30.0"
CNPG_MANIFEST_URL = (
    f"https://github.com/cloudnative-pg/cloudnative-pg/releases/download/v{CNPG_VERSION}/cnpg-{CNPG_VERSION}.yaml"
)
# Where the release manifest runs the operator, and its pod label (the database NetworkPolicy admits it).
CNPG_NAMESPACE = "cnpg-system"
CNPG_OPERATOR_POD_LABELS = {"app.kubernetes.io/name": "cloudnative-pg"}
CNPG_CLUSTER_CRD, CNPG_API_VERSION = "clusters.postgresql.cnpg.io", "v1"

EMQX_OPERATOR_VERSION = "2.2.29"
EMQX_OPERATOR_CHART_REPO = "https://repos.emqx.io/charts"
EMQX_OPERATOR_NAMESPACE = "emqx-operator-system"
EMQX_CRD, EMQX_API_VERSION = "emqxes.apps.emqx.io", "v2beta1"


@dataclass(frozen=True)
class OperatorsArgs:
    target: KubernetesTarget
    install: bool
    # Only the operators for the parts that run on Kubernetes (an external database needs no CloudNativePG).
    cloudnative_pg: bool
    emqx_operator: bool
    context: str | None


class Operators(pulumi.ComponentResource):
    """Checks for, or installs, CloudNativePG and the EMQX Operator; ``ready`` is what custom resources wait on."""

    ready: list[pulumi.Resource]

    def __init__(self, resource_name: str, args: OperatorsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:kubernetes:Operators", resource_name, None, opts)
        self.ready = []
        cluster = pulumi.ResourceOptions(parent=self, provider=args.target.provider)
        wanted = [
            ("cloudnative-pg", "CloudNativePG", CNPG_CLUSTER_CRD, CNPG_API_VERSION, CNPG_VERSION, args.cloudnative_pg),
            ("emqx-operator", "the EMQX Operator", EMQX_CRD, EMQX_API_VERSION, EMQX_OPERATOR_VERSION,
             args.emqx_operator),
        ]
        for key, operator, crd, version, pinned, needed in wanted:
            if not needed:
                continue
            if not args.install:
                self.ready.append(RequiredOperator(
                    f"{resource_name}-{key}-required",
                    crd=crd, version=version, operator=operator, pinned_version=pinned, context=args.context,
                    opts=pulumi.ResourceOptions(parent=self),
                ))
            elif key == "cloudnative-pg":
                # The release manifest creates the cnpg-system namespace itself.
                self.ready.append(k8s.yaml.v2.ConfigFile(f"{resource_name}-{key}", file=CNPG_MANIFEST_URL, opts=cluster))
            else:
                namespace = k8s.core.v1.Namespace(
                    f"{resource_name}-{key}-namespace", metadata={"name": EMQX_OPERATOR_NAMESPACE}, opts=cluster
                )
                self.ready.append(k8s.helm.v4.Chart(
                    f"{resource_name}-{key}",
                    chart="emqx-operator",
                    version=EMQX_OPERATOR_VERSION,
                    namespace=EMQX_OPERATOR_NAMESPACE,
                    repository_opts={"repo": EMQX_OPERATOR_CHART_REPO},
                    values={"cert-manager": {"enable": True}},
                    opts=pulumi.ResourceOptions(parent=self, provider=args.target.provider, depends_on=[namespace]),
                ))
        self.register_outputs({"installed": args.install})
