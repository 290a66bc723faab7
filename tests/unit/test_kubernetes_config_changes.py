"""Config-change guarantees on the Kubernetes platform and with external endpoints: what `pulumi
preview` would show a reviewer. Each test renders the stack twice under mocks and compares every
resource by URN (type, name, parent chain) and inputs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.unit.platform_mocks import k8s_config, run_platform
from tests.unit.test_config_changes import TENANT_C, belongs_to, diff
from tests.unit.test_kubernetes_manifests import EXTERNAL_DATABASE, EXTERNAL_EMQX

# What a tenant must never touch: workloads, custom resources, volumes, secrets and services.
STATEFUL_OR_RUNNING = (
    "kubernetes:apps/v1:Deployment", "kubernetes:postgresql.cnpg.io/v1:Cluster", "kubernetes:apps.emqx.io/v2beta1:EMQX",
    "kubernetes:core/v1:Secret", "kubernetes:core/v1:Service", "kubernetes:core/v1:Namespace",
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    "docker:index/container:Container", "docker:index/volume:Volume",
)


def snapshot(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    run = run_platform(config)
    assert run.error is None, run.error
    urns = [r.urn for r in run.registrations]
    assert len(urns) == len(set(urns)), "URNs must be unique"
    return {r.urn: r.inputs for r in run.registrations}


def _variant(name: str) -> dict[str, Any]:
    config = k8s_config()
    if name == "k8s-external-endpoints":
        config["timescaledb"] = {"external": EXTERNAL_DATABASE}
        config["emqx"] = {"external": EXTERNAL_EMQX}
    elif name == "docker-external-endpoints":
        config = {"timescaledb": {"external": EXTERNAL_DATABASE}, "emqx": {"external": {
            key: value for key, value in EXTERNAL_EMQX.items() if key != "sourceRanges"}}, "tenants": config["tenants"]}
    return config


@pytest.mark.parametrize("variant", ["k8s", "k8s-external-endpoints", "docker-external-endpoints"])
def test_platform_adding_a_tenant_adds_only_tenant_resources(variant):
    base = _variant(variant)
    grown = copy.deepcopy(base)
    grown["tenants"].append(TENANT_C)
    before, after = snapshot(base), snapshot(grown)
    added, removed, changed = diff(before, after)
    assert removed == set() and changed == set(), sorted(changed)
    assert added and all(belongs_to(urn, "clinica-c") for urn in added), sorted(added)
    running = [urn for urn in before if urn.split("::")[2].rsplit("$", 1)[-1] in STATEFUL_OR_RUNNING]
    assert running and all(before[urn] == after[urn] for urn in running)


def test_kubernetes_removing_a_tenant_removes_only_its_resources():
    base = k8s_config()
    shrunk = copy.deepcopy(base)
    shrunk["tenants"] = [t for t in shrunk["tenants"] if t["slug"] != "hospital-x"]
    added, removed, changed = diff(snapshot(base), snapshot(shrunk))
    assert added == set() and changed == set()
    assert removed and all(belongs_to(urn, "hospital-x") for urn in removed)


def test_kubernetes_raising_max_replicas_changes_only_the_autoscaler():
    base = k8s_config()
    scaled = copy.deepcopy(base)
    scaled["kubernetes"]["ingest"]["maxReplicas"] = 12
    added, removed, changed = diff(snapshot(base), snapshot(scaled))
    assert added == set() and removed == set()
    assert [urn.rsplit("::", 1)[1] for urn in changed] == ["ingest-autoscaler"]


def test_kubernetes_reordering_tenants_changes_nothing():
    base = k8s_config()
    reordered = copy.deepcopy(base)
    reordered["tenants"].reverse()
    assert diff(snapshot(base), snapshot(reordered)) == (set(), set(), set())
